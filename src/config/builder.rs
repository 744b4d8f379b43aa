//! `HcssConfigBuilder`: the settings with their defaults, and `build`, which checks them
//! (with the rules in `checks`) and puts the configuration together.

use std::time::Duration;

use url::Url;

use crate::error::ConfigError;
use crate::secret::SecretString;

use super::checks;
use super::{ApiSettings, ClientAuth, CookiePolicy, HcssConfig, IdentityClient, Lifetimes, Routes};
use super::{HCSS_API_URL, HCSS_IDENTITY_URL, MAX_RETRY_AFTER};

/// The longest a session lives by default: 30 days, the lifetime of an HCSS refresh token.
pub(crate) const DEFAULT_MAX_SESSION_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// HCSS's published limits per company (developer docs, "Rate limits"): 100 calls a
/// minute and 20 at once, counted across every client of the company.
pub(crate) const DEFAULT_API_RATE_PER_MINUTE: u32 = 100;
pub(crate) const DEFAULT_API_CONCURRENCY: u32 = 20;
/// The longest a call waits for the budget or a `Retry-After` by default.
pub(crate) const DEFAULT_API_MAX_WAIT: Duration = Duration::from_secs(30);

/// Code exchanges one process makes at once by default.
const DEFAULT_MAX_CODE_EXCHANGES: usize = 64;

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
    backchannel_logout: bool,
    backchannel_logout_path: String,
    post_login_path: String,
    post_logout_path: String,
    post_logout_redirect_uri: Option<String>,
    prompt: Option<String>,
    max_age: Option<Duration>,
    transaction_ttl: Duration,
    refresh_skew: Duration,
    max_session_age: Duration,
    client_auth: ClientAuth,
    revoke_on_logout: bool,
    allow_insecure_http_on_loopback: bool,
    http_timeout: Duration,
    retry_after: Duration,
    cookie_key: Option<SecretString>,
    previous_cookie_key: Option<SecretString>,
    #[cfg(feature = "test-util")]
    clock: Option<crate::clock::TestClock>,
    http_client: Option<reqwest::ClientBuilder>,
    max_response_bytes: usize,
    max_code_exchanges: usize,
    api_url: String,
    api_rate_per_minute: u32,
    api_rate_window: Duration,
    api_concurrency: u32,
    api_max_wait: Duration,
    api_max_response_bytes: usize,
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
            backchannel_logout: false,
            backchannel_logout_path: "/hcss/backchannel-logout".to_owned(),
            post_login_path: "/".to_owned(),
            post_logout_path: "/".to_owned(),
            post_logout_redirect_uri: None,
            prompt: None,
            max_age: None,
            transaction_ttl: Duration::from_secs(600),
            refresh_skew: Duration::from_secs(60),
            max_session_age: DEFAULT_MAX_SESSION_AGE,
            client_auth: ClientAuth::RequestBody,
            revoke_on_logout: true,
            allow_insecure_http_on_loopback: false,
            http_timeout: Duration::from_secs(10),
            retry_after: Duration::from_secs(5),
            cookie_key: None,
            previous_cookie_key: None,
            #[cfg(feature = "test-util")]
            clock: None,
            http_client: None,
            max_response_bytes: 64 * 1024,
            max_code_exchanges: DEFAULT_MAX_CODE_EXCHANGES,
            api_url: HCSS_API_URL.to_owned(),
            api_rate_per_minute: DEFAULT_API_RATE_PER_MINUTE,
            api_rate_window: Duration::from_secs(60),
            api_concurrency: DEFAULT_API_CONCURRENCY,
            api_max_wait: DEFAULT_API_MAX_WAIT,
            api_max_response_bytes: 16 * 1024 * 1024,
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

    /// Turns on back-channel logout (OpenID Connect Back-Channel Logout 1.0): when the
    /// user signs out at HCSS (in another app, or an administrator ends their HCSS
    /// session), HCSS posts a signed logout token to
    /// [`backchannel_logout_path`](Self::backchannel_logout_path), and the layer ends the
    /// matching sessions on every instance sharing the token store: those of the token's
    /// HCSS session (`sid`, kept from the ID token, so with `openid` among the scopes) or
    /// else all of its user's (`sub`). Register `{app origin}{path}` at HCSS as the
    /// client's back-channel logout URI. Off by default.
    /// (`HCSS_BACKCHANNEL_LOGOUT=1`)
    pub fn backchannel_logout(mut self, on: bool) -> Self {
        self.backchannel_logout = on;
        self
    }

    /// The path HCSS posts logout tokens to, with
    /// [`backchannel_logout`](Self::backchannel_logout) on (default
    /// `/hcss/backchannel-logout`).
    pub fn backchannel_logout_path(mut self, path: impl Into<String>) -> Self {
        self.backchannel_logout_path = path.into();
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

    /// The `prompt` every login sends unless `/hcss/login?prompt=` names one: `login`
    /// (sign in again), `consent` (consent again, e.g. once the app's scopes changed),
    /// `select_account`, or `none`. Default: none sent.
    pub fn prompt(mut self, prompt: impl Into<String>) -> Self {
        self.prompt = Some(prompt.into());
        self
    }

    /// The `max_age` every login sends unless `/hcss/login?max_age=` names a shorter
    /// one (a longer one is not taken: this is the app's bound): HCSS asks for
    /// credentials again when the user entered them longer ago, and the ID token's
    /// `auth_time` is checked against it (with `openid` among the scopes). Default: none.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Turns on sign-out at HCSS (OpenID Connect RP-initiated logout): after a logout
    /// ends the session here, the browser is sent to HCSS's end-session endpoint, which
    /// ends the user's HCSS session too, and comes back to this URI, whose path the layer
    /// serves (it checks the `state` it sent, then sends the browser to
    /// [`post_logout_path`](Self::post_logout_path)). An absolute URL on the redirect
    /// URI's origin, e.g. `https://app.example.com/hcss/logout/return`; register it at
    /// HCSS as the client's post-logout redirect URI. Off by default: a logout then
    /// leaves the HCSS session as it is. (`HCSS_POST_LOGOUT_REDIRECT_URI`)
    pub fn post_logout_redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.post_logout_redirect_uri = Some(uri.into());
        self
    }

    /// How long a started login may take to come back (default 10 minutes): the time to
    /// live of the login transaction (its state, PKCE verifier and return path).
    pub fn transaction_ttl(mut self, ttl: Duration) -> Self {
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

    /// How the client authenticates to the token endpoint (default: in the body;
    /// `HCSS_CLIENT_AUTH=basic` with [`HcssConfig::from_env`]).
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.client_auth = auth;
        self
    }

    /// Revoke the refresh token at HCSS on logout (default on).
    pub fn revoke_on_logout(mut self, on: bool) -> Self {
        self.revoke_on_logout = on;
        self
    }

    /// Timeout of each call to the identity service, and of each try of an
    /// [`HcssApi`](crate::HcssApi) request, its body included (default 10 s).
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
    /// for opening login cookies during a rotation: keep it for one
    /// [`transaction_ttl`](Self::transaction_ttl) after the switch, then remove it.
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

    /// Your own HTTP client setup for the identity service and for
    /// [`HcssApi`](crate::HcssApi)'s calls to HCSS's APIs: its TLS backend, proxy, CA
    /// roots, user agent. The crate sets its own rules on it whatever it holds: redirects
    /// are never followed (a redirect could carry the code or the client secret
    /// elsewhere), each call times out after [`http_timeout`](Self::http_timeout), plain
    /// http is refused unless the development setting allows it, and responses are
    /// capped at [`max_response_bytes`](Self::max_response_bytes) (those of HCSS's APIs at
    /// [`api_max_response_bytes`](Self::api_max_response_bytes)).
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

    /// The base URL of HCSS's APIs (default `https://api.hcssapps.com`), to which
    /// [`HcssApi`](crate::HcssApi) appends the paths it is given
    /// (`/heavyjob/api/v1/businessUnits`).
    pub fn api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = url.into();
        self
    }

    /// How many calls to HCSS's APIs a company may start per minute, across every
    /// instance of the app (default 100, HCSS's published limit; at least 1). HCSS counts
    /// the company's other integrations too: [`HcssApi`](crate::HcssApi) slows down when
    /// HCSS's `Remaining-Calls` shows them. Raise it only if HCSS granted more.
    pub fn api_rate_per_minute(mut self, calls: u32) -> Self {
        self.api_rate_per_minute = calls;
        self
    }

    /// The rolling window [`api_rate_per_minute`](Self::api_rate_per_minute) is counted
    /// over (default one minute, as HCSS counts; between 100 ms and 1 hour). Tests
    /// shorten it, with the mock's limits, so that a minute does not take one.
    pub fn api_rate_window(mut self, window: Duration) -> Self {
        self.api_rate_window = window;
        self
    }

    /// How many calls to HCSS's APIs a company may have in flight at once, across every
    /// instance of the app (default 20, HCSS's published limit; at least 1).
    pub fn api_concurrency(mut self, calls: u32) -> Self {
        self.api_concurrency = calls;
        self
    }

    /// The longest one [`HcssApi`](crate::HcssApi) call waits, in all, for a place in the
    /// company's budget and for HCSS's `Retry-After` (default 30 s, at most 10 minutes;
    /// zero never waits). A call that cannot be made within it fails with
    /// [`HcssApiError::Busy`](crate::HcssApiError::Busy) and the time to retry after.
    pub fn api_max_wait(mut self, wait: Duration) -> Self {
        self.api_max_wait = wait;
        self
    }

    /// The largest body of an HCSS API response that [`HcssApi`](crate::HcssApi) reads
    /// (default 16 MiB); a larger one is [`HcssApiError::Invalid`](crate::HcssApiError)
    /// and is not read further, so that an endpoint streaming without end cannot take
    /// the process's memory. Page through large lists instead
    /// ([`HcssApiRequest::pages`](crate::HcssApiRequest::pages)).
    pub fn api_max_response_bytes(mut self, bytes: usize) -> Self {
        self.api_max_response_bytes = bytes;
        self
    }

    /// **Development only.** Allows `http://` identity and redirect URIs whose host is a
    /// loopback address (`127.0.0.1`, `::1`, `localhost`). Cookies then lose `Secure`
    /// and the `__Host-` prefix when the redirect URI is `http://`.
    pub fn allow_insecure_http_on_loopback(mut self, allow: bool) -> Self {
        self.allow_insecure_http_on_loopback = allow;
        self
    }

    /// Checks every setting and builds the configuration.
    pub fn build(self) -> Result<HcssConfig, ConfigError> {
        let allow_http = self.allow_insecure_http_on_loopback;
        let client_id = checks::client_id(self.client_id.as_deref())?.to_owned();
        checks::scopes(&self.scopes)?;
        checks::client_secret(self.client_secret.as_ref())?;
        let redirect_text = self
            .redirect_uri
            .as_deref()
            .ok_or(ConfigError::Missing("redirect_uri (HCSS_REDIRECT_URI)"))?;
        let redirect = checks::checked_url("redirect_uri", redirect_text, allow_http)?;
        let issuer = self.identity_url.trim_end_matches('/');
        checks::checked_url("identity_url", issuer, allow_http)?;
        let callback_path = redirect.path().to_owned();
        self.check_paths(&callback_path)?;
        let post_logout = self.checked_post_logout(&redirect, &callback_path, allow_http)?;
        if let Some(prompt) = &self.prompt {
            if !super::checks::valid_prompt(prompt) {
                return Err(ConfigError::invalid(
                    "prompt",
                    "it must be login, consent, select_account or none",
                ));
            }
        }
        checks::max_code_exchanges(self.max_code_exchanges)?;
        self.check_durations()?;
        let cookie_key =
            checks::cookie_key("cookie_key (HCSS_COOKIE_KEY)", self.cookie_key.as_ref())?;
        let previous_cookie_key = checks::cookie_key(
            "previous_cookie_key (HCSS_COOKIE_KEY_PREVIOUS)",
            self.previous_cookie_key.as_ref(),
        )?;
        let api_url = self.api_url.trim_end_matches('/').to_owned();
        checks::checked_url("api_url (HCSS_API_URL)", &api_url, allow_http)?;
        // With a `/` after it: its path is then the one the base gives a call's path
        // written after it, an empty last segment (`/api//.`), a trailing `\` or space
        // included, which the base's own path loses.
        // A base no path can follow (a space after its host) would fail every call.
        let api_base = url::Url::parse(&format!("{api_url}/")).map_err(|e| {
            ConfigError::invalid(
                "api_url (HCSS_API_URL)",
                format!("{api_url:?} cannot have a path after it ({e})"),
            )
        })?;
        self.check_api_limits()?;
        let http = identity_http_client(self.http_client, self.http_timeout, allow_http)?;
        if !self.scopes.iter().any(|s| s == "offline_access") {
            tracing::warn!(
                "the scopes have no offline_access: HCSS issues no refresh token, and every \
                 session ends when its first access token does (an hour at HCSS). Add \
                 offline_access to the scopes (HCSS_SCOPES) to keep users signed in"
            );
        }
        Ok(HcssConfig {
            identity: IdentityClient {
                client_id,
                client_secret: self.client_secret,
                client_auth: self.client_auth,
                scope: self.scopes.join(" "),
                openid: self.scopes.iter().any(|s| s == "openid"),
                company_scope: company_scope(&self.scopes),
                redirect_uri: redirect_text.to_owned(),
                issuer: issuer.to_owned(),
                authorize_url: endpoint(issuer, "authorize")?,
                token_url: endpoint(issuer, "token")?,
                revocation_url: endpoint(issuer, "revocation")?,
                end_session_url: endpoint(issuer, "endsession")?,
                post_logout_redirect_uri: post_logout.as_ref().map(|(uri, _)| uri.clone()),
                prompt: self.prompt,
                max_age: self.max_age.map(|age| age.as_secs()),
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
                backchannel_logout_path: self
                    .backchannel_logout
                    .then_some(self.backchannel_logout_path),
                post_login_path: self.post_login_path,
                post_logout_path: self.post_logout_path,
                logout_return_path: post_logout.map(|(_, path)| path),
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
            api: ApiSettings {
                url: api_url,
                base: api_base,
                rate: self.api_rate_per_minute,
                rate_window: self.api_rate_window,
                concurrency: self.api_concurrency,
                max_wait: self.api_max_wait,
                max_response_bytes: self.api_max_response_bytes,
            },
        })
    }

    /// The post-logout redirect URI, when set: the text sent to HCSS and its path, which
    /// the layer serves. On the redirect URI's origin, at a path no other endpoint uses.
    fn checked_post_logout(
        &self,
        redirect: &url::Url,
        callback_path: &str,
        allow_http: bool,
    ) -> Result<Option<(String, String)>, ConfigError> {
        let Some(text) = self.post_logout_redirect_uri.as_deref() else {
            return Ok(None);
        };
        const FIELD: &str = "post_logout_redirect_uri (HCSS_POST_LOGOUT_REDIRECT_URI)";
        let url = checks::checked_url(FIELD, text, allow_http)?;
        if url.origin() != redirect.origin() {
            return Err(ConfigError::invalid(
                FIELD,
                "it must be on the redirect URI's origin (the layer serves its path)",
            ));
        }
        let path = url.path().to_owned();
        let taken = [
            self.login_path.as_str(),
            &self.logout_path,
            callback_path,
            &self.post_logout_path,
        ];
        if taken.contains(&path.as_str()) || self.user_path.as_deref() == Some(path.as_str()) {
            return Err(ConfigError::invalid(
                FIELD,
                "its path must differ from the login, logout, callback, user and \
                 post-logout paths (e.g. /hcss/logout/return)",
            ));
        }
        Ok(Some((text.to_owned(), path)))
    }

    /// The flow's paths are paths on this site, and no two endpoints share one.
    fn check_paths(&self, callback_path: &str) -> Result<(), ConfigError> {
        for (field, path) in [
            ("login_path", &self.login_path),
            ("logout_path", &self.logout_path),
            ("post_login_path", &self.post_login_path),
            ("post_logout_path", &self.post_logout_path),
        ] {
            checks::site_path(field, path)?;
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
        if self.backchannel_logout {
            let path = &self.backchannel_logout_path;
            if crate::return_path::valid_return_path(path).is_none()
                || [self.login_path.as_str(), &self.logout_path, callback_path]
                    .contains(&path.as_str())
                || self.user_path.as_deref() == Some(path.as_str())
                || self.post_logout_redirect_uri.as_deref().is_some_and(|uri| {
                    url::Url::parse(uri).is_ok_and(|url| url.path() == path.as_str())
                })
            {
                return Err(ConfigError::invalid(
                    "backchannel_logout_path",
                    format!("{path:?} must be a path of its own on this site"),
                ));
            }
        }
        if let Some(user) = &self.user_path {
            if crate::return_path::valid_return_path(user).is_none()
                || [self.login_path.as_str(), &self.logout_path, callback_path]
                    .contains(&user.as_str())
            {
                return Err(ConfigError::invalid(
                    "user_path",
                    format!("{user:?} must be a path of its own on this site"),
                ));
            }
        }
        Ok(())
    }

    /// The API budget can admit a call, and its durations stay in range.
    fn check_api_limits(&self) -> Result<(), ConfigError> {
        if self.api_rate_per_minute == 0 {
            return Err(ConfigError::invalid(
                "api_rate_per_minute (HCSS_API_RATE_PER_MINUTE)",
                "0 would admit no call: use at least 1 (HCSS allows 100)",
            ));
        }
        if self.api_concurrency == 0 {
            return Err(ConfigError::invalid(
                "api_concurrency (HCSS_API_CONCURRENCY)",
                "0 would admit no call: use at least 1 (HCSS allows 20)",
            ));
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&self.api_rate_window)
        {
            return Err(ConfigError::invalid(
                "api_rate_window",
                format!(
                    "{:?} is not between 100 ms and 1 hour (HCSS counts per minute)",
                    self.api_rate_window
                ),
            ));
        }
        checks::at_most(
            "api_max_wait (HCSS_API_MAX_WAIT_SECS)",
            self.api_max_wait,
            Duration::from_secs(600),
            "10 minutes",
        )
    }

    /// Every duration is above zero where zero cannot work, and within its bound, so no
    /// setting can overflow a clock later.
    fn check_durations(&self) -> Result<(), ConfigError> {
        if self.transaction_ttl.is_zero()
            || self.max_session_age.is_zero()
            || self.http_timeout.is_zero()
        {
            return Err(ConfigError::invalid(
                "transaction_ttl / max_session_age / http_timeout",
                "durations must be above zero",
            ));
        }
        const DAY: Duration = Duration::from_secs(24 * 3600);
        for (field, value, max, unit) in [
            ("transaction_ttl", self.transaction_ttl, DAY, "1 day"),
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
            checks::at_most(field, value, max, unit)?;
        }
        Ok(())
    }
}

/// The client for the identity service. The app's own client builder keeps its TLS
/// backend, proxy and roots; the rules of the token client are set on it either way.
fn identity_http_client(
    client: Option<reqwest::ClientBuilder>,
    timeout: Duration,
    allow_http: bool,
) -> Result<reqwest::Client, ConfigError> {
    client
        .unwrap_or_else(|| {
            reqwest::Client::builder().user_agent(concat!("hcss-auth/", env!("CARGO_PKG_VERSION")))
        })
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .https_only(!allow_http)
        .build()
        .map_err(|e| ConfigError::HttpClient(e.to_string()))
}

/// An endpoint of the identity service: `{issuer}/connect/{name}`.
fn endpoint(issuer: &str, name: &str) -> Result<Url, ConfigError> {
    Url::parse(&format!("{issuer}/connect/{name}"))
        .map_err(|e| ConfigError::invalid("identity_url", e.to_string()))
}

/// The scopes of company tokens: the configured ones but those only a user can have.
fn company_scope(scopes: &[String]) -> String {
    scopes
        .iter()
        .filter(|s| !USER_ONLY_SCOPES.contains(&s.as_str()))
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::valid_builder as base;

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
        assert_eq!(c.routes.app_origin, "https://app.example.com");
    }
}
