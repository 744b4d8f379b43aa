//! `MockHcssIdentity`: an HCSS-like identity service (and a HeavyJob-like API) on loopback.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Query, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::json;
use tokio::sync::oneshot;
use tokio::time::Instant;

mod api;
mod grants;
mod oidc;
mod routes;

pub use api::{MockApiLimits, MockApiUsage};
pub use oidc::{DiscoveryFault, LogoutTokenFault};

use grants::Grants;
use routes::*;

use crate::clock::TestClock;
use crate::config::HcssConfigBuilder;
use crate::protocol::pkce_challenge;
use crate::secret::random_token;
use crate::token::TokenSet;
use crate::HcssConfig;

/// A fault the mock's token endpoint can be switched to, to test how an app copes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenFault {
    /// HTTP 500 with an HTML body.
    ServerError,
    /// Answer correctly, but only after this delay.
    Slow(Duration),
    /// HTTP 200 with a body that is not JSON.
    MalformedBody,
    /// HTTP 200 with a JSON body that has no `access_token`.
    NoAccessToken,
    /// HTTP 200 with `token_type` `mac`.
    WrongTokenType,
    /// HTTP 200 with a negative `expires_in`.
    NegativeExpiry,
    /// HTTP 200 with a body of this many bytes.
    Oversized(usize),
    /// HTTP 307 to another URL of the mock that answers with valid tokens, so a client
    /// that follows redirects is caught (counted in `redirects_followed`).
    Redirect,
    /// HTTP 400 `invalid_grant`, as for a revoked grant.
    InvalidGrant,
    /// This status with an OAuth error body `{"error": error}`, and a `Retry-After`
    /// header when given: `500 server_error`, `503 temporarily_unavailable`, `429
    /// slow_down`, `401 invalid_client`...
    Error {
        /// The HTTP status.
        status: u16,
        /// The OAuth `error` code in the body.
        error: &'static str,
        /// `Retry-After` in seconds, if any.
        retry_after: Option<u64>,
    },
    /// Do the work (a refresh rotates the refresh token, the old one becomes used), then
    /// wait this long before answering: an answer that comes late, or never reaches a
    /// client that gave up.
    SlowAfterRotating(Duration),
    /// With `openid` among the scopes, an ID token (of a code exchange or a refresh)
    /// whose named claim is wrong (`"iss"`, `"aud"`, `"exp"` or `"nonce"`; `"sub"`:
    /// another user; `"auth_time"`: an hour ago, whatever `max_age` asked for; `"azp"`:
    /// `aud` names this client and another, and there is no `azp`), or whose signature
    /// is: `"signature"` (signed with a key that is not the
    /// identity service's, under its key id), `"kid"` (a key id its JWKS never has),
    /// `"alg"` (`alg: none`, unsigned); the rest of the answer is right.
    BadIdToken(&'static str),
    /// With `openid` among the scopes, a code exchange answered without an ID token; the
    /// rest of the answer is right.
    NoIdToken,
    /// Hold every token call, unanswered, until the fault is changed with
    /// [`set_token_fault`](MockHcssIdentity::set_token_fault); then answer it as the new
    /// setting says. Shows how many calls an app makes at once.
    Stall,
}

/// Counts of calls the mock has answered, per endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MockCounts {
    /// `GET /identity/connect/authorize` (and consent decisions).
    pub authorize: usize,
    /// Every `POST /identity/connect/token`.
    pub token: usize,
    /// Token calls with `grant_type=authorization_code`.
    pub code_exchanges: usize,
    /// Token calls with `grant_type=refresh_token`.
    pub refreshes: usize,
    /// `POST /identity/connect/revocation`.
    pub revocations: usize,
    /// Refresh tokens presented a second time (reuse detection fired).
    pub reuse_detected: usize,
    /// Calls to the mock's API, every endpoint (`businessUnits`, `jobs`...), however
    /// answered (a 401, 403 or 429 included).
    pub api_calls: usize,
    /// Requests that followed the [`TokenFault::Redirect`] redirect (a client must not).
    pub redirects_followed: usize,
    /// Token calls with `grant_type=company` (tokens for a customer company).
    pub company_grants: usize,
    /// Token calls with `grant_type=client_credentials` (the app's own company).
    pub client_credentials: usize,
    /// `GET /identity/.well-known/openid-configuration`.
    pub discovery: usize,
    /// `GET /identity/.well-known/openid-configuration/jwks`.
    pub jwks: usize,
    /// Sign-ins at which the mock asked for credentials: the browser had no live session
    /// at the mock (its `idsrv.session` cookie), the app sent `prompt=login`, or the app
    /// sent a `max_age` that the session's age (on the mock's [`clock`](MockHcssIdentity::clock))
    /// reaches (the new session has a fresh `auth_time`). A browser with a live session
    /// signs in without.
    pub credential_prompts: usize,
    /// `GET /identity/connect/endsession` (sign-out at the identity service).
    pub end_sessions: usize,
}

