//! Secrets and the keys made from them: the secret newtype that keeps them out of logs,
//! random tokens, session ids, and the store keys (SHA-256) under which stores keep
//! what a session id or a login's state names. A leaf: it imports nothing of the crate.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A secret string: a token, a code, a client secret or a session id.
///
/// Its `Debug` output is `[redacted]`, it has no `Display`, and the only way to read it
/// is [`expose_secret`](Self::expose_secret), whose name makes every use easy to find.
/// Cloning is cheap: the text is shared, not copied.
///
/// ```
/// use hcss_auth::SecretString;
///
/// let secret = SecretString::new("s3cr3t");
/// assert_eq!(format!("{secret:?}"), "[redacted]");
/// assert_eq!(secret.expose_secret(), "s3cr3t");
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(Arc<str>);

impl SecretString {
    /// Wraps a secret.
    pub fn new(secret: impl Into<Arc<str>>) -> Self {
        Self(secret.into())
    }

    /// The secret itself. Never log it, put it in a URL or show it to a user.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

/// `n` random bytes from the OS CSPRNG (at most 64), base64url without padding.
pub(crate) fn random_token(n: usize) -> String {
    let mut bytes = [0u8; 64];
    let bytes = &mut bytes[..n.min(64)];
    // The OS random source failing means the machine cannot do cryptography at all.
    getrandom::fill(bytes).expect("the operating system's random number generator failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The key under which a store keeps what a secret names (a session, a login in
/// progress) or a company token: the lowercase hex SHA-256 of the secret (or of the
/// company's name for its token), never the secret itself, so a dump of a store hands out
/// no live cookie, and its [`KeyKind`]. Only this crate makes one from a secret, so a raw
/// cookie value never reaches a store. It is `Copy`, so a store's `async move` block
/// can own it. Its `Debug` shows the first 8 characters, as log lines do.
///
/// Two keys are equal when both their digests and their kinds are: a store that keeps
/// keys of both kinds in one table may key it by [`as_str`](Self::as_str) alone (the
/// digests of a session and of a company token never meet), but indexes only
/// [`KeyKind::Session`] keys by owner.
///
/// ```
/// use hcss_auth::store::{KeyKind, StoreKey};
///
/// let key = StoreKey::of_session_cookie("the-session-cookie-value");
/// assert_eq!(key.as_str().len(), 64);
/// assert_eq!(key.kind(), KeyKind::Session);
/// assert_ne!(key, StoreKey::random());
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StoreKey {
    hex: [u8; 64],
    kind: KeyKind,
}

/// What a [`StoreKey`] names: a signed-in session's token set, or a cached company token.
///
/// A token store keeps both through the same methods; it files only sessions under their
/// owners ([`TokenStore::sessions_of`](crate::store::TokenStore::sessions_of)), so that
/// ending a user's or a company's sessions never touches a company token. `RedisStore`
/// also keeps them under different key prefixes, and serves only sessions from its near
/// cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// A signed-in session (its key comes from the session cookie).
    Session,
    /// A company token cached by [`HcssCompanyTokens`](crate::HcssCompanyTokens): a
    /// customer company's (`company` grant) or the app's own (`client_credentials`).
    CompanyToken,
}

/// Hashes the first 16 hex digits (64 bits of a SHA-256 digest, evenly spread): a
/// quarter of the bytes for in-process maps, which still compare all 64 (and the kind)
/// for equality.
impl std::hash::Hash for StoreKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.hex[..16]);
    }
}

impl StoreKey {
    /// The key of a secret (a session id, a login's state).
    pub(crate) fn of(secret: &str) -> Self {
        Self::of_bytes(secret.as_bytes())
    }

    /// The key of a company token, named by what it is for (its grant and company).
    pub(crate) fn of_company_token(name: &str) -> Self {
        Self {
            kind: KeyKind::CompanyToken,
            ..Self::of(name)
        }
    }

    fn of_bytes(secret: &[u8]) -> Self {
        let digest = Sha256::digest(secret);
        let mut hex = [0u8; 64];
        for (pair, byte) in hex.chunks_exact_mut(2).zip(digest.iter()) {
            pair.copy_from_slice(&HEX_PAIRS[usize::from(*byte)]);
        }
        Self {
            hex,
            kind: KeyKind::Session,
        }
    }

