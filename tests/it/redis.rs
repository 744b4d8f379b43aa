//! Several app instances sharing one Redis: logins that cross instances, one refresh
//! between them, the conformance suite, and a Redis outage.
//!
//! These tests need `HCSS_TEST_REDIS_URL` (e.g. `redis://127.0.0.1:6379`); without it
//! each says it was skipped.
#![cfg(feature = "redis")]

use crate::common;

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::redis_help::{
    prefix, redis_conn, redis_url, remove_keys, server_addr, through, Cleanup,
};
use common::*;
use hcss_auth::store::{RedisStore, StoreKey};
use hcss_auth::testing::{store_conformance, MockHcssIdentity, TokenFault};
use hcss_auth::{HcssAuth, StoreError, TokenSet, TokenStore};
use tokio::net::{TcpListener, TcpStream};

const SESSION: &str = "hcss-session";

/// Starts one app instance on `listener` with `store`; every instance shares the public
/// callback URL, as they would behind a load balancer.
fn start_instance(
    mock: &MockHcssIdentity,
    listener: TcpListener,
    callback: &str,
    store: RedisStore,
) -> String {
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = mock
        .config_builder(callback)
        .scopes(SCOPES)
        .build()
        .unwrap();
    serve(
        listener,
        router(HcssAuth::with_store(config, store), mock.api_url()),
    );
    url
}

async fn two_instances(
    mock: &MockHcssIdentity,
    redis: &str,
    prefix: &str,
) -> (String, String, RedisStore) {
    let (a, b, store, _) = two_stores(mock, redis, prefix).await;
    (a, b, store)
}

