//! One call to an HCSS API through `HcssApi` (company token from the layer, the
//! company's budget, the answer read) side by side with the same call made with a bare
//! `reqwest` client and the same token, against the mock's API over loopback HTTP; the
//! budget in `MemoryStore`, and in `RedisStore` with `--features redis` and
//! `HCSS_TEST_REDIS_URL` set, where the Redis commands each call costs are counted too
//! (`INFO commandstats` before and after).
//!
//! `cargo bench --all-features --bench api_call`
//!
//! It also prints the ratio of the two calls measured in alternating blocks within one
//! run (the client built as the layer builds it, bare, against `HcssApi`), which a busy
//! machine's drift between criterion's runs does not skew.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use hcss_auth::testing::{MockApiLimits, MockHcssIdentity};
use hcss_auth::{HcssApi, HcssAuth, HcssCompanyTokens, HcssConfig, MemoryStore};

const COMPANY: &str = "bench-company";
const UNITS: &str = "/heavyjob/api/v1/businessUnits";

/// The budget is never reached: the window is the shortest allowed (100 ms), so that it
/// holds about as many calls as HCSS's minute does at its limit, not a run's worth.
fn config(mock: &MockHcssIdentity) -> HcssConfig {
    mock.config_builder("http://127.0.0.1:9/hcss/callback")
        .scopes(["heavyjob:read"])
        .api_url(mock.api_url())
        .api_rate_per_minute(1_000_000)
        .api_rate_window(Duration::from_millis(100))
        .api_concurrency(20)
        .build()
        .expect("valid config")
}

fn api_call(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mock = runtime.block_on(MockHcssIdentity::start());
    // HCSS answers with Remaining-Calls: so does the mock when it has limits.
    mock.set_api_limits(Some(MockApiLimits::new(
        u32::MAX,
        Duration::from_millis(100),
        1000,
    )));
    let url = format!("{}{UNITS}", mock.api_url());
    let auth = HcssAuth::with_store(config(&mock), MemoryStore::new());
    let token = runtime
        .block_on(HcssCompanyTokens::new(&auth).token(COMPANY))
        .unwrap();
    let http = reqwest::Client::new();
    let bare = || async {
        let response = http
            .get(&url)
            .bearer_auth(token.secret())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap()
    };
    // The client the layer builds: its user agent, no redirects, a timeout per request.
    let timed = reqwest::Client::builder()
        .user_agent(concat!("hcss-auth/", env!("CARGO_PKG_VERSION")))
        .https_only(false)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let bare_timed = || async {
        let response = timed
            .get(&url)
            .bearer_auth(token.secret())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.bytes().await.unwrap()
    };
    let memory = HcssApi::new(&auth).for_company(COMPANY);
    let through = |caller: hcss_auth::HcssCaller| async move {
        let response = caller.get(UNITS).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response
    };
    runtime.block_on(bare());
    runtime.block_on(through(memory.clone()));

    let mut group = c.benchmark_group("api_call");
    group.bench_function("bare_reqwest", |b| b.to_async(&runtime).iter(bare));
    group.bench_function("bare_reqwest_with_timeout", |b| {
        b.to_async(&runtime).iter(bare_timed)
    });
    group.bench_function("hcss_api_memory", |b| {
        b.to_async(&runtime).iter(|| through(memory.clone()))
    });
    // On a shared machine the runs above drift by more than the difference sought:
    // alternating blocks of the two calls, in one run, compares them under the same load.
    runtime.block_on(async {
        let (mut bare, mut ours) = (Duration::ZERO, Duration::ZERO);
        let mut ratios = Vec::new();
        const BLOCK: u32 = 250;
        const ROUNDS: u32 = 40;
        let bare_block = || async {
            let started = std::time::Instant::now();
            for _ in 0..BLOCK {
                bare_timed().await;
            }
            started.elapsed()
        };
        let our_block = || async {
            let started = std::time::Instant::now();
            for _ in 0..BLOCK {
                through(memory.clone()).await;
            }
            started.elapsed()
        };
        for round in 0..ROUNDS {
            // Each goes first in every other pair: the block after a switch runs on the
            // caches the other left, which must not favour one of them (always bare first
            // read about 1.5 points higher, always HcssApi first as much lower).
            let (block_bare, block_ours) = if round % 2 == 0 {
                let bare = bare_block().await;
                (bare, our_block().await)
            } else {
                let ours = our_block().await;
                (bare_block().await, ours)
            };
            bare += block_bare;
            ours += block_ours;
            ratios.push(block_ours.as_secs_f64() / block_bare.as_secs_f64());
        }
        // The median of the pairs' ratios: a pause of the machine during one block moves it
        // less than it moves the totals.
        ratios.sort_by(f64::total_cmp);
        let calls = BLOCK * ROUNDS;
        eprintln!(
            "api_call: alternating blocks of {BLOCK}, {calls} calls each: the layer's client bare \
             {:.1} µs, HcssApi with MemoryStore {:.1} µs, ratio {:.3} (median of the {ROUNDS} \
             pairs of blocks {:.3})",
            bare.as_secs_f64() * 1e6 / f64::from(calls),
            ours.as_secs_f64() * 1e6 / f64::from(calls),
            ours.as_secs_f64() / bare.as_secs_f64(),
            ratios[ratios.len() / 2]
        );
    });

    match runtime.block_on(redis_caller(&mock)) {
        Some((caller, url)) => {
            group.bench_function("hcss_api_redis", |b| {
                b.to_async(&runtime).iter(|| through(caller.clone()))
            });
            runtime.block_on(redis_commands_per_call(&url, caller, through));
            runtime.block_on(remove_keys(&url));
        }
        None => eprintln!(
            "api_call/hcss_api_redis: skipped (needs --features redis and Redis at \
             HCSS_TEST_REDIS_URL)"
        ),
    }
    group.finish();
}

