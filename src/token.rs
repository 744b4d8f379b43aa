//! Tokens: the set a store keeps, and the token a handler gets.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::claims::Claims;
use crate::clock::unix_now;
use crate::secret::SecretString;

/// The tokens of one signed-in session, as a [`TokenStore`](crate::TokenStore) keeps them.
///
/// Times are seconds since the Unix epoch so that several app instances sharing a store
/// agree on them.
///
/// ```
/// use hcss_auth::TokenSet;
///
/// let tokens = TokenSet::new("access-token", 3600)
///     .with_refresh_token("refresh-token")
///     .with_scope("heavyjob:read offline_access");
/// assert!(tokens.refresh_token.is_some());
/// assert!(format!("{tokens:?}").contains("[redacted]"));
/// ```
///
/// Its [`version`](Self::version()) is the crate's to write (a refresh writes only over
/// the version it read), never an app's:
///
/// ```compile_fail
/// let mut tokens = hcss_auth::TokenSet::new("access-token", 3600);
/// tokens.version = 7;
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TokenSet {
    /// The bearer access token sent to HCSS APIs.
    pub access_token: SecretString,
    /// When the access token expires (Unix seconds).
    pub expires_at: u64,
    /// The refresh token, present when `offline_access` was granted.
    pub refresh_token: Option<SecretString>,
    /// The granted scopes, space-separated, as HCSS returned them.
    pub scope: Arc<str>,
    /// When the whole session ends however often it is refreshed (Unix seconds).
    pub session_expires_at: u64,
    /// When the access token was issued (Unix seconds); with `expires_at`, its lifetime.
    /// Zero when unknown (token sets stored by an earlier version of this crate).
    #[serde(default)]
    pub issued_at: u64,
    /// The claims of the access token (empty when it is not a JWT), read when it arrived.
    #[serde(default, skip_serializing_if = "Claims::is_empty")]
    pub claims: Claims,
    /// The verified ID token of the sign-in (with `openid` among the scopes), kept as
    /// HCSS issued it: sign-out at HCSS sends it as `id_token_hint`. A secret like the
    /// others (hidden from `Debug`); `None` without `openid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<SecretString>,
    /// The generation of this session's tokens: 0 at sign-in, one more at each change
    /// (a refresh marks the set as being refreshed, then writes its result: two). A
    /// refresh writes only over the generation it marked, so a logout (or another
    /// instance's refresh) that happened meanwhile is never undone.
    #[serde(default)]
    pub(crate) version: u64,
    /// The refresh that spent (or is spending) this set's refresh token: the owner of the
    /// refresh lock that marked it before asking HCSS. Another refresher does not spend
    /// the same token while that refresh may still hold its result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) spent_by: Option<Box<str>>,
    /// The refresh that wrote this set (its lock owner), so that a write retried after a
    /// lost reply recognises its own write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) written_by: Option<Box<str>>,
}

impl TokenSet {
    /// A token set whose access token expires `expires_in_secs` from now, with no refresh
    /// token, no scopes, and a session that lasts as long as the access token.
    pub fn new(access_token: impl Into<SecretString>, expires_in_secs: u64) -> Self {
        let now = unix_now();
        let expires_at = now.saturating_add(expires_in_secs);
        Self {
            access_token: access_token.into(),
            expires_at,
            refresh_token: None,
            scope: Arc::from(""),
            session_expires_at: expires_at,
            issued_at: now,
            claims: Claims::default(),
            id_token: None,
            version: 0,
            spent_by: None,
            written_by: None,
        }
    }

    /// Adds a refresh token. The session's end is left as it is: set it with
    /// [`with_session_expires_at`](Self::with_session_expires_at), or let
    /// `testing::seed_session` apply the layer's `max_session_age`.
    pub fn with_refresh_token(mut self, refresh_token: impl Into<SecretString>) -> Self {
        self.refresh_token = Some(refresh_token.into());
        self
    }

    /// Sets when the whole session ends, in Unix seconds, however often it is refreshed.
    pub fn with_session_expires_at(mut self, session_expires_at: u64) -> Self {
        self.session_expires_at = session_expires_at;
        self
    }

    /// Sets the granted scopes (space-separated).
    pub fn with_scope(mut self, scope: &str) -> Self {
        self.scope = Arc::from(scope);
        self
    }

