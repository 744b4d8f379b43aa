//! The per-request cost of the layer, side by side with the same route without it and
//! with an equivalent built on tower-sessions, and over `RedisStore` with and without
//! its near cache (with `--features redis`; Redis at `HCSS_TEST_REDIS_URL`, or on
//! 127.0.0.1:6379); the login redirect; the callback with its
//! token call; and 100 concurrent requests on a session that needs a refresh.
//!
//! `cargo bench --features redis --bench per_request`

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use hcss_auth::testing::{seed_session, MockHcssIdentity};
use hcss_auth::{HcssAuth, HcssConfig, HcssToken, MemoryStore, TokenSet, TokenStore};
use tower::ServiceExt;
use tower_sessions::{MemoryStore as SessionsMemoryStore, Session, SessionManagerLayer};

fn config() -> HcssConfig {
    HcssConfig::builder()
        .client_id("bench-client")
        .scopes(["heavyjob:read", "offline_access"])
        .redirect_uri("https://app.example.com/hcss/callback")
        // Sessions seeded in Redis are gone ten minutes after a run.
        .max_session_age(Duration::from_secs(600))
        .build()
        .expect("valid config")
}

fn request(uri: &str, cookie: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap()
}

/// What the floor's layer hands its handler.
#[derive(Clone)]
struct Handle(#[allow(dead_code)] std::sync::Arc<()>);

/// The same handler logic over tower-sessions: session cookie -> stored token -> handler.
async fn tower_sessions_route(session: Session) -> StatusCode {
    match session.get::<String>("access_token").await {
        Ok(Some(_token)) => StatusCode::OK,
        _ => StatusCode::UNAUTHORIZED,
    }
}

async fn tower_sessions_seed(session: Session) -> StatusCode {
    session
        .insert("access_token", "access-token".to_owned())
        .await
        .unwrap();
    StatusCode::OK
}

fn protected_route(c: &mut Criterion) {
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

    // Each router as `axum::serve` runs it: with its state given (`with_state`), which
    // turns its handlers into services once rather than at every request.
    let bare = Router::new()
        .route("/jobs", get(|| async { "ok" }))
        .with_state(());
    let protected = Router::new()
        .route("/jobs", get(|_token: HcssToken| async { "ok" }))
        .layer(auth.clone())
        .with_state(());
    // The floor of any layer + extractor design: a layer that only puts a shared handle
    // in the request's extensions, and a handler that takes it out.
    let floor = Router::new()
        .route(
            "/jobs",
            get(|_handle: axum::Extension<Handle>| async { "ok" }),
        )
        .layer(tower::util::MapRequestLayer::new({
            let handle = Handle(std::sync::Arc::new(()));
            move |mut req: Request<Body>| {
                req.extensions_mut().insert(handle.clone());
                req
            }
        }))
        .with_state(());
    let sessions = Router::new()
        .route("/jobs", get(tower_sessions_route))
        .route("/seed", get(tower_sessions_seed))
        .layer(SessionManagerLayer::new(SessionsMemoryStore::default()).with_secure(false))
        .with_state(());
    let seeded = runtime
        .block_on(sessions.clone().oneshot(request("/seed", "")))
        .unwrap();
    let sessions_cookie = first_cookie(&seeded);
    // Both baselines answer 200 with their cookie, as the layer does with its own.
    for (router, cookie) in [
        (&bare, cookie.as_str()),
        (&floor, cookie.as_str()),
        (&protected, cookie.as_str()),
        (&sessions, sessions_cookie.as_str()),
    ] {
        let response = runtime
            .block_on(router.clone().oneshot(request("/jobs", cookie)))
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    let mut group = c.benchmark_group("protected_route");
    group.bench_function("bare_axum", |b| {
        b.to_async(&runtime)
            .iter(|| bare.clone().oneshot(request("/jobs", &cookie)))
    });
    group.bench_function("noop_layer_and_extension", |b| {
        b.to_async(&runtime)
            .iter(|| floor.clone().oneshot(request("/jobs", &cookie)))
    });
    group.bench_function("hcss_auth", |b| {
        b.to_async(&runtime)
            .iter(|| protected.clone().oneshot(request("/jobs", &cookie)))
    });
    group.bench_function("tower_sessions", |b| {
        b.to_async(&runtime)
            .iter(|| sessions.clone().oneshot(request("/jobs", &sessions_cookie)))
    });
    // RedisStore, with its near cache and without: each a signed-in request on one
    // instance, Redis on loopback.
    match runtime.block_on(redis_routes()) {
        Some(routes) => {
            for (name, router, cookie) in routes {
                let response = runtime
                    .block_on(router.clone().oneshot(request("/jobs", &cookie)))
                    .unwrap();
                assert_eq!(response.status(), StatusCode::OK, "{name}");
                group.bench_function(name, |b| {
                    b.to_async(&runtime)
                        .iter(|| router.clone().oneshot(request("/jobs", &cookie)))
                });
            }
        }
        None => eprintln!(
            "protected_route/redis_*: skipped (needs --features redis, and Redis at \
             HCSS_TEST_REDIS_URL or redis://127.0.0.1:6379)"
        ),
    }
    group.finish();

    c.bench_function("login_redirect", |b| {
        b.to_async(&runtime).iter(|| {
            protected
                .clone()
                .oneshot(request("/hcss/login?return_to=%2Fjobs", ""))
        })
    });
}

/// The protected route over `RedisStore` with its near cache (tracking Redis before the
/// first request) and without it, each with a session seeded in Redis and its cookie;
/// `None` when Redis does not answer.
#[cfg(feature = "redis")]
async fn redis_routes() -> Option<Vec<(&'static str, Router, String)>> {
    use hcss_auth::store::RedisStore;
    let url = std::env::var("HCSS_TEST_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    let prefix = format!("hcss-bench:{}:", std::process::id());
    let cached = RedisStore::connect(&url).await.ok()?.with_prefix(&prefix);
    cached.near_cache_tracking(0).await?;
    let uncached = RedisStore::connect(&url)
        .await
        .ok()?
        .with_prefix(&prefix)
        .without_near_cache();
    let mut routes = Vec::new();
    for (name, store) in [
        ("redis_near_cache", cached),
        ("redis_without_cache", uncached),
    ] {
        let auth = HcssAuth::with_store(config(), store);
        let session = seed_session(
            &auth,
            TokenSet::new("access-token", 3600).with_refresh_token("refresh-token"),
        )
        .await
        .ok()?;
        let router = Router::new()
            .route("/jobs", get(|_token: HcssToken| async { "ok" }))
            .layer(auth)
            .with_state(());
        routes.push((name, router, session.cookie_header()));
    }
    Some(routes)
}

#[cfg(not(feature = "redis"))]
async fn redis_routes() -> Option<Vec<(&'static str, Router, String)>> {
    None
}

/// `name=value` of the first cookie a response sets.
fn first_cookie<B>(response: &axum::http::Response<B>) -> String {
    let header = response.headers()[header::SET_COOKIE].to_str().unwrap();
    header.split(';').next().unwrap().to_owned()
}

fn session_key(id: &str) -> hcss_auth::store::StoreKey {
    hcss_auth::store::StoreKey::of_session_cookie(id)
}

/// The callback (transaction take, binding check, token call to an in-process identity
/// service on loopback, session store), and a refresh under 100 concurrent requests.
fn with_identity_service(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mock = runtime.block_on(MockHcssIdentity::start());
    let config = mock
        .config_builder("http://127.0.0.1:3000/hcss/callback")
        .scopes(["heavyjob:read", "offline_access"])
        .build()
        .unwrap();
    let store = MemoryStore::new();
    let app = Router::new()
        .route("/jobs", get(|_token: HcssToken| async { "ok" }))
        .layer(HcssAuth::with_store(config, store.clone()));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    // One login, untimed: returns the callback URI (path and query) and binding cookie.
    let start_login = || {
        let (app, http) = (app.clone(), http.clone());
        async move {
            let login = app.oneshot(request("/hcss/login", "")).await.unwrap();
            let binding = first_cookie(&login);
            let authorize = login.headers()[header::LOCATION].to_str().unwrap();
            let consented = http.get(authorize).send().await.unwrap();
            let callback = consented.headers()["location"].to_str().unwrap();
            let path = callback
                .trim_start_matches("http://127.0.0.1:3000")
                .to_owned();
            (path, binding)
        }
    };

    c.bench_function("callback_with_token_call", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let (app, start_login) = (app.clone(), &start_login);
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (path, binding) = start_login().await;
                    let started = Instant::now();
                    let done = app.clone().oneshot(request(&path, &binding)).await.unwrap();
                    total += started.elapsed();
                    assert_eq!(done.status(), StatusCode::SEE_OTHER);
                }
                total
            }
        })
    });

    // A signed-in session for the refresh benchmark.
    let (path, binding) = runtime.block_on(start_login());
    let done = runtime
        .block_on(app.clone().oneshot(request(&path, &binding)))
        .unwrap();
    let session_cookie = first_cookie(&done);
    let key = session_key(session_cookie.split_once('=').unwrap().1);

    c.bench_function("refresh_100_concurrent_requests", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let (app, store, key, cookie) =
                (app.clone(), store.clone(), key, session_cookie.clone());
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut tokens = store.load(key).await.unwrap().unwrap();
                    tokens.expires_at = 1;
                    store
                        .store(key, tokens, Duration::from_secs(3600))
                        .await
                        .unwrap();
                    let started = Instant::now();
                    let mut requests = tokio::task::JoinSet::new();
                    for _ in 0..100 {
                        requests.spawn(app.clone().oneshot(request("/jobs", &cookie)));
                    }
                    while let Some(done) = requests.join_next().await {
                        assert_eq!(done.unwrap().unwrap().status(), StatusCode::OK);
                    }
                    total += started.elapsed();
                }
                total
            }
        })
    });
}

criterion_group!(benches, protected_route, with_identity_service);
criterion_main!(benches);
