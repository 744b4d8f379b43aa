//! One million `GET /hcss/login` requests that never come back, through the layer: the
//! resident memory before, during and after, what the server keeps per login (nothing:
//! each login travels sealed in its own cookie), and with `--redis URL` how many Redis
//! keys the flood made (the one shared cookie key, whatever the count).
//!
//! `cargo run --release -p hcss-auth-tools --bin login_flood [-- COUNT]`
//! `cargo run --release -p hcss-auth-tools --bin login_flood -- COUNT --redis redis://127.0.0.1:6379`

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use hcss_auth::{HcssAuth, HcssConfig, MemoryStore};
use tower::ServiceExt;

/// Resident set size of this process, in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// The Redis keys under `prefix`, and a connection to delete them with.
#[cfg(feature = "redis")]
async fn redis_keys_of(
    url: &str,
    prefix: &str,
) -> Result<(Vec<String>, redis::aio::MultiplexedConnection), Box<dyn std::error::Error>> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await?;
    Ok((keys, conn))
}

#[cfg(feature = "redis")]
async fn redis_keys(url: &str, prefix: &str) -> Result<usize, Box<dyn std::error::Error>> {
    Ok(redis_keys_of(url, prefix).await?.0.len())
}

#[cfg(feature = "redis")]
async fn remove_redis_keys(url: &str, prefix: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (keys, mut conn) = redis_keys_of(url, prefix).await?;
    if !keys.is_empty() {
        redis::cmd("DEL")
            .arg(keys)
            .query_async::<()>(&mut conn)
            .await?;
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut count = 1_000_000usize;
    let mut redis_url: Option<String> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--redis" => redis_url = Some(args.next().ok_or("--redis needs a URL")?),
            n => count = n.parse()?,
        }
    }
    let config = HcssConfig::builder()
        .client_id("flood-client")
        .scopes(["heavyjob:read", "offline_access"])
        .redirect_uri("https://app.example.com/hcss/callback")
        .build()?;
    let store = MemoryStore::new();
    #[cfg(feature = "redis")]
    let prefix = format!("hcss-flood:{}:", std::process::id());
    let (layer, mode) = match &redis_url {
        None => (HcssAuth::with_store(config, store.clone()), "MemoryStore"),
        #[cfg(feature = "redis")]
        Some(url) => {
            let redis = hcss_auth::store::RedisStore::connect(url)
                .await?
                .with_prefix(prefix.clone());
            (HcssAuth::with_store(config, redis), "RedisStore")
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => return Err("--redis needs the `redis` feature".into()),
    };
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(layer);

    #[cfg(feature = "redis")]
    let keys_before = match &redis_url {
        Some(url) => Some(redis_keys(url, &prefix).await?),
        None => None,
    };
    let before = rss_kib();
    let started = std::time::Instant::now();
    let mut peak = before;
    let mut cookie_bytes = 0;
    for i in 0..count {
        let request = Request::get("/hcss/login?return_to=%2Fjobs").body(Body::empty())?;
        let response = app.clone().oneshot(request).await?;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        if i == 0 {
            cookie_bytes = response.headers()["set-cookie"].len();
        }
        if i % 50_000 == 0 {
            peak = peak.max(rss_kib());
        }
    }
    let after = rss_kib();
    peak = peak.max(after);
    let elapsed = started.elapsed();
    println!("store:                {mode}");
    println!("logins:               {count}");
    println!(
        "elapsed:              {:.2?} ({:.2} µs per login)",
        elapsed,
        elapsed.as_secs_f64() * 1e6 / count as f64
    );
    println!("logins held in process: {}", store.transaction_count());
    println!("login cookie:         {cookie_bytes} bytes (Set-Cookie)");
    println!("rss before:           {before} KiB");
    println!("rss after:            {after} KiB");
    println!("rss peak (sampled):   {peak} KiB");
    #[cfg(feature = "redis")]
    if let (Some(url), Some(keys_before)) = (&redis_url, keys_before) {
        let keys_after = redis_keys(url, &prefix).await?;
        println!(
            "redis keys:           {keys_before} before, {keys_after} after (the shared cookie key)"
        );
        remove_redis_keys(url, &prefix).await?;
    }
    Ok(())
}
