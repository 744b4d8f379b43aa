//! One million `GET /hcss/login` requests that never come back, through the layer with
//! its default `MemoryStore`: the resident memory before and after, and what the store
//! holds. The store's capacity bounds it (100 000 logins in flight by default).
//!
//! `cargo run --release --example login_flood [-- COUNT]`

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

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let count: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let config = HcssConfig::builder()
        .client_id("flood-client")
        .scopes(["heavyjob:read", "offline_access"])
        .redirect_uri("https://app.example.com/hcss/callback")
        .build()?;
    let store = MemoryStore::new();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(HcssAuth::with_store(config, store.clone()));

    let before = rss_kib();
    let started = std::time::Instant::now();
    let mut peak = before;
    for i in 0..count {
        let request = Request::get("/hcss/login?return_to=%2Fjobs").body(Body::empty())?;
        let response = app.clone().oneshot(request).await?;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        if i % 50_000 == 0 {
            peak = peak.max(rss_kib());
        }
    }
    let after = rss_kib();
    peak = peak.max(after);
    let elapsed = started.elapsed();
    println!("logins:               {count}");
    println!(
        "elapsed:              {:.2?} ({:.2} µs per login)",
        elapsed,
        elapsed.as_secs_f64() * 1e6 / count as f64
    );
    println!(
        "transactions held:    {} (capacity {})",
        store.transaction_count(),
        MemoryStore::DEFAULT_TRANSACTION_CAPACITY
    );
    println!("rss before:           {} KiB", before);
    println!("rss after:            {} KiB", after);
    println!("rss peak (sampled):   {} KiB", peak);
    println!(
        "growth per held login: {} bytes",
        (after.saturating_sub(before) * 1024) / (store.transaction_count().max(1) as u64)
    );
    Ok(())
}
