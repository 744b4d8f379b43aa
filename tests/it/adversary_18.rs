//! Adversarial review of the issue-18 refresh machinery (marks, kept sets, takeovers,
//! logouts). Each test states its scenario, a way a signed-in session was still lost or
//! stalled; each failed on the code it was written against, before its fix.

use crate::common;

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

/// Finding 1. A refreshed set P1 is kept in memory (the store refused its write; the
/// store holds the mark, version 1). Its access token then needs a refresh while the
/// store is still down. Refreshing it from memory spent P1's refresh token RT2 over a
/// base version that the kept-set writer could move on meanwhile: the result was taken
/// for a supersession and revoked, or kept over a stale base with nothing to write it,
/// and the store was left with a spent set that a second instance spent again (reuse,
/// the session ended). A kept set is now never refreshed from memory: the session
/// answers 503 until the store takes P1, and the refresh then spends RT2 once, from the
/// stored and marked set, on whichever instance asks first.
#[tokio::test]
async fn a_kept_set_due_for_refresh_is_not_refreshed_from_memory() {
    let mock = MockHcssIdentity::start().await;
    let store = FaultyStore::new(MemoryStore::new());
    let configure = |b: hcss_auth::HcssConfigBuilder| {
        b.http_timeout(Duration::from_secs(2))
            .retry_after(Duration::ZERO)
    };
    let (a, browser, key, store) = expired_session(&mock, store, configure).await;
    let (b, _auth) = start_app_with_store(&mock, configure, store.clone()).await;
    let on_a = format!("{a}/whoami");
    // P1: HCSS rotated RT1 into RT2, the store refuses the write: P1 is kept.
    let status =
        faults::answered_after_rotating(&mock, &browser, &on_a, 1, || store.refuse_writes(true))
            .await;
    assert_eq!(status, 200, "P1 served from memory");
    assert_eq!(store.inner().load(key).await.unwrap().unwrap().version(), 1);
    // P1's access token is over while the store still refuses: nothing is spent.
    mock.expire_access_tokens();
    let waiting = browser.get(&on_a).await;
    assert_eq!(waiting.status, 503, "{}", waiting.body);
    assert_eq!(
        mock.counts().refreshes,
        1,
        "P1's refresh token was spent from memory"
    );
    // The store is back: P1 is stored, then refreshed once, from the store.
    store.refuse_writes(false);
    assert_eq!(
        settled_status(&browser, &on_a, Duration::from_secs(20)).await,
        200
    );
    let counts = mock.counts();
    assert_eq!(
        (counts.refreshes, counts.revocations, counts.reuse_detected),
        (2, 0, 0),
        "(refreshes, revocations, reuse detected)"
    );
    // And the session goes on refreshing, on the other instance too.
    age(&store, key).await;
    let on_b = format!("{b}/whoami");
    assert_eq!(
        settled_status(&browser, &on_b, Duration::from_secs(20)).await,
        200
    );
    let counts = mock.counts();
    assert_eq!((counts.refreshes, counts.reuse_detected), (3, 0));
}

/// Two instances over one store, A's own writes refusable. A session signed in on A is
/// refreshed there (its mark stored, RT1 spent at HCSS, RT2 back), and A alone then
/// loses the store's writes: A keeps P1 (RT2) in memory and serves it. Gives the browser,
/// B's URL and A's store.
async fn refreshed_on_a_then_a_cut_off(
    mock: &MockHcssIdentity,
) -> (Browser, String, FaultyStore<MemoryStore>) {
    let shared = MemoryStore::new();
    let store_a = FaultyStore::new(shared.clone());
    let store_b = FaultyStore::new(shared.clone());
    let configure = |b: hcss_auth::HcssConfigBuilder| {
        b.http_timeout(Duration::from_millis(300))
            .retry_after(Duration::ZERO)
    };
    let (a, browser, _key, store_a) = expired_session(mock, store_a, configure).await;
    let (b, _auth) = start_app_with_store(mock, configure, store_b).await;
    let status = faults::answered_after_rotating(mock, &browser, &format!("{a}/whoami"), 1, || {
        store_a.refuse_writes(true)
    })
    .await;
    assert_eq!(status, 200, "A serves P1 from memory");
    (browser, b, store_a)
}

