//! The store conformance suite against the built-in memory store (Redis: `tests/it/redis.rs`).

use std::sync::Arc;

use hcss_auth::store::MemoryStore;
use hcss_auth::testing::store_conformance;

#[tokio::test]
async fn conformance_suite_passes_for_memory_store() {
    store_conformance(Arc::new(MemoryStore::new())).await;
}
