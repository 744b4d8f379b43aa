//! A company's budget of calls to HCSS's APIs, as a store keeps it: what a call asks
//! for ([`CallLimits`]), what it is told ([`CallAdmission`]), and the in-process budget
//! that `MemoryStore` keeps and that the layer falls back on for a store that shares none.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

use super::StoreKey;

/// The limits a call is admitted under: at most `in_flight` calls of the company at once,
/// at most `per_window` started within any `window`, each slot a lease of `lease` (a slot
/// whose holder never gives it back, a cancelled call or a dead instance, comes back
/// when its lease ends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallLimits {
    /// Calls of the company in flight at once, at most.
    pub in_flight: u32,
    /// Calls of the company started within any `window`, at most.
    pub per_window: u32,
    /// The rolling window `per_window` is counted over.
    pub window: Duration,
    /// How long a slot in flight is held at most if it is never released.
    pub lease: Duration,
}

impl CallLimits {
    /// Limits of `in_flight` calls at once and `per_window` calls per `window`, slots
    /// leased for `lease`. Zeros are raised to the least that admits a call (1, and a
    /// millisecond).
    pub fn new(in_flight: u32, per_window: u32, window: Duration, lease: Duration) -> Self {
        Self {
            in_flight: in_flight.max(1),
            per_window: per_window.max(1),
            window: window.max(Duration::from_millis(1)),
            lease: lease.max(Duration::from_millis(1)),
        }
    }
}

/// What [`Coordination::acquire_call`](super::Coordination::acquire_call) answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallAdmission {
    /// The call holds a slot: it may go. `in_window` is how many calls of the company the
    /// window holds now, this one included.
    Granted {
        /// Calls of the company in the window now, this one included.
        in_window: u32,
    },
    /// The window is full: the oldest call in it leaves it in `retry_in`.
    WindowFull {
        /// When a place in the window frees up.
        retry_in: Duration,
    },
    /// As many calls are in flight as allowed: one frees its slot when it ends, at the
    /// latest when its lease does, in `retry_in`.
    InFlightFull {
        /// When the earliest lease ends, if no call ends before.
        retry_in: Duration,
    },
}

/// One company's calls: leases in flight by call id (their end; as many as the calls
/// allowed at once), and the calls of the window.
#[derive(Debug, Default)]
struct Calls {
    flying: CallMap,
    window: Window,
}

/// Calls by id. The ids are the layer's own (its random id and a counter), never a
/// caller's input, so a plain hash (FNV-1a) serves: no flood of chosen ids can reach it.
type CallMap = HashMap<Arc<str>, Instant, BuildHasherDefault<Fnv>>;

#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

/// The calls of a window by call id (when each started, or ended once it did), also in
/// time order, so that the calls that left the window are dropped from its front: a call
/// costs the same whether the window holds ten calls or ten thousand.
///
/// Times only grow (a time earlier than the newest is taken as the newest), so a call
/// goes in at the back; a call moved to a later time goes in again at the back, and its
/// earlier place, stale, is dropped when it reaches the front (and skipped by
/// [`oldest`](Self::oldest) until then).
#[derive(Debug, Default)]
struct Window {
    at: CallMap,
    order: VecDeque<(Instant, Arc<str>)>,
}

impl Window {
    /// `at`, or the newest time the window holds if that is later: times only grow.
    fn not_before_newest(&self, at: Instant) -> Instant {
        self.order.back().map_or(at, |(newest, _)| at.max(*newest))
    }

    fn insert(&mut self, call: Arc<str>, at: Instant) {
        let at = self.not_before_newest(at);
        self.at.insert(call.clone(), at);
        self.order.push_back((at, call));
    }

    /// Moves `call` to `at`, if the window holds it (one lookup).
    fn move_to(&mut self, call: Arc<str>, at: Instant) {
        let at = self.not_before_newest(at);
        if let Some(held) = self.at.get_mut(&call) {
            *held = at;
            self.order.push_back((at, call));
        }
    }

    /// [`move_to`](Self::move_to) for an id the caller holds only as text.
    fn touch(&mut self, call: &str, at: Instant) {
        if let Some((call, _)) = self.at.get_key_value(call) {
            self.move_to(call.clone(), at);
        }
    }

    /// Drops the calls at `cutoff` or before.
    fn drop_until(&mut self, cutoff: Instant) {
        while self.order.front().is_some_and(|(at, _)| *at <= cutoff) {
            if let Some((at, call)) = self.order.pop_front() {
                if let Entry::Occupied(entry) = self.at.entry(call) {
                    if *entry.get() == at {
                        entry.remove();
                    }
                }
            }
        }
    }

    /// When the oldest call in the window went in (a place its call left is not it).
    fn oldest(&self) -> Option<Instant> {
        self.order
            .iter()
            .find(|(at, call)| self.at.get(call) == Some(at))
            .map(|(at, _)| *at)
    }

    fn len(&self) -> usize {
        self.at.len()
    }

    fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

impl Calls {
    fn release(&mut self, call: &str, now: Instant) {
        // The window counts the call from its end: HCSS saw it at some moment before.
        match self.flying.remove_entry(call) {
            Some((call, _)) => self.window.move_to(call, now),
            None => self.window.touch(call, now),
        }
    }

