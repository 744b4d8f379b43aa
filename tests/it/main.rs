//! The integration tests, one binary (one link of the crate, its dependencies and
//! `common`), a module per area. Apart, as binaries of their own: `tests/browser.rs`
//! (a real browser, needs chromium) and `tests/interop.rs` (a real OpenID provider, needs
//! Node.js), and `tests/placement.rs` and `tests/secrets.rs`, which each install a
//! process-wide tracing subscriber to read every log line (one per process, and no other
//! test's lines).

mod common;

mod adversary_18;
mod adversary_20;
mod adversary_21;
mod api;
mod backchannel;
mod claims;
mod company;
mod config;
mod doctor;
mod faults;
mod flow;
#[cfg(feature = "metrics")]
mod metrics;
mod near_cache_attacks;
mod oidc;
mod redis;
mod refresh;
mod sealed;
mod security;
mod stores;