/// Builds a [`MockHcssIdentity`]; every setting has a default that suits tests.
#[derive(Clone)]
#[must_use]
pub struct MockHcssIdentityBuilder {
    client_id: String,
    client_secret: Option<String>,
    user: String,
    auto_consent: bool,
    access_token_lifetime: Duration,
    rotate_refresh_tokens: bool,
    reuse_detection: bool,
    emit_iss: bool,
    hostname: String,
    port: u16,
    subject: String,
    company_id: Option<String>,
    jwt_access_tokens: bool,
    api_limits: Option<MockApiLimits>,
    api_jobs: usize,
    post_logout_redirect_uri: Option<String>,
    backchannel_logout_uri: Option<String>,
}

impl std::fmt::Debug for MockHcssIdentityBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHcssIdentityBuilder")
            .field("client_id", &self.client_id)
            .field("auto_consent", &self.auto_consent)
            .finish_non_exhaustive()
    }
}

impl Default for MockHcssIdentityBuilder {
    fn default() -> Self {
        Self {
            client_id: "test-client".into(),
            client_secret: Some("test-secret".into()),
            user: "test.user@example.com".into(),
            auto_consent: true,
            access_token_lifetime: Duration::from_secs(3600),
            rotate_refresh_tokens: true,
            reuse_detection: true,
            emit_iss: true,
            hostname: "127.0.0.1".into(),
            port: 0,
            subject: "5f0c2a7e-0000-4000-8000-000000000001".into(),
            company_id: Some("a1c3e5f7-0000-4000-8000-00000000c0de".into()),
            jwt_access_tokens: true,
            api_limits: None,
            api_jobs: 7,
            post_logout_redirect_uri: None,
            backchannel_logout_uri: None,
        }
    }
}

