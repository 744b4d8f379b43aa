//! What every clone of the layer, its service and each request's session share.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::HcssConfig;
use crate::error::{CompanyTokenError, SessionError};
use crate::hooks::Hooks;
use crate::seal::SealKeys;
use crate::store::{StateStore, StoreKey, TokenStore};
use crate::token::TokenSet;

/// The configuration, the stores, and this process's refresh state.
pub(crate) struct Shared {
    pub(crate) config: HcssConfig,
    /// Where logins in progress are kept.
    pub(crate) logins: Logins,
    pub(crate) token_store: Arc<dyn TokenStore>,
    /// States of sealed logins whose callback has been answered, so a replay is refused
    /// before any token call.
    pub(crate) used_states: UsedStates,
    /// Places for code exchanges in flight (`max_code_exchanges`): a callback past them
    /// answers 503 before any token call.
    pub(crate) code_exchanges: tokio::sync::Semaphore,
    /// What tells a misplaced layer.
    pub(crate) placement: Placement,
    /// The app's hooks, given before the layer was built.
    pub(crate) hooks: Hooks,
    /// The company-token fetch in flight per company, within this process, watched by
    /// every call that waits for it.
    pub(crate) company_turns: DashMap<StoreKey, CompanyFlight>,
    /// The refresh in flight (or the failure remembered) per session key.
    pub(crate) flights: DashMap<StoreKey, Flight>,
    /// Token sets refreshed but not yet written, because the store refused the write:
    /// this process serves and refreshes them, never the spent set the store still has.
    pub(crate) pending: Pending,
    /// Who refreshes for this layer: the owner of its refresh locks and of the marks it
    /// leaves on the sets it spends. One per layer, so that a mark this instance left
    /// (a refresh that failed before it could clear it) does not make it wait for itself.
    pub(crate) refresher: String,
}

impl Shared {
    pub(crate) fn new(
        config: HcssConfig,
        logins: Logins,
        token_store: Arc<dyn TokenStore>,
        hooks: Hooks,
    ) -> Self {
        Self {
            code_exchanges: tokio::sync::Semaphore::new(config.identity.max_code_exchanges),
            config,
            logins,
            token_store,
            used_states: UsedStates::default(),
            placement: Placement::default(),
            hooks,
            company_turns: DashMap::new(),
            flights: DashMap::new(),
            pending: Pending::default(),
            refresher: crate::secret::random_token(16),
        }
    }
}

/// A company-token fetch: its outcome once settled.
pub(crate) type CompanyFlight = watch::Receiver<Option<Result<TokenSet, CompanyTokenError>>>;

/// Signs of a misplaced layer: browsers sent to the login path that never reaches it.
#[derive(Default)]
pub(crate) struct Placement {
    pub(crate) sent_to_login: AtomicUsize,
    pub(crate) flow_seen: std::sync::atomic::AtomicBool,
    pub(crate) warned: std::sync::atomic::AtomicBool,
}

impl Placement {
    /// Browsers sent to log in, with no flow request seen, before the layer says so.
    pub(crate) const SUSPECT_AFTER: usize = 50;
}

/// Where logins in progress are kept between `/hcss/login` and the callback.
pub(crate) enum Logins {
    /// In the browser: a cookie per login, sealed with a key resolved at first use (from
    /// the configuration, a store that shares one, or a random one of this process).
    Sealed(Box<SealKeys>),
    /// In a store, with a binding cookie per login.
    Stored(Arc<dyn StateStore>),
}

/// Claimed states of sealed logins, each until its login would have expired anyway.
/// Bounded: past [`UsedStates::CAPACITY`] live entries it starts afresh, and a replay is
/// then stopped by HCSS's single-use codes alone.
#[derive(Default)]
pub(crate) struct UsedStates {
    map: DashMap<StoreKey, u64>,
}

impl UsedStates {
    const CAPACITY: usize = 100_000;

    /// Gives back a claim whose callback could not go on (the store's claim failed).
    pub(crate) fn release(&self, key: StoreKey) {
        self.map.remove(&key);
    }

