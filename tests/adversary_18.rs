//! Adversarial review of the issue-18 refresh machinery (marks, kept sets, takeovers,
//! logouts). Each test states its scenario; a test marked `#[ignore = "finding N: ..."]`
//! fails on the code it was written against and shows a way a signed-in session is
//! still lost (run them with `--ignored`).

mod common;

use std::time::Duration;

use common::faults::{age, expired_session, FaultyStore};
use common::*;
use hcss_auth::store::StoreKey;
use hcss_auth::testing::{MockHcssIdentity, TokenFault};
use hcss_auth::{MemoryStore, TokenStore};

/// Requests `url` until it answers something else than 503 (a refresh in progress, a
/// store coming back), or `patience` runs out: the status last seen. Polled: the
/// refresh tasks and the kept-set writer run on their own schedule, with nothing here
/// to wait on.
async fn settled_status(browser: &Browser, url: &str, patience: Duration) -> u16 {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let status = browser.get(url).await.status;
        if status != 503 || tokio::time::Instant::now() >= deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the store holds a set of `key` at `version` (a write made by a task of
/// the layer, which signals nothing). Polled.
async fn stored_version<S: TokenStore>(store: &S, key: StoreKey, version: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let stored = store.load(key).await.unwrap();
        if stored.as_ref().map(|s| s.version) == Some(version) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store never reached version {version} (holds {:?})",
            stored.map(|s| s.version)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Finding 1. A refreshed set P1 is kept in memory (the store refused its write; the
/// store holds the mark, version 1). Its access token then needs a refresh while the
/// store is still down: the refresh runs from memory, spending P1's refresh token RT2
/// over base version 1. The store comes back while HCSS answers that refresh, and the
/// kept-set writer (`write_kept`) stores P1 (version 2). The refresh's result P2 (RT3)
/// is then written over version 1: the compare fails, `same_write` says no, and
/// `superseded` revokes RT3, the only live refresh token. The store keeps P1, whose
/// RT2 is spent: the next refresh presents RT2 again, HCSS detects the reuse and ends
/// the session. (The same happens when the kept write is applied late, its reply lost
/// to a Redis timeout, after the refresh from memory: the lease is still this
/// process's, nothing else ever moved the session on.)
#[tokio::test]
#[ignore = "finding 1: a kept set refreshed from memory while the store comes back: its new refresh token is revoked as superseded, the spent one stays stored (reuse)"]
async fn a_kept_set_refreshed_while_the_store_comes_back_keeps_the_session() {
    let mock = MockHcssIdentity::start().await;
    let store = FaultyStore::new(MemoryStore::new());
    let configure = |b: hcss_auth::HcssConfigBuilder| {
        b.http_timeout(Duration::from_secs(2))
            .retry_after(Duration::ZERO)
    };
    let (url, browser, key, store) = expired_session(&mock, store, configure).await;
    let whoami = format!("{url}/whoami");
    // P1: HCSS rotated RT1 into RT2, the store refuses the write: P1 is kept.
    mock.set_token_fault(Some(TokenFault::SlowAfterRotating(Duration::from_millis(
        100,
    ))));
    let first = {
        let (browser, whoami) = (browser.clone(), whoami.clone());
        tokio::spawn(async move { browser.get(&whoami).await.status })
    };
    mock.wait_for(|c| c.refreshes == 1).await;
    store.refuse_writes(true);
    mock.set_token_fault(None);
    assert_eq!(first.await.unwrap(), 200, "P1 served from memory");
    assert_eq!(store.inner().load(key).await.unwrap().unwrap().version, 1);
    // P1's access token needs a refresh, the store still refusing: refreshed from memory.
    mock.expire_access_tokens();
    mock.set_token_fault(Some(TokenFault::Stall));
    let second = {
        let (browser, whoami) = (browser.clone(), whoami.clone());
        tokio::spawn(async move { browser.get(&whoami).await.status })
    };
    mock.wait_for(|c| c.refreshes == 2).await;
    // While HCSS works on RT2, the store comes back and the writer stores P1.
    store.refuse_writes(false);
    stored_version(store.inner(), key, 2).await;
    mock.set_token_fault(None);
    let _ = second.await.unwrap();
    let status = settled_status(&browser, &whoami, Duration::from_secs(20)).await;
    let counts = mock.counts();
    assert_eq!(
        (status, counts.revocations, counts.reuse_detected),
        (200, 0, 0),
        "(status, revocations, reuse detected): the live refresh token was revoked as \
         superseded and the spent one left in the store"
    );
    // And the session goes on refreshing.
    age(&store, key).await;
    assert_eq!(browser.get(&whoami).await.status, 200);
    assert_eq!(mock.counts().reuse_detected, 0);
}
