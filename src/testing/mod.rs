//! Test utilities (feature `test-util`): [`MockHcssIdentity`], an HCSS-like identity
//! service on loopback; signing in through the flow ([`sign_in`]) or without it
//! ([`seed_session`]); [`FaultyStore`], a store whose faults a test switches on; and the
//! conformance suites every store should pass ([`store_conformance`] and its parts).

mod conformance;
mod faulty;
mod mock;
mod seed;
mod sign_in;

pub use crate::clock::TestClock;
pub use conformance::{
    coordination_conformance, state_store_conformance, store_conformance, token_store_conformance,
};
pub use faulty::FaultyStore;
pub use mock::{MockCounts, MockHcssIdentity, MockHcssIdentityBuilder, TokenFault};
pub use seed::{seed_session, session_exists, SeededSession};
pub use sign_in::sign_in;
