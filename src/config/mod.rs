//! `HcssConfig`: what the flow needs to know, validated once when it is built.

use std::net::IpAddr;
use std::time::Duration;

use url::Url;

use crate::clock::unix_now;
use crate::error::ConfigError;
use crate::seal::{CookieKey, MIN_KEY_BYTES};
use crate::secret::SecretString;

/// HCSS's identity service, the default identity base URL (and `iss`).
pub const HCSS_IDENTITY_URL: &str = "https://api.hcssapps.com/identity";

/// The longest a session lives by default: 30 days, the lifetime of an HCSS refresh token.
pub(crate) const DEFAULT_MAX_SESSION_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Code exchanges one process makes at once by default.
pub(crate) const DEFAULT_MAX_CODE_EXCHANGES: usize = 64;
/// The largest bound on code exchanges in flight that a configuration may set.
const MAX_CODE_EXCHANGES: usize = 65_536;

/// The longest wait after a transient failure: the bound of `retry_after` and of a
/// `Retry-After` sent by the identity service.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How the client authenticates to the token and revocation endpoints.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `client_id` and `client_secret` in the form body, as HCSS documents (the default).
    #[default]
    RequestBody,
    /// HTTP Basic: form-urlencoded id and secret, base64-encoded, in `Authorization`.
    BasicAuth,
}

/// The configuration of the HCSS sign-in flow.
///
/// Built with [`HcssConfig::builder`] or [`HcssConfig::from_env`], and checked when built:
/// a config that exists is one that can work. Its `Debug` output hides the client secret.
///
/// ```
/// use hcss_auth::HcssConfig;
///
/// let config = HcssConfig::builder()
///     .client_id("my-client")
///     .client_secret("my-secret")
///     .scopes(["heavyjob:read", "offline_access"])
///     .redirect_uri("https://app.example.com/hcss/callback")
///     .build()?;
/// assert_eq!(config.callback_path(), "/hcss/callback");
/// assert!(!format!("{config:?}").contains("my-secret"));
/// # Ok::<(), hcss_auth::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct HcssConfig {
    pub(crate) identity: IdentityClient,
    pub(crate) routes: Routes,
    pub(crate) cookies: CookiePolicy,
    pub(crate) lifetimes: Lifetimes,
}

/// What the token client reads: who the app is at HCSS, where HCSS is, and how to call it.
#[derive(Clone, Debug)]
pub(crate) struct IdentityClient {
    pub(crate) client_id: String,
    pub(crate) client_secret: Option<SecretString>,
    pub(crate) client_auth: ClientAuth,
    pub(crate) scope: String,
    /// The scopes of company tokens: the configured ones without `offline_access` and
    /// the OpenID identity scopes, which a token with no user cannot have.
    pub(crate) company_scope: String,
    /// `openid` is among the scopes: logins send a `nonce` and check the ID token.
    pub(crate) openid: bool,
    pub(crate) redirect_uri: String,
    pub(crate) issuer: String,
    pub(crate) authorize_url: Url,
    pub(crate) token_url: Url,
    pub(crate) revocation_url: Url,
    pub(crate) revoke_on_logout: bool,
    pub(crate) http: reqwest::Client,
    pub(crate) http_timeout: Duration,
    pub(crate) max_response_bytes: usize,
    pub(crate) retry_after: Duration,
    /// Code exchanges one process makes at once, at most.
    pub(crate) max_code_exchanges: usize,
}

/// Scopes that only a user's sign-in can be granted: `offline_access` and OpenID
/// Connect's identity scopes. Company tokens (no user present) leave them out, as
/// IdentityServer refuses them for `client_credentials`.
const USER_ONLY_SCOPES: [&str; 6] = [
    "offline_access",
    "openid",
    "profile",
    "email",
    "address",
    "phone",
];

/// What the service routes by: the flow's paths, where users land, the app's origin.
#[derive(Clone, Debug)]
pub(crate) struct Routes {
    pub(crate) login_path: String,
    pub(crate) callback_path: String,
    pub(crate) logout_path: String,
    pub(crate) post_login_path: String,
    pub(crate) post_logout_path: String,
    pub(crate) user_path: Option<String>,
    pub(crate) app_origin: String,
}

