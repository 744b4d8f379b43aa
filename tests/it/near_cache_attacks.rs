//! Attacks on `RedisStore`'s near cache: the ways a copy held in process could outlive
//! what Redis holds.
//!
//! These tests need `HCSS_TEST_REDIS_URL` (e.g. `redis://127.0.0.1:6379`); without it
//! each says it was skipped. Destructive ones run a `redis-server` of their own.
#![cfg(feature = "redis")]

use crate::common;

use std::io::Write as _;
use std::time::Duration;

use common::free_port;
use common::redis_help::{
    prefix, redis_conn, redis_url, remove_keys, server_addr, through, Cleanup,
};
use hcss_auth::store::{RedisStore, StoreKey};
use hcss_auth::{TokenSet, TokenStore};
use tokio::time::Instant;

/// The set of one version, the same whenever it is built: its times are fixed, not read
/// from the clock, so a set built a second later still equals the one stored.
fn tokens(version: u64) -> TokenSet {
    const ISSUED_AT: u64 = 4_000_000_000;
    let mut set = TokenSet::new(format!("access-{version}"), 3600).with_version(version);
    set.issued_at = ISSUED_AT;
    set.expires_at = ISSUED_AT + 3600;
    set.session_expires_at = ISSUED_AT + 3600;
    set
}

/// Polls `done` until it holds, failing with `what` after `limit`.
async fn within(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A Redis server of the test's own, stopped when dropped.
struct OwnRedis {
    server: std::process::Child,
    port: u16,
    url: String,
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `redis-server` by its full path, so that it can start itself again in place.
fn redis_server() -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("redis-server"))
        .find(|path| path.is_file())
}

async fn own_redis(test: &str, extra: &[&str]) -> Option<OwnRedis> {
    let Some(binary) = redis_server() else {
        let _ = writeln!(std::io::stderr(), "{test}: skipped (no redis-server)");
        return None;
    };
    loop {
        let port = free_port();
        let Ok(server) = std::process::Command::new(&binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(extra)
            .stdout(std::process::Stdio::null())
            .spawn()
        else {
            let _ = writeln!(std::io::stderr(), "{test}: skipped (no redis-server)");
            return None;
        };
        let mut own = OwnRedis {
            server,
            port,
            url: format!("redis://127.0.0.1:{port}"),
        };
        // Polls a process starting, not an event.
        let deadline = Instant::now() + Duration::from_secs(20);
        while redis_cli(port, &["ping"]).trim() != "PONG" {
            if own.server.try_wait().ok().flatten().is_some() {
                break; // it could not bind: another test's server took the port
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pid = format!("process_id:{}", own.server.id());
        if redis_cli(port, &["info", "server"]).contains(&pid) {
            return Some(own);
        }
    }
}

/// Four tasks loading `key` through `store` in a loop, as busy requests would.
struct Readers {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Readers {
    fn start(store: &RedisStore, key: StoreKey) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = (0..4)
            .map(|_| {
                let (store, stop) = (store.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let _ = store.load(key).await;
                    }
                })
            })
            .collect();
        Self { stop, tasks }
    }

    async fn stop(self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
    }
}

/// A store whose near cache tracks, and a key it holds a copy of (`v`).
async fn cached_copy(store: &RedisStore, writer: &RedisStore, v: u64) -> StoreKey {
    store.near_cache_tracking(0).await.expect("a near cache");
    let key = StoreKey::random();
    writer
        .store(key, tokens(v), Duration::from_secs(60))
        .await
        .unwrap();
    // A read that crosses the invalidation of the write keeps nothing: read again.
    for _ in 0..100 {
        assert_eq!(store.load(key).await.unwrap(), Some(tokens(v)));
        if store.near_cache_holds(key) {
            return key;
        }
    }
    panic!("the copy is never held");
}

// ---------------------------------------------------------------------------------------
// The tracking task's lifetime.

/// The tracking task runs on the runtime of the store's first use. When that runtime ends
/// (a setup phase run with `block_on`, a test's runtime with a store kept in a static, a
/// restarted worker), the task dies without a disconnection: the cache must not stay on
/// with no one to invalidate it and no heartbeat to age it.
#[test]
fn a_store_outliving_the_runtime_that_started_its_tracking_serves_nothing_stale() {
    let Some(redis) = redis_url("a_store_outliving_the_runtime_that_started_its_tracking") else {
        return;
    };
    let prefix = prefix();
    let b = {
        let first = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        first.block_on(async {
            let b = RedisStore::connect(&redis)
                .await
                .unwrap()
                .with_prefix(&prefix)
                .with_near_cache(Duration::from_secs(1));
            b.near_cache_tracking(0).await.unwrap();
            b
        })
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let a = RedisStore::connect(&redis)
            .await
            .unwrap()
            .with_prefix(&prefix)
            .without_near_cache();
        // Served again once tracking is back on this runtime (if it comes back at all).
        let tracked = tokio::time::timeout(Duration::from_secs(3), b.near_cache_tracking(0)).await;
        assert!(tracked.is_ok(), "tracking never comes back");
        let key = StoreKey::random();
        a.store(key, tokens(1), Duration::from_secs(60))
            .await
            .unwrap();
        // The data connection died with the first runtime too; it reconnects by itself.
        let mut tries = 0;
        while b.load(key).await.is_err() {
            tries += 1;
            assert!(tries < 50, "the data connection does not come back");
        }
        // The cache serves again on this runtime (a read crossing the invalidation of
        // A's write keeps nothing: read again).
        let mut tries = 0;
        while !b.near_cache_holds(key) {
            assert_eq!(b.load(key).await.unwrap(), Some(tokens(1)));
            tries += 1;
            assert!(tries < 100, "the cache never serves again");
        }
        a.remove(key).await.unwrap();
        // The copy goes with the push, or with its max age (1 s) at the latest.
        within(
            Duration::from_secs(4),
            "B still serves a removed session, past its near cache's max age",
            || b.cached(key).is_none(),
        )
        .await;
        remove_keys(&redis, &prefix).await;
    });
}

