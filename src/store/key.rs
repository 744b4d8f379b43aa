//! The keys handed to stores: [`StoreKey`], a SHA-256 digest typed by its [`KeyKind`],
//! and the one place where each kind of key is derived from what it names.

use std::fmt;

use sha2::{Digest, Sha256};

use super::SessionOwner;
use crate::secret::SessionId;

/// The key under which a store keeps something: the lowercase hex SHA-256 of what names
/// it (a session id, a login's state, a company), never the name itself, so a dump of a
/// store hands out no live cookie, and its [`KeyKind`], which says what it names. Only
/// this crate derives one, each kind in one way (from its own random values, or from
/// names behind a prefix of its kind), so a raw cookie value never reaches a store and
/// the digests of two kinds never meet. It is `Copy`, so a store's `async move` block
/// can own it. Its `Debug` shows the first 8 characters, as log lines do.
///
/// Two keys are equal when both their digests and their kinds are. A store keeps each
/// kind apart (`RedisStore` under a key prefix per kind: `tok:`, `co:`, `tx:`, `own:`,
/// and `lock:` followed by the kind it locks); one that keeps several kinds in one table
/// may key it by [`as_str`](Self::as_str) alone, as the digests of different kinds never
/// meet.
///
/// ```
/// use hcss_auth::store::{KeyKind, StoreKey};
///
/// let key = StoreKey::of_session_cookie("the-session-cookie-value");
/// assert_eq!(key.as_str().len(), 64);
/// assert_eq!(key.kind(), KeyKind::Session);
/// assert_ne!(key, StoreKey::of_login_state("the-session-cookie-value"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StoreKey {
    hex: [u8; 64],
    kind: KeyKind,
}

/// What a [`StoreKey`] names, which says where a store keeps it.
///
/// | kind | given to | what it names | `RedisStore` key |
/// |---|---|---|---|
/// | `Session` | [`TokenStore`](super::TokenStore), [`Coordination`](super::Coordination) locks | a signed-in session's token set (from its cookie) | `tok:{hash}`; locked: `lock:tok:{hash}` |
/// | `CompanyToken` | `TokenStore`, `Coordination` locks | a company token cached by [`HcssCompanyTokens`](crate::HcssCompanyTokens) | `co:{hash}`; locked: `lock:co:{hash}` |
/// | `Login` | [`StateStore`](super::StateStore) | a login in progress (from its `state`) | `tx:{hash}` |
/// | `StateClaim` | `Coordination` locks | a sealed login's `state`, claimed by its callback, or a back-channel logout token's `jti`, claimed by the logout, so that a replay is refused on every instance | `lock:claim:{hash}` |
/// | `Owner` | the store's own owner index | the sessions of a user, a company or an identity-service session (`sid`) ([`SessionOwner::index_key`]) | `own:{hash}` |
/// | `ApiBudget` | `Coordination`'s call budget | a company's calls to HCSS's APIs, in flight and in the rolling window | `budget:{{hash}}:fly`, `budget:{{hash}}:win` |
///
/// A token store keeps sessions and company tokens through the same methods, but files
/// only sessions under their owners ([`TokenStore::sessions_of`](super::TokenStore::sessions_of)),
/// so that ending a user's or a company's sessions never touches a company token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyKind {
    /// A signed-in session (its key comes from the session cookie).
    Session,
    /// A company token cached by [`HcssCompanyTokens`](crate::HcssCompanyTokens): a
    /// customer company's (`company` grant) or the app's own (`client_credentials`).
    CompanyToken,
    /// A login in progress, kept by a [`StateStore`](super::StateStore) under its
    /// `state`.
    Login,
    /// A sealed login's `state`, claimed (locked, and left locked until the login would
    /// have expired) by the callback that used it; or a back-channel logout token's
    /// `jti`, claimed (until the token would be refused as too old) by the logout that
    /// used it.
    StateClaim,
    /// The index of a user's or a company's sessions.
    Owner,
    /// A company's budget of calls to HCSS's APIs ([`Coordination::acquire_call`](super::Coordination::acquire_call)):
    /// the calls in flight and those of the rolling window.
    ApiBudget,
}