    /// Drops the calls that left the window: older than it, strictly.
    fn drop_old(&mut self, window: Duration, now: Instant) {
        if let Some(cutoff) = now.checked_sub(window) {
            self.window.drop_until(cutoff);
        }
    }
}

/// The budgets of the companies one process calls for, on Tokio's clock (so a test with
/// a paused clock moves them too). What `MemoryStore` keeps, and what the layer keeps for
/// a store that shares no budget.
#[derive(Debug, Default)]
pub(crate) struct LocalBudget {
    companies: DashMap<StoreKey, Mutex<Calls>>,
}

impl LocalBudget {
    /// Gives back the slots of `released`, then takes one for `call` if `limits` allow.
    pub(crate) fn acquire(
        &self,
        key: StoreKey,
        call: &str,
        released: &[String],
        limits: CallLimits,
    ) -> CallAdmission {
        let now = Instant::now();
        let entry = self.companies.entry(key).or_default();
        let mut calls = entry.lock().unwrap_or_else(|e| e.into_inner());
        for call in released {
            calls.release(call, now);
        }
        calls.flying.retain(|_, end| *end > now);
        calls.drop_old(limits.window, now);
        if calls.window.len() >= limits.per_window as usize {
            let oldest = calls.window.oldest().unwrap_or(now);
            return CallAdmission::WindowFull {
                retry_in: (oldest + limits.window).saturating_duration_since(now)
                    + Duration::from_millis(1),
            };
        }
        if calls.flying.len() >= limits.in_flight as usize {
            let first = calls.flying.values().min().copied().unwrap_or(now);
            return CallAdmission::InFlightFull {
                retry_in: first.saturating_duration_since(now),
            };
        }
        let call: Arc<str> = call.into();
        calls.flying.insert(call.clone(), now + limits.lease);
        calls.window.insert(call, now);
        CallAdmission::Granted {
            in_window: u32::try_from(calls.window.len()).unwrap_or(u32::MAX),
        }
    }

    pub(crate) fn release(&self, key: StoreKey, released: &[String]) {
        let now = Instant::now();
        let Some(entry) = self.companies.get(&key) else {
            return;
        };
        let mut calls = entry.lock().unwrap_or_else(|e| e.into_inner());
        for call in released {
            calls.release(call, now);
        }
    }

    /// How many companies it holds budgets for.
    pub(crate) fn companies(&self) -> usize {
        self.companies.len()
    }

    /// Companies with no call in flight and none in a window of `window` are dropped,
    /// so that the map holds the companies being called, not every one ever called.
    pub(crate) fn sweep(&self, window: Duration) {
        let now = Instant::now();
        self.companies.retain(|_, calls| {
            let calls = calls.get_mut().unwrap_or_else(|e| e.into_inner());
            calls.flying.retain(|_, end| *end > now);
            calls.drop_old(window, now);
            !(calls.flying.is_empty() && calls.window.is_empty())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KeyKind;

    #[test]
    fn a_call_moved_to_its_end_leaves_the_window_from_there() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut window = Window::default();
        window.insert("a".into(), t0);
        window.insert("b".into(), t0 + s(1));
        window.touch("a", t0 + s(2));
        window.touch("gone", t0 + s(2));
        assert_eq!(window.len(), 2);
        // "a"'s first place is stale: "b" is the oldest now.
        assert_eq!(window.oldest(), Some(t0 + s(1)));
        window.drop_until(t0 + s(1));
        assert_eq!((window.len(), window.oldest()), (1, Some(t0 + s(2))));
        // A time earlier than the newest counts as the newest.
        window.insert("c".into(), t0);
        window.drop_until(t0 + s(1));
        assert_eq!(window.len(), 2);
        window.drop_until(t0 + s(2));
        assert!(window.is_empty());
        assert_eq!(window.oldest(), None);
    }

    fn limits() -> CallLimits {
        CallLimits::new(2, 3, Duration::from_secs(60), Duration::from_secs(10))
    }

    #[tokio::test(start_paused = true)]
    async fn in_flight_and_window_are_both_bounded_and_leases_expire() {
        let budget = LocalBudget::default();
        let key = StoreKey::random_of(KeyKind::ApiBudget);
        let granted = |a| matches!(a, CallAdmission::Granted { .. });
        assert!(granted(budget.acquire(key, "a", &[], limits())));
        assert!(granted(budget.acquire(key, "b", &[], limits())));
        assert_eq!(
            budget.acquire(key, "c", &[], limits()),
            CallAdmission::InFlightFull {
                retry_in: Duration::from_secs(10)
            }
        );
        budget.release(key, &["a".into()]);
        assert_eq!(
            budget.acquire(key, "c", &[], limits()),
            CallAdmission::Granted { in_window: 3 }
        );
        budget.release(key, &["c".into()]);
        // Three in the window: full until the first of them is a minute old.
        assert!(matches!(
            budget.acquire(key, "d", &[], limits()),
            CallAdmission::WindowFull { .. }
        ));
        // "b" is never released: its lease ends after 10 s, yet it stays in the window.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert!(matches!(
            budget.acquire(key, "d", &[], limits()),
            CallAdmission::WindowFull { .. }
        ));
        tokio::time::advance(Duration::from_secs(50)).await;
        assert!(granted(budget.acquire(key, "d", &[], limits())));
        budget.release(key, &["d".into()]);
        tokio::time::advance(Duration::from_secs(61)).await;
        budget.sweep(Duration::from_secs(60));
        assert!(budget.companies.is_empty(), "an idle company is kept");
    }
}
