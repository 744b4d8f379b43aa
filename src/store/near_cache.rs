//! The near cache of a [`RedisStore`](super::RedisStore): token sets read from Redis,
//! kept in process and invalidated by Redis itself.
//!
//! One RESP3 connection per store asks Redis to track every key under the store's token
//! prefix (`CLIENT TRACKING ON BCAST PREFIX ...`). Redis then pushes an invalidation for
//! each write, expiry or deletion of such a key, whichever instance made it; the push is
//! applied in the connection's reader, before any reply that follows it. An entry is
//! served only while that connection is up:
//!
//! - a read fills the cache only if no invalidation of its key and no loss of the
//!   connection came between the moment it was sent and the moment it returned (a
//!   `Reading` slot with a ticket, replaced only if still there);
//! - a lost connection (a disconnection, or a heartbeat `PING` unanswered) empties the
//!   cache at once, and nothing is cached again until tracking is back;
//! - an entry is served until the key's TTL in Redis runs out (read with it) and for
//!   `max_age` at most, both from the moment its read was sent, a bound on the
//!   harm of an invalidation lost some other way, and dropped by the heartbeat once past
//!   it (so are the slots of reads that never finished);
//! - the tracking task runs on the runtime of the store's first use; if it ends with that
//!   runtime (no disconnection is then reported, no heartbeat counts), the cache is off
//!   until the next use starts another;
//! - the store's own writes and deletes drop the local copy before and after they reach
//!   Redis, so an instance never serves its own stale copy.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use redis::{PushInfo, PushKind, Value};
use tokio::sync::watch;

use super::StoreKey;
use crate::token::TokenSet;

/// How often the tracking connection is checked, and the clock of the sweep.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);

/// The longest `max_age` a near cache keeps: a day (as the configuration's durations are
/// bounded). A longer one, up to `Duration::MAX`, is taken as this.
pub(crate) const MAX_AGE_BOUND: Duration = Duration::from_secs(24 * 3600);

pub(crate) struct NearCache {
    entries: DashMap<StoreKey, Slot>,
    /// `generation * 2 + live`: live while the tracking connection is up; the
    /// generation moves on each time it is lost, so entries of an earlier one are void.
    state: AtomicU64,
    /// Heartbeats so far: the sweep's clock (a hit reads the real one, for TTL and max
    /// age).
    ticks: AtomicU64,
    tickets: AtomicU64,
    /// The tracking connection in use (its number), so that a late disconnection of an
    /// earlier one does not turn the cache off.
    connection: AtomicU64,
    /// Tracking connections so far, whichever task made them.
    connections: AtomicU64,
    /// Whether a tracking task is running (or spawned), so that one is started again if
    /// it ended with its runtime.
    running: AtomicBool,
    max_age_ticks: u64,
    max_age: Duration,
    capacity: usize,
    /// The tracking connection's number and Redis `CLIENT ID` while it is up.
    tracking: watch::Sender<Option<(u64, i64)>>,
}

enum Slot {
    Reading {
        ticket: u64,
        tick: u64,
    },
    Held {
        tokens: TokenSet,
        /// When it may no longer be served: the key's TTL or the max age, whichever is
        /// first, from when its read was sent.
        until: Instant,
        state: u64,
    },
}

/// A read in flight that may fill the cache when it returns.
pub(crate) struct Ticket {
    ticket: u64,
    /// When the read was sent, which the key's TTL and the max age count from.
    sent: Instant,
    state: u64,
}

impl std::fmt::Debug for NearCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NearCache")
            .field("entries", &self.entries.len())
            .field("live", &self.is_live())
            .finish_non_exhaustive()
    }
}

