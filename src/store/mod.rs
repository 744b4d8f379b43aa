//! Where token sets (and, with `HcssAuthBuilder::state_store`, login transactions) live: the
//! store traits and the built-in stores.
//!
//! Keys handed to a store are [`StoreKey`]s: lowercase hex SHA-256 digests of the state
//! or session id, never the secret values themselves, so a dump of a store hands out no
//! live cookie. A token store's keys have a [`KeyKind`]: a signed-in session's, or a
//! cached company token's.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::secret::SecretString;
use crate::token::TokenSet;

mod memory;
#[cfg(feature = "redis")]
mod near_cache;
#[cfg(feature = "redis")]
mod redis;

pub use crate::secret::{KeyKind, StoreKey};
pub use memory::MemoryStore;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisStore;

/// The future a store method returns: boxed so that the traits stay object-safe.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A login in progress, kept between `/hcss/login` and `/hcss/callback`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LoginTransaction {
    /// The PKCE code verifier.
    pub verifier: SecretString,
    /// The validated local path to return to after login.
    pub return_to: String,
    /// SHA-256 (hex) of the browser-binding cookie that started this login.
    pub binding_hash: String,
    /// When the login started (Unix seconds).
    pub created_at: u64,
    /// The OpenID Connect `nonce` sent with the login, when `openid` is among the scopes.
    #[serde(default)]
    pub nonce: Option<String>,
}

impl LoginTransaction {
    /// A transaction (for stores' own tests; the layer makes its own).
    pub fn new(
        verifier: impl Into<SecretString>,
        return_to: impl Into<String>,
        binding_hash: impl Into<String>,
        created_at: u64,
    ) -> Self {
        Self {
            verifier: verifier.into(),
            return_to: return_to.into(),
            binding_hash: binding_hash.into(),
            created_at,
            nonce: None,
        }
    }

    /// The same, with the OpenID Connect `nonce` the login sent.
    pub fn with_nonce(mut self, nonce: Option<String>) -> Self {
        self.nonce = nonce;
        self
    }
}

/// Keeps login transactions for the few minutes between login and callback, when the
/// layer is built with [`HcssAuthBuilder::state_store`](crate::HcssAuthBuilder::state_store) (by
/// default logins travel sealed in the browser's cookies and need no store).
///
/// `take` must be atomic: of any number of concurrent takes of one key, exactly one gets
/// the transaction. That is what makes a callback impossible to replay.
///
/// Keys and values are owned, so the obvious `async move` block compiles. A store over a
/// key-value map:
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use std::time::{Duration, Instant};
/// use hcss_auth::store::{LoginTransaction, StateStore, StoreFuture, StoreKey};
///
/// #[derive(Default)]
/// struct MapStore(Mutex<HashMap<StoreKey, (LoginTransaction, Instant)>>);
///
/// impl StateStore for MapStore {
///     fn put_transaction(&self, key: StoreKey, tx: LoginTransaction, ttl: Duration)
///         -> StoreFuture<'_, ()> {
///         Box::pin(async move {
///             self.0.lock().unwrap().insert(key, (tx, Instant::now() + ttl));
///             Ok(())
///         })
///     }
///
///     fn take_transaction(&self, key: StoreKey) -> StoreFuture<'_, Option<LoginTransaction>> {
///         Box::pin(async move {
///             let taken = self.0.lock().unwrap().remove(&key);
///             Ok(taken.filter(|(_, until)| *until > Instant::now()).map(|(tx, _)| tx))
///         })
///     }
/// }
/// ```
pub trait StateStore: Send + Sync + 'static {
    /// Stores a transaction under `key` for `ttl`.
    fn put_transaction(
        &self,
        key: StoreKey,
        transaction: LoginTransaction,
        ttl: Duration,
    ) -> StoreFuture<'_, ()>;

    /// Removes and returns the transaction under `key`, atomically; `None` if there is
    /// none or it expired.
    fn take_transaction(&self, key: StoreKey) -> StoreFuture<'_, Option<LoginTransaction>>;
}

/// Whose sessions: a user (`sub`) or a company (`CompanyId`), from the claims of the
/// sessions' access tokens.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SessionOwner {
    /// The user with this `sub`.
    Subject(String),
    /// Every user of the company with this `CompanyId`.
    Company(String),
}