/// Finding 2. A is cut off from the store after its refresh; B, asked for the session,
/// finds the stored set marked as spent by A. Before: once its grace ran out, B took over
/// and presented RT1, which A had spent; HCSS revoked the grant and the session ended on
/// both. Now B waits (503), spending nothing, and serves A's set once A reaches the
/// store again.
#[tokio::test]
async fn a_takeover_does_not_spend_a_token_that_a_live_instance_spent() {
    let mock = MockHcssIdentity::start().await;
    let (browser, b, store_a) = refreshed_on_a_then_a_cut_off(&mock).await;
    assert_eq!(browser.get(&format!("{b}/whoami")).await.status, 503);
    assert_eq!(mock.counts().reuse_detected, 0, "B spent RT1 again");
    store_a.refuse_writes(false);
    let status = settled_status(&browser, &format!("{b}/whoami"), Duration::from_secs(20)).await;
    let counts = mock.counts();
    assert_eq!(
        (status, counts.reuse_detected, counts.refreshes),
        (200, 0, 1),
        "(B's status, reuse detected, refreshes)"
    );
}

/// Finding 2, the other half: the instance that spent the token never comes back (it
/// died holding the new tokens, or stays cut off). B waits its patience, then ends the
/// session (the user signs in again) rather than spending the token twice, which HCSS
/// would answer by ending the user's sessions everywhere.
#[tokio::test]
async fn a_token_spent_by_an_instance_that_never_comes_back_is_not_spent_again() {
    let mock = MockHcssIdentity::start().await;
    let (browser, b, _store_a) = refreshed_on_a_then_a_cut_off(&mock).await;
    let status = settled_status(&browser, &format!("{b}/whoami"), Duration::from_secs(20)).await;
    let counts = mock.counts();
    assert_eq!(
        (status, counts.reuse_detected, counts.refreshes),
        (401, 0, 1),
        "(B's status, reuse detected, refreshes): B signs out without spending"
    );
}

/// Finding 4. A company's `on_disconnected` hook runs inside the shared fetch task,
/// which holds the company's turn (and the store's lock) until the hook returns: every
/// call for that company in this process, from any `HcssCompanyTokens` of the layer (one
/// without a hook too), waits for the hook, with no bound. The documented use of the
/// hook, `end_sessions_for_company`, revokes each session at HCSS one after another; a
/// hook that never returns makes the company's calls hang forever.
#[tokio::test]
async fn a_stuck_disconnected_hook_does_not_hang_other_calls() {
    let mock = MockHcssIdentity::start().await;
    let config = mock
        .config_builder("http://127.0.0.1:9/hcss/callback")
        .scopes(["heavyjob:read"])
        .build()
        .unwrap();
    let auth = hcss_auth::HcssAuth::new(config);
    let hooked = hcss_auth::HcssCompanyTokens::new(&auth)
        .on_disconnected(|_company| std::future::pending::<()>());
    let plain = hcss_auth::HcssCompanyTokens::new(&auth);
    mock.disconnect_company("co-1");
    let stuck = tokio::spawn(async move { hooked.token("co-1").await.map(|_| ()) });
    mock.wait_for(|c| c.company_grants == 1).await;
    // A call of its own, without a hook, after HCSS gave its answer.
    let answer = tokio::time::timeout(Duration::from_secs(10), plain.token("co-1")).await;
    stuck.abort();
    assert!(
        answer.is_ok(),
        "a call for the company hung behind another call's hook"
    );
}

/// Finding 3, without Redis. Instance A marks the set and sends RT1; HCSS answers 500
/// (nothing spent) and A's unmark is refused by the store (a blip). The mark stays with
/// nothing kept anywhere: instance B waits the whole takeover grace (5 s here, 50 s
/// with the default HTTP timeout) before it refreshes, answering 503 throughout, with
/// the store and HCSS healthy again.
#[tokio::test]
async fn a_failed_refresh_whose_unmark_failed_does_not_stall_other_instances() {
    let mock = MockHcssIdentity::start().await;
    let store = FaultyStore::new(MemoryStore::new());
    let configure = |b: hcss_auth::HcssConfigBuilder| {
        b.http_timeout(Duration::from_millis(300))
            .retry_after(Duration::ZERO)
    };
    let (a, browser, key, store) = expired_session(&mock, store, configure).await;
    let (b, _auth) = start_app_with_store(&mock, configure, store.clone()).await;
    mock.set_token_fault(Some(TokenFault::Stall));
    let first = {
        let (browser, on_a) = (browser.clone(), format!("{a}/whoami"));
        tokio::spawn(async move { browser.get(&on_a).await.status })
    };
    mock.wait_for(|c| c.refreshes == 1).await;
    assert_eq!(store.inner().load(key).await.unwrap().unwrap().version(), 1);
    store.refuse_writes(true);
    mock.set_token_fault(Some(TokenFault::ServerError));
    assert_eq!(first.await.unwrap(), 503);
    store.refuse_writes(false);
    mock.set_token_fault(None);
    let on_b = format!("{b}/whoami");
    let started = tokio::time::Instant::now();
    let first = browser.get(&on_b).await.status;
    let last = settled_status(&browser, &on_b, Duration::from_secs(30)).await;
    let waited = started.elapsed();
    let counts = mock.counts();
    assert_eq!(
        (first, last, counts.reuse_detected),
        (200, 200, 0),
        "(B's first status, B's status at last, reuse detected): B answered 503 for \
         {waited:?} waiting for a refresh that had failed"
    );
}

