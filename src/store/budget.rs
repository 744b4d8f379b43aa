//! A company's budget of calls to HCSS's APIs, as a store keeps it: what a call asks
//! for ([`CallLimits`]), what it is told ([`CallAdmission`]), and the in-process budget
//! that `MemoryStore` keeps and that the layer falls back on for a store that shares none.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
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

/// One company's calls: those in flight by id (when their lease ends, and where they
/// are in the window), those whose lease ended in flight while they are still in the
/// window (rare: a cancelled call, a dead instance), and the window.
#[derive(Debug, Default)]
struct Calls {
    flying: CallMap<Flying>,
    /// The earliest lease of `flying` ends then, or later (none ends before).
    next_lease_end: Option<Instant>,
    lapsed: CallMap<u64>,
    window: Window,
}

/// A call in flight: its lease's end, and its place in the window.
#[derive(Debug, Clone, Copy)]
struct Flying {
    lease_end: Instant,
    place: u64,
}

/// Calls by id. The ids are the layer's own (its random id and a counter), never a
/// caller's input, so a plain hash serves: no flood of chosen ids can reach it.
type CallMap<V> = HashMap<Box<str>, V, BuildHasherDefault<IdHasher>>;

/// A multiply-and-rotate hash eight bytes at a time: the ids share their first bytes
/// (the layer's id) and differ in their last (a counter).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word)).wrapping_mul(K);
        }
    }
}

/// The calls of a window, in time order: when each started, or ended once it did. A
/// call is known by its place (a count of the calls that went in before it), so the
/// window keeps no ids and looks nothing up: a call costs the same whether the window
/// holds ten calls or ten thousand.
///
/// Times only grow (a time earlier than the newest is taken as the newest), so a call
/// goes in at the back; a call moved to its end goes in again at the back, and its
/// earlier place stops counting (and is dropped once it reaches the front).
#[derive(Debug, Default)]
struct Window {
    /// Times in order, each with whether a call still counts from it.
    order: VecDeque<(Instant, bool)>,
    /// The place of `order`'s front.
    first: u64,
    /// The places that count.
    counting: usize,
}

impl Window {
    /// Puts a call in at `at` (or the newest time held, if later): its place.
    fn push(&mut self, at: Instant) -> u64 {
        let at = self.order.back().map_or(at, |(newest, _)| at.max(*newest));
        self.order.push_back((at, true));
        self.counting += 1;
        self.first + self.order.len() as u64 - 1
    }

    /// Moves the call at `place` to `at`, if the window still holds it.
    fn move_to(&mut self, place: u64, at: Instant) {
        if self.forget(place) {
            self.push(at);
        }
    }

    /// Stops counting the call at `place`: whether the window held it.
    fn forget(&mut self, place: u64) -> bool {
        let Some(index) = place.checked_sub(self.first) else {
            return false;
        };
        let Some((_, counts)) = usize::try_from(index)
            .ok()
            .and_then(|index| self.order.get_mut(index))
        else {
            return false;
        };
        if !std::mem::take(counts) {
            return false;
        }
        self.counting -= 1;
        self.trim();
        true
    }

    /// Whether the call at `place` is still in the window.
    fn holds(&self, place: u64) -> bool {
        place
            .checked_sub(self.first)
            .and_then(|index| usize::try_from(index).ok())
            .and_then(|index| self.order.get(index))
            .is_some_and(|(_, counts)| *counts)
    }

    /// Drops the places that no longer count from the front: the front counts.
    fn trim(&mut self) {
        while self.order.front().is_some_and(|(_, counts)| !counts) {
            self.order.pop_front();
            self.first += 1;
        }
    }

    /// Drops the calls at `cutoff` or before.
    fn drop_until(&mut self, cutoff: Instant) {
        while let Some((at, counts)) = self.order.front().copied() {
            if counts && at > cutoff {
                break;
            }
            self.order.pop_front();
            self.first += 1;
            if counts {
                self.counting -= 1;
            }
        }
    }

    /// When the oldest call in the window went in.
    fn oldest(&self) -> Option<Instant> {
        self.order.front().map(|(at, _)| *at)
    }

    fn len(&self) -> usize {
        self.counting
    }

    fn is_empty(&self) -> bool {
        self.counting == 0
    }
}

impl Calls {
    fn release(&mut self, call: &str, now: Instant) {
        // The window counts the call from its end: HCSS saw it at some moment before.
        let place = match self.flying.remove(call) {
            Some(flying) => flying.place,
            None if self.lapsed.is_empty() => return,
            None => match self.lapsed.remove(call) {
                Some(place) => place,
                None => return,
            },
        };
        self.window.move_to(place, now);
    }