/// Two instances, each with its own `RedisStore` (its own connections and near cache),
/// as two machines have; their stores, A's first.
async fn two_stores(
    mock: &MockHcssIdentity,
    redis: &str,
    prefix: &str,
) -> (String, String, RedisStore, RedisStore) {
    let connect = || async {
        RedisStore::connect(redis)
            .await
            .unwrap()
            .with_prefix(prefix)
    };
    let (store_a, store_b) = (connect().await, connect().await);
    let (a, b) = (
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let callback = format!("http://{}/hcss/callback", a.local_addr().unwrap());
    let a = start_instance(mock, a, &callback, store_a.clone());
    let b = start_instance(mock, b, &callback, store_b.clone());
    (a, b, store_a, store_b)
}

#[tokio::test]
async fn conformance_suite_passes_for_redis_store() {
    let Some(redis) = redis_url("conformance_suite_passes_for_redis_store") else {
        return;
    };
    let prefix = prefix();
    let store = RedisStore::connect(&redis)
        .await
        .unwrap()
        .with_prefix(&prefix);
    // With the near cache tracking, so that the suite runs through it.
    store.near_cache_tracking(0).await.expect("a near cache");
    store_conformance(Arc::new(store)).await;
    let uncached = RedisStore::connect(&redis)
        .await
        .unwrap()
        .with_prefix(format!("{prefix}uncached:"))
        .without_near_cache();
    assert!(uncached.near_cache_tracking(0).await.is_none());
    store_conformance(Arc::new(uncached)).await;
    remove_keys(&redis, &prefix).await;
}

#[tokio::test]
async fn a_login_started_on_one_instance_completes_on_another() {
    let Some(redis) = redis_url("a_login_started_on_one_instance_completes_on_another") else {
        return;
    };
    let prefix = prefix();
    let mock = MockHcssIdentity::start().await;
    let (a, b, _store) = two_instances(&mock, &redis, &prefix).await;
    let browser = Browser::new();
    let login = browser
        .get(&format!("{a}/hcss/login?return_to=%2Fwhoami"))
        .await;
    assert_eq!(login.status, 303);
    let consented = browser.get(login.location()).await;
    // The load balancer sends the callback to B.
    let callback = consented.location().replacen(&a, &b, 1);
    let done = browser.get(&callback).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), "/whoami");
    for instance in [&a, &b] {
        assert_eq!(
            browser.get(&format!("{instance}/whoami")).await.status,
            200,
            "{instance}"
        );
    }
    // And the transaction is gone from the shared store: replaying on A fails.
    let replay = browser.get(consented.location()).await;
    assert_eq!(replay.status, 400);
    assert_eq!(mock.counts().code_exchanges, 1);
    remove_keys(&redis, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_requests_across_two_instances_refresh_once() {
    let Some(redis) = redis_url("fifty_requests_across_two_instances_refresh_once") else {
        return;
    };
    let prefix = prefix();
    let mock = MockHcssIdentity::start().await;
    let (a, b, store) = two_instances(&mock, &redis, &prefix).await;
    let browser = Browser::new();
    let login = browser.get(&format!("{a}/hcss/login")).await;
    let consented = browser.get(login.location()).await;
    assert_eq!(browser.get(consented.location()).await.status, 303);
    let id = browser.cookie(SESSION).unwrap();
    let old = expire_session(&store, &id).await;

    let requests: Vec<_> = (0..50)
        .map(|i| {
            let browser = browser.clone();
            let url = format!("{}/business-units", if i % 2 == 0 { &a } else { &b });
            tokio::spawn(async move { browser.get(&url).await.status })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    let counts = mock.counts();
    assert_eq!(counts.refreshes, 1, "one refresh across both instances");
    assert_eq!(counts.reuse_detected, 0);
    let now = store.load(session_key(&id)).await.unwrap().unwrap();
    assert_ne!(
        now.refresh_token, old.refresh_token,
        "the rotated token is stored"
    );
    remove_keys(&redis, &prefix).await;
}

/// A TCP relay in front of Redis that can be cut and restored, to stage an outage.
struct Relay {
    addr: String,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let up = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (up2, links2) = (up.clone(), links.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                links2.lock().unwrap().push(task.abort_handle());
            }
        });
        Relay { addr, up, links }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_redis_outage_is_a_503_and_service_resumes_without_restart() {
    let Some(redis) = redis_url("a_redis_outage_is_a_503_and_service_resumes_without_restart")
    else {
        return;
    };
    let prefix = prefix();
    let _cleanup = Cleanup::new(&redis, &prefix);
    let upstream = server_addr(&redis);
    let relay = Relay::start(upstream).await;
    let mock = MockHcssIdentity::start().await;
    let store = RedisStore::connect(&through(&redis, &relay.addr))
        .await
        .unwrap()
        .with_prefix(&prefix);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callback = format!("http://{}/hcss/callback", listener.local_addr().unwrap());
    let app = start_instance(&mock, listener, &callback, store);
    let browser = Browser::new();
    let login = browser.get(&format!("{app}/hcss/login")).await;
    let consented = browser.get(login.location()).await;
    assert_eq!(browser.get(consented.location()).await.status, 303);
    assert_eq!(browser.get(&format!("{app}/whoami")).await.status, 200);

    relay.cut();
    let whoami = browser.get(&format!("{app}/whoami")).await;
    assert_eq!(whoami.status, 503, "{}", whoami.body);
    assert!(whoami.body.contains("retry"), "{}", whoami.body);
    // A login starts without the store (it is sealed in its cookie); its callback needs
    // the store and says to try again.
    let login = browser.get(&format!("{app}/hcss/login")).await;
    assert_eq!(login.status, 303, "{}", login.body);
    let consented = browser.get(login.location()).await;
    let callback = browser.get(consented.location()).await;
    assert_eq!(callback.status, 503, "{}", callback.body);
    assert!(callback.body.contains("try again"), "{}", callback.body);
    assert_eq!(browser.get(&format!("{app}/healthz")).await.body, "ok");

    relay.restore();
    // The connection comes back by itself; wait for it, bounded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let status = browser.get(&format!("{app}/whoami")).await.status;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(
            tokio::time::Instant::now() < deadline,
            "Redis did not come back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(browser.get(&format!("{app}/hcss/login")).await.status, 303);
    remove_keys(&redis, &prefix).await;
}

/// A three-node Redis Cluster on loopback, made of this machine's `redis-server`; the
/// nodes stop when it is dropped.
struct LocalCluster {
    nodes: Vec<std::process::Child>,
    urls: Vec<String>,
    dir: std::path::PathBuf,
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn redis_cli(args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn local_cluster() -> Option<LocalCluster> {
    if std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        return None;
    }
    let dir = std::env::temp_dir().join(format!(
        "hcss-cluster-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut cluster = LocalCluster {
        nodes: Vec::new(),
        urls: ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect(),
        dir: dir.clone(),
    };
    for port in &ports {
        let node = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &format!("nodes-{port}.conf"),
            ])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts");
        cluster.nodes.push(node);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for port in &ports {
        while redis_cli(&["-p", &port.to_string(), "ping"]).trim() != "PONG" {
            assert!(
                tokio::time::Instant::now() < deadline,
                "cluster node {port} did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut create = vec!["--cluster", "create"];
    create.extend(addrs.iter().map(String::as_str));
    create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
    redis_cli(&create);
    for port in &ports {
        while !redis_cli(&["-p", &port.to_string(), "cluster", "info"]).contains("cluster_state:ok")
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the cluster did not form"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Some(cluster)
}

#[tokio::test]
async fn redis_cluster_passes_the_conformance_suite_and_serves_a_login() {
    let test = "redis_cluster_passes_the_conformance_suite_and_serves_a_login";
    if redis_url(test).is_none() {
        return;
    }
    let Some(cluster) = local_cluster().await else {
        let _ = writeln!(std::io::stderr(), "{test}: skipped (no redis-server)");
        return;
    };
    let urls: Vec<&str> = cluster.urls.iter().map(String::as_str).collect();
    let store = RedisStore::connect_cluster(&urls).await.unwrap();
    store_conformance(Arc::new(store.clone())).await;

    // Two instances on the cluster: a login across them, one refresh for both.
    let mock = MockHcssIdentity::start().await;
    let (a, b) = (
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let callback = format!("http://{}/hcss/callback", a.local_addr().unwrap());
    let a = start_instance(&mock, a, &callback, store.clone());
    let b = start_instance(&mock, b, &callback, store.clone());
    let browser = Browser::new();
    let login = browser.get(&format!("{a}/hcss/login")).await;
    let consented = browser.get(login.location()).await;
    let done = browser.get(&consented.location().replacen(&a, &b, 1)).await;
    assert_eq!(done.status, 303, "{}", done.body);
    expire_session(&store, &browser.cookie(SESSION).unwrap()).await;
    for instance in [&a, &b] {
        assert_eq!(browser.get(&format!("{instance}/whoami")).await.status, 200);
    }
    assert_eq!(mock.counts().refreshes, 1);
}

/// A store of its own for a fault case, and the prefix to clean up.
async fn fault_store(redis: &str) -> (RedisStore, String) {
    let prefix = prefix();
    let store = RedisStore::connect(redis)
        .await
        .unwrap()
        .with_prefix(prefix.clone());
    (store, prefix)
}

#[tokio::test]
async fn fault_outage_with_oauth_error_bodies_keeps_the_session() {
    let Some(redis) = redis_url("fault_outage_with_oauth_error_bodies_keeps_the_session") else {
        return;
    };
    let (store, prefix) = fault_store(&redis).await;
    let _cleanup = Cleanup::new(&redis, &prefix);
    common::faults::outage_with_oauth_error_bodies_keeps_the_session(store).await;
    remove_keys(&redis, &prefix).await;
}

#[tokio::test]
async fn fault_invalid_client_keeps_the_session() {
    let Some(redis) = redis_url("fault_invalid_client_keeps_the_session") else {
        return;
    };
    let (store, prefix) = fault_store(&redis).await;
    let _cleanup = Cleanup::new(&redis, &prefix);
    common::faults::invalid_client_keeps_the_session(store).await;
    remove_keys(&redis, &prefix).await;
}

#[tokio::test]
async fn fault_a_cancelled_request_does_not_lose_the_rotated_token_and_frees_the_lock() {
    let Some(redis) = redis_url("fault_a_cancelled_request_does_not_lose_the_rotated_token") else {
        return;
    };
    let (store, prefix) = fault_store(&redis).await;
    let _cleanup = Cleanup::new(&redis, &prefix);
    let key = common::faults::a_cancelled_request_does_not_lose_the_rotated_token(store).await;
    let lock: Option<String> = redis::cmd("GET")
        .arg(format!("{prefix}lock:tok:{key}"))
        .query_async(&mut redis_conn(&redis).await)
        .await
        .unwrap();
    assert_eq!(lock, None, "the refresh lock was released");
    remove_keys(&redis, &prefix).await;
}

#[tokio::test]
async fn fault_logout_during_a_refresh_wins() {
    let Some(redis) = redis_url("fault_logout_during_a_refresh_wins") else {
        return;
    };
    let (store, prefix) = fault_store(&redis).await;
    let _cleanup = Cleanup::new(&redis, &prefix);
    common::faults::logout_during_a_refresh_wins(store).await;
    remove_keys(&redis, &prefix).await;
}

#[tokio::test]
async fn fault_waiters_share_a_failed_refresh() {
    let Some(redis) = redis_url("fault_waiters_share_a_failed_refresh") else {
        return;
    };
    let (store, prefix) = fault_store(&redis).await;
    let _cleanup = Cleanup::new(&redis, &prefix);
    common::faults::waiters_share_a_failed_refresh(store).await;
    remove_keys(&redis, &prefix).await;
}

#[tokio::test]
async fn fault_an_unreadable_value_is_signed_out() {
    let Some(redis) = redis_url("fault_an_unreadable_value_is_signed_out") else {
        return;
    };
    let (store, prefix) = fault_store(&redis).await;
    let _cleanup = Cleanup::new(&redis, &prefix);
    let (url, tok_prefix) = (redis.clone(), format!("{prefix}tok:"));
    let key = common::faults::an_unreadable_value_is_signed_out(store, async |key| {
        redis::cmd("SET")
            .arg(format!("{tok_prefix}{key}"))
            .arg("{not json")
            .query_async::<()>(&mut redis_conn(&url).await)
            .await
            .unwrap();
    })
    .await;
    let left: Option<String> = redis::cmd("GET")
        .arg(format!("{prefix}tok:{key}"))
        .query_async(&mut redis_conn(&redis).await)
        .await
        .unwrap();
    assert_eq!(left, None, "the unreadable value was removed");
    remove_keys(&redis, &prefix).await;
}

/// A Redis server of this test's own, so that making it refuse writes (`maxmemory` with
/// `noeviction`) disturbs no other test.
struct OwnRedis {
    server: std::process::Child,
    url: String,
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// A Redis server of this test's own, started by its full path (so that `DEBUG
/// CRASH-AND-RECOVER` can start it again in place), on a port no other test's server
/// took first (checked by its process id).
async fn own_redis() -> Option<OwnRedis> {
    let path = std::env::var_os("PATH")?;
    let binary = std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|path| path.is_file())?;
    loop {
        let port = free_port();
        let server = std::process::Command::new(&binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(["--enable-debug-command", "local"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let mut own = OwnRedis {
            server,
            url: format!("redis://127.0.0.1:{port}"),
        };
        // Polls a process starting, not an event.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let port = port.to_string();
        while redis_cli(&["-p", &port, "ping"]).trim() != "PONG" {
            if own.server.try_wait().ok().flatten().is_some() {
                break; // it could not bind: another test's server took the port
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pid = format!("process_id:{}", own.server.id());
        if redis_cli(&["-p", &port, "info", "server"]).contains(&pid) {
            return Some(own);
        }
    }
}

impl OwnRedis {
    /// The server starts again in place (same process, same port), its data gone; waits
    /// until it answers.
    async fn restart(&self) {
        let port = self.url.rsplit(':').next().unwrap();
        redis_cli(&["-p", port, "debug", "crash-and-recover", "100"]);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while redis_cli(&["-p", port, "ping"]).trim() != "PONG" {
            assert!(
                tokio::time::Instant::now() < deadline,
                "redis-server did not restart"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn fault_refused_writes_keep_the_rotated_token() {
    let Some(_) = redis_url("fault_refused_writes_keep_the_rotated_token") else {
        return;
    };
    let Some(own) = own_redis().await else {
        let _ = writeln!(
            std::io::stderr(),
            "fault_refused_writes: skipped (no redis-server)"
        );
        return;
    };
    let store = RedisStore::connect(&own.url).await.unwrap();
    let url = own.url.clone();
    common::faults::refused_writes_keep_the_rotated_token(store, async |refuse| {
        let mut conn = redis_conn(&url).await;
        let limit = if refuse { "1" } else { "0" };
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg("noeviction")
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(limit)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    })
    .await;
}

/// A logout on instance B while instance A refreshes the session: the logout wins on
/// both, and A revokes the refresh token it was given.
#[tokio::test]
async fn fault_logout_on_one_instance_during_a_refresh_on_another_wins() {
    let Some(redis) = redis_url("fault_logout_on_one_instance_during_a_refresh_on_another_wins")
    else {
        return;
    };
    let prefix = prefix();
    let mock = MockHcssIdentity::start().await;
    let (a, b, store) = two_instances(&mock, &redis, &prefix).await;
    let browser = Browser::new();
    browser.login_at(&a).await;
    let id = browser.cookie(SESSION).unwrap();
    expire_session(&store, &id).await;
    mock.set_token_fault(Some(TokenFault::SlowAfterRotating(Duration::from_secs(2))));
    let refreshing = {
        let (browser, a) = (browser.clone(), a.clone());
        tokio::spawn(async move { browser.get(&format!("{a}/whoami")).await.status })
    };
    mock.wait_for(|c| c.refreshes == 1).await;
    let logout = browser
        .request("POST", &format!("{b}/hcss/logout"), &[])
        .await;
    assert_eq!(logout.status, 303);
    assert_eq!(refreshing.await.unwrap(), 401, "A's request is signed out");
    assert_eq!(mock.counts().revocations, 2, "both refresh tokens revoked");
    assert!(store.load(session_key(&id)).await.unwrap().is_none());
    for instance in [&a, &b] {
        browser.set_cookie(SESSION, &id);
        assert_eq!(browser.get(&format!("{instance}/whoami")).await.status, 401);
    }
    remove_keys(&redis, &prefix).await;
}

#[tokio::test]
async fn fault_refreshing_a_kept_set_keeps_the_session() {
    let Some(redis) = redis_url("fault_refreshing_a_kept_set_keeps_the_session") else {
        return;
    };
    let (store, prefix) = fault_store(&redis).await;
    let _cleanup = Cleanup::new(&redis, &prefix);
    common::faults::refreshing_a_kept_set_keeps_the_session(common::faults::FaultyStore::new(
        store,
    ))
    .await;
    remove_keys(&redis, &prefix).await;
}

/// Logging out of a session whose stored value no longer parses signs out.
#[tokio::test]
async fn fault_logout_of_an_unreadable_session_signs_out() {
    let Some(redis) = redis_url("fault_logout_of_an_unreadable_session_signs_out") else {
        return;
    };
    let (store, prefix) = fault_store(&redis).await;
    let _cleanup = Cleanup::new(&redis, &prefix);
    let mock = MockHcssIdentity::start().await;
    let (url, _auth) = start_app_with_store(&mock, |b| b, store).await;
    let browser = Browser::new();
    browser.login_at(&url).await;
    let key = session_key(&browser.cookie(SESSION).unwrap());
    redis::cmd("SET")
        .arg(format!("{prefix}tok:{key}"))
        .arg("{not json")
        .query_async::<()>(&mut redis_conn(&redis).await)
        .await
        .unwrap();
    let logout = browser
        .request("POST", &format!("{url}/hcss/logout"), &[])
        .await;
    assert_eq!(logout.status, 303, "{}", logout.body);
    assert!(browser.cookie(SESSION).is_none(), "the cookie is cleared");
    remove_keys(&redis, &prefix).await;
}

/// Instance A keeps a refreshed set in memory while the store refuses token writes (its
/// lock still works); the user's next request lands on B once the store recovers. B must
/// not spend the refresh token A already rotated: A holds the lock until it has written
/// its set, which it does as soon as the store takes writes.
#[tokio::test]
async fn fault_a_set_kept_on_one_instance_is_not_spent_again_by_another() {
    let Some(redis) = redis_url("fault_a_set_kept_on_one_instance_is_not_spent_again_by_another")
    else {
        return;
    };
    let (store, prefix) = fault_store(&redis).await;
    let _cleanup = Cleanup::new(&redis, &prefix);
    let store = common::faults::FaultyStore::new(store);
    let mock = MockHcssIdentity::start().await;
    let configure = |b: hcss_auth::HcssConfigBuilder| b.http_timeout(Duration::from_millis(300));
    let (a, _) = start_app_with_store(&mock, configure, store.clone()).await;
    let (b, _) = start_app_with_store(&mock, configure, store.clone()).await;
    let browser = Browser::new();
    browser.login_at(&a).await;
    let key = session_key(&browser.cookie(SESSION).unwrap());
    common::faults::age(&store, key).await;
    // The store refuses writes once HCSS has rotated the token.
    let status =
        common::faults::answered_after_rotating(&mock, &browser, &format!("{a}/whoami"), 1, || {
            store.refuse_writes(true)
        })
        .await;
    assert_eq!(status, 200, "served from A's memory");
    store.refuse_writes(false);
    // B may have to wait for A's write (a 503 while A holds the lock); it never refreshes
    // from the spent set.
    let mut tries = 0;
    while browser.get(&format!("{b}/whoami")).await.status != 200 {
        tries += 1;
        assert!(tries < 20, "B serves the session once A has written it");
    }
    let counts = mock.counts();
    assert_eq!(counts.reuse_detected, 0, "B spent the token A had rotated");
    assert_eq!(counts.refreshes, 1);
    assert_eq!(browser.get(&format!("{a}/whoami")).await.status, 200);
    remove_keys(&redis, &prefix).await;
}

/// Two layers sharing Redis share company tokens: fifty concurrent calls over both make
/// one token call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn company_tokens_are_shared_by_instances() {
    let Some(redis) = redis_url("company_tokens_are_shared_by_instances") else {
        return;
    };
    let prefix = prefix();
    let mock = MockHcssIdentity::start().await;
    let store = RedisStore::connect(&redis)
        .await
        .unwrap()
        .with_prefix(&prefix);
    let (_, a) = start_app_with_store(&mock, |b| b, store.clone()).await;
    let (_, b) = start_app_with_store(&mock, |b| b, store).await;
    let instances = [
        hcss_auth::HcssCompanyTokens::new(&a),
        hcss_auth::HcssCompanyTokens::new(&b),
    ];
    let calls: Vec<_> = (0..50)
        .map(|i| {
            let companies = instances[i % 2].clone();
            tokio::spawn(async move { companies.token("shared-co").await.unwrap() })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    assert_eq!(mock.counts().company_grants, 1);
    remove_keys(&redis, &prefix).await;
}

#[tokio::test]
async fn fault_sessions_end_by_subject_and_by_company() {
    let Some(redis) = redis_url("fault_sessions_end_by_subject_and_by_company") else {
        return;
    };
    let (store, prefix) = fault_store(&redis).await;
    let _cleanup = Cleanup::new(&redis, &prefix);
    common::faults::sessions_end_by_subject_and_by_company(store).await;
    remove_keys(&redis, &prefix).await;
}

/// Redis loses the shared cookie key (a restart without persistence, a failover): an
/// instance started afterwards makes a new one, and the running ones take it at their
/// next login (keeping theirs to open cookies sealed before), so logins crossing old and
/// new instances keep working without a restart.
#[tokio::test]
async fn instances_agree_on_the_cookie_key_again_after_redis_lost_it() {
    let Some(redis) = redis_url("instances_agree_on_the_cookie_key_again_after_redis_lost_it")
    else {
        return;
    };
    let prefix = prefix();
    let mock = MockHcssIdentity::start().await;
    let on = |base: &str, url: &str| {
        let path = url.splitn(4, '/').nth(3).unwrap_or("").to_owned();
        format!("{base}/{path}")
    };
    let store = || async {
        RedisStore::connect(&redis)
            .await
            .unwrap()
            .with_prefix(&prefix)
    };
    let (a, b) = (
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    );
    let callback = format!("http://{}/hcss/callback", a.local_addr().unwrap());
    let a = start_instance(&mock, a, &callback, store().await);
    let browser = Browser::new();
    browser.login_at(&a).await; // A publishes the shared key
    remove_keys(&redis, &prefix).await; // Redis loses its data
    let b = start_instance(&mock, b, &callback, store().await);
    let seen = Browser::new().get(&format!("{b}/hcss/login")).await;
    assert_eq!(seen.status, 303, "B makes a new key");
    // A login start asks the store again once per second at most.
    mock.clock().advance(std::time::Duration::from_secs(2));

    for (from, to) in [(&a, &b), (&b, &a), (&a, &b)] {
        let browser = Browser::new();
        let login = browser.get(&format!("{from}/hcss/login")).await;
        let authorized = browser.get(login.location()).await;
        let done = browser.get(&on(to, authorized.location())).await;
        assert_eq!(
            done.status, 303,
            "started on {from}, finished on {to}: {}",
            done.body
        );
    }
    remove_keys(&redis, &prefix).await;
}

/// Signs in at A, then makes B serve the session once, so that B's near cache holds it.
async fn signed_in_and_cached_on_b(
    browser: &Browser,
    a: &str,
    b: &str,
    store_b: &RedisStore,
) -> String {
    store_b.near_cache_tracking(0).await.expect("a near cache");
    browser.login_at(a).await;
    let id = browser.cookie(SESSION).unwrap();
    assert_eq!(browser.get(&format!("{b}/whoami")).await.status, 200);
    assert!(
        store_b.near_cache_holds(session_key(&id)),
        "B serves the session from its near cache"
    );
    id
}

/// Two instances on one Redis, signed in at A and served once by B (so that B's near
/// cache holds the session); `None` when the test is skipped.
struct CachedOnB {
    redis: String,
    prefix: String,
    mock: MockHcssIdentity,
    a: String,
    b: String,
    store_a: RedisStore,
    store_b: RedisStore,
    browser: Browser,
    id: String,
}

impl CachedOnB {
    async fn start(test: &str) -> Option<Self> {
        let redis = redis_url(test)?;
        let prefix = prefix();
        let mock = MockHcssIdentity::start().await;
        let (a, b, store_a, store_b) = two_stores(&mock, &redis, &prefix).await;
        let browser = Browser::new();
        let id = signed_in_and_cached_on_b(&browser, &a, &b, &store_b).await;
        Some(Self {
            redis,
            prefix,
            mock,
            a,
            b,
            store_a,
            store_b,
            browser,
            id,
        })
    }

    async fn whoami_on_b(&self) -> u16 {
        self.browser.set_cookie(SESSION, &self.id);
        self.browser.get(&format!("{}/whoami", self.b)).await.status
    }

    async fn clean_up(self) {
        remove_keys(&self.redis, &self.prefix).await;
    }
}

#[tokio::test]
async fn near_cache_a_logout_on_one_instance_is_refused_on_the_other_at_once() {
    let Some(redis) =
        redis_url("near_cache_a_logout_on_one_instance_is_refused_on_the_other_at_once")
    else {
        return;
    };
    let prefix = prefix();
    let mock = MockHcssIdentity::start().await;
    let (a, b, _, store_b) = two_stores(&mock, &redis, &prefix).await;
    for _ in 0..10 {
        let browser = Browser::new();
        let id = signed_in_and_cached_on_b(&browser, &a, &b, &store_b).await;
        let logout = browser
            .request("POST", &format!("{a}/hcss/logout"), &[])
            .await;
        assert_eq!(logout.status, 303);
        // The very next request, on B, with the old cookie.
        browser.set_cookie(SESSION, &id);
        assert_eq!(browser.get(&format!("{b}/whoami")).await.status, 401);
    }
    remove_keys(&redis, &prefix).await;
}

#[tokio::test]
async fn near_cache_a_refresh_on_one_instance_is_used_by_the_other() {
    let Some(t) =
        CachedOnB::start("near_cache_a_refresh_on_one_instance_is_used_by_the_other").await
    else {
        return;
    };
    t.mock.expire_access_tokens();
    let refreshed = t.browser.get(&format!("{}/business-units", t.a)).await;
    assert_eq!(refreshed.status, 200);
    assert_eq!(t.mock.counts().refreshes, 1);
    // B's copy was of the old tokens: it now uses A's, which the mock's API accepts.
    assert!(!t.store_b.near_cache_holds(session_key(&t.id)));
    let on_b = t.browser.get(&format!("{}/business-units", t.b)).await;
    assert_eq!(on_b.status, 200);
    assert_eq!(t.whoami_on_b().await, 200);
    let counts = t.mock.counts();
    assert_eq!(counts.refreshes, 1, "B refreshed nothing");
    assert_eq!(counts.reuse_detected, 0);
    let stored = t.store_a.load(session_key(&t.id)).await.unwrap().unwrap();
    assert_eq!(
        stored.version(),
        2,
        "marked as being refreshed, then refreshed"
    );
    t.clean_up().await;
}

#[tokio::test]
async fn near_cache_a_session_ended_on_one_instance_is_over_on_the_other() {
    let test = "near_cache_a_session_ended_on_one_instance_is_over_on_the_other";
    let Some(t) = CachedOnB::start(test).await else {
        return;
    };
    // HCSS refuses the access token early and the grant is gone: A's refresh ends the
    // session. B's copy still looks live by its times.
    t.mock.revoke_access_tokens();
    t.mock.set_token_fault(Some(TokenFault::InvalidGrant));
    let ended = t
        .browser
        .get(&format!("{}/business-units-retrying", t.a))
        .await;
    assert_eq!(ended.status, 401, "{}", ended.body);
    assert_eq!(t.whoami_on_b().await, 401);
    t.clean_up().await;
}

#[tokio::test]
async fn near_cache_a_lost_tracking_connection_serves_nothing_stale() {
    let test = "near_cache_a_lost_tracking_connection_serves_nothing_stale";
    let Some(t) = CachedOnB::start(test).await else {
        return;
    };
    let (connection, client) = t.store_b.near_cache_tracking(0).await.unwrap();
    // The connection drops, and the session is deleted before B is tracking again:
    // Redis has no one to tell.
    let mut conn = redis_conn(&t.redis).await;
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(client)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    redis::cmd("DEL")
        .arg(format!("{}tok:{}", t.prefix, session_key(&t.id)))
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    t.store_b.near_cache_tracking(connection).await.unwrap();
    assert_eq!(t.whoami_on_b().await, 401);
    t.clean_up().await;
}

#[tokio::test]
async fn near_cache_after_redis_restarts_nothing_stale_is_served() {
    let Some(_) = redis_url("near_cache_after_redis_restarts_nothing_stale_is_served") else {
        return;
    };
    let Some(own) = own_redis().await else {
        let _ = writeln!(
            std::io::stderr(),
            "near_cache_after_redis_restarts: skipped (no redis-server)"
        );
        return;
    };
    let mock = MockHcssIdentity::start().await;
    let (a, b, _, store_b) = two_stores(&mock, &own.url, "hcss:").await;
    let browser = Browser::new();
    signed_in_and_cached_on_b(&browser, &a, &b, &store_b).await;
    let (connection, _) = store_b.near_cache_tracking(0).await.unwrap();
    // A restart without persistence: every session is gone.
    own.restart().await;
    store_b.near_cache_tracking(connection).await.unwrap();
    // The first request may find the data connection broken (503, as in any outage);
    // none is served the session.
    for instance in [&b, &a] {
        let first = browser.get(&format!("{instance}/whoami")).await.status;
        assert!(first == 401 || first == 503, "{instance}: {first}");
        assert_eq!(browser.get(&format!("{instance}/whoami")).await.status, 401);
    }
}

#[tokio::test]
async fn fault_a_lost_reply_to_the_refresh_write_keeps_the_session() {
    let Some(redis) = redis_url("fault_a_lost_reply_to_the_refresh_write_keeps_the_session") else {
        return;
    };
    let (store, prefix) = fault_store(&redis).await;
    let _cleanup = Cleanup::new(&redis, &prefix);
    common::faults::a_lost_reply_to_the_refresh_write_keeps_the_session(
        common::faults::FaultyStore::new(store),
    )
    .await;
    remove_keys(&redis, &prefix).await;
}

#[tokio::test]
async fn fault_a_kept_set_stored_after_all_is_not_revoked() {
    let Some(redis) = redis_url("fault_a_kept_set_stored_after_all_is_not_revoked") else {
        return;
    };
    let (store, prefix) = fault_store(&redis).await;
    let _cleanup = Cleanup::new(&redis, &prefix);
    common::faults::a_kept_set_stored_after_all_is_not_revoked(common::faults::FaultyStore::new(
        store,
    ))
    .await;
    remove_keys(&redis, &prefix).await;
}

/// The lease of A's kept set lapses (its lock key is gone, as after an outage longer
/// than the lease); B takes the free lock and must still not spend the token.
#[tokio::test]
async fn fault_a_kept_set_is_not_spent_again_after_its_lease_lapsed() {
    let Some(redis) = redis_url("fault_a_kept_set_is_not_spent_again_after_its_lease_lapsed")
    else {
        return;
    };
    let (store, prefix) = fault_store(&redis).await;
    let _cleanup = Cleanup::new(&redis, &prefix);
    let lock_prefix = format!("{prefix}lock:tok:");
    let conn_url = redis.clone();
    common::faults::a_kept_set_is_not_spent_again_after_its_lease_lapsed(
        common::faults::FaultyStore::new(store),
        async |key| {
            let removed: i64 = redis::cmd("DEL")
                .arg(format!("{lock_prefix}{key}"))
                .query_async(&mut redis_conn(&conn_url).await)
                .await
                .unwrap();
            assert_eq!(removed, 1, "A's refresh lock was held");
        },
    )
    .await;
    remove_keys(&redis, &prefix).await;
}

#[tokio::test]
async fn fault_a_logout_whose_reply_is_lost_still_revokes() {
    let Some(redis) = redis_url("fault_a_logout_whose_reply_is_lost_still_revokes") else {
        return;
    };
    let (store, prefix) = fault_store(&redis).await;
    let _cleanup = Cleanup::new(&redis, &prefix);
    common::faults::a_logout_whose_reply_is_lost_still_revokes(common::faults::FaultyStore::new(
        store,
    ))
    .await;
    remove_keys(&redis, &prefix).await;
}

/// Sets `maxmemory` on a server of the test's own: `true` makes it refuse writes (with
/// `noeviction`), `false` lifts the limit.
async fn refuse_writes_on(url: &str, refuse: bool) {
    let mut conn = redis_conn(url).await;
    for (name, value) in [
        ("maxmemory-policy", "noeviction"),
        ("maxmemory", if refuse { "1" } else { "0" }),
    ] {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
}

/// A real Redis whose writes are paused past the client's reply timeout while the
/// refreshed set is written: the write is applied when the pause ends, after its reply
/// was given up on, and the retry finds it. Nothing is revoked, and the next refresh
/// spends the rotated token (before: the retry's `false` revoked the token just stored).
#[tokio::test]
async fn fault_real_redis_a_write_answered_after_its_timeout_keeps_the_session() {
    let test = "fault_real_redis_a_write_answered_after_its_timeout_keeps_the_session";
    let Some(_) = redis_url(test) else {
        return;
    };
    let Some(own) = own_redis().await else {
        let _ = writeln!(std::io::stderr(), "{test}: skipped (no redis-server)");
        return;
    };
    let store = RedisStore::connect(&own.url).await.unwrap();
    let mock = MockHcssIdentity::start().await;
    // The write is retried for half the HTTP timeout: longer than the pause.
    let (url, browser, key, store) =
        common::faults::expired_session(&mock, store, |b| b.http_timeout(Duration::from_secs(8)))
            .await;
    let whoami = format!("{url}/whoami");
    mock.set_token_fault(Some(TokenFault::SlowAfterRotating(Duration::from_millis(
        300,
    ))));
    let request = {
        let (browser, whoami) = (browser.clone(), whoami.clone());
        tokio::spawn(async move { browser.get(&whoami).await.status })
    };
    mock.wait_for(|c| c.refreshes == 1).await;
    let port = own.url.rsplit(':').next().unwrap().to_owned();
    assert_eq!(
        redis_cli(&["-p", &port, "client", "pause", "2600", "write"]).trim(),
        "OK"
    );
    mock.set_token_fault(None);
    assert_eq!(request.await.unwrap(), 200);
    assert_eq!(
        mock.counts().revocations,
        0,
        "the write that landed late was taken for a supersession, its token revoked"
    );
    common::faults::age(&store, key).await;
    assert_eq!(browser.get(&whoami).await.status, 200);
    let counts = mock.counts();
    assert_eq!(counts.refreshes, 2);
    assert_eq!(counts.reuse_detected, 0);
}

/// A real Redis out of memory for longer than the refresh lock's lease, right after HCSS
/// rotated a session's token on instance A (which keeps the new set in memory); the next
/// request goes to instance B as soon as Redis takes writes again. B must not refresh
/// from the spent set Redis still holds (a reuse, which ends the session at HCSS): it
/// waits for A's set.
#[tokio::test]
async fn fault_real_redis_out_of_memory_past_the_lease_spends_no_token_twice() {
    let test = "fault_real_redis_out_of_memory_past_the_lease_spends_no_token_twice";
    let Some(_) = redis_url(test) else {
        return;
    };
    let Some(own) = own_redis().await else {
        let _ = writeln!(std::io::stderr(), "{test}: skipped (no redis-server)");
        return;
    };
    let mock = MockHcssIdentity::start().await;
    let http_timeout = Duration::from_millis(300);
    let configure =
        |b: hcss_auth::HcssConfigBuilder| b.http_timeout(http_timeout).retry_after(Duration::ZERO);
    let store_a = RedisStore::connect(&own.url).await.unwrap();
    let store_b = RedisStore::connect(&own.url).await.unwrap();
    let (a, browser, key, store_a) =
        common::faults::expired_session(&mock, store_a, configure).await;
    let (b, _) = start_app_with_store(&mock, configure, store_b).await;
    mock.set_token_fault(Some(TokenFault::SlowAfterRotating(Duration::from_millis(
        100,
    ))));
    let request = {
        let (browser, a) = (browser.clone(), a.clone());
        tokio::spawn(async move { browser.get(&format!("{a}/whoami")).await.status })
    };
    mock.wait_for(|c| c.refreshes == 1).await;
    refuse_writes_on(&own.url, true).await;
    mock.set_token_fault(None);
    assert_eq!(request.await.unwrap(), 200, "A serves the set it keeps");
    // The fault lasts longer than the lease (eight HTTP timeouts): a duration of the
    // fault, not a wait for an event.
    tokio::time::sleep(http_timeout * 8 + Duration::from_millis(1800)).await;
    refuse_writes_on(&own.url, false).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = browser.get(&format!("{b}/whoami")).await.status;
        assert_eq!(
            mock.counts().reuse_detected,
            0,
            "B spent the token A had spent (B answered {status})"
        );
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "B waits, it does not sign out");
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never got A's set"
        );
        // Polled: A writes on its own schedule, with nothing here to wait on.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(browser.get(&format!("{a}/whoami")).await.status, 200);
    assert_eq!(mock.counts().refreshes, 1, "A's refresh served both");
    assert!(store_a.load(key).await.unwrap().is_some());
}

/// Every member of every `{prefix}own:` index, with the index it is in.
async fn owner_index_members(redis: &str, prefix: &str) -> Vec<(String, String)> {
    let mut conn = redis_conn(redis).await;
    let indexes: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}own:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut members = Vec::new();
    for index in indexes {
        let of: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&index)
            .query_async(&mut conn)
            .await
            .unwrap();
        members.extend(of.into_iter().map(|m| (index.clone(), m)));
    }
    members
}

/// Company tokens cached in Redis are no sessions: ending the sessions of their
/// companies ends none, and they live apart from sessions (not under `tok:`, in no `own:`
/// index).
#[tokio::test]
async fn company_tokens_in_redis_are_not_sessions() {
    let Some(redis) = redis_url("company_tokens_in_redis_are_not_sessions") else {
        return;
    };
    let prefix = prefix();
    let mock = MockHcssIdentity::start().await;
    let store = RedisStore::connect(&redis)
        .await
        .unwrap()
        .with_prefix(&prefix);
    let signed_out = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = signed_out.clone();
    let (_url, auth) = common::serve_app(
        &mock,
        |b| b,
        |config| {
            HcssAuth::builder(config)
                .token_store(store)
                .on_sign_out(move |_| {
                    count.fetch_add(1, Ordering::SeqCst);
                    async {}
                })
                .build()
        },
    )
    .await;
    company_tokens_are_not_sessions(&mock, &auth).await;
    assert_eq!(signed_out.load(Ordering::SeqCst), 0, "on_sign_out called");
    let mut conn = redis_conn(&redis).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let sessions: Vec<_> = keys
        .iter()
        .filter(|k| k.starts_with(&format!("{prefix}tok:")))
        .collect();
    assert!(
        sessions.is_empty(),
        "company tokens under tok: {sessions:?}"
    );
    let companies = keys
        .iter()
        .filter(|k| k.starts_with(&format!("{prefix}co:")))
        .count();
    assert_eq!(companies, 2, "company tokens under co: {keys:?}");
    let indexed = owner_index_members(&redis, &prefix).await;
    assert!(indexed.is_empty(), "company tokens indexed: {indexed:?}");
    remove_keys(&redis, &prefix).await;
}

/// A session that ends leaves its owners' indexes at once: after `take` (a logout) and
/// `remove` (a session that ran out), no `own:` set lists it; a live one stays listed.
#[tokio::test]
async fn ended_sessions_leave_the_owner_indexes() {
    let Some(redis) = redis_url("ended_sessions_leave_the_owner_indexes") else {
        return;
    };
    let prefix = prefix();
    let store = RedisStore::connect(&redis)
        .await
        .unwrap()
        .with_prefix(&prefix);
    // A session of ann at co-1, as a sign-in stores it.
    let mut session = serde_json::to_value(TokenSet::new("at", 3600)).unwrap();
    session["claims"] = serde_json::json!({ "sub": "ann", "CompanyId": "co-1" });
    let session: TokenSet = serde_json::from_value(session).unwrap();
    let minute = Duration::from_secs(60);
    let (taken, removed, live) = (StoreKey::random(), StoreKey::random(), StoreKey::random());
    for key in [taken, removed, live] {
        store.store(key, session.clone(), minute).await.unwrap();
    }
    let listed = |members: &[(String, String)], key: StoreKey| {
        members.iter().filter(|(_, m)| *m == key.as_str()).count()
    };
    let members = owner_index_members(&redis, &prefix).await;
    for key in [taken, removed, live] {
        assert_eq!(listed(&members, key), 2, "by subject and by company");
    }
    assert!(store.take(taken).await.unwrap().is_some());
    store.remove(removed).await.unwrap();
    let members = owner_index_members(&redis, &prefix).await;
    assert_eq!(
        listed(&members, taken),
        0,
        "a taken session indexed: {members:?}"
    );
    assert_eq!(
        listed(&members, removed),
        0,
        "a removed session indexed: {members:?}"
    );
    assert_eq!(listed(&members, live), 2, "a live session unindexed");
    remove_keys(&redis, &prefix).await;
}

/// A company-token call cancelled while it holds the store's lock (its caller dropped)
/// stalls no one: the fetch goes on by itself, releases the lock and caches the token,
/// so another instance gets it at once instead of waiting out the lock's lease (here a
/// minute: twice an HTTP timeout of 30 s).
#[tokio::test]
async fn a_cancelled_company_token_call_stalls_no_instance() {
    let Some(redis) = redis_url("a_cancelled_company_token_call_stalls_no_instance") else {
        return;
    };
    let prefix = prefix();
    let mock = MockHcssIdentity::start().await;
    let instance = || async {
        let store = RedisStore::connect(&redis)
            .await
            .unwrap()
            .with_prefix(&prefix);
        let configure = |b: hcss_auth::HcssConfigBuilder| b.http_timeout(Duration::from_secs(30));
        let (_url, auth) = start_app_with_store(&mock, configure, store).await;
        hcss_auth::HcssCompanyTokens::new(&auth)
    };
    let (a, b) = (instance().await, instance().await);
    mock.set_token_fault(Some(TokenFault::Slow(Duration::from_millis(500))));
    let cancelled = tokio::spawn(async move { a.token("customer-co-1").await });
    // A holds the lock and asks HCSS; its caller goes away.
    mock.wait_for(|c| c.company_grants == 1).await;
    cancelled.abort();
    assert!(cancelled.await.unwrap_err().is_cancelled());
    mock.set_token_fault(None);
    let token = tokio::time::timeout(Duration::from_secs(10), b.token("customer-co-1"))
        .await
        .expect("B waited for the lock of A's cancelled call")
        .unwrap();
    assert_eq!(token.claims().company_id(), Some("customer-co-1"));
    assert_eq!(
        mock.counts().company_grants,
        1,
        "B got the token A's fetch asked for"
    );
    remove_keys(&redis, &prefix).await;
}

/// The keys under `prefix`, without it, sorted.
async fn keys_under(redis: &str, prefix: &str) -> Vec<String> {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut redis_conn(redis).await)
        .await
        .unwrap();
    let mut keys: Vec<String> = keys
        .into_iter()
        .map(|key| key[prefix.len()..].to_owned())
        .collect();
    keys.sort();
    keys
}

/// Forged callbacks (a login started, then its callback called with a junk code) leave
/// no key in Redis once HCSS refused them: before, each left a `lock:` key for the login
/// timeout. A successful callback's claim stays: its replay, with its cookie, on either
/// instance, is refused before any token call.
#[tokio::test]
async fn forged_callbacks_leave_no_key_and_a_used_login_stays_claimed() {
    let Some(redis) = redis_url("forged_callbacks_leave_no_key_and_a_used_login_stays_claimed")
    else {
        return;
    };
    let prefix = prefix();
    let mock = MockHcssIdentity::start().await;
    let (a, b, _store) = two_instances(&mock, &redis, &prefix).await;
    let start = |browser: Browser| {
        let a = a.clone();
        async move {
            let login = browser.get(&format!("{a}/hcss/login")).await;
            assert_eq!(login.status, 303);
            let consented = browser.get(login.location()).await;
            consented.location().to_owned()
        }
    };
    let keys = || keys_under(&redis, &prefix);
    let forgeries: Vec<(Browser, String)> = {
        let mut all = Vec::new();
        for _ in 0..6 {
            let browser = Browser::new();
            let callback = start(browser.clone()).await;
            all.push((browser, callback));
        }
        all
    };
    let before = keys().await;
    for (i, (browser, callback)) in forgeries.iter().enumerate() {
        let instance = if i % 2 == 0 { &a } else { &b };
        let forged = with_param(&callback.replacen(&a, instance, 1), "code", "junk");
        let refused = browser.get(&forged).await;
        assert_eq!(refused.status, 400, "{}", refused.body);
    }
    assert_eq!(mock.counts().code_exchanges, 6);
    assert_eq!(keys().await, before, "no key left by a refused exchange");

    // A real sign-in; its replay, cookie and all, is refused on A and on B alike.
    let browser = Browser::new();
    let callback = start(browser.clone()).await;
    let name = browser.login_cookies().remove(0);
    let sealed = browser.cookie(&name).unwrap();
    assert_eq!(browser.get(&callback).await.status, 303);
    for instance in [&a, &b] {
        browser.set_cookie(&name, &sealed);
        let replay = browser.get(&callback.replacen(&a, instance, 1)).await;
        assert_eq!(replay.status, 400, "{instance}: {}", replay.body);
        assert!(replay.body.contains("already used"), "{}", replay.body);
    }
    assert_eq!(
        mock.counts().code_exchanges,
        7,
        "no token call for a replay"
    );
    remove_keys(&redis, &prefix).await;
}

/// Every key the store writes says what it holds, a lock what it locks: a sealed login's
/// claim on its state stays under `lock:claim:` once its callback succeeded, a company
/// token's fetch holds `lock:co:` while it asks HCSS, and nothing is keyed otherwise.
/// Before, every lock was `lock:{hash}`, whatever it locked.
#[tokio::test]
async fn redis_keys_say_what_they_hold() {
    let Some(redis) = redis_url("redis_keys_say_what_they_hold") else {
        return;
    };
    let (store, prefix) = fault_store(&redis).await;
    let _cleanup = Cleanup::new(&redis, &prefix);
    let mock = MockHcssIdentity::start().await;
    let (url, auth) = start_app_with_store(&mock, |b| b, store).await;
    let keys = || keys_under(&redis, &prefix);
    let hashed = |key: &str, kind: &str| {
        key.strip_prefix(kind)
            .is_some_and(|hash| hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
    };

    Browser::new().login_at(&url).await;
    let after_sign_in = keys().await;
    assert_eq!(
        after_sign_in
            .iter()
            .filter(|k| hashed(k, "lock:claim:"))
            .count(),
        1,
        "the used login's claim: {after_sign_in:?}"
    );

    mock.set_token_fault(Some(TokenFault::Stall));
    let companies = hcss_auth::HcssCompanyTokens::new(&auth);
    let asking = tokio::spawn(async move { companies.token("customer-co-1").await });
    mock.wait_for(|c| c.company_grants == 1).await;
    let while_asking = keys().await;
    assert_eq!(
        while_asking
            .iter()
            .filter(|k| hashed(k, "lock:co:"))
            .count(),
        1,
        "the company token's fetch lock: {while_asking:?}"
    );
    mock.set_token_fault(None);
    asking.await.unwrap().unwrap();

    let known = [
        "tok:",
        "co:",
        "own:",
        "lock:claim:",
        "lock:co:",
        "lock:tok:",
    ];
    for key in keys().await {
        assert!(
            key == "secret:cookie-key" || known.iter().any(|kind| hashed(&key, kind)),
            "a key that does not say what it holds: {key}"
        );
    }
    remove_keys(&redis, &prefix).await;
}

/// A URL that cannot work says so in Redis's words (the database index out of range, a
/// database that is not a number, a scheme that is not Redis's), as a configuration
/// error rather than a passing outage, and `Debug` (what `?` in `main` prints) is the
/// message (before: "the session store is unavailable: redis: Server(ResponseError)").
#[tokio::test]
async fn a_redis_url_that_cannot_work_says_why_in_redis_words() {
    for (url, says) in [
        ("redis://127.0.0.1:6379/x", "Invalid database number"),
        ("http://127.0.0.1:6379", "Redis URL did not parse"),
    ] {
        let err = RedisStore::connect(url).await.unwrap_err();
        assert!(matches!(err, StoreError::Misconfigured(_)), "{url}: {err}");
        let message = err.to_string();
        assert!(message.contains(says), "{url}: {message}");
        assert!(!message.contains("unavailable"), "{url}: {message}");
        assert_eq!(format!("{err:?}"), message);
    }
    let Some(redis) = redis_url("a_redis_url_that_cannot_work_says_why_in_redis_words") else {
        return;
    };
    let mut url = url::Url::parse(&redis).unwrap();
    url.set_path("/100000");
    let err = RedisStore::connect(url.as_str()).await.unwrap_err();
    assert!(matches!(err, StoreError::Misconfigured(_)), "{err}");
    let message = err.to_string();
    assert!(message.contains("DB index is out of range"), "{message}");
    assert!(!message.contains("unavailable"), "{message}");
    assert_eq!(format!("{err:?}"), message);
}