impl NearCache {
    /// A near cache serving copies for `max_age` at most (bounded by [`MAX_AGE_BOUND`]).
    pub(crate) fn new(max_age: Duration, capacity: usize) -> Self {
        let max_age = max_age.min(MAX_AGE_BOUND);
        let max_age_ticks = (max_age.as_millis() / HEARTBEAT.as_millis()).max(1);
        Self {
            entries: DashMap::new(),
            state: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            tickets: AtomicU64::new(0),
            connection: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            running: AtomicBool::new(false),
            max_age_ticks: u64::try_from(max_age_ticks).unwrap_or(u64::MAX),
            max_age,
            capacity: capacity.max(1),
            tracking: watch::Sender::new(None),
        }
    }

    /// How long a copy is served at most after its read.
    pub(crate) fn max_age(&self) -> Duration {
        self.max_age
    }

    fn is_live(&self) -> bool {
        self.state.load(Ordering::Acquire) & 1 == 1
    }

    /// The copy held for `key`, if it may be served.
    pub(crate) fn get(&self, key: StoreKey) -> Option<TokenSet> {
        let state = self.state.load(Ordering::Acquire);
        if state & 1 == 0 {
            return None;
        }
        let entry = self.entries.get(&key)?;
        match &*entry {
            Slot::Held {
                tokens,
                state: held,
                until,
                ..
            } if *held == state && Instant::now() < *until => Some(tokens.clone()),
            _ => None,
        }
    }

    /// Marks a read of `key` about to be sent to Redis; `None` while tracking is down.
    pub(crate) fn begin(&self, key: StoreKey) -> Option<Ticket> {
        let state = self.state.load(Ordering::Acquire);
        if state & 1 == 0 {
            return None;
        }
        if self.entries.len() >= self.capacity {
            self.make_room();
        }
        let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
        let tick = self.ticks.load(Ordering::Relaxed);
        self.entries.insert(key, Slot::Reading { ticket, tick });
        Some(Ticket {
            ticket,
            state,
            sent: Instant::now(),
        })
    }

    /// Keeps what the read of `ticket` returned, with the key's TTL as Redis gave it with
    /// the value (`None`: none), unless the key was invalidated or the connection lost
    /// meanwhile.
    pub(crate) fn finish(
        &self,
        key: StoreKey,
        ticket: Ticket,
        tokens: Option<&TokenSet>,
        ttl: Option<Duration>,
    ) {
        let trusted = ttl.map_or(self.max_age, |ttl| ttl.min(self.max_age));
        // Bounded by MAX_AGE_BOUND, so the sum fits; a copy that cannot say until when
        // it is good is not kept.
        let Some(until) = ticket.sent.checked_add(trusted) else {
            self.entries.remove(&key);
            return;
        };
        if let dashmap::Entry::Occupied(mut slot) = self.entries.entry(key) {
            let ours = matches!(slot.get(), Slot::Reading { ticket: t, .. } if *t == ticket.ticket);
            if !ours {
                return;
            }
            // Checked under the entry's lock: an invalidation or a loss of the
            // connection either came before (nothing is kept) or comes after (and
            // removes what is kept here).
            match tokens {
                Some(tokens) if self.state.load(Ordering::Acquire) == ticket.state => {
                    slot.insert(Slot::Held {
                        tokens: tokens.clone(),
                        until,
                        state: ticket.state,
                    });
                }
                _ => {
                    slot.remove();
                }
            }
        }
    }

    /// Drops the local copy of `key` (a write or delete through this store).
    pub(crate) fn forget(&self, key: StoreKey) {
        self.entries.remove(&key);
    }

    fn make_room(&self) {
        self.sweep(self.ticks.load(Ordering::Relaxed));
        if self.entries.len() >= self.capacity {
            self.entries.clear();
        }
    }

    /// Drops what can no longer be served: copies past their max age or of an earlier
    /// connection, and slots of reads begun as long ago (a request cancelled mid-load
    /// leaves its slot; a read still in flight then keeps nothing, as after an
    /// invalidation).
    fn sweep(&self, now: u64) {
        let state = self.state.load(Ordering::Acquire);
        let instant = Instant::now();
        self.entries.retain(|_, slot| match slot {
            Slot::Held {
                state: held, until, ..
            } => *held == state && instant < *until,
            Slot::Reading { tick, .. } => now.saturating_sub(*tick) < self.max_age_ticks,
        });
    }