    /// Ends the leases that ran out: their calls leave the slots in flight, and stay
    /// in the window until they leave it or are given back.
    fn end_leases(&mut self, now: Instant) {
        if self.next_lease_end.is_none_or(|end| end > now) {
            return;
        }
        let (lapsed, window) = (&mut self.lapsed, &self.window);
        self.flying.retain(|call, flying| {
            if flying.lease_end > now {
                return true;
            }
            if window.holds(flying.place) {
                lapsed.insert(call.clone(), flying.place);
            }
            false
        });
        self.next_lease_end = self.flying.values().map(|flying| flying.lease_end).min();
    }

    /// Takes a slot for `call` until `lease_end`, and a place in the window from `now`.
    fn take(&mut self, call: &str, now: Instant, lease_end: Instant) {
        // An id held already (a store's caller may pick its own) is one call, counted
        // from now, as in Redis's sorted sets: its earlier place stops counting.
        let held = match self.flying.get(call) {
            Some(flying) => Some(flying.place),
            None if self.lapsed.is_empty() => None,
            None => self.lapsed.remove(call),
        };
        if let Some(place) = held {
            self.window.forget(place);
        }
        let place = self.window.push(now);
        self.flying.insert(call.into(), Flying { lease_end, place });
        self.next_lease_end = Some(
            self.next_lease_end
                .map_or(lease_end, |end| end.min(lease_end)),
        );
    }

    /// Drops the calls that left the window: older than it, strictly.
    fn drop_old(&mut self, window: Duration, now: Instant) {
        if let Some(cutoff) = now.checked_sub(window) {
            self.window.drop_until(cutoff);
        }
        if !self.lapsed.is_empty() {
            let window = &self.window;
            self.lapsed.retain(|_, place| window.holds(*place));
        }
    }

    fn is_idle(&self) -> bool {
        self.flying.is_empty() && self.window.is_empty() && self.lapsed.is_empty()
    }
}

/// The budgets of the companies one process calls for, on Tokio's clock (so a test with
/// a paused clock moves them too). What `MemoryStore` keeps, and what the layer keeps for
/// a store that shares no budget.
#[derive(Debug, Default)]
pub(crate) struct LocalBudget {
    companies: DashMap<StoreKey, Calls>,
    /// [`tidy`](Self::tidy) sweeps once more companies than this are held.
    sweep_above: AtomicUsize,
}

/// The fewest companies a budget map holds before it drops the idle ones.
pub(crate) const KEPT_COMPANIES: usize = 1024;

impl LocalBudget {
    /// Gives back the slots of `released`, then takes one for `call` if `limits` allow.
    /// A company new to the map may [`tidy`](Self::tidy) it first.
    pub(crate) fn acquire(
        &self,
        key: StoreKey,
        call: &str,
        released: &[String],
        limits: CallLimits,
    ) -> CallAdmission {
        let mut calls = match self.companies.get_mut(&key) {
            Some(calls) => calls,
            None => {
                self.tidy(limits.window.max(limits.lease));
                self.companies.entry(key).or_default()
            }
        };
        let now = Instant::now();
        for call in released {
            calls.release(call, now);
        }
        calls.end_leases(now);
        calls.drop_old(limits.window, now);
        if calls.window.len() >= limits.per_window as usize {
            let oldest = calls.window.oldest().unwrap_or(now);
            return CallAdmission::WindowFull {
                retry_in: (oldest + limits.window).saturating_duration_since(now)
                    + Duration::from_millis(1),
            };
        }
        if calls.flying.len() >= limits.in_flight as usize {
            let first = calls
                .flying
                .values()
                .map(|flying| flying.lease_end)
                .min()
                .unwrap_or(now);
            return CallAdmission::InFlightFull {
                retry_in: first.saturating_duration_since(now),
            };
        }
        calls.take(call, now, now + limits.lease);
        CallAdmission::Granted {
            in_window: u32::try_from(calls.window.len()).unwrap_or(u32::MAX),
        }
    }

    pub(crate) fn release(&self, key: StoreKey, released: &[String]) {
        let now = Instant::now();
        let Some(mut calls) = self.companies.get_mut(&key) else {
            return;
        };
        for call in released {
            calls.release(call, now);
        }
    }

    /// How many companies it holds budgets for.
    #[cfg(test)]
    pub(crate) fn companies(&self) -> usize {
        self.companies.len()
    }