/// Hashes the first 16 hex digits (64 bits of a SHA-256 digest, evenly spread): a
/// quarter of the bytes for in-process maps, which still compare all 64 (and the kind)
/// for equality.
impl std::hash::Hash for StoreKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(&self.hex[..16]);
    }
}

// What each kind's digest is taken of. The inputs are those earlier versions hashed, so
// that the keys of sessions, cached company tokens and owner indexes written by them
// stay valid; they also keep the digests of different kinds apart.
const STATE_CLAIM: &[u8] = b"used-state:";
const COMPANY: &[u8] = b"company-token\0company\0";
const OWN_COMPANY: &[u8] = b"company-token\0client_credentials";
const OWNER_SUBJECT: &[u8] = b"owner\0sub\0";
const OWNER_COMPANY: &[u8] = b"owner\0company\0";
const OWNER_SID: &[u8] = b"owner\0sid\0";
const LOGOUT_JTI: &[u8] = b"logout-jti:";
const API_BUDGET: &[u8] = b"api-budget\0company\0";

impl StoreKey {
    /// The key of a session cookie's value, as the layer derives it: for tests and for
    /// tools that end a session whose cookie they hold.
    pub fn of_session_cookie(value: &str) -> Self {
        Self::derive(KeyKind::Session, &[value.as_bytes()])
    }

    /// The key a login in progress is kept under by a [`StateStore`](super::StateStore):
    /// that of its `state`, as the callback's query carries it. For tests and tools.
    pub fn of_login_state(state: &str) -> Self {
        Self::derive(KeyKind::Login, &[state.as_bytes()])
    }

    /// The key of the claim a callback takes on a sealed login's `state`.
    pub(crate) fn of_state_claim(state: &str) -> Self {
        Self::derive(KeyKind::StateClaim, &[STATE_CLAIM, state.as_bytes()])
    }

    /// The key of the claim a back-channel logout takes on its logout token's `jti` (of
    /// the issuer's tokens), so that a replay is refused on every instance.
    pub(crate) fn of_logout_jti(jti: &str) -> Self {
        Self::derive(KeyKind::StateClaim, &[LOGOUT_JTI, jti.as_bytes()])
    }

    /// The key of the token of a customer company (`company` grant).
    pub(crate) fn of_company(company_id: &str) -> Self {
        Self::derive(KeyKind::CompanyToken, &[COMPANY, company_id.as_bytes()])
    }

    /// The key of the token of the app's own company (`client_credentials`).
    pub(crate) fn of_own_company() -> Self {
        Self::derive(KeyKind::CompanyToken, &[OWN_COMPANY])
    }

    /// The key of a company's budget of API calls (`company_id` empty for a user with no
    /// `CompanyId`).
    pub(crate) fn of_api_budget(company_id: &str) -> Self {
        Self::derive(KeyKind::ApiBudget, &[API_BUDGET, company_id.as_bytes()])
    }

    /// The key of the index of an owner's sessions.
    pub(crate) fn of_owner(owner: &SessionOwner) -> Self {
        match owner {
            SessionOwner::Subject(sub) => {
                Self::derive(KeyKind::Owner, &[OWNER_SUBJECT, sub.as_bytes()])
            }
            SessionOwner::Company(id) => {
                Self::derive(KeyKind::Owner, &[OWNER_COMPANY, id.as_bytes()])
            }
            SessionOwner::IdentitySession(sid) => {
                Self::derive(KeyKind::Owner, &[OWNER_SID, sid.as_bytes()])
            }
        }
    }

    /// A random key of `kind`, for the conformance suites and a store's own tests.
    #[cfg(any(test, feature = "test-util"))]
    pub(crate) fn random_of(kind: KeyKind) -> Self {
        Self::derive(kind, &[crate::secret::random_token(32).as_bytes()])
    }