    /// Applies one push message of tracking connection `connection`.
    fn on_push(&self, connection: u64, prefix: &[u8], push: PushInfo) {
        match push.kind {
            PushKind::Invalidate => {
                crate::metrics::near_cache("invalidation");
                let mut keys = Vec::new();
                let mut all = push.data.is_empty();
                for value in &push.data {
                    match value {
                        Value::Array(list) | Value::Set(list) => keys.extend(list.iter()),
                        Value::Nil => all = true,
                        other => keys.push(other),
                    }
                }
                if all {
                    self.entries.clear();
                }
                for key in keys {
                    match stored_key(key, prefix) {
                        Some(key) => {
                            self.entries.remove(&key);
                        }
                        // A key this cache cannot name (it never should): drop everything.
                        None => self.entries.clear(),
                    }
                }
            }
            PushKind::Disconnection => self.lost(connection),
            _ => {}
        }
    }

    /// The tracking connection `connection` is gone: nothing is served from here on.
    pub(crate) fn lost(&self, connection: u64) {
        let current = self.connection.load(Ordering::Acquire) == connection;
        // A new generation voids every entry, whichever connection this was; only the
        // loss of the connection in use turns the cache off.
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                let live = if current { 0 } else { s & 1 };
                Some((((s >> 1) + 1) << 1) | live)
            });
        self.entries.clear();
        if current {
            self.tracking.send_replace(None);
            crate::metrics::near_cache_tracking(false);
        }
    }

    /// The state before a tracking connection is set up.
    fn before_connecting(&self, connection: u64) -> u64 {
        self.connection.store(connection, Ordering::Release);
        self.state.load(Ordering::Acquire) & !1
    }

    /// Tracking is on for `connection`: serve again, unless it was lost meanwhile.
    fn live(&self, before: u64, connection: u64, client_id: i64) -> bool {
        let went_live = self
            .state
            .compare_exchange(before, before | 1, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if went_live {
            self.tracking.send_replace(Some((connection, client_id)));
            crate::metrics::near_cache_tracking(true);
        }
        went_live
    }

    /// Whether no tracking task runs.
    pub(crate) fn stopped(&self) -> bool {
        !self.running.load(Ordering::Acquire)
    }

    /// Whether a tracking task must be started now: `true` once, until that task ends.
    pub(crate) fn start(&self) -> bool {
        !self.running.swap(true, Ordering::AcqRel)
    }

    /// One heartbeat: copies age, and once per max age what they outlived is dropped.
    fn tick(&self) {
        let now = self.ticks.fetch_add(1, Ordering::Relaxed) + 1;
        if now.is_multiple_of(self.max_age_ticks) {
            self.sweep(now);
        }
    }

    /// Waits until tracking is on over a connection numbered above `after`; its number
    /// and Redis `CLIENT ID` (tests; the configuration doctor).
    pub(crate) async fn tracking(&self, after: u64) -> (u64, i64) {
        let mut rx = self.tracking.subscribe();
        let up = rx
            .wait_for(|up| up.is_some_and(|(n, _)| n > after))
            .await
            .map(|up| *up);
        // The sender lives as long as `self`, which this borrow keeps.
        up.ok().flatten().unwrap_or_default()
    }

    /// Whether a copy of `key` may be served now.
    #[cfg(feature = "test-util")]
    pub(crate) fn holds(&self, key: StoreKey) -> bool {
        self.get(key).is_some()
    }
}

/// The store key in a Redis key `{prefix}{hex}`.
fn stored_key(value: &Value, prefix: &[u8]) -> Option<StoreKey> {
    let bytes = match value {
        Value::BulkString(bytes) => bytes.as_slice(),
        Value::SimpleString(text) => text.as_bytes(),
        _ => return None,
    };
    let hex = bytes.strip_prefix(prefix)?;
    StoreKey::from_stored(std::str::from_utf8(hex).ok()?)
}

