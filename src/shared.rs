//! What every clone of the layer, its service and each request's session share.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::HcssConfig;
use crate::error::SessionError;
use crate::store::{StateStore, TokenStore};
use crate::token::TokenSet;

/// The configuration, the stores, and this process's refresh state.
pub(crate) struct Shared {
    pub(crate) config: HcssConfig,
    pub(crate) state_store: Arc<dyn StateStore>,
    pub(crate) token_store: Arc<dyn TokenStore>,
    /// The refresh in flight (or the failure remembered) per session key.
    pub(crate) flights: DashMap<String, Flight>,
    /// Token sets refreshed but not yet written, because the store refused the write:
    /// this process serves and refreshes them, never the spent set the store still has.
    pub(crate) pending: Pending,
}

impl Shared {
    pub(crate) fn new(
        config: HcssConfig,
        state_store: Arc<dyn StateStore>,
        token_store: Arc<dyn TokenStore>,
    ) -> Self {
        Self {
            config,
            state_store,
            token_store,
            flights: DashMap::new(),
            pending: Pending::default(),
        }
    }
}

/// What a refresh ends with: the session's token set, or why there is none.
pub(crate) type Outcome = Result<TokenSet, SessionError>;

/// A settled refresh: its outcome, and until when a failure stands for new requests.
#[derive(Clone)]
pub(crate) struct Settled {
    pub(crate) outcome: Outcome,
    pub(crate) until: Instant,
}

/// One refresh task of a session, watched by every request that waits for it.
pub(crate) struct Flight {
    pub(crate) id: u64,
    pub(crate) settled: watch::Receiver<Option<Settled>>,
}

/// Refreshed token sets waiting to be written, with a count that keeps the lookup off
/// the hot path while there are none (the usual case).
#[derive(Default)]
pub(crate) struct Pending {
    sets: DashMap<String, TokenSet>,
    count: AtomicUsize,
}

impl Pending {
    /// Whether `key` has a set waiting; costs one atomic load while none waits.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.count.load(Ordering::Acquire) > 0 && self.sets.contains_key(key)
    }

    pub(crate) fn get(&self, key: &str) -> Option<TokenSet> {
        if self.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.sets.get(key).map(|set| set.clone())
    }

    pub(crate) fn keep(&self, key: &str, tokens: TokenSet) {
        // Counted before it is visible, so that `has` never misses it.
        self.count.fetch_add(1, Ordering::AcqRel);
        if self.sets.insert(key.to_owned(), tokens).is_some() {
            self.count.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Drops the set waiting under `key`, returning it.
    pub(crate) fn take(&self, key: &str) -> Option<TokenSet> {
        if self.count.load(Ordering::Acquire) == 0 {
            return None;
        }
        let (_, set) = self.sets.remove(key)?;
        self.count.fetch_sub(1, Ordering::AcqRel);
        Some(set)
    }
}
