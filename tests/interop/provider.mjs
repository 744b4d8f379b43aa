// oidc-provider (a certified OpenID provider) laid out like HCSS's identity service:
// /identity/connect/{authorize,token,revocation}, PKCE S256 required, refresh tokens
// rotated with reuse detection. Interactions finish at once: the user signs in as
// `interop-user` and consents, or, after `GET /test/deny-next`, denies.
//
// Access tokens are JWTs for the HCSS API (a resource server, by resource indicators)
// carrying `sub`, `client_id`, `scope` and `CompanyId`, as HCSS's are. Besides the code
// and refresh grants: `client_credentials` (the app's own company) and HCSS's custom
// `company` grant (a token for a customer company given by `CompanyId`; `invalid_grant`
// for a company that is unknown or has disconnected the app).
//
// OpenID Connect as IdentityServer publishes it: the discovery document at
// `/identity/.well-known/openid-configuration`, ID tokens signed (RS256) with a key of
// its JWKS, RP-initiated logout at `/identity/connect/endsession` (its confirmation page
// posts `xsrf` and `logout=yes`) and back-channel logout to the clients' registered URI.
//
// Environment: PORT (0 for any), REDIRECT_URIS (space-separated),
// POST_LOGOUT_REDIRECT_URIS (space-separated, optional), BACKCHANNEL_LOGOUT_URI
// (optional). Prints `ready http://127.0.0.1:PORT/identity` on stdout when listening.
//
// Test controls: `GET /test/counts` (`logins` counts the sign-ins at which the provider
// had no session of the browser, so asked for credentials), `GET /test/deny-next`,
// `GET /test/disconnect?company=ID`, `GET /test/reconnect?company=ID`, and
// `GET /test/forge-keys` (from then on its JWKS publishes another key under the signing
// key's id: its ID tokens no longer verify against it).
import crypto from 'node:crypto';
import http from 'node:http';
import Provider, { errors } from 'oidc-provider';

// stdout carries the `ready` line only (the harness stops reading it after that line):
// the provider's own notices go to stderr.
console.log = console.info = (...args) => console.error(...args);

const port = Number(process.env.PORT || 0);
const redirectUris = (process.env.REDIRECT_URIS || '').split(' ').filter(Boolean);
const postLogoutRedirectUris = (process.env.POST_LOGOUT_REDIRECT_URIS || '').split(' ').filter(Boolean);
const backchannelLogoutUri = process.env.BACKCHANNEL_LOGOUT_URI || undefined;
let denyNext = false;

// The signing key (RS256), and another one under its key id for `/test/forge-keys`.
const KID = 'interop-signing-key';
const rsaJwk = (which) => ({
  ...crypto.generateKeyPairSync('rsa', { modulusLength: 2048 })[which].export({ format: 'jwk' }),
  kid: KID, alg: 'RS256', use: 'sig',
});
const signingKey = rsaJwk('privateKey');
const forgedKey = rsaJwk('publicKey');
let forgeKeys = false;

// The HCSS API, the one resource server: every access token is a JWT for it.
const API = 'https://api.hcss.test';
const API_SCOPES = 'heavyjob:read';
const apiServer = { scope: API_SCOPES, audience: API, accessTokenFormat: 'jwt', accessTokenTTL: 3600 };
// Each user's company, and the companies that have connected the app.
const USER_COMPANY = { 'interop-user': '6d1b4a5e-2c1f-4b7e-9a3d-0c5e8f7a1b2c' };
const companies = new Set([
  ...Object.values(USER_COMPANY),
  '0b9e7c4d-8a6f-4e2b-b1c3-5d7f9a2e4c6b',
]);
const disconnected = new Set();
// The company of each token the `company` grant issues (read by extraTokenClaims).
const companyOf = new WeakMap();