/// Keeps `cache` true for as long as it lives: connects, turns tracking on, checks the
/// connection every heartbeat, and starts again after a loss. Spawned once
/// [`NearCache::start`] said so; dropped unfinished (its runtime shut down), it turns the
/// cache off and lets the next use start another.
///
/// `prefix` is the whole prefix of the tracked keys (the store's, then `tok:`).
pub(crate) fn track(
    cache: Weak<NearCache>,
    client: redis::Client,
    prefix: Arc<str>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    // Made here, not in the task, so that a task dropped before it first ran says so too.
    let mut ended = Ended(cache.clone());
    async move {
        if !keep_tracking(cache, client, prefix).await {
            // Given up for good: not to be started again at every request.
            ended.0 = Weak::new();
        }
        drop(ended);
    }
}

/// Dropped with the tracking task, however it ends.
struct Ended(Weak<NearCache>);

impl Drop for Ended {
    fn drop(&mut self) {
        if let Some(near) = self.0.upgrade() {
            // Nothing invalidates or ages the cache any more: off, entries void.
            near.lost(near.connection.load(Ordering::Acquire));
            near.running.store(false, Ordering::Release);
        }
    }
}

/// Returns when the cache is gone (`true`), or at once if tracking can never be set up
/// with this client (`false`).
async fn keep_tracking(cache: Weak<NearCache>, client: redis::Client, prefix: Arc<str>) -> bool {
    let info = client.get_connection_info().clone();
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(redis::ProtocolVersion::RESP3);
    let client = match redis::Client::open(info.set_redis_settings(settings)) {
        Ok(client) => client,
        Err(err) => {
            tracing::warn!(error = ?err.kind(), "the Redis near cache is off");
            return false;
        }
    };
    let mut backoff = Duration::from_millis(100);
    let mut warned = false;
    loop {
        let Some(near) = cache.upgrade() else {
            return true;
        };
        let connection = near.connections.fetch_add(1, Ordering::Relaxed) + 1;
        let before = near.before_connecting(connection);
        let weak = Arc::downgrade(&near);
        let token_prefix: Arc<[u8]> = Arc::from(prefix.as_bytes());
        drop(near);
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(super::redis::TIMEOUT))
            .set_response_timeout(Some(super::redis::TIMEOUT))
            .set_push_sender(move |push: PushInfo| {
                let Some(near) = weak.upgrade() else {
                    return Err(());
                };
                near.on_push(connection, &token_prefix, push);
                Ok(())
            });
        let setup = async {
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await?;
            redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg("hcss-near-cache")
                .query_async::<()>(&mut conn)
                .await?;
            let id: i64 = redis::cmd("CLIENT")
                .arg("ID")
                .query_async(&mut conn)
                .await?;
            redis::cmd("CLIENT")
                .arg("TRACKING")
                .arg("ON")
                .arg("BCAST")
                .arg("PREFIX")
                .arg(prefix.as_bytes())
                .query_async::<()>(&mut conn)
                .await?;
            Ok::<_, redis::RedisError>((conn, id))
        };
        match setup.await {
            Ok((mut conn, id)) => {
                let Some(near) = cache.upgrade() else {
                    return true;
                };
                if near.live(before, connection, id) {
                    if warned {
                        tracing::info!("the Redis near cache is on again");
                    }
                    warned = false;
                    backoff = Duration::from_millis(100);
                }
                drop(near);
                loop {
                    tokio::time::sleep(HEARTBEAT).await;
                    let Some(near) = cache.upgrade() else {
                        return true;
                    };
                    let answered = tokio::time::timeout(
                        HEARTBEAT,
                        redis::cmd("PING").query_async::<()>(&mut conn),
                    )
                    .await;
                    if !matches!(answered, Ok(Ok(()))) || !near.is_live() {
                        near.lost(connection);
                        break;
                    }
                    near.tick();
                }
            }
            Err(err) => {
                if !warned {
                    tracing::warn!(
                        error = ?err.kind(),
                        "the Redis near cache is off until Redis answers with client \
                         tracking (Redis 6 or later); every read goes to Redis meanwhile"
                    );
                    warned = true;
                }
                if let Some(near) = cache.upgrade() {
                    near.lost(connection);
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFIX: &[u8] = b"app:tok:";

    fn live_cache() -> NearCache {
        let cache = NearCache::new(Duration::from_secs(3), 4);
        let before = cache.before_connecting(1);
        assert!(cache.live(before, 1, 7));
        cache
    }

    fn invalidate(cache: &NearCache, key: StoreKey) {
        let name = format!("app:tok:{key}");
        cache.on_push(
            1,
            PREFIX,
            PushInfo {
                kind: PushKind::Invalidate,
                data: vec![Value::Array(vec![Value::BulkString(name.into_bytes())])],
            },
        );
    }

    fn read(cache: &NearCache, key: StoreKey, tokens: &TokenSet) {
        let ticket = cache.begin(key).expect("live");
        cache.finish(key, ticket, Some(tokens), None);
    }

    /// A read sent `ago`, of a key with `ttl` left then.
    fn read_sent(cache: &NearCache, key: StoreKey, ago: Duration, ttl: Option<Duration>) {
        let mut ticket = cache.begin(key).expect("live");
        ticket.sent -= ago;
        cache.finish(key, ticket, Some(&TokenSet::new("a", 60)), ttl);
    }

    #[test]
    fn a_read_is_served_until_its_key_is_invalidated() {
        let cache = live_cache();
        let (key, tokens) = (StoreKey::random(), TokenSet::new("a", 60));
        read(&cache, key, &tokens);
        assert_eq!(cache.get(key), Some(tokens));
        invalidate(&cache, key);
        assert_eq!(cache.get(key), None);
    }

    #[test]
    fn an_invalidation_during_a_read_keeps_nothing() {
        let cache = live_cache();
        let (key, old) = (StoreKey::random(), TokenSet::new("old", 60));
        let ticket = cache.begin(key).unwrap();
        invalidate(&cache, key);
        cache.finish(key, ticket, Some(&old), None);
        assert_eq!(cache.get(key), None);
    }

    #[test]
    fn a_flush_invalidates_everything() {
        let cache = live_cache();
        let key = StoreKey::random();
        read(&cache, key, &TokenSet::new("a", 60));
        cache.on_push(
            1,
            PREFIX,
            PushInfo {
                kind: PushKind::Invalidate,
                data: vec![Value::Nil],
            },
        );
        assert_eq!(cache.get(key), None);
    }

    #[test]
    fn nothing_is_served_or_kept_once_the_connection_is_lost() {
        let cache = live_cache();
        let (key, tokens) = (StoreKey::random(), TokenSet::new("a", 60));
        read(&cache, key, &tokens);
        let ticket = cache.begin(StoreKey::random()).unwrap();
        cache.on_push(
            1,
            PREFIX,
            PushInfo {
                kind: PushKind::Disconnection,
                data: vec![],
            },
        );
        assert_eq!(cache.get(key), None);
        assert!(cache.begin(key).is_none(), "no read is cached while down");
        cache.finish(key, ticket, Some(&tokens), None);
        assert_eq!(cache.get(key), None);
        // Back: a new generation, and an empty cache.
        let before = cache.before_connecting(2);
        assert!(cache.live(before, 2, 8));
        assert_eq!(cache.get(key), None);
        read(&cache, key, &tokens);
        assert_eq!(cache.get(key), Some(tokens));
    }

    #[test]
    fn a_late_loss_of_an_earlier_connection_voids_entries_but_not_the_new_connection() {
        let cache = live_cache();
        cache.lost(1);
        let before = cache.before_connecting(2);
        assert!(cache.live(before, 2, 8));
        let (key, tokens) = (StoreKey::random(), TokenSet::new("a", 60));
        read(&cache, key, &tokens);
        // Connection 1's reader says so too, late (the heartbeat said it first).
        cache.lost(1);
        assert_eq!(cache.get(key), None);
        assert!(cache.is_live());
    }

    #[test]
    fn a_connection_lost_while_it_was_being_set_up_does_not_go_live() {
        let cache = NearCache::new(Duration::from_secs(3), 4);
        let before = cache.before_connecting(1);
        cache.lost(1);
        assert!(!cache.live(before, 1, 7));
        assert!(cache.begin(StoreKey::random()).is_none());
    }

    #[test]
    fn a_copy_is_trusted_for_max_age_at_most_and_never_past_its_ttl() {
        let cache = live_cache(); // max age 3 s
        let key = StoreKey::random();
        read_sent(&cache, key, Duration::from_millis(2900), None);
        assert!(cache.get(key).is_some());
        read_sent(&cache, key, Duration::from_millis(3000), None);
        assert_eq!(cache.get(key), None, "past its max age");
        read_sent(&cache, key, Duration::ZERO, Some(Duration::from_secs(60)));
        assert!(cache.get(key).is_some());
        // A key whose TTL had 1 s left when it was read, 1 s ago: Redis may not have
        // deleted it yet (its expiry samples keys), and no invalidation has come.
        read_sent(
            &cache,
            key,
            Duration::from_secs(1),
            Some(Duration::from_secs(1)),
        );
        assert_eq!(cache.get(key), None, "past its TTL");
    }

    /// A max age past what an `Instant` can add (`Duration::MAX`) is bounded, not a
    /// panic in the read of a key without a TTL (PTTL -1) or with one.
    #[test]
    fn a_huge_max_age_is_bounded() {
        for max_age in [Duration::MAX, Duration::from_secs(u64::MAX / 2)] {
            let cache = NearCache::new(max_age, 4);
            let before = cache.before_connecting(1);
            assert!(cache.live(before, 1, 7));
            assert_eq!(cache.max_age(), MAX_AGE_BOUND);
            let key = StoreKey::random();
            read_sent(&cache, key, Duration::ZERO, None);
            assert!(cache.get(key).is_some());
            read_sent(&cache, key, Duration::ZERO, Some(Duration::MAX));
            assert!(cache.get(key).is_some());
        }
    }

    /// Copies too old to be served, and the slots of reads that never finished (a
    /// request cancelled mid-load), are dropped by the heartbeat, not kept (with their
    /// access and refresh tokens) until the cache is full.
    #[test]
    fn what_can_no_longer_be_served_is_not_kept() {
        let cache = live_cache();
        let key = StoreKey::random();
        read_sent(&cache, key, Duration::from_secs(3), None);
        let _cancelled = cache.begin(StoreKey::random()).unwrap();
        assert_eq!(cache.entries.len(), 2);
        for _ in 0..3 {
            cache.tick();
        }
        assert_eq!(cache.get(key), None);
        assert_eq!(cache.entries.len(), 0, "kept past their max age");
        // Nor a copy of an earlier generation (a read that finished as a late loss of an
        // earlier connection came).
        let earlier = cache.state.load(Ordering::Acquire);
        cache.lost(0);
        let tick = cache.ticks.load(Ordering::Relaxed);
        let tokens = TokenSet::new("a", 60);
        cache.entries.insert(
            key,
            Slot::Held {
                tokens,
                until: Instant::now() + Duration::from_secs(60),
                state: earlier,
            },
        );
        cache.sweep(tick);
        assert_eq!(cache.entries.len(), 0, "void entries kept");
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let cache = live_cache();
        for _ in 0..100 {
            read(&cache, StoreKey::random(), &TokenSet::new("a", 60));
            assert!(cache.entries.len() <= 4);
        }
    }

    #[test]
    fn keys_outside_the_prefix_are_not_misread() {
        assert_eq!(
            stored_key(&Value::BulkString(b"other:tok:ab".to_vec()), PREFIX),
            None
        );
        let key = StoreKey::random();
        let name = format!("app:tok:{key}");
        assert_eq!(
            stored_key(&Value::BulkString(name.into_bytes()), PREFIX),
            Some(key)
        );
    }
}