#[cfg(feature = "redis")]
mod redis_stall {
    //! Finding 3, on a Redis server of the test's own (`CLIENT PAUSE` stops every
    //! client's writes, so it must not be the shared test server).

    use super::*;
    use hcss_auth::store::{Coordination, LoginTransaction, RedisStore, SessionOwner, StoreFuture};
    use hcss_auth::{StateStore, TokenSet};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    struct OwnRedis {
        server: std::process::Child,
        port: String,
        url: String,
    }

    impl Drop for OwnRedis {
        fn drop(&mut self) {
            let _ = self.server.kill();
            let _ = self.server.wait();
        }
    }

    fn redis_cli(args: &[&str]) -> String {
        let out = std::process::Command::new("redis-cli")
            .args(args)
            .output()
            .expect("redis-cli runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// As `own_redis` in tests/it/redis.rs.
    async fn own_redis() -> Option<OwnRedis> {
        let path = std::env::var_os("PATH")?;
        let binary = std::env::split_paths(&path)
            .map(|dir| dir.join("redis-server"))
            .find(|path| path.is_file())?;
        loop {
            let port = free_port().to_string();
            let server = std::process::Command::new(&binary)
                .args(["--port", &port, "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(std::process::Stdio::null())
                .spawn()
                .ok()?;
            let mut own = OwnRedis {
                server,
                url: format!("redis://127.0.0.1:{port}"),
                port: port.clone(),
            };
            // Polls a process starting, not an event.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            while redis_cli(&["-p", &port, "ping"]).trim() != "PONG" {
                if own.server.try_wait().ok().flatten().is_some() {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "no redis-server");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let pid = format!("process_id:{}", own.server.id());
            if redis_cli(&["-p", &port, "info", "server"]).contains(&pid) {
                return Some(own);
            }
        }
    }

    /// A `RedisStore` whose next `replace_if_version` first pauses the server's writes
    /// (`CLIENT PAUSE 3000 WRITE`): the write is applied once the pause ends, after the
    /// client's 2 s reply timeout, as in a Redis stall or a failover.
    #[derive(Clone)]
    struct StallNextWrite {
        inner: RedisStore,
        port: String,
        armed: Arc<AtomicBool>,
    }

    impl StateStore for StallNextWrite {
        fn put_transaction(
            &self,
            key: StoreKey,
            tx: LoginTransaction,
            ttl: Duration,
        ) -> StoreFuture<'_, ()> {
            self.inner.put_transaction(key, tx, ttl)
        }
        fn take_transaction(&self, key: StoreKey) -> StoreFuture<'_, Option<LoginTransaction>> {
            self.inner.take_transaction(key)
        }
    }

    impl TokenStore for StallNextWrite {
        fn load(&self, key: StoreKey) -> StoreFuture<'_, Option<TokenSet>> {
            self.inner.load(key)
        }
        fn store(&self, key: StoreKey, t: TokenSet, ttl: Duration) -> StoreFuture<'_, ()> {
            self.inner.store(key, t, ttl)
        }
        fn remove(&self, key: StoreKey) -> StoreFuture<'_, ()> {
            self.inner.remove(key)
        }
        fn take(&self, key: StoreKey) -> StoreFuture<'_, Option<TokenSet>> {
            self.inner.take(key)
        }
        fn replace_if_version(
            &self,
            key: StoreKey,
            expected: u64,
            t: TokenSet,
            ttl: Duration,
        ) -> StoreFuture<'_, bool> {
            if self.armed.swap(false, Ordering::SeqCst) {
                redis_cli(&["-p", &self.port, "client", "pause", "3000", "write"]);
            }
            self.inner.replace_if_version(key, expected, t, ttl)
        }
        fn sessions_of(&self, owner: SessionOwner) -> StoreFuture<'_, Vec<StoreKey>> {
            self.inner.sessions_of(owner)
        }
    }

    impl Coordination for StallNextWrite {
        fn shared_secret(
            &self,
            name: &'static str,
            proposal: Vec<u8>,
        ) -> StoreFuture<'_, Option<Vec<u8>>> {
            self.inner.shared_secret(name, proposal)
        }
        fn try_lock(&self, key: StoreKey, o: String, ttl: Duration) -> StoreFuture<'_, bool> {
            self.inner.try_lock(key, o, ttl)
        }
        fn renew_lock(&self, key: StoreKey, o: String, ttl: Duration) -> StoreFuture<'_, bool> {
            self.inner.renew_lock(key, o, ttl)
        }
        fn unlock(&self, key: StoreKey, o: String) -> StoreFuture<'_, ()> {
            self.inner.unlock(key, o)
        }
    }

    /// Finding 3. Instance A marks the session's set as spent by it, and Redis stalls
    /// its writes (3 s, past the client's 2 s reply timeout) right then: the mark's reply
    /// times out, A gives up (half its HTTP timeout), never sends the refresh token, and
    /// releases its lock. The stall ends: the mark is applied, then the unlock. Nothing
    /// was spent and nothing is kept anywhere, yet every other instance now finds the set
    /// "spent by A" and waits `takeover_grace` (max(lease, 5 s): 10 s here, 50 s with the
    /// default HTTP timeout) before refreshing: its users get 503s throughout, with Redis
    /// and HCSS healthy. (A itself goes on at once: the mark is its own.)
    #[tokio::test]
    async fn a_mark_applied_after_its_refresher_gave_up_does_not_stall_other_instances() {
        let Some(own) = own_redis().await else {
            eprintln!("skipped: no redis-server");
            return;
        };
        let mock = MockHcssIdentity::start().await;
        let configure = |b: hcss_auth::HcssConfigBuilder| {
            b.http_timeout(Duration::from_secs(2))
                .retry_after(Duration::ZERO)
        };
        let store_a = StallNextWrite {
            inner: RedisStore::connect(&own.url)
                .await
                .unwrap()
                .without_near_cache(),
            port: own.port.clone(),
            armed: Arc::default(),
        };
        let store_b = RedisStore::connect(&own.url)
            .await
            .unwrap()
            .without_near_cache();
        let (a, browser, key, store_a) = expired_session(&mock, store_a, configure).await;
        let (b, _auth) = start_app_with_store(&mock, configure, store_b.clone()).await;
        store_a.armed.store(true, Ordering::SeqCst);
        let on_a = browser.get(&format!("{a}/whoami")).await.status;
        assert_eq!(on_a, 503, "A's mark timed out");
        // The stall ends: the mark lands (version 1, cleared by A at once: version 2),
        // then A's unlock. Polled: Redis tells nothing.
        let landed = tokio::time::Instant::now() + Duration::from_secs(20);
        while store_b.load(key).await.unwrap().map(|s| s.version()) < Some(1) {
            assert!(
                tokio::time::Instant::now() < landed,
                "the mark never landed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let lock_gone = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let mut conn = redis::Client::open(own.url.as_str())
                .unwrap()
                .get_multiplexed_async_connection()
                .await
                .unwrap();
            let lock: Option<String> = redis::cmd("GET")
                .arg(format!("hcss:lock:{}", key.as_str()))
                .query_async(&mut conn)
                .await
                .unwrap();
            if lock.is_none() {
                break;
            }
            assert!(tokio::time::Instant::now() < lock_gone, "A's lock stayed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(mock.counts().refreshes, 0, "RT1 was never sent");
        let on_b = format!("{b}/whoami");
        let started = tokio::time::Instant::now();
        let first = browser.get(&on_b).await.status;
        let last = settled_status(&browser, &on_b, Duration::from_secs(30)).await;
        let waited = started.elapsed();
        let counts = mock.counts();
        assert_eq!(
            (first, last, counts.reuse_detected),
            (200, 200, 0),
            "(B's first status, B's status at last, reuse detected): B answered 503 for \
             {waited:?} waiting for a refresh that never happened"
        );
    }
}