/// What the cookies are made with.
#[derive(Clone, Debug)]
pub(crate) struct CookiePolicy {
    pub(crate) secure_cookies: bool,
    pub(crate) cookie_key: Option<CookieKey>,
    pub(crate) previous_cookie_key: Option<CookieKey>,
}

/// How long things last, and the clock they are measured on.
#[derive(Clone, Debug)]
pub(crate) struct Lifetimes {
    pub(crate) transaction_ttl: Duration,
    pub(crate) refresh_skew: Duration,
    pub(crate) max_session_age: Duration,
    #[cfg(feature = "test-util")]
    pub(crate) clock: Option<crate::clock::TestClock>,
}

impl HcssConfig {
    /// A builder with HCSS's defaults.
    pub fn builder() -> HcssConfigBuilder {
        HcssConfigBuilder::default()
    }

    /// Reads the configuration from the environment:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `HCSS_CLIENT_ID` | required |
    /// | `HCSS_CLIENT_SECRET` | optional (public clients have none) |
    /// | `HCSS_SCOPES` | required, separated by spaces or commas |
    /// | `HCSS_REDIRECT_URI` | required, the "Post Login Callback URL" registered at HCSS |
    /// | `HCSS_IDENTITY_URL` | default `https://api.hcssapps.com/identity` |
    /// | `HCSS_COOKIE_KEY` | base64 of at least 32 random bytes: seals login cookies; the same on every instance |
    /// | `HCSS_COOKIE_KEY_PREVIOUS` | the key before it, accepted during a rotation |
    /// | `HCSS_ALLOW_INSECURE_HTTP` | `1` allows `http://` on loopback, for local development |
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub(crate) fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let mut builder = Self::builder();
        if let Some(id) = get("HCSS_CLIENT_ID") {
            builder = builder.client_id(id);
        }
        if let Some(secret) = get("HCSS_CLIENT_SECRET") {
            builder = builder.client_secret(secret);
        }
        if let Some(scopes) = get("HCSS_SCOPES") {
            builder = builder.scopes(
                scopes
                    .split(|c: char| c == ',' || c.is_ascii_whitespace())
                    .filter(|scope| !scope.is_empty()),
            );
        }
        if let Some(uri) = get("HCSS_REDIRECT_URI") {
            builder = builder.redirect_uri(uri);
        }
        if let Some(url) = get("HCSS_IDENTITY_URL") {
            builder = builder.identity_url(url);
        }
        if let Some(key) = get("HCSS_COOKIE_KEY") {
            builder = builder.cookie_key(key);
        }
        if let Some(key) = get("HCSS_COOKIE_KEY_PREVIOUS") {
            builder = builder.previous_cookie_key(key);
        }
        match get("HCSS_ALLOW_INSECURE_HTTP").as_deref() {
            None | Some("0") | Some("false") => {}
            Some("1") | Some("true") => builder = builder.allow_insecure_http_on_loopback(true),
            Some(_) => {
                return Err(ConfigError::invalid(
                    "HCSS_ALLOW_INSECURE_HTTP",
                    "use 1 or 0",
                ))
            }
        }
        builder.build()
    }

    /// The client id HCSS issued.
    pub fn client_id(&self) -> &str {
        &self.identity.client_id
    }

    /// The redirect URI, byte for byte as sent to HCSS.
    pub fn redirect_uri(&self) -> &str {
        &self.identity.redirect_uri
    }

    /// The path of the login endpoint (default `/hcss/login`): HCSS's "Redirect URL".
    pub fn login_path(&self) -> &str {
        &self.routes.login_path
    }

    /// The path of the callback endpoint, taken from the redirect URI.
    pub fn callback_path(&self) -> &str {
        &self.routes.callback_path
    }

    /// The path of the logout endpoint (default `/hcss/logout`, POST only).
    pub fn logout_path(&self) -> &str {
        &self.routes.logout_path
    }

    /// The expected issuer: the identity base URL.
    pub fn issuer(&self) -> &str {
        &self.identity.issuer
    }

    /// The time the flow runs on, in Unix seconds: the system's, or a test clock's.
    pub(crate) fn now(&self) -> u64 {
        #[cfg(feature = "test-util")]
        if let Some(clock) = &self.lifetimes.clock {
            return clock.now();
        }
        unix_now()
    }

    pub(crate) fn session_cookie_name(&self) -> &'static str {
        if self.cookies.secure_cookies {
            "__Host-hcss-session"
        } else {
            "hcss-session"
        }
    }

    /// The prefix of the per-login binding cookies: each login has its own,
    /// `{prefix}{first 8 characters of its state}`, so tabs never overwrite each other's.
    pub(crate) fn binding_cookie_prefix(&self) -> &'static str {
        if self.cookies.secure_cookies {
            "__Host-hcss-login-"
        } else {
            "hcss-login-"
        }
    }

    /// The name of the binding cookie of the login with this `state`.
    pub(crate) fn binding_cookie_name(&self, state: &str) -> String {
        let suffix = state.get(..8).unwrap_or(state);
        format!("{}{suffix}", self.binding_cookie_prefix())
    }
}