    /// [`sweep`](Self::sweep)s once the map holds more than [`KEPT_COMPANIES`] and twice
    /// what the last sweep left: the map holds the companies being called, not every one
    /// ever called, and however many are being called, a call pays for a sweep only
    /// now and then (and a call for a company it holds, not even for counting them).
    fn tidy(&self, window: Duration) {
        let above = self.sweep_above.load(Ordering::Relaxed).max(KEPT_COMPANIES);
        if self.companies.len() > above {
            self.sweep(window);
            self.sweep_above
                .store(self.companies.len() * 2, Ordering::Relaxed);
        }
    }

    /// Companies with no call in flight and none in a window of `window` are dropped,
    /// so that the map holds the companies being called, not every one ever called.
    pub(crate) fn sweep(&self, window: Duration) {
        let now = Instant::now();
        self.companies.retain(|_, calls| {
            calls.end_leases(now);
            calls.drop_old(window, now);
            !calls.is_idle()
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
        let a = window.push(t0);
        let b = window.push(t0 + s(1));
        window.move_to(a, t0 + s(2));
        // A place moved already, or never given, moves nothing.
        window.move_to(a, t0 + s(3));
        window.move_to(99, t0 + s(3));
        assert_eq!(window.len(), 2);
        // "a"'s first place no longer counts: "b" is the oldest now.
        assert_eq!(window.oldest(), Some(t0 + s(1)));
        assert!(!window.holds(a) && window.holds(b));
        window.drop_until(t0 + s(1));
        assert_eq!((window.len(), window.oldest()), (1, Some(t0 + s(2))));
        // A call dropped from the window is not put back by its end.
        window.move_to(b, t0 + s(3));
        assert_eq!(window.len(), 1);
        // A time earlier than the newest counts as the newest.
        window.push(t0);
        window.drop_until(t0 + s(1));
        assert_eq!(window.len(), 2);
        window.drop_until(t0 + s(2));
        assert!(window.is_empty());
        assert_eq!(window.oldest(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_given_back_after_its_lease_counts_from_its_end() {
        let budget = LocalBudget::default();
        let key = StoreKey::random_of(KeyKind::ApiBudget);
        let limits = CallLimits::new(1, 1, Duration::from_secs(60), Duration::from_secs(10));
        assert!(matches!(
            budget.acquire(key, "a", &[], limits),
            CallAdmission::Granted { in_window: 1 }
        ));
        tokio::time::advance(Duration::from_secs(30)).await;
        // The lease ended (the slot is free), the window still holds "a".
        assert!(matches!(
            budget.acquire(key, "b", &[], limits),
            CallAdmission::WindowFull { .. }
        ));
        budget.release(key, &["a".into()]);
        tokio::time::advance(Duration::from_secs(40)).await;
        // A minute after "a" started, but not after it was given back.
        assert!(matches!(
            budget.acquire(key, "b", &[], limits),
            CallAdmission::WindowFull { retry_in } if retry_in > Duration::from_secs(19)
        ));
        tokio::time::advance(Duration::from_secs(21)).await;
        assert!(matches!(
            budget.acquire(key, "b", &[], limits),
            CallAdmission::Granted { in_window: 1 }
        ));
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

    /// What the budget answers, as the old id-keyed window (and the Redis script) did:
    /// a reference kept as plain as can be, a call's id its key everywhere. The one
    /// difference accepted: an id given back a second time is not moved again.
    #[derive(Default)]
    struct Model {
        flying: HashMap<String, Instant>,
        window: HashMap<String, Instant>,
        given_back: std::collections::HashSet<String>,
    }

    impl Model {
        fn release(&mut self, released: &[String], now: Instant) {
            for call in released {
                let flew = self.flying.remove(call).is_some();
                if flew || !self.given_back.contains(call) {
                    if let Some(at) = self.window.get_mut(call) {
                        *at = now;
                    }
                }
                self.given_back.insert(call.clone());
            }
        }

        fn expire(&mut self, window: Duration, now: Instant) {
            self.flying.retain(|_, end| *end > now);
            if let Some(cutoff) = now.checked_sub(window) {
                self.window.retain(|_, at| *at > cutoff);
            }
        }

        fn acquire(
            &mut self,
            call: &str,
            released: &[String],
            limits: CallLimits,
            now: Instant,
        ) -> CallAdmission {
            self.release(released, now);
            self.expire(limits.window, now);
            if self.window.len() >= limits.per_window as usize {
                let oldest = self.window.values().min().copied().unwrap_or(now);
                return CallAdmission::WindowFull {
                    retry_in: (oldest + limits.window).saturating_duration_since(now)
                        + Duration::from_millis(1),
                };
            }
            if self.flying.len() >= limits.in_flight as usize {
                let first = self.flying.values().min().copied().unwrap_or(now);
                return CallAdmission::InFlightFull {
                    retry_in: first.saturating_duration_since(now),
                };
            }
            self.flying.insert(call.to_owned(), now + limits.lease);
            self.window.insert(call.to_owned(), now);
            CallAdmission::Granted {
                in_window: self.window.len() as u32,
            }
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A call, giving back the calls picked (by index among the ids given), under
        /// a window lowered by some (others' pressure), its id a new one or (`Some`) one
        /// given before and not given back (a store's caller may pick its own ids).
        Acquire(Vec<usize>, u32, Option<usize>),
        Release(Vec<usize>),
        Advance(u64),
        Sweep,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let picks = || proptest::collection::vec(0usize..64, 0..3);
        prop_oneof![
            4 => (picks(), 0u32..3, proptest::option::weighted(0.2, 0usize..64))
                .prop_map(|(picks, less, again)| Op::Acquire(picks, less, again)),
            2 => picks().prop_map(Op::Release),
            3 => (0u64..120).prop_map(Op::Advance),
            1 => Just(Op::Sweep),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn the_budget_answers_as_the_id_keyed_window_does(
            in_flight in 1u32..4,
            per_window in 1u32..6,
            window in 1u64..100,
            lease in 1u64..150,
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            let limits = CallLimits::new(
                in_flight,
                per_window,
                Duration::from_millis(window),
                Duration::from_millis(lease),
            );
            runtime.block_on(async {
                let budget = LocalBudget::default();
                let key = StoreKey::random_of(KeyKind::ApiBudget);
                let mut model = Model::default();
                // Ids handed out so far, and one never handed out.
                let mut ids = vec!["never".to_owned()];
                let pick = |ids: &Vec<String>, picks: &[usize]| -> Vec<String> {
                    picks.iter().map(|i| ids[i % ids.len()].clone()).collect()
                };
                for (step, op) in ops.iter().enumerate() {
                    let now = Instant::now();
                    match op {
                        Op::Acquire(picks, less, again) => {
                            let released = pick(&ids, picks);
                            // An id given back is not known by the budget any more:
                            // taken again, it is a new call (not the model's case).
                            let call = again
                                .map(|i| ids[i % ids.len()].clone())
                                .filter(|id| {
                                    !model.given_back.contains(id) && !released.contains(id)
                                })
                                .unwrap_or_else(|| format!("c{step}"));
                            let limits = CallLimits::new(
                                in_flight,
                                per_window.saturating_sub(*less),
                                limits.window,
                                limits.lease,
                            );
                            let got = budget.acquire(key, &call, &released, limits);
                            let want = model.acquire(&call, &released, limits, now);
                            assert_eq!(got, want, "step {step}: {op:?} {ops:?}");
                            ids.push(call);
                        }
                        Op::Release(picks) => {
                            let released = pick(&ids, picks);
                            budget.release(key, &released);
                            if budget.companies() == 1 {
                                model.release(&released, now);
                            } else {
                                // Nothing held: the model holds nothing either.
                                model.given_back.extend(released);
                            }
                        }
                        Op::Advance(ms) => {
                            tokio::time::advance(Duration::from_millis(*ms)).await;
                        }
                        Op::Sweep => {
                            // As `MemoryStore` sweeps.
                            let window = limits.window.max(limits.lease);
                            budget.sweep(window);
                            model.expire(window, now);
                            let idle = model.flying.is_empty() && model.window.is_empty();
                            assert_eq!(
                                budget.companies(),
                                usize::from(!idle),
                                "step {step}: {ops:?}"
                            );
                        }
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod adversary {
    use super::*;
    use crate::store::KeyKind;

    /// An id taken again while the budget still holds it (a caller of the store's
    /// `acquire_call` choosing its own ids) is one call, as in Redis's sorted sets.
    #[tokio::test(start_paused = true)]
    async fn an_id_taken_again_counts_once() {
        let budget = LocalBudget::default();
        let key = StoreKey::random_of(KeyKind::ApiBudget);
        let limits = CallLimits::new(2, 2, Duration::from_secs(60), Duration::from_secs(10));
        for _ in 0..2 {
            assert_eq!(
                budget.acquire(key, "a", &[], limits),
                CallAdmission::Granted { in_window: 1 }
            );
        }
        // Its lease ended, still in the window: taken again, still one call.
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(
            budget.acquire(key, "b", &[], limits),
            CallAdmission::Granted { in_window: 2 }
        );
        budget.release(key, &["b".into()]);
        assert!(matches!(
            budget.acquire(key, "a", &[], limits),
            CallAdmission::WindowFull { .. }
        ));
    }
}
