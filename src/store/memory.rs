//! `MemoryStore`: the default in-process store, expiring and bounded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

use super::{
    owners_of, Coordination, KeyKind, LoginTransaction, SessionOwner, StateStore, StoreFuture,
    StoreKey, TokenSet, TokenStore,
};

/// The default store: login transactions and token sets in this process's memory.
///
/// Entries expire with their TTL, and each kind is bounded: past its capacity, expired
/// entries are dropped first, then the oldest. Company tokens are kept apart from
/// sessions (as many at most), and are never counted or indexed as sessions. So a flood of `/hcss/login` requests (which
/// anyone on the internet can send) costs a bounded amount of memory; at worst it pushes
/// out logins that were still in progress, never signed-in sessions.
///
/// It serves one process. Apps that run several instances need a shared store such as
/// `RedisStore` (feature `redis`).
///
/// ```
/// use hcss_auth::store::MemoryStore;
///
/// // 10 000 logins in flight and 50 000 sessions at most.
/// let store = MemoryStore::with_capacity(10_000, 50_000);
/// assert_eq!(store.session_count(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    transactions: Bounded<LoginTransaction>,
    tokens: Bounded<TokenSet>,
    /// Cached company tokens, apart from sessions.
    company_tokens: Bounded<TokenSet>,
    /// Sessions by owner (user or company), for ending them all. A session leaves it when
    /// it is removed or taken; keys of sessions that expired or were evicted are dropped
    /// when read, and all at once when they outnumber the sessions held.
    owners: Mutex<HashMap<StoreKey, HashSet<StoreKey>>>,
    /// The companies' budgets of API calls, shared by every layer on this store.
    budget: super::LocalBudget,
    /// Locks on claims (a logout token's `jti`, a sealed login's state): their owner and
    /// when they lapse, so that layers sharing this store refuse each other's replays.
    claims: Mutex<HashMap<StoreKey, (String, Instant)>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// Logins in flight kept at most by [`MemoryStore::new`].
    pub const DEFAULT_TRANSACTION_CAPACITY: usize = 100_000;
    /// Sessions kept at most by [`MemoryStore::new`].
    pub const DEFAULT_SESSION_CAPACITY: usize = 100_000;

    /// A store with the default capacities.
    pub fn new() -> Self {
        Self::with_capacity(
            Self::DEFAULT_TRANSACTION_CAPACITY,
            Self::DEFAULT_SESSION_CAPACITY,
        )
    }

    /// A store that keeps at most `transactions` logins in flight and `sessions` sessions.
    pub fn with_capacity(transactions: usize, sessions: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                transactions: Bounded::new(transactions.max(1)),
                tokens: Bounded::new(sessions.max(1)),
                company_tokens: Bounded::new(sessions.max(1)),
                owners: Mutex::default(),
                budget: super::LocalBudget::default(),
                claims: Mutex::default(),
            }),
        }
    }

    /// Logins in flight held now (expired ones may count until evicted).
    pub fn transaction_count(&self) -> usize {
        self.inner.transactions.map.len()
    }

    /// Sessions held now (expired ones may count until evicted).
    pub fn session_count(&self) -> usize {
        self.inner.tokens.map.len()
    }
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    expires: Instant,
    seq: u64,
}

/// A map with per-entry expiry and a capacity, evicting in insertion order.
#[derive(Debug)]
struct Bounded<V> {
    map: DashMap<StoreKey, Entry<V>>,
    /// Keys in insertion order, with the sequence number of the entry they were put with
    /// (a key put again gets a new number, so a stale queue slot removes nothing).
    order: Mutex<VecDeque<(StoreKey, u64)>>,
    seq: AtomicU64,
    capacity: usize,
}

impl<V: Clone> Bounded<V> {
    fn new(capacity: usize) -> Self {
        Self {
            map: DashMap::new(),
            order: Mutex::new(VecDeque::new()),
            seq: AtomicU64::new(0),
            capacity,
        }
    }

