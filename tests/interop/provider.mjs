// oidc-provider (a certified OpenID provider) laid out like HCSS's identity service:
// /identity/connect/{authorize,token,revocation}, PKCE S256 required, refresh tokens
// rotated with reuse detection. Interactions finish at once: the user signs in as
// `interop-user` and consents, or, with `?deny=1` on the login URL's return, denies.
//
// Environment: PORT (0 for any), REDIRECT_URIS (space-separated). Prints
// `ready http://127.0.0.1:PORT/identity` on stdout when listening.
import http from 'node:http';
import Provider, { errors } from 'oidc-provider';

const port = Number(process.env.PORT || 0);
const redirectUris = (process.env.REDIRECT_URIS || '').split(' ').filter(Boolean);
let denyNext = false;

const server = http.createServer();
await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}/identity`;

const client = (client_id, extra) => ({
  client_id,
  redirect_uris: redirectUris,
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  scope: 'openid offline_access heavyjob:read',
  ...extra,
});

const provider = new Provider(issuer, {
  clients: [
    client('secret-body', { client_secret: 'body-secret', token_endpoint_auth_method: 'client_secret_post' }),
    client('secret-basic', { client_secret: 'basic-secret', token_endpoint_auth_method: 'client_secret_basic' }),
    client('public', { token_endpoint_auth_method: 'none' }),
  ],
  scopes: ['openid', 'offline_access', 'heavyjob:read'],
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
  },
  routes: {
    authorization: '/identity/connect/authorize',
    token: '/identity/connect/token',
    revocation: '/identity/connect/revocation',
    jwks: '/identity/.well-known/jwks',
    end_session: '/identity/connect/endsession',
    userinfo: '/identity/connect/userinfo',
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  // HCSS (IdentityServer) issues a refresh token for offline_access without prompt=consent.
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: true,
  ttl: { AccessToken: 3600, AuthorizationCode: 300, RefreshToken: 86400, Grant: 86400, Interaction: 600, Session: 86400 },
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
});
provider.proxy = false;

const counts = { token: 0, refresh: 0, revocation: 0 };
provider.on('grant.success', (ctx) => {
  counts.token += 1;
  if (ctx.oidc.params.grant_type === 'refresh_token') counts.refresh += 1;
});
provider.on('grant.error', (ctx, err) => {
  counts.token += 1;
  if (ctx.oidc.params.grant_type === 'refresh_token') counts.refresh += 1;
});

const callback = provider.callback();
server.on('request', async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    if (url.pathname === '/identity/connect/revocation') counts.revocation += 1;
    if (url.pathname === '/test/counts') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(counts));
      return;
    }
    if (url.pathname === '/test/deny-next') {
      denyNext = true;
      res.end('ok');
      return;
    }
    if (url.pathname.startsWith('/interaction/')) {
      const details = await provider.interactionDetails(req, res);
      if (process.env.DEBUG_INTERACTIONS) console.error(JSON.stringify(details.prompt), details.session);
      if (denyNext) {
        denyNext = false;
        await provider.interactionFinished(req, res, {
          error: 'access_denied',
          error_description: 'The user denied access',
        }, { mergeWithLastSubmission: false });
        return;
      }
      const accountId = 'interop-user';
      const grant = new provider.Grant({ accountId, clientId: details.params.client_id });
      grant.addOIDCScope(details.params.scope);
      const grantId = await grant.save();
      await provider.interactionFinished(req, res, {
        login: { accountId },
        consent: { grantId },
      }, { mergeWithLastSubmission: false });
      return;
    }
    callback(req, res);
  } catch (err) {
    res.statusCode = 500;
    res.end(String(err && err.message));
  }
});

process.stdout.write(`ready ${issuer}\n`);