#[cfg(feature = "redis")]
async fn redis_caller(mock: &MockHcssIdentity) -> Option<(hcss_auth::HcssCaller, String)> {
    use hcss_auth::store::RedisStore;
    let url = std::env::var("HCSS_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())?;
    let prefix = redis_prefix();
    let store = RedisStore::connect(&url).await.ok()?.with_prefix(&prefix);
    let caller = HcssApi::new(&HcssAuth::with_store(config(mock), store)).for_company(COMPANY);
    caller.get(UNITS).send().await.ok()?;
    Some((caller, url))
}

/// The bench's keys in Redis, removed when it ends.
#[cfg(feature = "redis")]
fn redis_prefix() -> String {
    format!("hcss-bench:{}:", std::process::id())
}

/// Removes the keys the bench left in Redis (the company's token, the budget's sorted
/// sets until their TTLs end, the shared cookie key).
#[cfg(feature = "redis")]
async fn remove_keys(url: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", redis_prefix()))
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    eprintln!("api_call/hcss_api_redis: {} keys removed", keys.len());
}

#[cfg(not(feature = "redis"))]
async fn remove_keys(_: &str) {}

#[cfg(not(feature = "redis"))]
async fn redis_caller(_: &MockHcssIdentity) -> Option<(hcss_auth::HcssCaller, String)> {
    None
}

/// The Redis commands of 1 000 calls, per call, from `INFO commandstats` (commands run
/// by a script are counted under their own names too: `EVALSHA` or `EVAL` is the round
/// trip).
#[cfg(feature = "redis")]
async fn redis_commands_per_call<F, Fut>(url: &str, caller: hcss_auth::HcssCaller, through: F)
where
    F: Fn(hcss_auth::HcssCaller) -> Fut,
    Fut: std::future::Future,
{
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    // The last slot is given back on its own a moment after its call: let it go.
    let settle = || tokio::time::sleep(Duration::from_millis(200));
    settle().await;
    let before = command_counts(&mut conn).await;
    const CALLS: u64 = 1000;
    for _ in 0..CALLS {
        through(caller.clone()).await;
    }
    settle().await;
    let after = command_counts(&mut conn).await;
    let mut line = Vec::new();
    for (name, count) in &after {
        let delta = count - before.get(name).copied().unwrap_or(0);
        if delta > 0 && name != "info" {
            line.push(format!("{name} {:.2}", delta as f64 / CALLS as f64));
        }
    }
    eprintln!(
        "api_call/hcss_api_redis: Redis commands per call: {}",
        line.join(", ")
    );
}

#[cfg(not(feature = "redis"))]
async fn redis_commands_per_call<F, Fut>(_: &str, _: hcss_auth::HcssCaller, _: F)
where
    F: Fn(hcss_auth::HcssCaller) -> Fut,
    Fut: std::future::Future,
{
}

#[cfg(feature = "redis")]
async fn command_counts(
    conn: &mut redis::aio::MultiplexedConnection,
) -> std::collections::BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats.strip_prefix("calls=")?.split(',').next()?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

criterion_group!(benches, api_call);
criterion_main!(benches);
