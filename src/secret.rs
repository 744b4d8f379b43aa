//! Secrets: the secret newtype that keeps them out of logs, randomness from the OS (bytes
//! and tokens), and session ids. A leaf: it imports nothing of the crate (the store keys
//! derived from secrets are the store's: `store::StoreKey`).

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

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

/// `N` bytes from the OS CSPRNG: the crate's one door to it.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS random source failing means the machine cannot do cryptography at all.
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    bytes
}

/// `n` random bytes from the OS CSPRNG (at most 64), base64url without padding.
pub(crate) fn random_token(n: usize) -> String {
    URL_SAFE_NO_PAD.encode(&random_bytes::<64>()[..n.min(64)])
}

/// A session id: 256 random bits as 43 base64url characters, the session cookie's value.
/// Generated at sign-in, parsed from the cookie, turned into its `store::StoreKey`; kept
/// inline so that reading it costs no allocation, and never printed.
#[derive(Clone, Copy)]
pub(crate) struct SessionId([u8; 43]);

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
    fn session_ids_round_trip_and_refuse_what_is_not_ours() {
        let id = SessionId::generate();
        let parsed = SessionId::parse(id.as_str()).unwrap();
        assert_eq!(parsed.as_str(), id.as_str());
        assert!(SessionId::parse("short").is_none());
        assert!(SessionId::parse(&"é".repeat(22)).is_none());
        assert!(SessionId::parse(&"a".repeat(43)).is_some());
        assert_eq!(format!("{id:?}"), "SessionId([redacted])");
    }
}
