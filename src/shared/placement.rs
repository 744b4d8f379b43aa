//! Signs of a misplaced layer, gathered so that it can say so once, and early.
//!
//! A layer added with `route_layer`, or on a nested router, never sees the login path:
//! browsers sent there get the router's 404. The layer cannot see that 404, but it sees
//! the browser come back: while no request to the flow's paths has reached it, each
//! response that sends a browser to the login path carries a small cookie naming this
//! layer (`flow::misplaced`), and a page load that brings it back proves the login never
//! reached the layer. Browsers that keep no cookies are counted instead: 50 sent to log
//! in with no flow request seen.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::config::HcssConfig;

/// Signs of a misplaced layer: browsers sent to the login path that never reaches it.
pub(crate) struct Placement {
    pub(crate) sent_to_login: AtomicUsize,
    pub(crate) flow_seen: AtomicBool,
    pub(crate) warned: AtomicBool,
    /// The value of this layer's cookie (`flow::misplaced`), so that a browser's cookie
    /// from an earlier run of the app (the layer since moved) proves nothing.
    pub(crate) marker: String,
}

impl Default for Placement {
    fn default() -> Self {
        Self {
            sent_to_login: AtomicUsize::new(0),
            flow_seen: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            marker: crate::secret::random_token(32),
        }
    }
}

impl Placement {
    /// Browsers sent to log in, with no flow request seen, before the layer says so when
    /// none of them brought its cookie back.
    pub(crate) const SUSPECT_AFTER: usize = 50;

    /// Whether the layer has yet to see a request to the flow's paths.
    pub(crate) fn unproven(&self) -> bool {
        !self.flow_seen.load(Ordering::Relaxed)
    }

    /// Counts a browser sent to the login path; says so after `SUSPECT_AFTER` with no
    /// flow request seen.
    pub(crate) fn sent(&self, config: &HcssConfig) {
        let sent = self.sent_to_login.fetch_add(1, Ordering::Relaxed) + 1;
        if sent >= Self::SUSPECT_AFTER && self.unproven() {
            self.warn(
                config,
                "browsers were sent to the login path, but no request to it (or to the \
                 callback or logout path) has reached the HcssAuth layer. If they get a 404 \
                 there, the layer is misplaced",
            );
        }
    }

    /// The warning, once per layer: the evidence, and where the layer goes.
    pub(crate) fn warn(&self, config: &HcssConfig, evidence: &str) {
        if self.warned.swap(true, Ordering::Relaxed) {
            return;
        }
        tracing::warn!(
            login_path = %config.routes.login_path,
            "{evidence}: add the layer as the last .layer(...) of the outermost router, not \
             with route_layer and not on a nested router"
        );
    }
}