const server = http.createServer();
await new Promise((resolve) => server.listen(port, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}/identity`;

const client = (client_id, extra) => ({
  client_id,
  redirect_uris: redirectUris,
  grant_types: ['authorization_code', 'refresh_token', 'client_credentials', 'company'],
  response_types: ['code'],
  scope: 'openid offline_access heavyjob:read',
  post_logout_redirect_uris: postLogoutRedirectUris,
  ...(backchannelLogoutUri
    ? { backchannel_logout_uri: backchannelLogoutUri, backchannel_logout_session_required: true }
    : {}),
  ...extra,
});

const provider = new Provider(issuer, {
  clients: [
    client('secret-body', { client_secret: 'body-secret', token_endpoint_auth_method: 'client_secret_post' }),
    client('secret-basic', { client_secret: 'basic-secret', token_endpoint_auth_method: 'client_secret_basic' }),
    client('public', {
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
    }),
  ],
  scopes: ['openid', 'offline_access', 'heavyjob:read'],
  jwks: { keys: [signingKey] },
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    backchannelLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => API,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (resource !== API) throw new errors.InvalidTarget();
        return apiServer;
      },
    },
  },
  extraTokenClaims: (ctx, token) => {
    if (companyOf.has(token)) return { CompanyId: companyOf.get(token) };
    const company = token.accountId && USER_COMPANY[token.accountId];
    return company ? { CompanyId: company } : undefined;
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
  ttl: { AccessToken: 3600, ClientCredentials: 3600, AuthorizationCode: 300, RefreshToken: 86400, Grant: 86400, Interaction: 600, Session: 86400 },
  // Its outgoing requests (back-channel logout tokens) go to the apps under test on
  // loopback, which its SSRF protection refuses: this test provider lets them through.
  fetch: (url, options) => {
    const { dispatcher, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
});
provider.proxy = false;

// HCSS's `company` grant: like client_credentials, plus a required `CompanyId`.
provider.registerGrantType('company', async (ctx) => {
  const { client, params } = ctx.oidc;
  const companyId = params.CompanyId;
  if (!companyId) throw new errors.InvalidRequest("missing required parameter 'CompanyId'");
  if (!companies.has(companyId) || disconnected.has(companyId)) {
    throw new errors.InvalidGrant('the company has not connected this app');
  }
  const allowed = new Set(client.scope.split(' '));
  const requested = (params.scope || '').split(' ').filter(Boolean);
  const refused = requested.find((scope) => !allowed.has(scope));
  if (refused) throw new errors.InvalidScope('requested scope is not allowed', refused);
  const served = new Set(API_SCOPES.split(' '));
  const token = new provider.ClientCredentials({
    client,
    scope: requested.filter((scope) => served.has(scope)).join(' ') || undefined,
  });
  token.resourceServer = new provider.ResourceServer(API, apiServer);
  companyOf.set(token, companyId);
  ctx.oidc.entity('ClientCredentials', token);
  const value = await token.save();
  ctx.body = {
    access_token: value,
    expires_in: token.expiration,
    token_type: token.tokenType,
    scope: token.scope,
  };
}, ['CompanyId', 'scope']);

const counts = {
  token: 0, refresh: 0, revocation: 0, company: 0, client_credentials: 0,
  discovery: 0, jwks: 0, logins: 0, end_session: 0, backchannel: 0, backchannel_errors: 0,
};
const count = (ctx) => {
  counts.token += 1;
  const grantType = ctx.oidc.params.grant_type;
  if (grantType === 'refresh_token') counts.refresh += 1;
  if (grantType === 'company' || grantType === 'client_credentials') counts[grantType] += 1;
};
provider.on('grant.success', count);
provider.on('grant.error', count);
provider.on('backchannel.success', () => { counts.backchannel += 1; });
provider.on('backchannel.error', (ctx, err) => {
  counts.backchannel_errors += 1;
  console.error('backchannel logout failed:', err && err.message, err && err.cause && err.cause.message);
});

const callback = provider.callback();
server.on('request', async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    if (url.pathname === '/identity/connect/revocation') counts.revocation += 1;
    if (url.pathname === '/identity/connect/endsession') counts.end_session += 1;
    // Discovery under the issuer, as IdentityServer publishes it.
    if (url.pathname === '/identity/.well-known/openid-configuration') {
      counts.discovery += 1;
      req.url = '/.well-known/openid-configuration';
    }
    if (url.pathname === '/identity/.well-known/jwks') {
      counts.jwks += 1;
      if (forgeKeys) {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ keys: [forgedKey] }));
        return;
      }
    }
    if (url.pathname === '/test/forge-keys') {
      forgeKeys = true;
      res.end('ok');
      return;
    }
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
    if (url.pathname === '/test/disconnect' || url.pathname === '/test/reconnect') {
      const company = url.searchParams.get('company');
      if (url.pathname === '/test/disconnect') disconnected.add(company);
      else disconnected.delete(company);
      res.end('ok');
      return;
    }
    if (url.pathname.startsWith('/interaction/')) {
      const details = await provider.interactionDetails(req, res);
      if (details.prompt.name === 'login') counts.logins += 1;
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
      // The API's scopes, granted for the resource the request was given by default.
      if (details.params.resource) grant.addResourceScope(details.params.resource, details.params.scope);
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
