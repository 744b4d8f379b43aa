//! `FaultyStore`: a store wrapper whose faults a test switches on and off.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::store::{
    Coordination, LoginTransaction, SessionOwner, StateStore, StoreError, StoreFuture, StoreKey,
    TokenSet, TokenStore,
};

/// Any store, with faults a test switches on and off: a store that refuses writes (as
/// Redis at `maxmemory` does, or a database in read-only mode), writes whose replies are
/// lost after they were applied, and values that no longer parse. Every method passes
/// through to the inner store otherwise, and its [`Coordination`] (locks, shared
/// secrets) always does. Clones share the switches.
///
/// ```
/// use hcss_auth::store::{MemoryStore, StoreKey};
/// use hcss_auth::testing::FaultyStore;
/// use hcss_auth::{TokenSet, TokenStore};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let store = FaultyStore::new(MemoryStore::new());
/// let key = StoreKey::random();
/// store.refuse_writes(true);
/// let ttl = std::time::Duration::from_secs(60);
/// assert!(store.store(key, TokenSet::new("a", 60), ttl).await.is_err());
/// store.refuse_writes(false);
/// assert!(store.store(key, TokenSet::new("a", 60), ttl).await.is_ok());
/// store.make_unreadable(key);
/// assert!(store.load(key).await.is_err());
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct FaultyStore<S> {
    inner: S,
    refuse_writes: Arc<AtomicBool>,
    refuse_reads: Arc<AtomicBool>,
    lose_replies: Arc<AtomicUsize>,
    unreadable: Arc<Mutex<HashSet<StoreKey>>>,
    stall_admissions: Arc<AtomicBool>,
    stalled: Arc<tokio::sync::Notify>,
    refuse_releases: Arc<AtomicBool>,
}

impl<S> FaultyStore<S> {
    /// `inner`, with no fault on.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            refuse_writes: Arc::default(),
            refuse_reads: Arc::default(),
            lose_replies: Arc::default(),
            unreadable: Arc::default(),
            stall_admissions: Arc::default(),
            stalled: Arc::default(),
            refuse_releases: Arc::default(),
        }
    }

    /// The store it wraps, to look at what it holds without the faults.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// While on, the writes of token sets and logins (`store`, `replace_if_version`,
    /// `take`, `put_transaction`) fail with [`StoreError::Unavailable`]; loads, locks and
    /// shared secrets work, as in a store whose locks live elsewhere.
    pub fn refuse_writes(&self, on: bool) {
        self.refuse_writes.store(on, Ordering::SeqCst);
    }

    /// While on, loads of token sets fail with [`StoreError::Unavailable`], and locks can
    /// be neither taken nor renewed, as from a store this instance cannot reach; with
    /// [`refuse_writes`](Self::refuse_writes), the instance is cut off from the store
    /// while others still use it (and its locks lapse).
    pub fn refuse_reads(&self, on: bool) {
        self.refuse_reads.store(on, Ordering::SeqCst);
    }

    /// The next `count` writes of token sets (`store`, `replace_if_version`, `take`,
    /// `remove`) are carried out by the inner store, but their answer is lost: each fails
    /// with [`StoreError::Unavailable`] after it was applied, as when Redis's reply times
    /// out or the connection drops after the command ran. They come before
    /// [`refuse_writes`](Self::refuse_writes): with both on, the next `count` writes are
    /// applied (their answers lost) and the ones after them refused.
    pub fn lose_next_replies(&self, count: usize) {
        self.lose_replies.store(count, Ordering::SeqCst);
    }

    /// While on, a call's admission to its company's budget
    /// ([`Coordination::acquire_call`]) is carried out by the inner store, but its answer
    /// never comes back, as when Redis ran the script and the reply is still on its way:
    /// the caller waits until it is cancelled.
    pub fn stall_call_admissions(&self, on: bool) {
        self.stall_admissions.store(on, Ordering::SeqCst);
    }

    /// While on, giving back calls' slots in a company's budget
    /// ([`Coordination::release_calls`]) fails with [`StoreError::Unavailable`] and gives
    /// nothing back, as when the command never reached the store (a connection that
    /// dropped, a reply timeout before it was sent).
    pub fn refuse_call_releases(&self, on: bool) {
        self.refuse_releases.store(on, Ordering::SeqCst);
    }

    /// Waits until an admission stalled by
    /// [`stall_call_admissions`](Self::stall_call_admissions) was carried out (one that
    /// was before this call counts).
    pub async fn admission_stalled(&self) {
        self.stalled.notified().await;
    }

    /// `write`, applied, then its answer lost while replies are to be lost.
    fn answered<'a, T: Send + 'a>(&self, write: StoreFuture<'a, T>) -> StoreFuture<'a, T> {
        let lost = self
            .lose_replies
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !lost {
            return write;
        }
        Box::pin(async move {
            let _applied = write.await;
            Err(StoreError::Unavailable("test: reply lost".into()))
        })
    }

    /// Makes the value under `key` unreadable ([`StoreError::Corrupt`]) until it is
    /// removed.
    pub fn make_unreadable(&self, key: StoreKey) {
        self.unreadable().insert(key);
    }

    fn unreadable(&self) -> std::sync::MutexGuard<'_, HashSet<StoreKey>> {
        self.unreadable.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refused<'a, T: 'a>(&self) -> Option<StoreFuture<'a, T>> {
        let losing = self.lose_replies.load(Ordering::SeqCst) > 0;
        (self.refuse_writes.load(Ordering::SeqCst) && !losing).then(|| {
            Box::pin(async { Err(StoreError::Unavailable("test: writes refused".into())) })
                as StoreFuture<'a, T>
        })
    }
}

