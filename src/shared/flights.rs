//! The refresh in flight per session, and what it settles with.

use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::SessionError;
use crate::token::TokenSet;

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
