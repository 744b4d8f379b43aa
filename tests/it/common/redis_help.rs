//! What the tests that need Redis share: the URL they run against (or a line saying
//! they were skipped), a key prefix per test, and cleaning up after it.

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

/// A plain connection, to do to Redis what the test needs done behind the store's back.
pub async fn redis_conn(redis: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}