impl<S: StateStore> StateStore for FaultyStore<S> {
    fn put_transaction(
        &self,
        key: StoreKey,
        transaction: LoginTransaction,
        ttl: Duration,
    ) -> StoreFuture<'_, ()> {
        self.refused()
            .unwrap_or_else(|| self.inner.put_transaction(key, transaction, ttl))
    }

    fn take_transaction(&self, key: StoreKey) -> StoreFuture<'_, Option<LoginTransaction>> {
        self.inner.take_transaction(key)
    }
}

impl<S: TokenStore> TokenStore for FaultyStore<S> {
    fn cached(&self, key: StoreKey) -> Option<TokenSet> {
        if self.refuse_reads.load(Ordering::SeqCst) || self.unreadable().contains(&key) {
            return None;
        }
        self.inner.cached(key)
    }

    fn load(&self, key: StoreKey) -> StoreFuture<'_, Option<TokenSet>> {
        if self.refuse_reads.load(Ordering::SeqCst) {
            return Box::pin(async { Err(StoreError::Unavailable("test: reads refused".into())) });
        }
        if self.unreadable().contains(&key) {
            return Box::pin(async { Err(StoreError::Corrupt("test: unreadable".into())) });
        }
        self.inner.load(key)
    }

    fn store(&self, key: StoreKey, tokens: TokenSet, ttl: Duration) -> StoreFuture<'_, ()> {
        self.refused()
            .unwrap_or_else(|| self.answered(self.inner.store(key, tokens, ttl)))
    }

    fn remove(&self, key: StoreKey) -> StoreFuture<'_, ()> {
        self.unreadable().remove(&key);
        self.answered(self.inner.remove(key))
    }

    fn take(&self, key: StoreKey) -> StoreFuture<'_, Option<TokenSet>> {
        if let Some(refused) = self.refused() {
            return refused;
        }
        if self.unreadable().remove(&key) {
            // Taken and unreadable, as `GETDEL` of a value that does not parse.
            let removed = self.inner.remove(key);
            return Box::pin(async move {
                removed.await?;
                Err(StoreError::Corrupt("test: unreadable".into()))
            });
        }
        self.answered(self.inner.take(key))
    }

    fn replace_if_version(
        &self,
        key: StoreKey,
        expected_version: u64,
        tokens: TokenSet,
        ttl: Duration,
    ) -> StoreFuture<'_, bool> {
        self.refused().unwrap_or_else(|| {
            self.answered(
                self.inner
                    .replace_if_version(key, expected_version, tokens, ttl),
            )
        })
    }

    fn sessions_of(&self, owner: SessionOwner) -> StoreFuture<'_, Vec<StoreKey>> {
        self.inner.sessions_of(owner)
    }
}

/// Locks and shared secrets pass through, unless reads are refused (the instance is cut
/// off from the store); a call's admission to its company's budget stalls after it is
/// taken while [`stall_call_admissions`](FaultyStore::stall_call_admissions) is on.
impl<S: Coordination> Coordination for FaultyStore<S> {
    fn try_lock(&self, key: StoreKey, owner: String, ttl: Duration) -> StoreFuture<'_, bool> {
        if self.refuse_reads.load(Ordering::SeqCst) {
            return Box::pin(async { Err(StoreError::Unavailable("test: cut off".into())) });
        }
        self.inner.try_lock(key, owner, ttl)
    }

    fn renew_lock(&self, key: StoreKey, owner: String, ttl: Duration) -> StoreFuture<'_, bool> {
        if self.refuse_reads.load(Ordering::SeqCst) {
            return Box::pin(async { Err(StoreError::Unavailable("test: cut off".into())) });
        }
        self.inner.renew_lock(key, owner, ttl)
    }

    fn unlock(&self, key: StoreKey, owner: String) -> StoreFuture<'_, ()> {
        self.inner.unlock(key, owner)
    }

    fn shared_secret(
        &self,
        name: &'static str,
        proposal: Vec<u8>,
    ) -> StoreFuture<'_, Option<Vec<u8>>> {
        self.inner.shared_secret(name, proposal)
    }

    fn shared_store_checks(&self) -> StoreFuture<'_, Option<Vec<crate::CheckItem>>> {
        self.inner.shared_store_checks()
    }

    fn acquire_call<'a>(
        &'a self,
        budget: StoreKey,
        call: &'a str,
        released: &'a [String],
        limits: crate::store::CallLimits,
    ) -> StoreFuture<'a, crate::store::CallAdmission> {
        let admission = self.inner.acquire_call(budget, call, released, limits);
        if !self.stall_admissions.load(Ordering::SeqCst) {
            return admission;
        }
        Box::pin(async move {
            // Taken (or not) in the store, then the answer never comes back.
            let _taken = admission.await;
            self.stalled.notify_one();
            std::future::pending().await
        })
    }

    fn release_calls(
        &self,
        budget: StoreKey,
        calls: Vec<String>,
        limits: crate::store::CallLimits,
    ) -> StoreFuture<'_, ()> {
        if self.refuse_releases.load(Ordering::SeqCst) {
            return Box::pin(async {
                Err(StoreError::Unavailable("test: releases refused".into()))
            });
        }
        self.inner.release_calls(budget, calls, limits)
    }
}
