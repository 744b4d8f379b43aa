//! `HcssConfig`: what the flow needs to know, validated once when it is built.
//!
//! This file holds the configuration and its parts, as the rest of the crate reads them.
//! Beside it: `builder` (the settings, and how `build` puts them together), `checks`
//! (the rules each setting must meet), `env` (`HcssConfig::from_env`) and `cookies` (the
//! names of the crate's cookies).

mod builder;
mod checks;
mod cookies;
mod env;

use std::time::Duration;

use url::Url;

use crate::clock::unix_now;
use crate::seal::CookieKey;
use crate::secret::SecretString;

pub use builder::HcssConfigBuilder;
#[cfg(feature = "test-util")]
pub(crate) use builder::DEFAULT_MAX_SESSION_AGE;
pub(crate) use checks::{valid_prompt, MAX_RETRY_AFTER};

/// HCSS's identity service, the default identity base URL (and `iss`).
pub const HCSS_IDENTITY_URL: &str = "https://api.hcssapps.com/identity";

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
    pub(crate) api: ApiSettings,
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
    /// HCSS's end-session endpoint (IdentityServer's layout), when discovery names none.
    pub(crate) end_session_url: Url,
    /// Sign-out at HCSS: the post-logout redirect URI, byte for byte as registered.
    pub(crate) post_logout_redirect_uri: Option<String>,
    /// The `prompt` logins send by default.
    pub(crate) prompt: Option<String>,
    /// The `max_age` (seconds) logins send by default.
    pub(crate) max_age: Option<u64>,
    pub(crate) revoke_on_logout: bool,
    pub(crate) http: reqwest::Client,
    pub(crate) http_timeout: Duration,
    pub(crate) max_response_bytes: usize,
    pub(crate) retry_after: Duration,
    /// Code exchanges one process makes at once, at most.
    pub(crate) max_code_exchanges: usize,
}

/// How HCSS APIs are called ([`HcssApi`](crate::HcssApi)): where, and within which
/// per-company limits.
#[derive(Clone, Debug)]
pub(crate) struct ApiSettings {
    /// The API base URL, without a trailing slash.
    pub(crate) url: String,
    /// The same with a `/` after it, parsed once: a call's URL is this with the call's
    /// path (after this one's, less its last `/`), query and fragment set, its host never
    /// parsed again.
    pub(crate) base: url::Url,
    /// Calls a company may start per `rate_window`, across every instance.
    pub(crate) rate: u32,
    /// The window `rate` is counted over: a rolling minute, as HCSS counts.
    pub(crate) rate_window: Duration,
    /// Calls a company may have in flight at once, across every instance.
    pub(crate) concurrency: u32,
    /// The longest one call may wait for the budget and for HCSS's `Retry-After`.
    pub(crate) max_wait: Duration,
    /// The largest API response body read, in bytes.
    pub(crate) max_response_bytes: usize,
}

/// HCSS's API base URL, the default of `api_url`.
pub const HCSS_API_URL: &str = "https://api.hcssapps.com";

/// What the service routes by: the flow's paths, where users land, the app's origin.
#[derive(Clone, Debug)]
pub(crate) struct Routes {
    pub(crate) login_path: String,
    pub(crate) callback_path: String,
    pub(crate) logout_path: String,
    pub(crate) post_login_path: String,
    pub(crate) post_logout_path: String,
    /// The path of the post-logout redirect URI, when sign-out at HCSS is on.
    pub(crate) logout_return_path: Option<String>,
    pub(crate) user_path: Option<String>,
    /// The path logout tokens are posted to, when back-channel logout is on.
    pub(crate) backchannel_logout_path: Option<String>,
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
}

/// A builder with every required setting, for the tests beside this file.
#[cfg(test)]
fn valid_builder() -> HcssConfigBuilder {
    HcssConfig::builder()
        .client_id("id")
        .scopes(["heavyjob:read"])
        .redirect_uri("https://app.example.com/hcss/callback")
}