impl MockHcssIdentityBuilder {
    /// The client id it accepts (default `test-client`).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = id.into();
        self
    }

    /// The client secret it requires (default `test-secret`); `None` for a public client.
    pub fn client_secret(mut self, secret: Option<&str>) -> Self {
        self.client_secret = secret.map(str::to_owned);
        self
    }

    /// The user who consents (default `test.user@example.com`).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// `true` (default): the authorize endpoint consents at once, for tests. `false`: it
    /// shows a consent page with Allow and Deny buttons, for people.
    pub fn auto_consent(mut self, auto: bool) -> Self {
        self.auto_consent = auto;
        self
    }

    /// The `expires_in` of the access tokens it issues (default one hour).
    pub fn access_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.access_token_lifetime = lifetime;
        self
    }

    /// `true` (default): each refresh returns a new refresh token and the old one becomes
    /// used. `false`: refresh responses carry no refresh token, the old one stays valid.
    pub fn rotate_refresh_tokens(mut self, rotate: bool) -> Self {
        self.rotate_refresh_tokens = rotate;
        self
    }

    /// `true` (default): a used refresh token presented again is `invalid_grant` and
    /// revokes the whole grant, as IdentityServer's one-time-only refresh tokens do.
    pub fn reuse_detection(mut self, on: bool) -> Self {
        self.reuse_detection = on;
        self
    }

    /// `true` (default): callbacks carry `iss` (RFC 9207).
    pub fn emit_iss(mut self, on: bool) -> Self {
        self.emit_iss = on;
        self
    }

    /// The `sub` of the user's tokens (default `5f0c2a7e-0000-4000-8000-000000000001`).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self
    }

    /// The `CompanyId` of the user's tokens (default
    /// `a1c3e5f7-0000-4000-8000-00000000c0de`); `None`: a user with no company. Set it
    /// when a test needs the user's company by name ([`MockHcssIdentity::api_usage`],
    /// [`set_other_integration`](MockHcssIdentity::set_other_integration),
    /// [`disconnect_company`](MockHcssIdentity::disconnect_company)); the app's own
    /// company is [`MockHcssIdentity::OWN_COMPANY`].
    pub fn company_id(mut self, company: Option<&str>) -> Self {
        self.company_id = company.map(str::to_owned);
        self
    }

    /// `true` (default): access tokens are JWTs carrying `sub`, `CompanyId`, `client_id`,
    /// `scope`, `name` and `email`, as HCSS's are. `false`: opaque tokens.
    pub fn jwt_access_tokens(mut self, on: bool) -> Self {
        self.jwt_access_tokens = on;
        self
    }

    /// The limits its API applies to each company (default none; see
    /// [`MockHcssIdentity::set_api_limits`]).
    pub fn api_limits(mut self, limits: MockApiLimits) -> Self {
        self.api_limits = Some(limits);
        self
    }

    /// How many jobs its paged `GET /heavyjob/api/v1/jobs` lists (default 7).
    pub fn api_jobs(mut self, jobs: usize) -> Self {
        self.api_jobs = jobs;
        self
    }

    /// The post-logout redirect URI registered for the client: its end-session endpoint
    /// sends browsers back to that URI only. Default: any that a request naming this
    /// client sends.
    pub fn post_logout_redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.post_logout_redirect_uri = Some(uri.into());
        self
    }

    /// The back-channel logout URI registered for the client, where
    /// [`MockHcssIdentity::back_channel_logout`] posts logout tokens (also settable once
    /// started, with [`set_backchannel_logout_uri`](MockHcssIdentity::set_backchannel_logout_uri),
    /// when the app's address is known only then). Default: none.
    pub fn backchannel_logout_uri(mut self, uri: impl Into<String>) -> Self {
        self.backchannel_logout_uri = Some(uri.into());
        self
    }

    /// The host name in its URLs (default `127.0.0.1`; it always listens on 127.0.0.1).
    /// `localhost` puts it on another site than an app at `127.0.0.1`, as HCSS is, so a
    /// browser applies its cross-site cookie rules on the way back.
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = hostname.into();
        self
    }

    /// The loopback port to listen on (default 0: a free one). A fixed port keeps the
    /// settings of an app run against the mock the same from one run to the next.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Starts the service on `127.0.0.1`, on a free port unless [`port`](Self::port)
    /// names one.
    ///
    /// # Panics
    ///
    /// If the port cannot be bound (a free one: a test-machine problem; a fixed one: it
    /// is taken).
    pub async fn start(self) -> MockHcssIdentity {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "MockHcssIdentity cannot listen on 127.0.0.1:{}: {e}",
                    self.port
                )
            });
        let addr = listener.local_addr().expect("local address");
        let limits = self.api_limits;
        let backchannel_logout_uri = self.backchannel_logout_uri.clone();
        let state = Arc::new(MockState {
            issuer: format!("http://{}:{}/identity", self.hostname, addr.port()),
            clock: TestClock::new(),
            options: self,
            counts: Counters::default(),
            counted: tokio::sync::watch::Sender::new(()),
            fault: Mutex::new(None),
            fault_changed: tokio::sync::watch::Sender::new(()),
            grants: Mutex::new(Grants::default()),
            disconnected: Mutex::default(),
            api: Mutex::new(api::ApiState {
                limits,
                ..Default::default()
            }),
            signing_key: AtomicUsize::new(0),
            discovery_fault: Mutex::default(),
            backchannel_logout_uri: Mutex::new(backchannel_logout_uri),
            next_jti: AtomicUsize::new(0),
            date_skew: Mutex::default(),
        });
        let app = Router::new()
            .route("/identity/connect/authorize", get(authorize))
            .route("/identity/connect/authorize/consent", post(consent))
            .route("/identity/connect/token", post(token))
            .route("/identity/connect/revocation", post(revocation))
            .route("/identity/connect/endsession", get(end_session))
            .route("/identity/redirected", post(redirected))
            .route(
                "/heavyjob/api/v1/businessUnits",
                get(api::business_units).post(api::create_business_unit),
            )
            .route("/heavyjob/api/v1/jobs", get(api::jobs))
            .route("/heavyjob/api/v1/jobs/{id}", get(api::job))
            .route(
                "/identity/.well-known/openid-configuration",
                get(oidc::discovery),
            )
            .route(
                "/identity/.well-known/openid-configuration/jwks",
                get(oidc::jwks),
            )
            .layer(axum::middleware::map_response_with_state(
                state.clone(),
                skewed_date,
            ))
            .with_state(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        MockHcssIdentity {
            addr,
            state,
            _stop: stop,
        }
    }
}