    /// Claims `key` until `until` (Unix seconds); `false` if it is claimed already.
    pub(crate) fn claim(&self, key: StoreKey, now: u64, until: u64) -> bool {
        if self.map.len() >= Self::CAPACITY {
            self.map.retain(|_, expires| *expires > now);
            if self.map.len() >= Self::CAPACITY {
                self.map.clear();
            }
        }
        match self.map.entry(key) {
            dashmap::Entry::Occupied(entry) if *entry.get() > now => false,
            dashmap::Entry::Occupied(mut entry) => {
                entry.insert(until);
                true
            }
            dashmap::Entry::Vacant(entry) => {
                entry.insert(until);
                true
            }
        }
    }
}

/// What a refresh ends with: the session's token set, or why there is none.
pub(crate) type Outcome = Result<TokenSet, SessionError>;

/// A settled refresh: its outcome, and until when a failure stands for new requests.
#[derive(Clone)]
pub(crate) struct FlightResult {
    pub(crate) outcome: Outcome,
    pub(crate) until: Instant,
}

/// One refresh task of a session, watched by every request that waits for it.
pub(crate) struct Flight {
    pub(crate) id: u64,
    pub(crate) settled: watch::Receiver<Option<FlightResult>>,
}

/// Refreshed token sets waiting to be written, with a count that keeps the lookup off
/// the hot path while there are none (the usual case).
#[derive(Default)]
pub(crate) struct Pending {
    sets: DashMap<StoreKey, PendingSet>,
    count: AtomicUsize,
    /// Per key, the turn to write a kept set or to spend its refresh token: a kept set
    /// is never written while its token is being spent (the store would then hold a
    /// spent, unmarked set that another instance could spend again).
    turns: DashMap<StoreKey, Arc<tokio::sync::Mutex<()>>>,
}

/// A refreshed set the store has not taken, the version the store still holds (the one
/// to write over), and the owner of the refresh lock that its refresh left held
/// (released once the set is written).
#[derive(Clone)]
pub(crate) struct PendingSet {
    pub(crate) tokens: TokenSet,
    pub(crate) base_version: u64,
    pub(crate) lock_owner: String,
    /// The set whose refresh token this refresh spent: should the store come to hold it
    /// (another kept set written meanwhile), this one is written over it.
    pub(crate) refreshed_from: TokenSet,
}

impl Pending {
    /// Whether `key` has a set waiting; costs one atomic load while none waits.
    pub(crate) fn has(&self, key: StoreKey) -> bool {
        self.count.load(Ordering::Acquire) > 0 && self.sets.contains_key(&key)
    }

    pub(crate) fn get(&self, key: StoreKey) -> Option<PendingSet> {
        if self.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.sets.get(&key).map(|set| set.clone())
    }

    /// Keeps `set` under `key`; `true` if none was kept there before.
    pub(crate) fn keep(&self, key: StoreKey, set: PendingSet) -> bool {
        // Counted before it is visible, so that `has` never misses it.
        self.count.fetch_add(1, Ordering::AcqRel);
        let replaced = self.sets.insert(key, set).is_some();
        if replaced {
            self.count.fetch_sub(1, Ordering::AcqRel);
        }
        !replaced
    }

    /// The turn to write the set kept under `key`, or to spend its refresh token.
    pub(crate) fn turn(&self, key: StoreKey) -> Arc<tokio::sync::Mutex<()>> {
        self.turns.entry(key).or_default().clone()
    }

    /// Forgets the turn of `key` once no set is kept for it and nobody holds the turn.
    pub(crate) fn end_turn(&self, key: StoreKey) {
        self.turns.remove_if(&key, |_, turn| {
            Arc::strong_count(turn) == 1 && !self.sets.contains_key(&key)
        });
    }

    /// Drops the set waiting under `key`, returning it.
    pub(crate) fn take(&self, key: StoreKey) -> Option<PendingSet> {
        self.take_if(key, |_| true)
    }

    /// Drops the set waiting under `key` if `drop` says so (a newer set kept meanwhile
    /// stays), returning it.
    pub(crate) fn take_if(
        &self,
        key: StoreKey,
        drop: impl FnOnce(&PendingSet) -> bool,
    ) -> Option<PendingSet> {
        if self.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let (_, set) = self.sets.remove_if(&key, |_, set| drop(set))?;
        self.count.fetch_sub(1, Ordering::AcqRel);
        Some(set)
    }
}