    fn put(&self, key: StoreKey, value: V, ttl: Duration) {
        let now = Instant::now();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        self.map.insert(
            key,
            Entry {
                value,
                expires: expiry(now, ttl),
                seq,
            },
        );
        let mut order = self.order.lock().unwrap_or_else(|e| e.into_inner());
        order.push_back((key, seq));
        if self.map.len() > self.capacity {
            // Expired entries go first; a sweep is O(n), so at most once per
            // capacity/8 insertions.
            if seq.is_multiple_of(self.capacity as u64 / 8 + 1) {
                self.map.retain(|_, e| e.expires > now);
            }
        }
        // Evict only while over capacity, oldest first.
        while self.map.len() > self.capacity {
            let Some((old, old_seq)) = order.pop_front() else {
                break;
            };
            self.map.remove_if(&old, |_, e| e.seq == old_seq);
        }
        // A key written again leaves a stale slot behind. Once stale slots outnumber live
        // ones, drop them all: O(n) once per n writes or more, so O(1) amortized, and the
        // queue stays within twice the capacity however often a session is written.
        if order.len() > 2 * self.map.len() + 16 {
            order.retain(|(key, seq)| self.map.get(key).is_some_and(|e| e.seq == *seq));
        }
    }

    /// Replaces the live entry under `key` if `current` approves of its value; keeps its
    /// place in the eviction order.
    fn replace_if(
        &self,
        key: StoreKey,
        current: impl FnOnce(&V) -> bool,
        value: V,
        ttl: Duration,
    ) -> bool {
        let now = Instant::now();
        match self.map.get_mut(&key) {
            Some(mut entry) if entry.expires > now && current(&entry.value) => {
                entry.value = value;
                entry.expires = expiry(now, ttl);
                true
            }
            _ => false,
        }
    }

    fn get(&self, key: StoreKey) -> Option<V> {
        let now = Instant::now();
        let live = self
            .map
            .get(&key)
            .map(|e| (e.expires > now).then(|| e.value.clone()));
        match live {
            Some(Some(value)) => Some(value),
            Some(None) => {
                self.map.remove_if(&key, |_, e| e.expires <= now);
                None
            }
            None => None,
        }
    }

    fn take(&self, key: StoreKey) -> Option<V> {
        let (value, live) = self.remove(key)?;
        live.then_some(value)
    }

    /// Removes the entry under `key`: its value, and whether it was live.
    fn remove(&self, key: StoreKey) -> Option<(V, bool)> {
        let (_, entry) = self.map.remove(&key)?;
        Some((entry.value, entry.expires > Instant::now()))
    }
}

/// `now + ttl`, or a century from now for a TTL too large to add.
fn expiry(now: Instant, ttl: Duration) -> Instant {
    now.checked_add(ttl)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

impl StateStore for MemoryStore {
    fn put_transaction(
        &self,
        key: StoreKey,
        transaction: LoginTransaction,
        ttl: Duration,
    ) -> StoreFuture<'_, ()> {
        self.inner.transactions.put(key, transaction, ttl);
        Box::pin(async { Ok(()) })
    }

    fn take_transaction(&self, key: StoreKey) -> StoreFuture<'_, Option<LoginTransaction>> {
        let taken = self.inner.transactions.take(key);
        Box::pin(async move { Ok(taken) })
    }
}