/// An HCSS-like identity service on `127.0.0.1`, for tests (this crate's and yours) and
/// for trying the flow with no HCSS account.
///
/// It serves, under `/identity`, `connect/authorize` (consenting at once, or with a
/// consent page), `connect/token` (client id and secret, redirect URI, PKCE S256,
/// single-use codes, refresh with rotation and reuse detection), `connect/revocation`,
/// and a HeavyJob-like API that accepts only live access tokens: `GET` and `POST`
/// (scope `heavyjob:write`, else 403) `/heavyjob/api/v1/businessUnits`, and the paged
/// `GET /heavyjob/api/v1/jobs?limit=&cursor=` (`{"results": [...], "metadata":
/// {"nextCursor": ...}}`). The API applies HCSS's per-company limits when given some
/// ([`set_api_limits`](Self::set_api_limits): 429 with `Retry-After` and
/// `Remaining-Calls`), records what it saw per company ([`api_usage`](Self::api_usage)),
/// and can be made slow, failing, or shared with another integration. It counts calls per
/// endpoint and can be switched to fail. It stops when dropped.
///
/// ```
/// use hcss_auth::testing::MockHcssIdentity;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mock = MockHcssIdentity::start().await;
/// let config = mock
///     .config_builder("http://127.0.0.1:3000/hcss/callback")
///     .scopes(["heavyjob:read", "offline_access"])
///     .build()
///     .unwrap();
/// assert_eq!(config.issuer(), mock.identity_url());
/// assert_eq!(mock.counts().token, 0);
/// # }
/// ```
pub struct MockHcssIdentity {
    addr: SocketAddr,
    state: Arc<MockState>,
    _stop: oneshot::Sender<()>,
}

impl std::fmt::Debug for MockHcssIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockHcssIdentity")
            .field("identity_url", &self.state.issuer)
            .finish_non_exhaustive()
    }
}

impl MockHcssIdentity {
    /// Starts a mock with the default settings.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// A builder for a mock with other settings.
    pub fn builder() -> MockHcssIdentityBuilder {
        MockHcssIdentityBuilder::default()
    }

    /// The identity base URL (the issuer), e.g. `http://127.0.0.1:PORT/identity`.
    pub fn identity_url(&self) -> &str {
        &self.state.issuer
    }

    /// The base URL of its HCSS-like API, e.g. `http://127.0.0.1:PORT`.
    pub fn api_url(&self) -> String {
        format!(
            "http://{}:{}",
            self.state.options.hostname,
            self.addr.port()
        )
    }

    /// The client id it accepts.
    pub fn client_id(&self) -> &str {
        &self.state.options.client_id
    }

    /// The client secret it requires, if any.
    pub fn client_secret(&self) -> Option<&str> {
        self.state.options.client_secret.as_deref()
    }

    /// A config builder set up for this mock: its client id and secret, its identity URL,
    /// its [API's URL](Self::api_url) (so that [`HcssApi`](crate::HcssApi) calls the mock,
    /// not HCSS), plain http allowed on loopback, and the mock's [`clock`](Self::clock), so that
    /// [`expire_access_tokens`](Self::expire_access_tokens) reaches the app too. Add
    /// scopes and build.
    pub fn config_builder(&self, redirect_uri: &str) -> HcssConfigBuilder {
        let mut builder = HcssConfig::builder()
            .client_id(self.client_id())
            .identity_url(self.identity_url())
            .api_url(self.api_url())
            .redirect_uri(redirect_uri)
            .allow_insecure_http_on_loopback(true)
            .test_clock(self.state.clock.clone());
        if let Some(secret) = self.client_secret() {
            builder = builder.client_secret(secret);
        }
        builder
    }

    /// How many calls each endpoint has answered so far.
    pub fn counts(&self) -> MockCounts {
        self.state.counts.snapshot()
    }

    /// Waits until the counts satisfy `done`, e.g. until the token endpoint has received a
    /// refresh: `mock.wait_for(|c| c.refreshes == 1).await`. No polling, no sleeping.
    pub async fn wait_for(&self, done: impl Fn(&MockCounts) -> bool) {
        let mut changed = self.state.counted.subscribe();
        while !done(&self.counts()) {
            if changed.changed().await.is_err() {
                return;
            }
        }
    }