    /// What the key names: a session or a company token.
    pub fn kind(&self) -> KeyKind {
        self.kind
    }

    /// The key of a session cookie's value, as the layer derives it: for tests and for
    /// tools that end a session whose cookie they hold.
    pub fn of_session_cookie(value: &str) -> Self {
        Self::of(value)
    }

    /// A session's key as a store wrote it (64 lowercase hex characters), read back.
    pub fn from_stored(text: &str) -> Option<Self> {
        let hex: [u8; 64] = text.as_bytes().try_into().ok()?;
        hex.iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            .then_some(Self {
                hex,
                kind: KeyKind::Session,
            })
    }

    /// A random session key, for a store's own tests.
    pub fn random() -> Self {
        Self::of(&random_token(32))
    }

    /// The key as text: 64 lowercase hex characters.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.hex).unwrap_or_default()
    }

    /// Its first 8 characters: enough to follow one session through log lines.
    pub(crate) fn short(&self) -> &str {
        &self.as_str()[..8]
    }
}

/// The whole key, as stores write it (a digest: no secret).
impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreKey({}…)", self.short())
    }
}

/// A session id: 256 random bits as 43 base64url characters, the session cookie's value.
/// Generated at sign-in, parsed from the cookie, turned into its [`StoreKey`]; kept inline
/// so that reading it costs no allocation, and never printed.
#[derive(Clone, Copy)]
pub(crate) struct SessionId([u8; 43]);

/// Each byte's two lowercase hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut table = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = [HEX[b >> 4], HEX[b & 15]];
        b += 1;
    }
    table
};

impl SessionId {
    /// A new session id from the OS CSPRNG.
    pub(crate) fn generate() -> Self {
        let token = random_token(32);
        Self::parse(&token).expect("32 random bytes are 43 base64url characters")
    }

    /// The id a cookie carries, if it is one of ours (43 base64url characters).
    pub(crate) fn parse(text: &str) -> Option<Self> {
        Self::from_bytes(text.as_bytes())
    }

    /// The id in a cookie's raw value, if it is one of ours (43 base64url characters).
    pub(crate) fn from_bytes(value: &[u8]) -> Option<Self> {
        let id: [u8; 43] = value.try_into().ok()?;
        // Branch-free comparisons over a fixed length, which the compiler vectorizes.
        let base64url = |b: u8| {
            (b.wrapping_sub(b'0') < 10)
                | ((b | 0x20).wrapping_sub(b'a') < 26)
                | (b == b'-')
                | (b == b'_')
        };
        id.iter()
            .fold(true, |ours, b| ours & base64url(*b))
            .then_some(SessionId(id))
    }

    /// The cookie's value. A secret: never log it.
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The key the stores keep this session under.
    pub(crate) fn key(&self) -> StoreKey {
        StoreKey::of_bytes(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_long_and_distinct() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token(32));
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn store_keys_are_lowercase_hex_sha256() {
        assert_eq!(
            StoreKey::of("abc").as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(format!("{:?}", StoreKey::of("abc")), "StoreKey(ba7816bf…)");
    }

    #[test]
    fn keys_of_another_kind_are_other_keys() {
        let (session, company) = (StoreKey::of("abc"), StoreKey::of_company_token("abc"));
        assert_eq!(session.as_str(), company.as_str());
        assert_eq!(
            (session.kind(), company.kind()),
            (KeyKind::Session, KeyKind::CompanyToken)
        );
        assert_ne!(session, company);
        assert_eq!(StoreKey::from_stored(session.as_str()), Some(session));
        assert_eq!(
            std::mem::size_of::<StoreKey>(),
            65,
            "a digest and a kind, no more"
        );
    }

    #[test]
    fn session_ids_round_trip_and_refuse_what_is_not_ours() {
        let id = SessionId::generate();
        let parsed = SessionId::parse(id.as_str()).unwrap();
        assert_eq!(parsed.key(), id.key());
        assert!(SessionId::parse("short").is_none());
        assert!(SessionId::parse(&"é".repeat(22)).is_none());
        assert!(SessionId::parse(&"a".repeat(43)).is_some());
        assert_eq!(format!("{id:?}"), "SessionId([redacted])");
    }
}