impl SessionOwner {
    /// The owners a token set's claims name: its subject and its company, when present.
    pub fn of(tokens: &TokenSet) -> Vec<SessionOwner> {
        let mut owners = Vec::new();
        if let Some(subject) = tokens.claims.subject() {
            owners.push(SessionOwner::Subject(subject.to_owned()));
        }
        if let Some(company) = tokens.claims.company_id() {
            owners.push(SessionOwner::Company(company));
        }
        owners
    }

    /// A key for the owner's index entry, safe in any store (a digest).
    pub fn index_key(&self) -> StoreKey {
        match self {
            SessionOwner::Subject(sub) => StoreKey::of(&format!("owner\0sub\0{sub}")),
            SessionOwner::Company(id) => StoreKey::of(&format!("owner\0company\0{id}")),
        }
    }
}

/// The owners a set stored under `key` is filed under: those its claims name for a
/// session, none for a company token.
pub(crate) fn owners_of(key: StoreKey, tokens: &TokenSet) -> Vec<SessionOwner> {
    match key.kind() {
        KeyKind::Session => SessionOwner::of(tokens),
        KeyKind::CompanyToken => Vec::new(),
    }
}

/// Keeps the token sets of signed-in sessions, and the company tokens that
/// [`HcssCompanyTokens`](crate::HcssCompanyTokens) caches: [`StoreKey::kind`] tells
/// them apart. Only sessions are indexed by owner
/// ([`sessions_of`](Self::sessions_of)).
///
/// The refresh-lock methods let several app instances that share the store refresh a
/// session once between them. A store used by one process only can keep their defaults:
/// the layer already refreshes each session once at a time within a process.
///
/// A store over a SQL table or a key-value service writes the three required methods
/// around its client; for example, one over an async key-value client:
///
/// ```
/// use std::time::Duration;
/// use hcss_auth::store::{StoreFuture, StoreKey, TokenStore};
/// use hcss_auth::{StoreError, TokenSet};
///
/// /// Stands for your database client.
/// struct Kv;
/// impl Kv {
///     async fn get(&self, _key: &str) -> Result<Option<String>, String> { Ok(None) }
///     async fn set(&self, _key: &str, _value: String, _ttl: Duration) -> Result<(), String> { Ok(()) }
///     async fn del(&self, _key: &str) -> Result<(), String> { Ok(()) }
/// }
///
/// struct KvStore { kv: Kv }
///
/// fn unavailable(err: String) -> StoreError { StoreError::Unavailable(err) }
///
/// impl TokenStore for KvStore {
///     fn load(&self, key: StoreKey) -> StoreFuture<'_, Option<TokenSet>> {
///         Box::pin(async move {
///             let text = self.kv.get(key.as_str()).await.map_err(unavailable)?;
///             text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(e.to_string())))
///                 .transpose()
///         })
///     }
///
///     fn store(&self, key: StoreKey, tokens: TokenSet, ttl: Duration) -> StoreFuture<'_, ()> {
///         Box::pin(async move {
///             let text = serde_json::to_string(&tokens).map_err(|e| StoreError::Corrupt(e.to_string()))?;
///             self.kv.set(key.as_str(), text, ttl).await.map_err(unavailable)
///         })
///     }
///
///     fn remove(&self, key: StoreKey) -> StoreFuture<'_, ()> {
///         Box::pin(async move { self.kv.del(key.as_str()).await.map_err(unavailable) })
///     }
/// }
/// ```
pub trait TokenStore: Send + Sync + 'static {
    /// The token set of a session, or `None` (never stored, removed or expired).
    fn load(&self, key: StoreKey) -> StoreFuture<'_, Option<TokenSet>>;

    /// The token set of a session if this store holds a copy in process that it can
    /// hand out at once, without waiting; `None` means "ask [`load`](Self::load)".
    ///
    /// Signed-in requests ask here first, so a store with an in-process copy saves them
    /// a boxed future and a round trip (`MemoryStore` answers from its map, `RedisStore`
    /// from its near cache). A copy given here must be one `load` could give at this
    /// moment: never one that was removed or replaced, never one past its TTL. The
    /// default holds nothing, which is always correct.
    ///
    /// Override it only where that holds **across every process sharing the backend**:
    /// a store living in this process alone, or one told of every other process's writes
    /// as they happen (as `RedisStore` is, by Redis's client tracking). A read-through
    /// cache that drops its copy on its own writes and after a while is **not** enough:
    /// a logout on another instance would be ignored here until the copy ages out.
    /// [`store_conformance`](crate::testing::store_conformance) checks what one store
    /// can show (removed, replaced, taken and expired sets); it cannot see other
    /// processes.
    fn cached(&self, key: StoreKey) -> Option<TokenSet> {
        let _ = key;
        None
    }

    /// Stores (or replaces) the token set of a session for `ttl`.
    fn store(&self, key: StoreKey, tokens: TokenSet, ttl: Duration) -> StoreFuture<'_, ()>;

    /// Removes a session's token set; removing a missing one is not an error.
    fn remove(&self, key: StoreKey) -> StoreFuture<'_, ()>;

    /// Removes a session's token set and returns it, atomically: a logout revokes exactly
    /// the refresh token it removed, even while a refresh writes. The default loads, then
    /// removes: a refresh written between the two is removed without being revoked.
    fn take(&self, key: StoreKey) -> StoreFuture<'_, Option<TokenSet>> {
        Box::pin(async move {
            let tokens = self.load(key).await?;
            self.remove(key).await?;
            Ok(tokens)
        })
    }

    /// Replaces a session's token set with `tokens`, only if a set is stored under `key`
    /// now and its [`version`](TokenSet::version) is `expected_version`; returns whether
    /// it wrote. A refresh writes its result this way, so that a logout (which removes the
    /// set) or another instance's refresh that happened meanwhile is never undone.
    ///
    /// Stores should do this atomically (Redis: one script; a SQL store: `UPDATE ...
    /// WHERE version = $1`). The default reads, compares and then writes: a logout that
    /// lands between the read and the write is undone, and the signed-out session comes
    /// back with a refresh token that was never revoked.
    fn replace_if_version(
        &self,
        key: StoreKey,
        expected_version: u64,
        tokens: TokenSet,
        ttl: Duration,
    ) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            match self.load(key).await? {
                Some(current) if current.version == expected_version => {
                    self.store(key, tokens, ttl).await?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    }

    /// Agrees on a secret that every instance sharing this store uses, such as the key
    /// that seals login cookies: keeps `proposal` under `name` unless a value is there
    /// already, and returns the value that is there (`SET NX`, then `GET`). The default,
    /// for stores that one process uses, shares nothing: `None`.
    fn shared_secret(
        &self,
        name: &'static str,
        proposal: Vec<u8>,
    ) -> StoreFuture<'_, Option<Vec<u8>>> {
        let _ = (name, proposal);
        Box::pin(async { Ok(None) })
    }

    /// The sessions of a user or a company, for ending them all (a customer disconnecting
    /// the app, an administrator's "log out everywhere"). A store that offers it indexes
    /// every token set it writes under a [`KeyKind::Session`] key by
    /// [`SessionOwner::of`] (never a [`KeyKind::CompanyToken`]: a company token carries
    /// its `CompanyId` but is no session), takes a session out of its owners' index when
    /// it is removed or taken, and may return keys of sessions that ended since (the
    /// layer skips those). The default says it is unsupported.
    fn sessions_of(&self, owner: SessionOwner) -> StoreFuture<'_, Vec<StoreKey>> {
        let _ = owner;
        Box::pin(async {
            Err(StoreError::Unsupported(
                "this store keeps no index of sessions by user or company".into(),
            ))
        })
    }

    /// Tries to take the refresh lock of a session for `owner` (a random value), for at
    /// most `ttl`. Returns `false` when another owner holds it. The default, for
    /// single-process stores, always succeeds.
    fn try_lock_refresh(
        &self,
        key: StoreKey,
        owner: String,
        ttl: Duration,
    ) -> StoreFuture<'_, bool> {
        let _ = (key, owner, ttl);
        Box::pin(async { Ok(true) })
    }

    /// Extends the refresh lock to `ttl` from now if `owner` still holds it; returns
    /// whether it does. A refresh whose new tokens wait in memory for the store to take
    /// them renews its lock this way, so that no other instance refreshes from the spent
    /// set the store still holds. Must not take a free lock (a lapsed lease stays lapsed).
    /// The default, for single-process stores, always succeeds.
    fn renew_refresh_lock(
        &self,
        key: StoreKey,
        owner: String,
        ttl: Duration,
    ) -> StoreFuture<'_, bool> {
        let _ = (key, owner, ttl);
        Box::pin(async { Ok(true) })
    }

    /// Releases the refresh lock if `owner` still holds it.
    fn unlock_refresh(&self, key: StoreKey, owner: String) -> StoreFuture<'_, ()> {
        let _ = (key, owner);
        Box::pin(async { Ok(()) })
    }
}
