//! The per-request cost of the layer, side by side with the same route without it.
//!
//! `cargo bench --bench per_request`

use axum::body::Body;
use axum::http::{header, Request};
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use hcss_auth::testing::seed_session;
use hcss_auth::{HcssAuth, HcssConfig, HcssToken, TokenSet};
use tower::ServiceExt;

fn config() -> HcssConfig {
    HcssConfig::builder()
        .client_id("bench-client")
        .scopes(["heavyjob:read", "offline_access"])
        .redirect_uri("https://app.example.com/hcss/callback")
        .build()
        .expect("valid config")
}

fn per_request(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let auth = HcssAuth::new(config());
    let session = runtime
        .block_on(seed_session(
            &auth,
            TokenSet::new("access-token", 3600).with_refresh_token("refresh-token"),
        ))
        .unwrap();
    let cookie = session.cookie_header();

    let bare = Router::new().route("/jobs", get(|| async { "ok" }));
    let protected = Router::new()
        .route("/jobs", get(|_token: HcssToken| async { "ok" }))
        .layer(auth.clone());

    let mut group = c.benchmark_group("protected_route");
    group.bench_function("bare_axum", |b| {
        b.to_async(&runtime).iter(|| {
            let request = Request::get("/jobs")
                .header(header::COOKIE, cookie.as_str())
                .body(Body::empty())
                .unwrap();
            bare.clone().oneshot(request)
        })
    });
    group.bench_function("hcss_auth_layer_and_token", |b| {
        b.to_async(&runtime).iter(|| {
            let request = Request::get("/jobs")
                .header(header::COOKIE, cookie.as_str())
                .body(Body::empty())
                .unwrap();
            protected.clone().oneshot(request)
        })
    });
    group.finish();

    c.bench_function("login_redirect", |b| {
        b.to_async(&runtime).iter(|| {
            let request = Request::get("/hcss/login?return_to=%2Fjobs")
                .body(Body::empty())
                .unwrap();
            protected.clone().oneshot(request)
        })
    });
}

criterion_group!(benches, per_request);
criterion_main!(benches);
