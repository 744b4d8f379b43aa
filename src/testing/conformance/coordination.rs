//! The [`Coordination`] conformance suite: locks taken by one owner at a time, renewed
//! and released only by their owner, expiring by themselves.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::fresh_key;
use crate::store::{CallAdmission, CallLimits, Coordination, KeyKind, StoreError};

/// The [`Coordination`] part of [`token_store_conformance`](super::token_store_conformance)
/// (which runs it, every token store being a `Coordination`): a store whose locks are
/// real (several instances share it) must grant a lock to one owner at a time, let only
/// that owner renew or release it, never renew a free lock, and let it expire with its
/// TTL; of concurrent lockers, one wins. A store that keeps a call budget
/// ([`Coordination::acquire_call`]) must bound the calls in flight and those of the
/// rolling window, atomically, let leases lapse, and count a call in the window from its
/// release; one that keeps the default (unsupported) passes that part as it is. A store that keeps the single-process defaults
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
    call_budget_conformance(&store).await;
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

/// The call budget: calls in flight and in the window bounded (atomically, under
/// concurrency), leases that lapse, a window counted from each call's release.
async fn call_budget_conformance<S: Coordination>(store: &Arc<S>) {
    let ms = Duration::from_millis;
    let granted = |a: &CallAdmission| matches!(a, CallAdmission::Granted { .. });
    let key = fresh_key(KeyKind::ApiBudget);
    let limits = CallLimits::new(2, 3, Duration::from_secs(60), Duration::from_secs(60));
    match store.acquire_call(key, "a", &[], limits).await {
        Err(StoreError::Unsupported(_)) => return,
        Ok(CallAdmission::Granted { in_window: 1 }) => {}
        other => panic!("a first call must be granted, with 1 in the window: {other:?}"),
    }
    let b = store.acquire_call(key, "b", &[], limits).await;
    assert!(
        matches!(b, Ok(CallAdmission::Granted { in_window: 2 })),
        "a second call within both limits must be granted: {b:?}"
    );
    let c = store
        .acquire_call(key, "c", &[], limits)
        .await
        .expect("acquire_call");
    assert!(
        matches!(c, CallAdmission::InFlightFull { retry_in } if retry_in <= Duration::from_secs(60)),
        "a third call in flight past 2 must wait for a slot: {c:?}"
    );
    store
        .release_calls(key, vec!["never-acquired".into()], limits)
        .await
        .expect("releasing an unknown call is no error");
    // "a" given back with the next admission, in the same step.
    let c = store
        .acquire_call(key, "c", &["a".to_owned()], limits)
        .await
        .expect("acquire_call");
    assert_eq!(
        c,
        CallAdmission::Granted { in_window: 3 },
        "a slot released with an admission must be granted to it"
    );
    let d = store
        .acquire_call(key, "d", &[], limits)
        .await
        .expect("acquire_call");
    assert!(
        matches!(d, CallAdmission::WindowFull { retry_in } if retry_in > Duration::from_secs(59) && retry_in <= Duration::from_secs(61)),
        "3 calls in the window: the next waits until the oldest leaves it: {d:?}"
    );

    // Of 20 concurrent calls with 5 slots, exactly 5 are granted.
    let key = fresh_key(KeyKind::ApiBudget);
    let limits = CallLimits::new(5, 100, Duration::from_secs(60), Duration::from_secs(60));
    let mut callers = JoinSet::new();
    for i in 0..20 {
        let store = store.clone();
        callers.spawn(async move {
            store
                .acquire_call(key, &format!("call-{i}"), &[], limits)
                .await
        });
    }
    let admitted = callers
        .join_all()
        .await
        .into_iter()
        .filter(|r| granted(r.as_ref().expect("acquire_call")))
        .count();
    assert_eq!(
        admitted, 5,
        "of 20 concurrent calls with 5 slots, 5 must be granted"
    );

    // A slot never released comes back when its lease ends.
    let key = fresh_key(KeyKind::ApiBudget);
    let limits = CallLimits::new(1, 100, Duration::from_secs(60), ms(200));
    let held = store.acquire_call(key, "held", &[], limits).await;
    assert!(granted(held.as_ref().expect("acquire_call")));
    let next = store.acquire_call(key, "next", &[], limits).await;
    assert!(
        matches!(next, Ok(CallAdmission::InFlightFull { .. })),
        "the only slot is held: {next:?}"
    );
    tokio::time::sleep(ms(300)).await;
    let next = store.acquire_call(key, "next", &[], limits).await;
    assert!(
        granted(next.as_ref().expect("acquire_call")),
        "a slot whose lease ended must come back (a cancelled call, a dead instance): {next:?}"
    );

    // The window counts a call from its release.
    let key = fresh_key(KeyKind::ApiBudget);
    let limits = CallLimits::new(5, 1, ms(400), Duration::from_secs(60));
    let first = store.acquire_call(key, "first", &[], limits).await;
    assert!(granted(first.as_ref().expect("acquire_call")));
    tokio::time::sleep(ms(250)).await;
    store
        .release_calls(key, vec!["first".into()], limits)
        .await
        .expect("release_calls");
    tokio::time::sleep(ms(250)).await;
    let second = store.acquire_call(key, "second", &[], limits).await;
    assert!(
        matches!(second, Ok(CallAdmission::WindowFull { .. })),
        "a call stays in the window for a window after its release: {second:?}"
    );
    tokio::time::sleep(ms(250)).await;
    let second = store.acquire_call(key, "second", &[], limits).await;
    assert!(
        granted(second.as_ref().expect("acquire_call")),
        "a call leaves the window a window after its release: {second:?}"
    );
}
