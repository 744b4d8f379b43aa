//! The single flight of a session's refresh: one task per session in this process,
//! whose outcome, success or failure, every waiting request gets, and a failure
//! remembered until its `Retry-After`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::mapref::entry::Entry;
use tokio::sync::watch;
use tokio::time::Instant;

use super::lease::refresh_session;
use crate::error::SessionError;
use crate::http_rules::whole_seconds;
use crate::secret::SecretString;
use crate::shared::{Flight, FlightResult, Outcome, Shared};
use crate::store::StoreKey;

/// The session's token set after whatever refresh it needs: joins the refresh in flight,
/// or the failure remembered, or starts a refresh task.
///
/// With `rejected` (an access token HCSS refused), the session is refreshed even if its
/// token looks fresh, unless it no longer is that token (another refresh came first).
pub(crate) async fn await_refresh(
    shared: &Arc<Shared>,
    key: StoreKey,
    rejected: Option<SecretString>,
) -> Outcome {
    static NEXT_ID: AtomicU64 = AtomicU64::new(0);
    let now = flow_instant(shared);
    let mut settled = match shared.flights.entry(key) {
        Entry::Occupied(flight) if !is_stale(flight.get(), now) => {
            crate::metrics::refresh_waiter();
            flight.get().settled.clone()
        }
        entry => {
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            let (publish, settled) = watch::channel(None);
            let flight = Flight {
                id,
                settled: settled.clone(),
            };
            match entry {
                Entry::Occupied(mut old) => {
                    old.insert(flight);
                }
                Entry::Vacant(vacant) => {
                    vacant.insert(flight);
                }
            }
            tokio::spawn(run_refresh(shared.clone(), key, rejected, id, publish));
            settled
        }
    };
    // A request waits one HTTP timeout at most; the task itself goes on (a refresh that
    // HCSS answers late is still kept) and later requests of the session join it.
    let waited = tokio::time::timeout(
        shared.config.identity.http_timeout,
        settled.wait_for(Option::is_some),
    )
    .await;
    let result = match waited {
        Ok(Ok(settled)) => settled.clone(),
        Ok(Err(_)) => None,
        Err(_) => {
            return Err(SessionError::Unavailable {
                reason: "the identity service is slow to refresh this session".into(),
                retry_after: shared
                    .config
                    .identity
                    .retry_after
                    .max(Duration::from_secs(1)),
            })
        }
    };
    match result {
        Some(FlightResult { outcome, until }) => outcome.map_err(|err| match err {
            // A remembered failure tells a later request how long is left of the wait.
            SessionError::Unavailable { reason, .. } => SessionError::Unavailable {
                reason,
                retry_after: whole_seconds(until.saturating_duration_since(flow_instant(shared))),
            },
            other => other,
        }),
        None => Err(SessionError::Unavailable {
            reason: "the refresh task stopped".into(),
            retry_after: shared.config.identity.retry_after,
        }),
    }
}

/// The time a remembered failure is counted on: Tokio's clock, moved forward with the
/// flow's test clock (feature `test-util`), so that a test that lets time pass for the
/// mock and the app sees the failure's `Retry-After` pass too.
fn flow_instant(shared: &Shared) -> Instant {
    let now = Instant::now();
    #[cfg(feature = "test-util")]
    if let Some(clock) = &shared.config.lifetimes.clock {
        return now + clock.offset();
    }
    #[cfg(not(feature = "test-util"))]
    let _ = shared;
    now
}

/// A flight to replace: its task died, or it ended and its outcome no longer stands.
pub(super) fn is_stale(flight: &Flight, now: Instant) -> bool {
    match &*flight.settled.borrow() {
        None => flight.settled.has_changed().is_err(),
        Some(settled) => settled.outcome.is_ok() || settled.until <= now,
    }
}

/// The refresh task: runs to the end whoever stops waiting, publishes its outcome, and
/// keeps a failure in the map until its retry time.
pub(super) async fn run_refresh(
    shared: Arc<Shared>,
    key: StoreKey,
    rejected: Option<SecretString>,
    id: u64,
    publish: watch::Sender<Option<FlightResult>>,
) {
    let outcome = refresh_session(&shared, key, rejected.as_ref()).await;
    let remember = match &outcome {
        Err(SessionError::Unavailable { retry_after, .. }) => *retry_after,
        _ => Duration::ZERO,
    };
    let until = flow_instant(&shared) + remember;
    publish.send_replace(Some(FlightResult { outcome, until }));
    if !remember.is_zero() {
        // A test clock moved past `until` meanwhile makes the flight stale at once: the
        // next request replaces it, and this task then removes nothing of its successor.
        tokio::time::sleep(remember).await;
    }
    shared.flights.remove_if(&key, |_, flight| flight.id == id);
}
