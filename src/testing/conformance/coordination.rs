//! The [`Coordination`] conformance suite: locks taken by one owner at a time, renewed
//! and released only by their owner, expiring by themselves.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::fresh_key;
use crate::store::{Coordination, KeyKind};

/// The [`Coordination`] part of [`token_store_conformance`](super::token_store_conformance)
/// (which runs it, every token store being a `Coordination`): a store whose locks are
/// real (several instances share it) must grant a lock to one owner at a time, let only
/// that owner renew or release it, never renew a free lock, and let it expire with its
/// TTL; of concurrent lockers, one wins. A store that keeps the single-process defaults
/// (every lock granted) passes as it is.
///
/// ```
/// use std::sync::Arc;
/// use hcss_auth::{store::MemoryStore, testing::coordination_conformance};
///
/// # #[tokio::main] async fn main() {
/// coordination_conformance(Arc::new(MemoryStore::new())).await;
/// # }
/// ```
pub async fn coordination_conformance<S: Coordination>(store: Arc<S>) {
    let minute = Duration::from_secs(60);
    let short = Duration::from_millis(200);
    let owner = |name: &str| name.to_owned();

    // Either a real lock, or the single-process default.
    let key = fresh_key(KeyKind::Session);
    assert!(
        store
            .try_lock(key, owner("owner-a"), minute)
            .await
            .expect("try_lock"),
        "a free lock must be granted"
    );
    let second = store
        .try_lock(key, owner("owner-b"), minute)
        .await
        .expect("try_lock");
    if second {
        return;
    }
    store.unlock(key, owner("owner-b")).await.expect("unlock");
    assert!(
        !store
            .try_lock(key, owner("owner-b"), minute)
            .await
            .expect("try_lock"),
        "only the owner may release a lock"
    );
    assert!(
        store
            .renew_lock(key, owner("owner-a"), minute)
            .await
            .expect("renew_lock"),
        "the owner of a lock must be able to renew it"
    );
    assert!(
        !store
            .renew_lock(key, owner("owner-b"), minute)
            .await
            .expect("renew_lock"),
        "only the owner may renew a lock"
    );
    store.unlock(key, owner("owner-a")).await.expect("unlock");
    assert!(
        !store
            .renew_lock(key, owner("owner-a"), minute)
            .await
            .expect("renew_lock"),
        "renewing must not take a free lock"
    );
    assert!(
        store
            .try_lock(key, owner("owner-b"), short)
            .await
            .expect("try_lock"),
        "a released lock must be granted again"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        store
            .try_lock(key, owner("owner-c"), minute)
            .await
            .expect("try_lock"),
        "a lock must expire with its TTL, so a crashed holder cannot wedge what it locks"
    );
    store.unlock(key, owner("owner-c")).await.expect("unlock");

    // The layer locks company tokens and claimed states too: each a lock of its own.
    for kind in [KeyKind::CompanyToken, KeyKind::StateClaim] {
        let key = fresh_key(kind);
        assert!(
            store
                .try_lock(key, owner("owner-a"), minute)
                .await
                .expect("try_lock"),
            "a free lock on a {kind:?} key must be granted"
        );
        assert!(
            !store
                .try_lock(key, owner("owner-b"), minute)
                .await
                .expect("try_lock"),
            "a lock on a {kind:?} key must be held by one owner at a time"
        );
        store.unlock(key, owner("owner-a")).await.expect("unlock");
    }

    // Of 50 concurrent lockers, exactly one wins.
    let key = fresh_key(KeyKind::Session);
    let mut lockers = JoinSet::new();
    for i in 0..50 {
        let store = store.clone();
        lockers.spawn(async move { store.try_lock(key, format!("owner-{i}"), minute).await });
    }
    let winners = lockers
        .join_all()
        .await
        .into_iter()
        .filter(|r| *r.as_ref().expect("try_lock"))
        .count();
    assert_eq!(winners, 1, "of 50 concurrent lockers exactly one must win");
}
