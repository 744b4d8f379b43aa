//! The store conformance suites: every behaviour the layer relies on, run against a
//! store, panicking at the first broken rule and naming it. One file per trait
//! (`token_store.rs`, `state_store.rs`, `coordination.rs`); [`store_conformance`] runs
//! them all.

use std::sync::Arc;

use crate::store::{KeyKind, StateStore, StoreKey, TokenStore};

mod coordination;
mod state_store;
mod token_store;

pub use coordination::coordination_conformance;
pub use state_store::state_store_conformance;
pub use token_store::token_store_conformance;

/// The store conformance suite: runs every behaviour the layer relies on against `store`
/// and panics, naming the broken rule, at the first failure. For a store that serves as
/// both [`StateStore`] and [`TokenStore`] (`HcssAuthBuilder::state_store`); a token store alone
/// runs [`token_store_conformance`].
///
/// Run it from an async test of your own store. Concurrency checks issue their calls
/// together, as a busy app does, on tasks of the test's runtime. Keys are random, so it
/// can share a backend with other data; it waits about a second and a half in all for
/// TTLs to lapse.
///
/// ```
/// use std::sync::Arc;
/// use hcss_auth::{store::MemoryStore, testing::store_conformance};
///
/// # #[tokio::main] async fn main() {
/// store_conformance(Arc::new(MemoryStore::new())).await;
/// # }
/// ```
pub async fn store_conformance<S>(store: Arc<S>)
where
    S: StateStore + TokenStore,
{
    state_store_conformance(store.clone()).await;
    token_store_conformance(store).await;
}

/// A key of `kind` no other check uses.
fn fresh_key(kind: KeyKind) -> StoreKey {
    StoreKey::random_of(kind)
}

/// A random name (a subject, a company), distinct in each call.
fn random_label() -> String {
    crate::secret::random_token(12)
}