    /// A random session key, for a store's own tests (feature `test-util`).
    #[cfg(any(test, feature = "test-util"))]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub fn random() -> Self {
        Self::random_of(KeyKind::Session)
    }

    /// The `kind` key of the SHA-256 of `parts`, one after the other.
    fn derive(kind: KeyKind, parts: &[&[u8]]) -> Self {
        Self {
            hex: sha256_hex_bytes(parts),
            kind,
        }
    }

    /// What the key names.
    pub fn kind(&self) -> KeyKind {
        self.kind
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

    /// The key as text: 64 lowercase hex characters.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.hex).unwrap_or_default()
    }

    /// Its first 8 characters: enough to follow one session through log lines.
    pub(crate) fn short(&self) -> &str {
        &self.as_str()[..8]
    }
}

impl SessionId {
    /// The key the stores keep this session under.
    pub(crate) fn key(&self) -> StoreKey {
        StoreKey::of_session_cookie(self.as_str())
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

/// The SHA-256 of `parts`, one after the other, in lowercase hex.
pub(super) fn sha256_hex(parts: &[&[u8]]) -> String {
    let hex = sha256_hex_bytes(parts);
    std::str::from_utf8(&hex).unwrap_or_default().to_owned()
}

fn sha256_hex_bytes(parts: &[&[u8]]) -> [u8; 64] {
    let mut digest = Sha256::new();
    for part in parts {
        digest.update(part);
    }
    let mut hex = [0u8; 64];
    for (pair, byte) in hex.chunks_exact_mut(2).zip(digest.finalize().iter()) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(*byte)]);
    }
    hex
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_keys_are_lowercase_hex_sha256() {
        let key = StoreKey::of_session_cookie("abc");
        assert_eq!(
            key.as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(format!("{key:?}"), "StoreKey(ba7816bf…)");
        assert_eq!(
            std::mem::size_of::<StoreKey>(),
            65,
            "a digest and a kind, no more"
        );
    }

    /// Each kind's key is derived in one way, of what earlier versions hashed (so that
    /// stored keys stay valid), and no two kinds meet.
    #[test]
    fn each_kind_has_its_keys() {
        let sha = |text: &str| {
            let digest = Sha256::digest(text.as_bytes());
            digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        let keys = [
            (StoreKey::of_session_cookie("s"), KeyKind::Session, sha("s")),
            (StoreKey::of_login_state("s"), KeyKind::Login, sha("s")),
            (
                StoreKey::of_state_claim("s"),
                KeyKind::StateClaim,
                sha("used-state:s"),
            ),
            (
                StoreKey::of_company("c"),
                KeyKind::CompanyToken,
                sha("company-token\0company\0c"),
            ),
            (
                StoreKey::of_own_company(),
                KeyKind::CompanyToken,
                sha("company-token\0client_credentials"),
            ),
            (
                StoreKey::of_owner(&SessionOwner::Subject("u".into())),
                KeyKind::Owner,
                sha("owner\0sub\0u"),
            ),
            (
                StoreKey::of_owner(&SessionOwner::Company("c".into())),
                KeyKind::Owner,
                sha("owner\0company\0c"),
            ),
            (
                StoreKey::of_owner(&SessionOwner::IdentitySession("s".into())),
                KeyKind::Owner,
                sha("owner\0sid\0s"),
            ),
            (
                StoreKey::of_logout_jti("s"),
                KeyKind::StateClaim,
                sha("logout-jti:s"),
            ),
        ];
        for (key, kind, digest) in &keys {
            assert_eq!((key.kind(), key.as_str()), (*kind, digest.as_str()));
        }
        for (i, (a, ..)) in keys.iter().enumerate() {
            for (b, ..) in &keys[i + 1..] {
                assert_ne!(a, b, "two kinds meet");
            }
        }
        let session = StoreKey::of_session_cookie("s");
        assert_eq!(StoreKey::from_stored(session.as_str()), Some(session));
    }

    #[test]
    fn session_ids_key_as_their_cookie_does() {
        let id = SessionId::generate();
        assert_eq!(id.key(), StoreKey::of_session_cookie(id.as_str()));
    }
}