    /// The generation of this session's tokens: 0 at sign-in, one more at each change
    /// (a refresh marks the set as being refreshed, then writes its result: two). A store
    /// compares it in [`replace_if_version`](crate::TokenStore::replace_if_version).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Sets the [`version`](Self::version()), for a store's own tests of
    /// `replace_if_version` (feature `test-util`); only the crate writes it otherwise.
    #[cfg(any(test, feature = "test-util"))]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// Sets when the access token expires, in Unix seconds, for tests of expiry (feature
    /// `test-util`).
    #[cfg(any(test, feature = "test-util"))]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub fn with_expires_at(mut self, expires_at: u64) -> Self {
        self.expires_at = expires_at;
        self
    }

    /// Keeps, in this set just refreshed from `old`, the identity claims that `old` got
    /// from its ID token (a refresh answers with a new access token, whose claims would
    /// otherwise replace them): the claims of `old` that its own access token lacks or
    /// says otherwise go on top of this set's. When the refresh brought an ID token that
    /// checked out (`fresh`: the token and its claims, checked by the refresh as a
    /// sign-in's are), its identity claims go on top of those and it becomes the set's
    /// ID token.
    pub(crate) fn keep_identity_from(
        &mut self,
        old: &TokenSet,
        fresh: Option<(&SecretString, &Claims)>,
    ) {
        let old_access = Claims::of_access_token(old.access_token.expose_secret());
        let kept = old.claims.beyond(&old_access);
        if !kept.is_empty() {
            self.claims = self.claims.overlaid_with(&kept);
        }
        if self.id_token.is_none() {
            self.id_token = old.id_token.clone();
        }
        if let Some((id_token, claims)) = fresh {
            self.claims = self.claims.overlaid_with(claims);
            self.id_token = Some(id_token.clone());
        }
    }

    /// How long the store should keep this set from `now`: until the session can no
    /// longer produce a live access token.
    pub(crate) fn store_ttl(&self, now: u64) -> Duration {
        let end = if self.refresh_token.is_some() {
            self.session_expires_at
        } else {
            self.expires_at.min(self.session_expires_at)
        };
        Duration::from_secs(end.saturating_sub(now).max(1))
    }
}

/// A live HCSS access token, handed to request handlers.
///
/// Obtained with the [`HcssToken`] extractor (Axum) or [`HcssSession::token`]
/// (any Tower service). It is never expired when handed out: the session refreshes it
/// first. Its `Debug` output hides the token.
///
/// ```
/// use hcss_auth::HcssToken;
///
/// async fn business_units(token: HcssToken) -> String {
///     // Send it as `Authorization: Bearer ...` to an HCSS API.
///     format!("scopes: {:?}, expires in {}s", token.scopes().collect::<Vec<_>>(),
///         token.expires_in().as_secs())
/// }
/// ```
///
/// [`HcssSession::token`]: crate::HcssSession::token
#[derive(Clone, Debug)]
pub struct HcssToken {
    access_token: SecretString,
    expires_at: u64,
    session_expires_at: u64,
    scope: Arc<str>,
    claims: Claims,
}

/// A token held in process for the calls that use it: its set (whose freshness says how
/// long it is held), the token handed out, and its `Authorization` header, built once
/// and marked sensitive (never printed); `None` for a token a header cannot carry, which
/// each request then reports.
pub(crate) struct HeldToken {
    pub(crate) set: TokenSet,
    pub(crate) token: HcssToken,
    pub(crate) bearer: Option<http::HeaderValue>,
}

impl HeldToken {
    pub(crate) fn new(set: TokenSet) -> Self {
        let token = HcssToken::from_set(&set);
        let bearer = http::HeaderValue::try_from(format!("Bearer {}", token.secret()))
            .ok()
            .map(|mut value| {
                value.set_sensitive(true);
                value
            });
        Self { set, token, bearer }
    }
}

impl HcssToken {
    /// The token of a set, its fields moved rather than shared (the hot path's way).
    pub(crate) fn from_owned(set: TokenSet) -> Self {
        Self {
            access_token: set.access_token,
            expires_at: set.expires_at,
            session_expires_at: set.session_expires_at,
            claims: set.claims,
            scope: set.scope,
        }
    }

    pub(crate) fn from_set(set: &TokenSet) -> Self {
        Self {
            access_token: set.access_token.clone(),
            expires_at: set.expires_at,
            session_expires_at: set.session_expires_at,
            claims: set.claims.clone(),
            scope: set.scope.clone(),
        }
    }

    pub(crate) fn access_token(&self) -> &SecretString {
        &self.access_token
    }

    /// The access token, for an `Authorization: Bearer` header. Keep it out of logs,
    /// URLs and responses.
    pub fn secret(&self) -> &str {
        self.access_token.expose_secret()
    }

