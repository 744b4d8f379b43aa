//! The [`StateStore`] conformance suite: logins kept, taken once, expired.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::fresh_key;
use crate::store::{KeyKind, LoginTransaction, StateStore};

/// The [`StateStore`] part of [`store_conformance`](super::store_conformance), for a
/// store that keeps logins in progress only (given to `HcssAuthBuilder::state_store`):
/// a transaction comes back as it was put, once, and not past its TTL; of concurrent
/// takes, one wins.
///
/// ```
/// use std::sync::Arc;
/// use hcss_auth::{store::MemoryStore, testing::state_store_conformance};
///
/// # #[tokio::main] async fn main() {
/// state_store_conformance(Arc::new(MemoryStore::new())).await;
/// # }
/// ```
pub async fn state_store_conformance<S: StateStore>(store: Arc<S>) {
    let minute = Duration::from_secs(60);
    let login_key = || fresh_key(KeyKind::Login);

    // Transactions: put, take once.
    let key = login_key();
    let tx = LoginTransaction::new("verifier", "/jobs?id=1", "binding-hash", 1_700_000_000);
    store
        .put_transaction(key, tx.clone(), minute)
        .await
        .expect("put_transaction");
    let taken = store.take_transaction(key).await.expect("take_transaction");
    assert_eq!(
        taken,
        Some(tx),
        "take_transaction must return what was put, every field"
    );
    assert_eq!(
        store.take_transaction(key).await.expect("take_transaction"),
        None,
        "a transaction can be taken only once"
    );
    assert_eq!(
        store
            .take_transaction(login_key())
            .await
            .expect("take_transaction"),
        None,
        "taking a missing key gives None"
    );

    // A transaction lapses with its TTL.
    let tx_key = login_key();
    let short = Duration::from_millis(200);
    store
        .put_transaction(tx_key, LoginTransaction::new("v", "/", "b", 0), short)
        .await
        .expect("put_transaction");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        store
            .take_transaction(tx_key)
            .await
            .expect("take_transaction"),
        None,
        "a transaction must expire with its TTL"
    );

    // Take is atomic: of 50 concurrent takes, exactly one wins.
    let key = login_key();
    store
        .put_transaction(key, LoginTransaction::new("v", "/", "b", 0), minute)
        .await
        .expect("put_transaction");
    let mut takes = JoinSet::new();
    for _ in 0..50 {
        let store = store.clone();
        takes.spawn(async move { store.take_transaction(key).await });
    }
    let winners = takes
        .join_all()
        .await
        .into_iter()
        .map(|r| r.expect("take_transaction"))
        .filter(Option::is_some)
        .count();
    assert_eq!(winners, 1, "of 50 concurrent takes exactly one must win");
}