/// Builds an [`HcssConfig`]; see there for an example.
#[derive(Debug)]
#[must_use]
pub struct HcssConfigBuilder {
    client_id: Option<String>,
    client_secret: Option<SecretString>,
    scopes: Vec<String>,
    redirect_uri: Option<String>,
    identity_url: String,
    login_path: String,
    logout_path: String,
    user_path: Option<String>,
    post_login_path: String,
    post_logout_path: String,
    transaction_ttl: Duration,
    refresh_skew: Duration,
    max_session_age: Duration,
    client_auth: ClientAuth,
    revoke_on_logout: bool,
    allow_insecure_http: bool,
    http_timeout: Duration,
    retry_after: Duration,
    cookie_key: Option<SecretString>,
    previous_cookie_key: Option<SecretString>,
    #[cfg(feature = "test-util")]
    clock: Option<crate::clock::TestClock>,
    http_client: Option<reqwest::ClientBuilder>,
    max_response_bytes: usize,
    max_code_exchanges: usize,
}

impl Default for HcssConfigBuilder {
    fn default() -> Self {
        Self {
            client_id: None,
            client_secret: None,
            scopes: Vec::new(),
            redirect_uri: None,
            identity_url: HCSS_IDENTITY_URL.to_owned(),
            login_path: "/hcss/login".to_owned(),
            logout_path: "/hcss/logout".to_owned(),
            user_path: None,
            post_login_path: "/".to_owned(),
            post_logout_path: "/".to_owned(),
            transaction_ttl: Duration::from_secs(600),
            refresh_skew: Duration::from_secs(60),
            max_session_age: DEFAULT_MAX_SESSION_AGE,
            client_auth: ClientAuth::RequestBody,
            revoke_on_logout: true,
            allow_insecure_http: false,
            http_timeout: Duration::from_secs(10),
            retry_after: Duration::from_secs(5),
            cookie_key: None,
            previous_cookie_key: None,
            #[cfg(feature = "test-util")]
            clock: None,
            http_client: None,
            max_response_bytes: 64 * 1024,
            max_code_exchanges: DEFAULT_MAX_CODE_EXCHANGES,
        }
    }
}

impl HcssConfigBuilder {
    /// The client id HCSS issued (required).
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The client secret, when HCSS issued one.
    pub fn client_secret(mut self, secret: impl Into<SecretString>) -> Self {
        self.client_secret = Some(secret.into());
        self
    }

