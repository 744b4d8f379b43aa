//! Signs of a misplaced layer, counted so that it can say so once.

use std::sync::atomic::{AtomicBool, AtomicUsize};

/// Signs of a misplaced layer: browsers sent to the login path that never reaches it.
#[derive(Default)]
pub(crate) struct Placement {
    pub(crate) sent_to_login: AtomicUsize,
    pub(crate) flow_seen: AtomicBool,
    pub(crate) warned: AtomicBool,
}

impl Placement {
    /// Browsers sent to log in, with no flow request seen, before the layer says so.
    pub(crate) const SUSPECT_AFTER: usize = 50;
}
