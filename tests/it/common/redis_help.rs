//! What the tests that need Redis share: the URL they run against (or a line saying
//! they were skipped), a key prefix per test, and cleaning up after it. The URL's
//! database (`redis://host:6379/7`), user and password are kept wherever a test connects,
//! a relay in front of Redis included.

use std::io::Write as _;

/// `HCSS_TEST_REDIS_URL`, or `None` after saying on stderr that `test` was skipped.
pub fn redis_url(test: &str) -> Option<String> {
    let url = std::env::var("HCSS_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if url.is_none() {
        // Written to the process's stderr directly, past the test harness's capture.
        let _ = writeln!(
            std::io::stderr(),
            "{test}: skipped (set HCSS_TEST_REDIS_URL to run it)"
        );
    }
    url
}

/// A key prefix of its own for each test.
pub fn prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("hcss-test:{}:{nanos}:", std::process::id())
}

/// Deletes what a test left under its prefix.
pub async fn remove_keys(redis: &str, prefix: &str) {
    let mut conn = redis_conn(redis).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(keys)
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
}

/// `host:port` of the server `redis` names, for a relay in front of it to connect to.
pub fn server_addr(redis: &str) -> String {
    let url = url::Url::parse(redis).expect("HCSS_TEST_REDIS_URL is a URL");
    let host = url.host_str().expect("HCSS_TEST_REDIS_URL names a host");
    format!("{host}:{}", url.port().unwrap_or(6379))
}

/// `redis` with its server replaced by `addr` (a relay in front of it): the scheme, user,
/// password, database and options stay, so the relay's connections reach the same
/// database as the test's own.
pub fn through(redis: &str, addr: &str) -> String {
    let mut url = url::Url::parse(redis).expect("HCSS_TEST_REDIS_URL is a URL");
    let addr: std::net::SocketAddr = addr.parse().expect("a relay's address");
    url.set_ip_host(addr.ip()).expect("a URL with a host");
    url.set_port(Some(addr.port())).expect("a URL with a host");
    url.into()
}

/// Deletes the keys under a prefix when dropped, also when the test fails (a blocking
/// connection: a destructor cannot await).
pub struct Cleanup {
    redis: String,
    prefix: String,
}

impl Cleanup {
    pub fn new(redis: &str, prefix: &str) -> Self {
        Self {
            redis: redis.to_owned(),
            prefix: prefix.to_owned(),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let Ok(mut conn) =
            redis::Client::open(self.redis.as_str()).and_then(|c| c.get_connection())
        else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _ = redis::cmd("DEL").arg(keys).query::<()>(&mut conn);
        }
    }
}

#[test]
fn a_relayed_url_keeps_the_database_user_and_password() {
    let url = "redis://app:pw@127.0.0.1:6390/7";
    assert_eq!(server_addr(url), "127.0.0.1:6390");
    assert_eq!(server_addr("redis://localhost/3"), "localhost:6379");
    assert_eq!(
        through(url, "127.0.0.1:41000"),
        "redis://app:pw@127.0.0.1:41000/7"
    );
    assert_eq!(
        through("redis://[::1]:6379/2?protocol=resp3", "127.0.0.1:41000"),
        "redis://127.0.0.1:41000/2?protocol=resp3"
    );
}

/// A plain connection, to do to Redis what the test needs done behind the store's back.
pub async fn redis_conn(redis: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}
