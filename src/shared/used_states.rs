//! The states of sealed logins whose callback was answered, claimed once in process.

use dashmap::DashMap;

use crate::store::StoreKey;

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
