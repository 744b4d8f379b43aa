//! The time the flow runs on: the system's, or a test's that can be moved forward.

#[cfg(feature = "test-util")]
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "test-util")]
use std::sync::Arc;
#[cfg(feature = "test-util")]
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, as the stores keep time.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A clock for tests (feature `test-util`): the system's time plus an offset the test
/// moves forward, so that a test can let a login wait half an hour, a token expire or
/// the `Retry-After` of a failed refresh pass, without sleeping. Give it to the configuration with
/// [`HcssConfigBuilder::test_clock`](crate::HcssConfigBuilder::test_clock); clones share
/// the offset.
///
/// ```
/// use std::time::Duration;
/// use hcss_auth::testing::TestClock;
///
/// let clock = TestClock::new();
/// clock.advance(Duration::from_secs(30));
/// assert_eq!(clock.offset(), Duration::from_secs(30));
/// ```
#[cfg(feature = "test-util")]
#[derive(Clone, Debug, Default)]
pub struct TestClock {
    offset: Arc<AtomicU64>,
}

#[cfg(feature = "test-util")]
impl TestClock {
    /// A clock at the system's time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.offset.fetch_add(by.as_secs(), Ordering::SeqCst);
    }

    /// How far ahead of the system's time it is.
    pub fn offset(&self) -> Duration {
        Duration::from_secs(self.offset.load(Ordering::SeqCst))
    }

    /// Its time, in Unix seconds.
    pub(crate) fn now(&self) -> u64 {
        unix_now().saturating_add(self.offset.load(Ordering::SeqCst))
    }
}