    /// Makes the token endpoint fail in the given way from now on (`None`: work again).
    pub fn set_token_fault(&self, fault: Option<TokenFault>) {
        *lock(&self.state.fault) = fault;
        self.state.fault_changed.send_replace(());
    }

    /// Rotates the signing key: ID tokens are signed from now on with another key, under
    /// another key id, and the JWKS publishes only the new key.
    pub fn rotate_signing_key(&self) {
        self.state.signing_key.fetch_add(1, Ordering::SeqCst);
    }

    /// Makes the discovery document (and the JWKS) fail in the given way from now on
    /// (`None`: served as IdentityServer serves them).
    pub fn set_discovery_fault(&self, fault: Option<DiscoveryFault>) {
        *lock(&self.state.discovery_fault) = fault;
    }

    /// Makes every answer's `Date` header `seconds` away from the true time (negative:
    /// behind), as an identity service whose clock (or this machine's) is off; 0 sends
    /// the true time again. The configuration doctor compares the two.
    pub fn set_date_skew(&self, seconds: i64) {
        *lock(&self.state.date_skew) = (seconds != 0).then_some(seconds);
    }

    /// Makes the `company` grant refuse `company` (`invalid_grant`), as HCSS does once a
    /// customer removed the app in the Marketplace or changed its scopes.
    pub fn disconnect_company(&self, company: &str) {
        lock(&self.state.disconnected).insert(company.to_owned());
    }

    /// Undoes [`disconnect_company`](Self::disconnect_company): the customer connected
    /// the app again.
    pub fn reconnect_company(&self, company: &str) {
        lock(&self.state.disconnected).remove(company);
    }

    /// The company of the app itself, whose tokens `client_credentials` issues.
    pub const OWN_COMPANY: &'static str = "0a0b0c0d-0000-4000-8000-00000000a110";

    /// The clock that apps configured with [`config_builder`](Self::config_builder) run
    /// on: move it forward to let time pass for them (a login wait, a session's age).
    pub fn clock(&self) -> TestClock {
        self.state.clock.clone()
    }

    /// Lets the access tokens' lifetime pass: every access token issued so far expires
    /// here, and the [`clock`](Self::clock) of apps configured with
    /// [`config_builder`](Self::config_builder) moves forward by that lifetime, so their
    /// next request refreshes. Refresh tokens stay valid.
    pub fn expire_access_tokens(&self) {
        self.revoke_access_tokens();
        let lifetime = self.state.options.access_token_lifetime;
        self.state
            .clock
            .advance(lifetime.max(Duration::from_secs(2)));
    }

    /// Refuses every access token issued so far before its time, as HCSS does for a
    /// revoked token: the app still believes them live, and its HCSS API calls get 401
    /// (see [`HcssSession::refresh`](crate::HcssSession::refresh)). Refresh tokens stay
    /// valid.
    pub fn revoke_access_tokens(&self) {
        let now = Instant::now();
        for token in lock(&self.state.grants).access.values_mut() {
            token.expires = now;
        }
    }

    /// Tokens for a new grant of this mock's user, as a sign-in would get them: an access
    /// token its API accepts and a refresh token it refreshes, for
    /// [`seed_session`](super::seed_session).
    ///
    /// ```
    /// use hcss_auth::testing::{seed_session, MockHcssIdentity};
    /// use hcss_auth::HcssAuth;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let mock = MockHcssIdentity::start().await;
    /// let config = mock
    ///     .config_builder("http://127.0.0.1:3000/hcss/callback")
    ///     .scopes(["heavyjob:read", "offline_access"])
    ///     .build()
    ///     .unwrap();
    /// let auth = HcssAuth::new(config);
    /// let session = seed_session(&auth, mock.issue_tokens("heavyjob:read offline_access"))
    ///     .await
    ///     .unwrap();
    /// assert!(session.cookie_header().starts_with("hcss-session="));
    /// # }
    /// ```
    pub fn issue_tokens(&self, scope: &str) -> TokenSet {
        let options = &self.state.options;
        let mut grants = lock(&self.state.grants);
        grants.next += 1;
        let grant = grants.next;
        let body = grants.issue(options, &self.state.issuer, grant, scope, true);
        let text = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
        let now = self.state.clock.now();
        let mut tokens = TokenSet::new(text("access_token"), 0)
            .with_refresh_token(text("refresh_token"))
            .with_scope(scope);
        tokens.issued_at = now;
        tokens.expires_at = now + options.access_token_lifetime.as_secs();
        tokens.session_expires_at = now + crate::config::DEFAULT_MAX_SESSION_AGE.as_secs();
        tokens
    }