    /// The token type; HCSS issues bearer tokens only.
    pub fn token_type(&self) -> &'static str {
        "Bearer"
    }

    /// The `Authorization` header value: `Bearer <token>`.
    pub fn authorization_header(&self) -> String {
        format!("Bearer {}", self.secret())
    }

    /// When the access token expires.
    pub fn expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.expires_at)
    }

    /// When the session ends however often it is refreshed (the user signs in again).
    pub fn session_expires_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.session_expires_at)
    }

    /// How long the access token has left (zero once expired).
    pub fn expires_in(&self) -> Duration {
        self.left_at(unix_now())
    }

    /// How long the access token has left at `now` (Unix seconds, the config's clock).
    pub(crate) fn left_at(&self, now: u64) -> Duration {
        Duration::from_secs(self.expires_at.saturating_sub(now))
    }

    /// Who signed in, as the access token says: `sub`, `CompanyId`, name, email and the
    /// rest (see [`Claims`], and why they are trusted).
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The scopes HCSS granted.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_ascii_whitespace()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_every_secret() {
        let set = TokenSet::new("access-abc", 60).with_refresh_token("refresh-xyz");
        let token = HcssToken::from_set(&set);
        for text in [
            format!("{set:?}"),
            format!("{token:?}"),
            format!("{set:#?}"),
        ] {
            assert!(!text.contains("access-abc"), "{text}");
            assert!(!text.contains("refresh-xyz"), "{text}");
            assert!(text.contains("[redacted]"), "{text}");
        }
    }

    #[test]
    fn token_set_round_trips_through_json() {
        let set = TokenSet::new("a", 60)
            .with_refresh_token("r")
            .with_scope("heavyjob:read");
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(serde_json::from_str::<TokenSet>(&json).unwrap(), set);
    }

    /// A refresh keeps the identity claims the old set's ID token brought, unless it
    /// brings a new ID token that checks out (same issuer, client and user).
    #[test]
    fn a_refresh_keeps_the_id_tokens_identity() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine as _;
        let jwt = |payload: &str| format!("h.{}.s", URL_SAFE_NO_PAD.encode(payload));
        let config = crate::config::HcssConfig::builder()
            .client_id("app")
            .scopes(["openid"])
            .redirect_uri("https://app.example.com/hcss/callback")
            .build()
            .unwrap();
        let issuer = config.issuer().to_owned();
        let access = |name: &str| {
            let token = jwt(&format!(r#"{{"sub":"u","name":"{name}"}}"#));
            let mut set = TokenSet::new(token.as_str(), 60);
            set.claims = Claims::of_access_token(&token);
            set
        };
        let id_token = |sub: &str, name: &str| {
            let exp = unix_now() + 300;
            jwt(&format!(
                r#"{{"iss":"{issuer}","aud":"app","exp":{exp},"sub":"{sub}","name":"{name}","email":"u@x"}}"#
            ))
        };
        let mut old = access("AT name");
        old.claims = old
            .claims
            .overlaid_with(&Claims::of_access_token(&id_token("u", "ID name")));

        // No ID token in the refresh: the old one's claims stay, the access token's own
        // claims are the new one's.
        let mut new = access("new AT name");
        new.keep_identity_from(&old, None);
        assert_eq!(new.claims.name(), Some("ID name"));
        assert_eq!(new.claims.email(), Some("u@x"));
        // And again from that set.
        let mut newer = access("newest AT name");
        newer.keep_identity_from(&new, None);
        assert_eq!(newer.claims.name(), Some("ID name"));

        // A new ID token that checks out: its claims win.
        let mut new = access("new AT name");
        let fresh = SecretString::from(id_token("u", "new ID name"));
        let checked = Claims::of_access_token(fresh.expose_secret());
        new.keep_identity_from(&old, Some((&fresh, &checked)));
        assert_eq!(new.claims.name(), Some("new ID name"));
        assert!(
            new.claims.get("iss").is_none(),
            "not the ID token's own claims"
        );

        assert_eq!(
            new.id_token.as_ref().map(|t| t.expose_secret()),
            Some(fresh.expose_secret())
        );

        // Without an ID token at sign-in, the new access token's claims are all there is.
        let plain = access("AT name");
        let mut new = access("new AT name");
        new.keep_identity_from(&plain, None);
        assert_eq!(new.claims.name(), Some("new AT name"));
    }

    #[test]
    fn store_ttl_follows_the_refresh_token() {
        let now = 1_000;
        let mut set = TokenSet::new("a", 0);
        set.expires_at = now + 100;
        set.session_expires_at = now + 100;
        assert_eq!(set.store_ttl(now), Duration::from_secs(100));
        set.refresh_token = Some("r".into());
        set.session_expires_at = now + 10_000;
        assert_eq!(set.store_ttl(now), Duration::from_secs(10_000));
    }
}
