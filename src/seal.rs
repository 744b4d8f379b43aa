//! Sealed values: AES-256-GCM with a random 96-bit nonce, so that a login in progress can
//! travel in the browser's cookie, unreadable and unforgeable, and cost the server nothing.

use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::secret::random_bytes;

/// The shortest secret accepted as a cookie key, in bytes.
pub(crate) const MIN_KEY_BYTES: usize = 32;

/// A 256-bit sealing key, derived from a configured secret. `Debug` shows nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct CookieKey([u8; 32]);

impl CookieKey {
    /// Derives the key from a secret of at least [`MIN_KEY_BYTES`] random bytes: SHA-256
    /// under a label of this crate's, so the secret itself is never the AES key.
    pub(crate) fn derive(secret: &[u8]) -> Self {
        let mut hash = Sha256::new();
        hash.update(b"hcss-auth login cookie key v1\0");
        hash.update(secret);
        Self(hash.finalize().into())
    }
}

impl fmt::Debug for CookieKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The keys a layer seals with: the current one, and the previous one that it still
/// opens with during a rotation.
pub(crate) struct Sealer {
    current: Aes256Gcm,
    previous: Option<Aes256Gcm>,
}

const NONCE: usize = 12;

impl Sealer {
    pub(crate) fn new(current: &CookieKey, previous: Option<&CookieKey>) -> Self {
        let cipher = |key: &CookieKey| Aes256Gcm::new((&key.0).into());
        Self {
            current: cipher(current),
            previous: previous.map(cipher),
        }
    }

    /// Seals `plaintext`, bound to `context` (the cookie's name): base64url of nonce and
    /// ciphertext with its tag.
    pub(crate) fn seal(&self, context: &[u8], plaintext: &[u8]) -> String {
        let nonce = random_bytes::<NONCE>();
        let sealed = self
            .current
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .expect("AES-GCM seals any input this crate makes");
        let mut out = Vec::with_capacity(NONCE + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens what [`seal`](Self::seal) made with the same `context`, under the current key
    /// or the previous one; `None` for anything altered, sealed elsewhere or malformed.
    pub(crate) fn open(&self, context: &[u8], sealed: &str) -> Option<Vec<u8>> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() <= NONCE {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE);
        let payload = || Payload {
            msg: ciphertext,
            aad: context,
        };
        let nonce = Nonce::from_slice(nonce);
        self.current
            .decrypt(nonce, payload())
            .ok()
            .or_else(|| self.previous.as_ref()?.decrypt(nonce, payload()).ok())
    }
}

/// The keys a layer seals login cookies with, as far as it knows them now.
#[derive(Default)]
pub(crate) struct SealKeys {
    resolved: std::sync::RwLock<Option<Resolved>>,
    /// When the store was last asked for the key it shares (Unix seconds, on the flow's
    /// clock): a login start asks again once per second at most, often enough that
    /// instances re-agree within a second after the store lost its key, seldom enough
    /// that a flood of logins costs the store nothing.
    checked: std::sync::Mutex<Option<u64>>,
}

#[derive(Clone)]
pub(crate) struct Resolved {
    pub(crate) sealer: Arc<Sealer>,
    /// The secret behind the current key, when the store shares it (`None`: the
    /// configuration's key, or one of this process only): what asking the store again
    /// proposes.
    pub(crate) shared_secret: Option<Vec<u8>>,
}

impl SealKeys {
    pub(crate) fn get(&self) -> Option<Resolved> {
        self.resolved
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set(&self, resolved: Resolved) {
        *self.resolved.write().unwrap_or_else(|e| e.into_inner()) = Some(resolved);
    }

    /// Whether asking the store again is due at `now`, once per second at most (and, if
    /// so, marks it done).
    pub(crate) fn ask_store_due(&self, now: u64) -> bool {
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        let due = checked.is_none_or(|at| now > at);
        if due {
            *checked = Some(now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_unaltered_in_their_context() {
        let key = CookieKey::derive(&[7; 32]);
        let sealer = Sealer::new(&key, None);
        let sealed = sealer.seal(b"name-a", b"the login");
        assert_eq!(
            sealer.open(b"name-a", &sealed).as_deref(),
            Some(&b"the login"[..])
        );
        assert_eq!(sealer.open(b"name-b", &sealed), None, "another cookie's");
        assert_ne!(sealed, sealer.seal(b"name-a", b"the login"), "fresh nonce");
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(sealer.open(b"name-a", &tampered), None);
        for junk in ["", "AAAA", "not base64 !", &"A".repeat(5000)] {
            assert_eq!(sealer.open(b"name-a", junk), None, "{junk:.10}");
        }
    }

    #[test]
    fn the_previous_key_opens_during_a_rotation() {
        let (old, new) = (CookieKey::derive(&[1; 32]), CookieKey::derive(&[2; 32]));
        let sealed = Sealer::new(&old, None).seal(b"n", b"x");
        assert_eq!(Sealer::new(&new, None).open(b"n", &sealed), None);
        assert_eq!(
            Sealer::new(&new, Some(&old)).open(b"n", &sealed).as_deref(),
            Some(&b"x"[..])
        );
        assert_eq!(format!("{old:?}"), "[redacted]");
    }
}