    /// How many browsers are signed in at the mock itself (its own sessions, which the
    /// end-session endpoint ends).
    pub fn signed_in_browsers(&self) -> usize {
        lock(&self.state.grants).sessions.len()
    }

    /// Whether a grant's tokens were revoked (by revocation or reuse detection), by any
    /// of its refresh tokens.
    pub fn is_revoked(&self, refresh_token: &str) -> bool {
        let grants = lock(&self.state.grants);
        grants
            .refresh
            .get(refresh_token)
            .is_none_or(|rt| grants.revoked.contains(&rt.grant))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

struct MockState {
    /// Seconds the `Date` of every answer is moved by.
    date_skew: Mutex<Option<i64>>,
    options: MockHcssIdentityBuilder,
    issuer: String,
    /// The clock that apps configured with `config_builder` run on.
    clock: TestClock,
    counts: Counters,
    /// Bumped after every counted call, so tests can wait for one without sleeping.
    counted: tokio::sync::watch::Sender<()>,
    fault: Mutex<Option<TokenFault>>,
    /// Bumped at every change of `fault`, so stalled calls wake up.
    fault_changed: tokio::sync::watch::Sender<()>,
    grants: Mutex<Grants>,
    /// Companies that removed the app: the `company` grant refuses them.
    disconnected: Mutex<std::collections::HashSet<String>>,
    /// The API's limits, faults and what it saw per company.
    api: Mutex<api::ApiState>,
    /// The signing key in use (counting rotations).
    signing_key: AtomicUsize,
    discovery_fault: Mutex<Option<DiscoveryFault>>,
    /// Where back-channel logout tokens are posted.
    backchannel_logout_uri: Mutex<Option<String>>,
    /// Numbers the logout tokens' `jti`s.
    next_jti: AtomicUsize,
}

#[derive(Default)]
struct Counters {
    authorize: AtomicUsize,
    token: AtomicUsize,
    code_exchanges: AtomicUsize,
    refreshes: AtomicUsize,
    revocations: AtomicUsize,
    reuse_detected: AtomicUsize,
    api_calls: AtomicUsize,
    redirects_followed: AtomicUsize,
    company_grants: AtomicUsize,
    client_credentials: AtomicUsize,
    discovery: AtomicUsize,
    jwks: AtomicUsize,
    credential_prompts: AtomicUsize,
    end_sessions: AtomicUsize,
}

impl Counters {
    fn snapshot(&self) -> MockCounts {
        let get = |c: &AtomicUsize| c.load(Ordering::SeqCst);
        MockCounts {
            authorize: get(&self.authorize),
            token: get(&self.token),
            code_exchanges: get(&self.code_exchanges),
            refreshes: get(&self.refreshes),
            revocations: get(&self.revocations),
            reuse_detected: get(&self.reuse_detected),
            api_calls: get(&self.api_calls),
            redirects_followed: get(&self.redirects_followed),
            company_grants: get(&self.company_grants),
            client_credentials: get(&self.client_credentials),
            discovery: get(&self.discovery),
            jwks: get(&self.jwks),
            credential_prompts: get(&self.credential_prompts),
            end_sessions: get(&self.end_sessions),
        }
    }
}

fn bump(state: &MockState, counter: impl Fn(&Counters) -> &AtomicUsize) {
    counter(&state.counts).fetch_add(1, Ordering::SeqCst);
    state.counted.send_replace(());
}

/// Moves the answer's `Date` by the skew set with `set_date_skew`.
async fn skewed_date(
    axum::extract::State(state): axum::extract::State<Arc<MockState>>,
    mut response: axum::response::Response,
) -> axum::response::Response {
    if let Some(skew) = *lock(&state.date_skew) {
        let now = std::time::SystemTime::now();
        let shift = Duration::from_secs(skew.unsigned_abs());
        let date = if skew > 0 { now + shift } else { now - shift };
        if let Ok(value) = http::HeaderValue::from_str(&httpdate::fmt_http_date(date)) {
            response.headers_mut().insert(http::header::DATE, value);
        }
    }
    response
}