    /// The scopes to ask for (required), e.g. `["heavyjob:read", "offline_access"]`.
    /// Without `offline_access` HCSS issues no refresh token, and the session ends when
    /// the access token does.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The absolute URL of the callback, registered at HCSS as the "Post Login Callback
    /// URL" (required). Its path is where the layer serves the callback.
    pub fn redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.redirect_uri = Some(uri.into());
        self
    }

    /// The identity base URL (default `https://api.hcssapps.com/identity`); the
    /// authorize, token and revocation endpoints are under `{base}/connect/`.
    pub fn identity_url(mut self, url: impl Into<String>) -> Self {
        self.identity_url = url.into();
        self
    }

    /// The login path (default `/hcss/login`).
    pub fn login_path(mut self, path: impl Into<String>) -> Self {
        self.login_path = path.into();
        self
    }

    /// The logout path (default `/hcss/logout`).
    pub fn logout_path(mut self, path: impl Into<String>) -> Self {
        self.logout_path = path.into();
        self
    }

    /// Serve who is signed in as JSON at this path (opt-in; `/hcss/user` is the usual
    /// one), for single-page apps: the identity claims, scopes, when the token and the
    /// session end, and the logout path; 401 when signed out; never cached.
    pub fn user_path(mut self, path: impl Into<String>) -> Self {
        self.user_path = Some(path.into());
        self
    }

    /// Where users land after login when no `return_to` was given (default `/`).
    pub fn post_login_path(mut self, path: impl Into<String>) -> Self {
        self.post_login_path = path.into();
        self
    }

    /// Where users land after logout (default `/`).
    pub fn post_logout_path(mut self, path: impl Into<String>) -> Self {
        self.post_logout_path = path.into();
        self
    }

    /// How long a started login may take to come back (default 10 minutes).
    pub fn login_timeout(mut self, ttl: Duration) -> Self {
        self.transaction_ttl = ttl;
        self
    }

    /// Refresh an access token this long before it expires (default 60 s).
    pub fn refresh_skew(mut self, skew: Duration) -> Self {
        self.refresh_skew = skew;
        self
    }

    /// The longest a session lives, however often it is refreshed (default 30 days, the
    /// lifetime of an HCSS refresh token).
    pub fn max_session_age(mut self, age: Duration) -> Self {
        self.max_session_age = age;
        self
    }

    /// How the client authenticates to the token endpoint (default: in the body).
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.client_auth = auth;
        self
    }

    /// Revoke the refresh token at HCSS on logout (default on).
    pub fn revoke_on_logout(mut self, on: bool) -> Self {
        self.revoke_on_logout = on;
        self
    }

    /// Timeout of each call to the identity service (default 10 s).
    pub fn http_timeout(mut self, timeout: Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    /// After a refresh fails for a passing reason (HCSS down, slow or overloaded), how
    /// long clients are told to wait (`Retry-After`) and how long the failure is
    /// remembered, so that the requests of that session in the meantime get the same
    /// answer without calling HCSS again (default 5 s, at most 5 minutes; zero remembers
    /// nothing). A `Retry-After` sent by HCSS itself takes precedence.
    pub fn retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = wait;
        self
    }

    /// The key that seals login cookies: base64 of at least 32 random bytes (make one with
    /// `openssl rand -base64 32`). Every instance of an app must have the same key, so that
    /// a login started on one finishes on another.
    ///
    /// Unset, a store that can share a secret (`RedisStore`) agrees on one for all its
    /// instances; otherwise each process makes a random key, which is right for a single
    /// instance (and logged, as several instances would refuse each other's logins).
    pub fn cookie_key(mut self, base64_key: impl Into<SecretString>) -> Self {
        self.cookie_key = Some(base64_key.into());
        self
    }

    /// The key used before the current [`cookie_key`](Self::cookie_key), still accepted
    /// for opening login cookies during a rotation: keep it for one login timeout after
    /// the switch, then remove it.
    pub fn previous_cookie_key(mut self, base64_key: impl Into<SecretString>) -> Self {
        self.previous_cookie_key = Some(base64_key.into());
        self
    }

    /// **Tests only** (feature `test-util`): run the flow on `clock`, which the test moves
    /// forward, instead of the system's time.
    #[cfg(feature = "test-util")]
    pub fn test_clock(mut self, clock: crate::clock::TestClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Your own HTTP client setup for the identity service: its TLS backend, proxy, CA
    /// roots, user agent. The crate sets its own rules on it whatever it holds: redirects
    /// are never followed (a redirect could carry the code or the client secret
    /// elsewhere), each call times out after [`http_timeout`](Self::http_timeout), plain
    /// http is refused unless the development setting allows it, and responses are
    /// capped at [`max_response_bytes`](Self::max_response_bytes).
    ///
    /// ```
    /// use hcss_auth::HcssConfig;
    ///
    /// let client = reqwest::Client::builder().user_agent("my-app/1.0");
    /// let config = HcssConfig::builder()
    ///     .client_id("my-client")
    ///     .scopes(["heavyjob:read"])
    ///     .redirect_uri("https://app.example.com/hcss/callback")
    ///     .http_client(client)
    ///     .build()?;
    /// # Ok::<(), hcss_auth::ConfigError>(())
    /// ```
    pub fn http_client(mut self, client: reqwest::ClientBuilder) -> Self {
        self.http_client = Some(client);
        self
    }

    /// The largest token response accepted (default 64 KiB).
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// How many code exchanges (the token calls that end a sign-in) one process makes at
    /// once, at most (default 64, at most 65,536). A callback past the bound answers 503 with
    /// `Retry-After` before any token call and keeps its login, so the browser can retry.
    ///
    /// Anyone can start a login and call the callback with its state, its cookie and a
    /// made-up code, and each such call costs one call to HCSS's token endpoint. Starting
    /// logins is free, so no bound per login or per client stops a flood of them; this
    /// bound caps what a flood can make the app ask of HCSS at any moment, and the
    /// sockets and tasks it holds, whatever the number of clients. A real sign-in holds a
    /// place for one round trip to HCSS, so the default serves hundreds a second.
    ///
    /// ```
    /// use hcss_auth::HcssConfig;
    ///
    /// let config = HcssConfig::builder()
    ///     .client_id("my-client")
    ///     .scopes(["heavyjob:read"])
    ///     .redirect_uri("https://app.example.com/hcss/callback")
    ///     .max_code_exchanges(16)
    ///     .build()
    ///     .unwrap();
    /// # let _ = config;
    /// ```
    pub fn max_code_exchanges(mut self, exchanges: usize) -> Self {
        self.max_code_exchanges = exchanges;
        self
    }

    /// **Development only.** Allows `http://` identity and redirect URIs whose host is a
    /// loopback address (`127.0.0.1`, `::1`, `localhost`). Cookies then lose `Secure`
    /// and the `__Host-` prefix when the redirect URI is `http://`.
    pub fn allow_insecure_http_on_loopback(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Checks every setting and builds the configuration.
    pub fn build(self) -> Result<HcssConfig, ConfigError> {
        let client_id = self
            .client_id
            .filter(|id| !id.trim().is_empty())
            .ok_or(ConfigError::Missing("client_id (HCSS_CLIENT_ID)"))?;
        if self.scopes.is_empty() {
            return Err(ConfigError::Missing("scopes (HCSS_SCOPES)"));
        }
        if let Some(bad) = self
            .scopes
            .iter()
            .find(|s| s.is_empty() || s.contains(|c: char| c.is_whitespace() || c.is_control()))
        {
            return Err(ConfigError::invalid(
                "scopes",
                format!("{bad:?} is not one scope: give each scope separately"),
            ));
        }
        if self
            .client_secret
            .as_ref()
            .is_some_and(|s| s.expose_secret().is_empty())
        {
            return Err(ConfigError::invalid(
                "client_secret",
                "it is empty: leave it unset for a public client",
            ));
        }
        let redirect_text = self
            .redirect_uri
            .ok_or(ConfigError::Missing("redirect_uri (HCSS_REDIRECT_URI)"))?;
        let redirect = checked_url("redirect_uri", &redirect_text, self.allow_insecure_http)?;
        if redirect.query().is_some() {
            return Err(ConfigError::invalid(
                "redirect_uri",
                "it must not have a query string",
            ));
        }
        let identity_text = self.identity_url.trim_end_matches('/').to_owned();
        let identity = checked_url("identity_url", &identity_text, self.allow_insecure_http)?;
        if identity.query().is_some() {
            return Err(ConfigError::invalid(
                "identity_url",
                "it must not have a query string",
            ));
        }
        let endpoint = |name: &str| {
            Url::parse(&format!("{identity_text}/connect/{name}"))
                .map_err(|e| ConfigError::invalid("identity_url", e.to_string()))
        };

        let callback_path = redirect.path().to_owned();
        for (field, path) in [
            ("login_path", &self.login_path),
            ("logout_path", &self.logout_path),
            ("post_login_path", &self.post_login_path),
            ("post_logout_path", &self.post_logout_path),
        ] {
            if crate::return_path::valid_return_path(path).is_none() {
                return Err(ConfigError::invalid(
                    field,
                    format!("{path:?} must be a path on this site starting with one '/'"),
                ));
            }
        }
        if callback_path == self.login_path || callback_path == self.logout_path {
            return Err(ConfigError::invalid(
                "redirect_uri",
                "its path must differ from the login and logout paths",
            ));
        }
        if self.login_path == self.logout_path {
            return Err(ConfigError::invalid(
                "logout_path",
                "it must differ from the login path",
            ));
        }
        if let Some(user) = &self.user_path {
            if crate::return_path::valid_return_path(user).is_none()
                || [&self.login_path, &self.logout_path, &callback_path].contains(&user)
            {
                return Err(ConfigError::invalid(
                    "user_path",
                    format!("{user:?} must be a path of its own on this site"),
                ));
            }
        }
        if !(1..=MAX_CODE_EXCHANGES).contains(&self.max_code_exchanges) {
            return Err(ConfigError::invalid(
                "max_code_exchanges",
                format!(
                    "{} is not between 1 (or no one can sign in) and {MAX_CODE_EXCHANGES}",
                    self.max_code_exchanges
                ),
            ));
        }
        if self.transaction_ttl.is_zero()
            || self.max_session_age.is_zero()
            || self.http_timeout.is_zero()
        {
            return Err(ConfigError::invalid(
                "login_timeout / max_session_age / http_timeout",
                "durations must be above zero",
            ));
        }
        const DAY: Duration = Duration::from_secs(24 * 3600);
        for (field, value, max, unit) in [
            ("login_timeout", self.transaction_ttl, DAY, "1 day"),
            ("refresh_skew", self.refresh_skew, DAY, "1 day"),
            // Browsers cap a cookie's Max-Age at 400 days.
            (
                "max_session_age",
                self.max_session_age,
                400 * DAY,
                "400 days",
            ),
            (
                "http_timeout",
                self.http_timeout,
                Duration::from_secs(600),
                "10 minutes",
            ),
            (
                "retry_after",
                self.retry_after,
                MAX_RETRY_AFTER,
                "5 minutes",
            ),
        ] {
            if value > max {
                return Err(ConfigError::invalid(
                    field,
                    format!("{value:?} is longer than the {unit} it may be"),
                ));
            }
        }

        let cookie_key = self
            .cookie_key
            .as_ref()
            .map(|key| parse_cookie_key("cookie_key (HCSS_COOKIE_KEY)", key))
            .transpose()?;
        let previous_cookie_key = self
            .previous_cookie_key
            .as_ref()
            .map(|key| parse_cookie_key("previous_cookie_key (HCSS_COOKIE_KEY_PREVIOUS)", key))
            .transpose()?;

        // The app's own client builder keeps its TLS backend, proxy and roots; the rules
        // of the token client are set on it either way.
        let http = self
            .http_client
            .unwrap_or_else(|| {
                reqwest::Client::builder()
                    .user_agent(concat!("hcss-auth/", env!("CARGO_PKG_VERSION")))
            })
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.http_timeout)
            .connect_timeout(self.http_timeout.min(Duration::from_secs(5)))
            .https_only(!self.allow_insecure_http)
            .build()
            .map_err(|e| ConfigError::HttpClient(e.to_string()))?;

        let (authorize_url, token_url, revocation_url) = (
            endpoint("authorize")?,
            endpoint("token")?,
            endpoint("revocation")?,
        );
        Ok(HcssConfig {
            identity: IdentityClient {
                client_id,
                client_secret: self.client_secret,
                client_auth: self.client_auth,
                scope: self.scopes.join(" "),
                openid: self.scopes.iter().any(|s| s == "openid"),
                company_scope: self
                    .scopes
                    .iter()
                    .filter(|s| !USER_ONLY_SCOPES.contains(&s.as_str()))
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(" "),
                redirect_uri: redirect_text,
                issuer: identity_text,
                authorize_url,
                token_url,
                revocation_url,
                revoke_on_logout: self.revoke_on_logout,
                http,
                http_timeout: self.http_timeout,
                max_response_bytes: self.max_response_bytes,
                retry_after: self.retry_after,
                max_code_exchanges: self.max_code_exchanges,
            },
            routes: Routes {
                app_origin: redirect.origin().ascii_serialization(),
                login_path: self.login_path,
                callback_path,
                logout_path: self.logout_path,
                user_path: self.user_path,
                post_login_path: self.post_login_path,
                post_logout_path: self.post_logout_path,
            },
            cookies: CookiePolicy {
                secure_cookies: redirect.scheme() == "https",
                cookie_key,
                previous_cookie_key,
            },
            lifetimes: Lifetimes {
                transaction_ttl: self.transaction_ttl,
                refresh_skew: self.refresh_skew,
                max_session_age: self.max_session_age,
                #[cfg(feature = "test-util")]
                clock: self.clock,
            },
        })
    }
}