impl Inner {
    fn owners(&self) -> std::sync::MutexGuard<'_, HashMap<StoreKey, HashSet<StoreKey>>> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the token sets of `key`'s kind live: company tokens apart, sessions (the
    /// only other kind the layer gives a token store) with what else a test may store.
    fn tokens(&self, key: StoreKey) -> &Bounded<TokenSet> {
        match key.kind() {
            KeyKind::CompanyToken => &self.company_tokens,
            KeyKind::Session
            | KeyKind::Login
            | KeyKind::StateClaim
            | KeyKind::Owner
            | KeyKind::ApiBudget => &self.tokens,
        }
    }

    /// Files `key` under `owners`.
    fn index(&self, key: StoreKey, owners: Vec<SessionOwner>) {
        if owners.is_empty() {
            return;
        }
        let mut index = self.owners();
        for owner in owners {
            index.entry(owner.index_key()).or_default().insert(key);
        }
        let filed: usize = index.values().map(HashSet::len).sum();
        if filed > 2 * self.tokens.capacity + 16 {
            index.values_mut().for_each(|keys| {
                keys.retain(|key| self.tokens.map.contains_key(key));
            });
            index.retain(|_, keys| !keys.is_empty());
        }
    }

    /// Takes an ended session's `key` out of the index of the owners its tokens named.
    fn unindex(&self, key: StoreKey, ended: Option<&TokenSet>) {
        let owners = ended
            .map(|tokens| owners_of(key, tokens))
            .unwrap_or_default();
        if owners.is_empty() {
            return;
        }
        let mut index = self.owners();
        for owner in owners {
            let filed = owner.index_key();
            if let Some(keys) = index.get_mut(&filed) {
                keys.remove(&key);
                if keys.is_empty() {
                    index.remove(&filed);
                }
            }
        }
    }
}

/// One process: the layer's in-process single flights are all the locking it needs,
/// and there is no other instance to share a secret with. The companies' budgets of API
/// calls are kept here, so that every layer built on this store shares them, and so are
/// the locks on claims ([`KeyKind::StateClaim`]: a logout token's `jti`, a sealed
/// login's state), so that a replay to another layer on this store is refused too.
impl Coordination for MemoryStore {
    fn try_lock(&self, key: StoreKey, owner: String, ttl: Duration) -> StoreFuture<'_, bool> {
        let taken = key.kind() != KeyKind::StateClaim || {
            let now = Instant::now();
            let mut claims = self.inner.claims.lock().unwrap_or_else(|e| e.into_inner());
            if claims.len() >= 4096 {
                claims.retain(|_, (_, lapses)| *lapses > now);
            }
            match claims.get(&key) {
                Some((_, lapses)) if *lapses > now => false,
                _ => {
                    claims.insert(key, (owner, expiry(now, ttl)));
                    true
                }
            }
        };
        Box::pin(async move { Ok(taken) })
    }

    fn unlock(&self, key: StoreKey, owner: String) -> StoreFuture<'_, ()> {
        let mut claims = self.inner.claims.lock().unwrap_or_else(|e| e.into_inner());
        if claims.get(&key).is_some_and(|(holder, _)| *holder == owner) {
            claims.remove(&key);
        }
        Box::pin(async { Ok(()) })
    }

    fn acquire_call<'a>(
        &'a self,
        budget: StoreKey,
        call: &'a str,
        released: &'a [String],
        limits: super::CallLimits,
    ) -> StoreFuture<'a, super::CallAdmission> {
        let admission = self.inner.budget.acquire(budget, call, released, limits);
        Box::pin(async move { Ok(admission) })
    }

    fn release_calls(
        &self,
        budget: StoreKey,
        calls: Vec<String>,
        limits: super::CallLimits,
    ) -> StoreFuture<'_, ()> {
        let _ = limits;
        self.inner.budget.release(budget, &calls);
        Box::pin(async { Ok(()) })
    }
}

impl TokenStore for MemoryStore {
    fn cached(&self, key: StoreKey) -> Option<TokenSet> {
        self.inner.tokens(key).get(key)
    }