/// Stores dropped after use leave no tracking connection behind.
#[tokio::test]
async fn dropped_stores_leave_no_tracking_connection_behind() {
    let Some(_) = redis_url("dropped_stores_leave_no_tracking_connection_behind") else {
        return;
    };
    let Some(own) = own_redis("dropped_stores_leave_no_tracking_connection_behind", &[]).await
    else {
        return;
    };
    let tracking = || {
        redis_cli(own.port, &["client", "list"])
            .lines()
            .filter(|l| l.contains("name=hcss-near-cache"))
            .count()
    };
    for _ in 0..5 {
        let store = RedisStore::connect(&own.url).await.unwrap();
        store.near_cache_tracking(0).await.unwrap();
        // And a store re-prefixed after use: the first cache's task ends too.
        let store = store.with_prefix("other:");
        store.near_cache_tracking(0).await.unwrap();
        drop(store);
    }
    within(
        Duration::from_secs(4),
        "tracking connections outlive their stores",
        || tracking() == 0,
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Redis itself: flushes, expiry, restarts, refusals.

#[tokio::test]
async fn a_flush_empties_the_near_cache() {
    let Some(_) = redis_url("a_flush_empties_the_near_cache") else {
        return;
    };
    let Some(own) = own_redis("a_flush_empties_the_near_cache", &[]).await else {
        return;
    };
    let a = RedisStore::connect(&own.url).await.unwrap();
    let b = RedisStore::connect(&own.url).await.unwrap();
    for flush in ["FLUSHALL", "FLUSHDB"] {
        let key = cached_copy(&b, &a, 1).await;
        redis::cmd(flush)
            .query_async::<()>(&mut redis_conn(&own.url).await)
            .await
            .unwrap();
        within(Duration::from_secs(3), flush, || b.cached(key).is_none()).await;
    }
}

/// A key that expires by its TTL: Redis deletes it when it notices (an access, or its
/// active expiry cycle, which samples keys and may lag on a large keyspace), and only then
/// tells the trackers. `cached` promises never to give a set past its TTL.
#[tokio::test]
async fn a_copy_is_not_served_past_its_ttl() {
    let Some(_) = redis_url("a_copy_is_not_served_past_its_ttl") else {
        return;
    };
    let Some(own) = own_redis(
        "a_copy_is_not_served_past_its_ttl",
        &["--enable-debug-command", "yes"],
    )
    .await
    else {
        return;
    };
    // A busy Redis whose expiry cycle has not come to this key yet.
    redis_cli(own.port, &["debug", "set-active-expire", "0"]);
    let b = RedisStore::connect(&own.url).await.unwrap();
    b.near_cache_tracking(0).await.unwrap();
    let key = StoreKey::random();
    b.store(key, tokens(1), Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(b.load(key).await.unwrap(), Some(tokens(1)));
    tokio::time::sleep(Duration::from_millis(600)).await; // the TTL passing is the point
    let cached = b.cached(key);
    assert_eq!(b.load(key).await.unwrap(), None, "Redis has it expired");
    assert_eq!(cached, None, "served past its TTL");
}

/// After a restart, nothing from before is served, even before tracking is back.
#[tokio::test]
async fn nothing_from_before_a_restart_is_served() {
    let Some(_) = redis_url("nothing_from_before_a_restart_is_served") else {
        return;
    };
    let Some(own) = own_redis(
        "nothing_from_before_a_restart_is_served",
        &["--enable-debug-command", "yes"],
    )
    .await
    else {
        return;
    };
    let b = RedisStore::connect(&own.url).await.unwrap();
    let key = cached_copy(&b, &b, 1).await;
    // The server starts again in place (same process, same port), its data gone.
    redis_cli(own.port, &["debug", "crash-and-recover", "100"]);
    // The disconnection is read at once; no heartbeat needed.
    within(Duration::from_secs(3), "held after the server died", || {
        b.cached(key).is_none()
    })
    .await;
    while redis_cli(own.port, &["ping"]).trim() != "PONG" {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(b.cached(key).is_none());
    let mut tries = 0;
    while b.load(key).await.is_err() {
        tries += 1;
        assert!(tries < 50);
    }
    assert_eq!(b.load(key).await.unwrap(), None);
    assert!(b.cached(key).is_none());
}

/// A Redis that refuses `CLIENT TRACKING` (ACL): the store works and caches nothing.
#[tokio::test]
async fn tracking_refused_by_an_acl_leaves_the_cache_off() {
    let Some(_) = redis_url("tracking_refused_by_an_acl_leaves_the_cache_off") else {
        return;
    };
    let Some(own) = own_redis("tracking_refused_by_an_acl_leaves_the_cache_off", &[]).await else {
        return;
    };
    redis_cli(
        own.port,
        &[
            "acl",
            "setuser",
            "app",
            "on",
            ">pw",
            "~*",
            "+@all",
            "-client|tracking",
        ],
    );
    let url = format!("redis://app:pw@127.0.0.1:{}", own.port);
    let b = RedisStore::connect(&url).await.unwrap();
    let a = RedisStore::connect(&own.url).await.unwrap();
    let key = StoreKey::random();
    a.store(key, tokens(1), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(b.load(key).await.unwrap(), Some(tokens(1)));
    // Until Redis has refused the tracking connection at least once.
    within(
        Duration::from_secs(5),
        "tracking was never asked for",
        || redis_cli(own.port, &["acl", "log"]).contains("tracking"),
    )
    .await;
    for _ in 0..20 {
        assert_eq!(b.load(key).await.unwrap(), Some(tokens(1)));
        assert!(!b.near_cache_holds(key), "cached without tracking");
    }
    a.remove(key).await.unwrap();
    assert_eq!(b.load(key).await.unwrap(), None);
}

/// A Redis without RESP3 (`HELLO` unknown, as before Redis 6): the store works and
/// caches nothing.
#[tokio::test]
async fn a_redis_without_resp3_leaves_the_cache_off() {
    let Some(_) = redis_url("a_redis_without_resp3_leaves_the_cache_off") else {
        return;
    };
    let Some(own) = own_redis(
        "a_redis_without_resp3_leaves_the_cache_off",
        &["--rename-command", "HELLO", "\"\""],
    )
    .await
    else {
        return;
    };
    let b = RedisStore::connect(&own.url).await.unwrap();
    let key = StoreKey::random();
    b.store(key, tokens(1), Duration::from_secs(60))
        .await
        .unwrap();
    within(Duration::from_secs(5), "HELLO was never tried", || {
        redis_cli(own.port, &["info", "errorstats"]).contains("errorstat_ERR")
    })
    .await;
    for _ in 0..20 {
        assert_eq!(b.load(key).await.unwrap(), Some(tokens(1)));
        assert!(!b.near_cache_holds(key), "cached without tracking");
    }
}

// ---------------------------------------------------------------------------------------
// Races between reads, writes and invalidations.

/// An instance's own writes are seen by its next read at once, whatever reads of the same
/// session are in flight meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_writes_win_over_reads_in_flight() {
    let Some(redis) = redis_url("own_writes_win_over_reads_in_flight") else {
        return;
    };
    let prefix = prefix();
    let b = RedisStore::connect(&redis)
        .await
        .unwrap()
        .with_prefix(&prefix);
    let key = cached_copy(&b, &b, 0).await;
    let readers = Readers::start(&b, key);
    for v in 1..1000 {
        if v % 3 == 0 {
            b.remove(key).await.unwrap();
            if let Some(seen) = b.cached(key) {
                panic!("a removed set served: version {}", seen.version());
            }
            continue;
        }
        b.store(key, tokens(v), Duration::from_secs(60))
            .await
            .unwrap();
        if let Some(seen) = b.cached(key) {
            assert_eq!(seen.version(), v, "an older set served after a write");
        }
    }
    readers.stop().await;
    remove_keys(&redis, &prefix).await;
}

/// Reads on B racing writes on A: B's copy is never left behind a write for longer than
/// its push takes. (Right after A's write returns, B may still serve the set before it for
/// the moment the push takes to be read: in process, about one write in a few hundred
/// here. Across a browser's round trip, the push comes first.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_racing_writes_on_another_instance_keep_nothing_stale() {
    let Some(redis) = redis_url("reads_racing_writes_on_another_instance") else {
        return;
    };
    let prefix = prefix();
    let connect = || async {
        RedisStore::connect(&redis)
            .await
            .unwrap()
            .with_prefix(&prefix)
    };
    let (a, b) = (connect().await, connect().await);
    let key = cached_copy(&b, &a, 0).await;
    let readers = Readers::start(&b, key);
    for v in 1..300 {
        a.store(key, tokens(v), Duration::from_secs(60))
            .await
            .unwrap();
        within(Duration::from_secs(3), "B never caught up", || {
            b.cached(key).is_none_or(|seen| seen.version() == v)
        })
        .await;
    }
    readers.stop().await;
    remove_keys(&redis, &prefix).await;
}

/// A relay in front of Redis that can stall: it keeps every connection open and passes no
/// more bytes, as a network that drops packets without a reset.
struct StallingRelay {
    addr: String,
    stalled: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StallingRelay {
    async fn start(upstream: String) -> Self {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stalled.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = tokio::net::TcpStream::connect(&upstream).await else {
                    continue;
                };
                // As Redis does: no Nagle delay on small writes such as a push.
                let _ = (inbound.set_nodelay(true), outbound.set_nodelay(true));
                let (in_read, in_write) = inbound.into_split();
                let (out_read, out_write) = outbound.into_split();
                for (mut from, mut to) in [
                    (
                        Box::new(in_read) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                        Box::new(out_write) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
                    ),
                    (Box::new(out_read), Box::new(in_write)),
                ] {
                    let flag = flag.clone();
                    tokio::spawn(async move {
                        let mut buf = vec![0; 16 * 1024];
                        loop {
                            let Ok(n) = from.read(&mut buf).await else {
                                return;
                            };
                            if n == 0 {
                                return;
                            }
                            while flag.load(Ordering::SeqCst) {
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            if to.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        StallingRelay { addr, stalled }
    }
}

/// The tracking connection stalls without a reset (a network cut, a frozen Redis), and a
/// session is deleted meanwhile: the heartbeat turns the cache off within ~2 s.
#[tokio::test]
async fn a_silently_stalled_tracking_connection_is_noticed_by_the_heartbeat() {
    let Some(redis) = redis_url("a_silently_stalled_tracking_connection") else {
        return;
    };
    let prefix = prefix();
    let _cleanup = Cleanup::new(&redis, &prefix);
    let upstream = server_addr(&redis);
    let relay = StallingRelay::start(upstream).await;
    let b = RedisStore::connect(&through(&redis, &relay.addr))
        .await
        .unwrap()
        .with_prefix(&prefix);
    let a = RedisStore::connect(&redis)
        .await
        .unwrap()
        .with_prefix(&prefix)
        .without_near_cache();
    let key = cached_copy(&b, &a, 1).await;
    relay
        .stalled
        .store(true, std::sync::atomic::Ordering::SeqCst);
    a.remove(key).await.unwrap();
    within(
        Duration::from_secs(4),
        "a stalled tracking connection keeps serving",
        || b.cached(key).is_none(),
    )
    .await;
    relay
        .stalled
        .store(false, std::sync::atomic::Ordering::SeqCst);
    remove_keys(&redis, &prefix).await;
}

/// Turned off, then on again: the near cache is on (it was silently left off).
#[tokio::test]
async fn a_near_cache_turned_off_can_be_turned_on_again() {
    let Some(redis) = redis_url("a_near_cache_turned_off_can_be_turned_on_again") else {
        return;
    };
    let store = RedisStore::connect(&redis)
        .await
        .unwrap()
        .with_prefix(prefix())
        .without_near_cache()
        .with_near_cache(Duration::from_secs(5));
    assert!(store.near_cache_tracking(0).await.is_some());
}

/// Outside a Tokio runtime, `connect_lazy` is an error, not a panic.
#[test]
fn lazy_outside_a_runtime_is_an_error() {
    let err = RedisStore::connect_lazy("redis://127.0.0.1:6379").unwrap_err();
    assert!(err.to_string().contains("Tokio runtime"), "{err}");
}

/// A Redis that cannot be reached says why, and never shows the URL's password.
#[tokio::test]
async fn an_unreachable_redis_says_why_without_the_password() {
    let port = free_port();
    let err = RedisStore::connect(&format!("redis://app:s3cret-pw@127.0.0.1:{port}"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("refused"), "{err}");
    assert!(!err.contains("s3cret-pw"), "{err}");
}
