//! Sessions made directly in a layer's store, skipping the login pages:
//! [`seed_session`], and [`session_exists`] to look one up.

use crate::claims::Claims;
use crate::layer::HcssAuth;
use crate::secret::{SecretString, SessionId};
use crate::store::{StoreError, TokenSet};

/// A session created directly in a layer's store, skipping the login pages. As a
/// string (`AsRef<str>`), its `Cookie` header value, what [`session_exists`] takes.
pub struct SeededSession {
    /// `name=id`.
    header: SecretString,
}

impl std::fmt::Debug for SeededSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeededSession").finish_non_exhaustive()
    }
}

impl SeededSession {
    /// The `Cookie` header value that sends this session: `name=id`.
    pub fn cookie_header(&self) -> String {
        self.header.expose_secret().to_owned()
    }
}

impl AsRef<str> for SeededSession {
    fn as_ref(&self) -> &str {
        self.header.expose_secret()
    }
}

/// Signs a user in without the login pages: stores `tokens` under a new session of
/// `auth` and returns the cookie that names it. For tests of handlers behind the layer.
///
/// As at a sign-in, a set without claims gets those of its access token when it is a
/// JWT (as the mock's [`issue_tokens`](super::MockHcssIdentity::issue_tokens) are), so
/// handlers see who signed in; and a set with a refresh token whose session end was not
/// set (it ends with its access token) gets the layer's `max_session_age`. The layer's
/// `on_sign_in` hook is not run: a seeded session exists even where the hook would have
/// refused the sign-in. The cookie's name follows the configuration: `__Host-hcss-session`
/// with an `https` redirect URI, `hcss-session` with a plain-http one (the mock's).
///
/// ```
/// use hcss_auth::{testing::seed_session, HcssAuth, HcssConfig, TokenSet};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let config = HcssConfig::builder().client_id("id").scopes(["heavyjob:read"])
/// #     .redirect_uri("https://app.example.com/hcss/callback").build().unwrap();
/// let auth = HcssAuth::new(config);
/// let session = seed_session(&auth, TokenSet::new("access", 3600)).await.unwrap();
/// assert!(session.cookie_header().starts_with("__Host-hcss-session="));
/// # }
/// ```
///
/// # Errors
///
/// The token store's error, if it cannot store the session.
pub async fn seed_session(
    auth: &HcssAuth,
    mut tokens: TokenSet,
) -> Result<SeededSession, StoreError> {
    let shared = &auth.shared;
    let now = shared.config.now();
    if tokens.claims.is_empty() {
        tokens.claims = Claims::of_access_token(tokens.access_token.expose_secret());
    }
    if tokens.refresh_token.is_some() && tokens.session_expires_at <= tokens.expires_at {
        tokens.session_expires_at =
            now.saturating_add(shared.config.lifetimes.max_session_age.as_secs());
    }
    let id = SessionId::generate();
    let ttl = tokens.store_ttl(now);
    shared.token_store.store(id.key(), tokens, ttl).await?;
    Ok(SeededSession {
        header: SecretString::from(format!(
            "{}={}",
            shared.config.session_cookie_name(),
            id.as_str()
        )),
    })
}

/// Whether the session a `Cookie` header value names still has tokens in the layer's
/// store: the value [`sign_in`](super::sign_in) returns, or a [`SeededSession`]. `false`
/// when it carries no session cookie of this layer.
///
/// ```
/// use hcss_auth::testing::{seed_session, session_exists};
/// use hcss_auth::{HcssAuth, HcssConfig, TokenSet};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let config = HcssConfig::builder().client_id("id").scopes(["heavyjob:read"])
/// #     .redirect_uri("https://app.example.com/hcss/callback").build().unwrap();
/// let auth = HcssAuth::new(config);
/// let seeded = seed_session(&auth, TokenSet::new("access", 3600)).await.unwrap();
/// assert!(session_exists(&auth, &seeded).await.unwrap());
/// let cookie: String = seeded.cookie_header(); // or what `sign_in` returned
/// assert!(session_exists(&auth, &cookie).await.unwrap());
/// assert!(!session_exists(&auth, "theme=dark").await.unwrap());
/// # }
/// ```
///
/// # Errors
///
/// The token store's error.
pub async fn session_exists(auth: &HcssAuth, cookie: impl AsRef<str>) -> Result<bool, StoreError> {
    let Ok(value) = http::HeaderValue::from_str(cookie.as_ref()) else {
        return Ok(false);
    };
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::COOKIE, value);
    let name = auth.shared.config.session_cookie_name();
    let Some(id) = crate::flow::session_cookie(&headers, name) else {
        return Ok(false);
    };
    Ok(auth.shared.token_store.load(id.key()).await?.is_some())
}
