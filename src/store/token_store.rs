//! [`TokenStore`]: the storage of token sets (signed-in sessions and cached company
//! tokens), what every store must provide.

use std::time::Duration;

use super::{Coordination, SessionOwner, StoreError, StoreFuture, StoreKey, TokenSet};

/// Keeps the token sets of signed-in sessions, and the company tokens that
/// [`HcssCompanyTokens`](crate::HcssCompanyTokens) caches: [`StoreKey::kind`] tells
/// them apart ([`KeyKind::Session`](super::KeyKind::Session),
/// [`KeyKind::CompanyToken`](super::KeyKind::CompanyToken)).
///
/// Storage, in three parts:
///
/// - **required**: [`load`](Self::load), [`store`](Self::store), [`remove`](Self::remove);
/// - **atomic forms with defaults that are not**: [`take`](Self::take) (read and
///   delete) and [`replace_if_version`](Self::replace_if_version) (compare-and-set);
///   override them where the backend can do better;
/// - **optional**: [`cached`](Self::cached) (an in-process copy, default none) and
///   [`sessions_of`](Self::sessions_of) (the owner index, default unsupported).
///
/// What instances sharing the store agree on through it (the locks, the shared secret)
/// is the supertrait [`Coordination`]; a store that one process uses implements it
/// empty.
///
/// A store over a SQL table or a key-value service writes the three required methods
/// around its client; for example, one over an async key-value client:
///
/// ```
/// use std::time::Duration;
/// use hcss_auth::store::{Coordination, StoreError, StoreFuture, StoreKey, TokenSet, TokenStore};
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
///
/// // One app instance uses it: the layer coordinates in memory.
/// impl Coordination for KvStore {}
/// ```
pub trait TokenStore: Coordination {
    /// The token set under `key`, or `None` (never stored, removed or expired).
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

    /// Stores (or replaces) the token set under `key` for `ttl`.
    fn store(&self, key: StoreKey, tokens: TokenSet, ttl: Duration) -> StoreFuture<'_, ()>;

    /// Removes the token set under `key`; removing a missing one is not an error.
    fn remove(&self, key: StoreKey) -> StoreFuture<'_, ()>;

    /// Removes the token set under `key` and returns it, atomically: a logout revokes
    /// exactly the refresh token it removed, even while a refresh writes. The default
    /// loads, then removes: a refresh written between the two is removed without being
    /// revoked.
    fn take(&self, key: StoreKey) -> StoreFuture<'_, Option<TokenSet>> {
        Box::pin(async move {
            let tokens = self.load(key).await?;
            self.remove(key).await?;
            Ok(tokens)
        })
    }

    /// Replaces the token set under `key` with `tokens`, only if a set is stored there
    /// now and its [`version`](TokenSet::version()) is `expected_version`; returns whether
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
                Some(current) if current.version() == expected_version => {
                    self.store(key, tokens, ttl).await?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    }

    /// The sessions of a user or a company, for ending them all (a customer disconnecting
    /// the app, an administrator's "log out everywhere"). A store that offers it keeps an
    /// index beside its token sets: it files every set it writes under a
    /// [`KeyKind::Session`](super::KeyKind::Session) key by [`SessionOwner::of`] (never a
    /// [`KeyKind::CompanyToken`](super::KeyKind::CompanyToken): a company token carries its
    /// `CompanyId` but is no session), under the owners'
    /// [`index_key`](SessionOwner::index_key)s; takes a session out of its owners' index
    /// when it is removed or taken; and may return keys of sessions that ended since (the
    /// layer skips those). The default says it is unsupported.
    fn sessions_of(&self, owner: SessionOwner) -> StoreFuture<'_, Vec<StoreKey>> {
        let _ = owner;
        Box::pin(async {
            Err(StoreError::Unsupported(
                "this store keeps no index of sessions by user or company".into(),
            ))
        })
    }
}
