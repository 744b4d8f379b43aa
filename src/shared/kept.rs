//! Refreshed token sets kept in this process until the store takes them, and the turn
//! that keeps a set from being written while its refresh token is being spent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use crate::store::StoreKey;
use crate::token::TokenSet;

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
        } else {
            crate::metrics::kept_token_sets(1);
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
        crate::metrics::kept_token_sets(-1);
        Some(set)
    }
}