    fn load(&self, key: StoreKey) -> StoreFuture<'_, Option<TokenSet>> {
        let tokens = self.inner.tokens(key).get(key);
        Box::pin(async move { Ok(tokens) })
    }

    fn store(&self, key: StoreKey, tokens: TokenSet, ttl: Duration) -> StoreFuture<'_, ()> {
        self.inner.index(key, owners_of(key, &tokens));
        self.inner.tokens(key).put(key, tokens, ttl);
        Box::pin(async { Ok(()) })
    }

    fn remove(&self, key: StoreKey) -> StoreFuture<'_, ()> {
        let removed = self.inner.tokens(key).remove(key);
        self.inner
            .unindex(key, removed.as_ref().map(|(tokens, _)| tokens));
        Box::pin(async { Ok(()) })
    }

    fn take(&self, key: StoreKey) -> StoreFuture<'_, Option<TokenSet>> {
        let (taken, live) = self.inner.tokens(key).remove(key).unzip();
        self.inner.unindex(key, taken.as_ref());
        let taken = taken.filter(|_| live == Some(true));
        Box::pin(async move { Ok(taken) })
    }

    fn replace_if_version(
        &self,
        key: StoreKey,
        expected_version: u64,
        tokens: TokenSet,
        ttl: Duration,
    ) -> StoreFuture<'_, bool> {
        let owners = owners_of(key, &tokens);
        let replaced =
            self.inner
                .tokens(key)
                .replace_if(key, |t| t.version == expected_version, tokens, ttl);
        if replaced {
            self.inner.index(key, owners);
        }
        Box::pin(async move { Ok(replaced) })
    }

    fn sessions_of(&self, owner: SessionOwner) -> StoreFuture<'_, Vec<StoreKey>> {
        let mut index = self.inner.owners();
        let keys = match index.get_mut(&owner.index_key()) {
            Some(keys) => {
                keys.retain(|key| self.inner.tokens.map.contains_key(key));
                keys.iter().copied().collect()
            }
            None => Vec::new(),
        };
        Box::pin(async move { Ok(keys) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str) -> StoreKey {
        StoreKey::of_session_cookie(name)
    }

    fn tx(n: u64) -> LoginTransaction {
        LoginTransaction::new("v", "/", "b", n)
    }

    /// The budgets of companies no longer called go: a partner app calls for thousands
    /// of customer companies over its life, a few at a time.
    #[tokio::test(start_paused = true)]
    async fn budgets_of_companies_no_longer_called_do_not_pile_up() {
        use crate::store::{CallAdmission, CallLimits, Coordination, KeyKind};
        let store = MemoryStore::new();
        let window = Duration::from_secs(60);
        let limits = CallLimits::new(20, 100, window, Duration::from_secs(10));
        for _ in 0..5 * super::super::KEPT_COMPANIES {
            let budget = StoreKey::random_of(KeyKind::ApiBudget);
            let admission = store.acquire_call(budget, "call", &[], limits).await;
            assert!(matches!(admission, Ok(CallAdmission::Granted { .. })));
            store
                .release_calls(budget, vec!["call".into()], limits)
                .await
                .unwrap();
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        // Those of the last minute (600) are kept; the rest went.
        let kept = store.inner.budget.companies();
        assert!(
            (600..=2 * super::super::KEPT_COMPANIES).contains(&kept),
            "{kept} companies kept"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_with_their_ttl() {
        let store = MemoryStore::new();
        store
            .put_transaction(k("k"), tx(1), Duration::from_secs(10))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(store.take_transaction(k("k")).await.unwrap(), None);

        let set = TokenSet::new("a", 60);
        store
            .store(k("s"), set.clone(), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(store.load(k("s")).await.unwrap(), Some(set));
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(store.load(k("s")).await.unwrap(), None);
        assert_eq!(store.session_count(), 0, "an expired entry read is dropped");
    }

    #[tokio::test(start_paused = true)]
    async fn capacity_holds_and_expired_entries_go_first() {
        let store = MemoryStore::with_capacity(100, 10);
        for i in 0..10_000u64 {
            store
                .put_transaction(k(&format!("k{i}")), tx(i), Duration::from_secs(600))
                .await
                .unwrap();
            assert!(store.transaction_count() <= 100);
        }
        assert!(store.inner.transactions.order.lock().unwrap().len() <= 2 * 100 + 16);
        // The newest survive, the oldest were pushed out.
        assert!(store.take_transaction(k("k9999")).await.unwrap().is_some());
        assert!(store.take_transaction(k("k0")).await.unwrap().is_none());

        // A session that expired is evicted before a live one.
        store
            .store(k("live"), TokenSet::new("a", 1), Duration::from_secs(600))
            .await
            .unwrap();
        store
            .store(k("old"), TokenSet::new("a", 1), Duration::from_secs(1))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        for i in 0..9 {
            store
                .store(
                    k(&format!("s{i}")),
                    TokenSet::new("a", 1),
                    Duration::from_secs(600),
                )
                .await
                .unwrap();
        }
        assert!(store.session_count() <= 10);
        assert!(store.load(k("live")).await.unwrap().is_some());
    }

    /// Before, every write pushed onto the eviction queue and, past twice the capacity,
    /// each write evicted the oldest entry whether or not the store was full.
    #[tokio::test(start_paused = true)]
    async fn sessions_written_often_are_not_evicted_below_capacity() {
        let store = MemoryStore::new();
        let day = Duration::from_secs(30 * 24 * 3600);
        // A session signed in once and not refreshed since, then busy ones.
        store
            .store(k("quiet"), TokenSet::new("q", 3600), day)
            .await
            .unwrap();
        for round in 0..201 {
            for i in 0..1_000 {
                store
                    .store(
                        k(&format!("s{i}")),
                        TokenSet::new(format!("a{round}"), 3600),
                        day,
                    )
                    .await
                    .unwrap();
            }
        }
        assert_eq!(store.session_count(), 1_001);
        assert!(
            store.load(k("quiet")).await.unwrap().is_some(),
            "a live session was evicted with 1% of the capacity used"
        );
        for i in 0..1_000 {
            assert!(
                store.load(k(&format!("s{i}"))).await.unwrap().is_some(),
                "s{i} evicted"
            );
        }
        let queue = store.inner.tokens.order.lock().unwrap().len();
        assert!(queue <= 2 * 1_000 + 16, "the queue stays bounded: {queue}");
    }

    #[tokio::test]
    async fn replace_if_version_writes_only_over_that_version() {
        let store = MemoryStore::new();
        let minute = Duration::from_secs(60);
        let mut set = TokenSet::new("a", 60);
        set.version = 3;
        assert!(!store
            .replace_if_version(k("k"), 3, set.clone(), minute)
            .await
            .unwrap());
        store.store(k("k"), set.clone(), minute).await.unwrap();
        let mut next = TokenSet::new("b", 60);
        next.version = 4;
        assert!(!store
            .replace_if_version(k("k"), 2, next.clone(), minute)
            .await
            .unwrap());
        assert!(store
            .replace_if_version(k("k"), 3, next.clone(), minute)
            .await
            .unwrap());
        assert_eq!(store.load(k("k")).await.unwrap(), Some(next));
    }

    #[tokio::test]
    async fn huge_ttls_do_not_panic() {
        let store = MemoryStore::new();
        store
            .put_transaction(k("k"), tx(1), Duration::MAX)
            .await
            .unwrap();
        store
            .store(k("s"), TokenSet::new("a", 1), Duration::MAX)
            .await
            .unwrap();
        assert!(store.load(k("s")).await.unwrap().is_some());
    }

    fn owned(sub: &str, company: &str) -> TokenSet {
        let mut set = serde_json::to_value(TokenSet::new("a", 60)).unwrap();
        set["claims"] = serde_json::json!({ "sub": sub, "CompanyId": company });
        serde_json::from_value(set).unwrap()
    }

    fn indexed(store: &MemoryStore, key: StoreKey) -> usize {
        store
            .inner
            .owners()
            .values()
            .filter(|keys| keys.contains(&key))
            .count()
    }

    /// An ended session leaves its owners' index at once (not when the index is next
    /// read or swept).
    #[tokio::test]
    async fn ended_sessions_leave_the_owner_index() {
        let store = MemoryStore::new();
        let minute = Duration::from_secs(60);
        let (taken, removed, live) = (k("taken"), k("removed"), k("live"));
        for key in [taken, removed, live] {
            store
                .store(key, owned("ann", "co-1"), minute)
                .await
                .unwrap();
            assert_eq!(indexed(&store, key), 2);
        }
        assert!(store.take(taken).await.unwrap().is_some());
        store.remove(removed).await.unwrap();
        assert_eq!(indexed(&store, taken), 0, "a taken session indexed");
        assert_eq!(indexed(&store, removed), 0, "a removed session indexed");
        assert_eq!(indexed(&store, live), 2);
    }

    #[tokio::test]
    async fn take_is_single_use() {
        let store = MemoryStore::new();
        store
            .put_transaction(k("k"), tx(1), Duration::from_secs(60))
            .await
            .unwrap();
        assert!(store.take_transaction(k("k")).await.unwrap().is_some());
        assert!(store.take_transaction(k("k")).await.unwrap().is_none());
    }
}