/// A cookie key from its base64 text (standard or URL-safe, padded or not).
fn parse_cookie_key(field: &'static str, text: &SecretString) -> Result<CookieKey, ConfigError> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    let text = text.expose_secret().trim();
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok());
    match bytes {
        Some(bytes) if bytes.len() >= MIN_KEY_BYTES => Ok(CookieKey::derive(&bytes)),
        Some(bytes) => Err(ConfigError::invalid(
            field,
            format!(
                "it holds {} bytes; use at least {MIN_KEY_BYTES} random bytes, base64 \
                 (`openssl rand -base64 32`)",
                bytes.len()
            ),
        )),
        None => Err(ConfigError::invalid(
            field,
            "it is not base64; use `openssl rand -base64 32`",
        )),
    }
}

/// An absolute URL that is https, or http on loopback when development allows it.
fn checked_url(field: &'static str, text: &str, allow_http: bool) -> Result<Url, ConfigError> {
    let url = Url::parse(text).map_err(|e| {
        ConfigError::invalid(field, format!("{text:?} is not an absolute URL ({e})"))
    })?;
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::invalid(
            field,
            "it must not carry a fragment or credentials",
        ));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_http && is_loopback(&url) => Ok(url),
        "http" if allow_http => Err(ConfigError::invalid(
            field,
            "http:// is allowed only on a loopback host (127.0.0.1, ::1, localhost)",
        )),
        "http" => Err(ConfigError::invalid(
            field,
            "it must be https:// (for local development on loopback, set \
             allow_insecure_http_on_loopback / HCSS_ALLOW_INSECURE_HTTP=1)",
        )),
        other => Err(ConfigError::invalid(
            field,
            format!("the scheme {other:?} is not https"),
        )),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> HcssConfigBuilder {
        HcssConfig::builder()
            .client_id("id")
            .scopes(["heavyjob:read"])
            .redirect_uri("https://app.example.com/hcss/callback")
    }

    #[test]
    fn defaults_follow_hcss() {
        let c = base().build().unwrap();
        assert_eq!(
            c.identity.token_url.as_str(),
            "https://api.hcssapps.com/identity/connect/token"
        );
        assert_eq!(
            c.identity.authorize_url.as_str(),
            "https://api.hcssapps.com/identity/connect/authorize"
        );
        assert_eq!(c.issuer(), HCSS_IDENTITY_URL);
        assert_eq!(c.login_path(), "/hcss/login");
        assert_eq!(c.logout_path(), "/hcss/logout");
        assert_eq!(c.lifetimes.transaction_ttl, Duration::from_secs(600));
        assert_eq!(c.identity.client_auth, ClientAuth::RequestBody);
        assert!(c.cookies.secure_cookies);
        assert_eq!(c.session_cookie_name(), "__Host-hcss-session");
        assert_eq!(c.routes.app_origin, "https://app.example.com");
    }

    #[test]
    fn http_is_refused_unless_loopback_development_allows_it() {
        let err = base()
            .redirect_uri("http://app.example.com/cb")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("https"), "{err}");
        let err = base()
            .redirect_uri("http://app.example.com/cb")
            .allow_insecure_http_on_loopback(true)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        let c = base()
            .redirect_uri("http://127.0.0.1:3000/cb")
            .identity_url("http://localhost:9/identity/")
            .allow_insecure_http_on_loopback(true)
            .build()
            .unwrap();
        assert!(!c.cookies.secure_cookies);
        assert_eq!(c.issuer(), "http://localhost:9/identity");
        assert_eq!(c.session_cookie_name(), "hcss-session");
        let err = base()
            .identity_url("http://localhost:9/identity")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("identity_url"), "{err}");
    }

    #[test]
    fn missing_and_bad_settings_are_named() {
        let err = HcssConfig::builder().build().unwrap_err();
        assert!(err.to_string().contains("client_id"), "{err}");
        let err = base().scopes(Vec::<String>::new()).build().unwrap_err();
        assert!(err.to_string().contains("scopes"), "{err}");
        let err = base().scopes(["a b"]).build().unwrap_err();
        assert!(err.to_string().contains("scopes"), "{err}");
        let err = base()
            .redirect_uri("https://app.example.com/hcss/login")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("redirect_uri"), "{err}");
        let err = base()
            .post_login_path("//evil.example")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("post_login_path"), "{err}");
        let err = base().client_secret("").build().unwrap_err();
        assert!(err.to_string().contains("client_secret"), "{err}");
    }

    /// Durations past their bound are refused when built: before, `Duration::MAX` built
    /// fine and panicked at the first login (`Instant + ttl`) or refresh (`timeout * 3`).
    #[test]
    fn huge_durations_are_refused_with_the_setting_named() {
        type Set = fn(HcssConfigBuilder, Duration) -> HcssConfigBuilder;
        let setters: [(&str, Set); 5] = [
            ("login_timeout", HcssConfigBuilder::login_timeout),
            ("refresh_skew", HcssConfigBuilder::refresh_skew),
            ("max_session_age", HcssConfigBuilder::max_session_age),
            ("http_timeout", HcssConfigBuilder::http_timeout),
            ("retry_after", HcssConfigBuilder::retry_after),
        ];
        for (field, set) in setters {
            let err = set(base(), Duration::MAX).build().unwrap_err();
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
        let ok = base()
            .login_timeout(Duration::from_secs(24 * 3600))
            .max_session_age(Duration::from_secs(400 * 24 * 3600))
            .retry_after(Duration::ZERO)
            .build();
        assert!(ok.is_ok(), "the bounds themselves are accepted");
    }

    #[test]
    fn from_env_reads_every_variable() {
        let env = |name: &str| {
            Some(
                match name {
                    "HCSS_CLIENT_ID" => "env-id",
                    "HCSS_CLIENT_SECRET" => "env-secret",
                    "HCSS_SCOPES" => "heavyjob:read,  offline_access",
                    "HCSS_REDIRECT_URI" => "http://127.0.0.1:3000/hcss/callback",
                    "HCSS_IDENTITY_URL" => "http://127.0.0.1:4000/identity",
                    "HCSS_ALLOW_INSECURE_HTTP" => "1",
                    "HCSS_COOKIE_KEY" => "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=",
                    _ => return None,
                }
                .to_owned(),
            )
        };
        let c = HcssConfig::from_lookup(env).unwrap();
        assert_eq!(c.client_id(), "env-id");
        assert_eq!(c.identity.scope, "heavyjob:read offline_access");
        assert_eq!(c.issuer(), "http://127.0.0.1:4000/identity");
        assert!(c.identity.client_secret.is_some());
        assert!(c.cookies.cookie_key.is_some());
        let debug = format!("{c:?}");
        assert!(!debug.contains("env-secret"), "{debug}");
        assert!(!debug.contains("QUFB"), "{debug}");
    }

    #[test]
    fn cookie_keys_must_be_base64_of_32_bytes_or_more() {
        for (key, says) in [
            ("c2hvcnQ=", "5 bytes"),
            ("not base64 at all!", "not base64"),
        ] {
            let err = base().cookie_key(key).build().unwrap_err();
            assert!(err.to_string().contains("cookie_key"), "{err}");
            assert!(err.to_string().contains(says), "{err}");
        }
        let err = base().previous_cookie_key("c2hvcnQ=").build().unwrap_err();
        assert!(err.to_string().contains("previous_cookie_key"), "{err}");
        let key = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE";
        assert!(base().cookie_key(key).build().is_ok(), "unpadded base64");
    }
}
