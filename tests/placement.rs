//! Where the layer goes: on the outermost router. A layer added with `route_layer`, or on
//! a nested router, never sees `/hcss/login` (a 404): it says so in a log line once
//! browsers keep being sent there; a layer in its place never does.
//!
//! A test binary of its own, not a module of `tests/it/`: it installs the process-wide
//! tracing subscriber (one per process) and must not read other tests' log lines.

#[path = "it/common/mod.rs"]
mod common;

use common::Capture;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use hcss_auth::{HcssAuth, HcssConfig, HcssToken};
use tower::ServiceExt;

fn layer() -> HcssAuth {
    let config = HcssConfig::builder()
        .client_id("placement")
        .scopes(["heavyjob:read"])
        .redirect_uri("https://app.example.com/hcss/callback")
        .build()
        .unwrap();
    HcssAuth::new(config)
}

async fn status(app: &Router, uri: &str) -> StatusCode {
    let request = Request::get(uri)
        .header(header::ACCEPT, "text/html")
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(request).await.unwrap().status()
}

/// Page loads of `page` on `app`, each sent to log in.
async fn sent_to_login(app: &Router, page: &str, times: usize) {
    for _ in 0..times {
        assert_eq!(status(app, page).await, StatusCode::SEE_OTHER);
    }
}

const WARNING: &str = "the layer is misplaced";

#[tokio::test]
async fn a_misplaced_layer_says_so_and_a_placed_one_does_not() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let handler = |token: HcssToken| async move { token.scopes().count().to_string() };

    // route_layer: only matched routes pass through the layer.
    let app = Router::new()
        .route("/jobs", get(handler))
        .route_layer(layer());
    assert_eq!(status(&app, "/hcss/login").await, StatusCode::NOT_FOUND);
    sent_to_login(&app, "/jobs", 49).await;
    assert!(!capture.take().contains(WARNING), "not before 50");
    sent_to_login(&app, "/jobs", 10).await;
    let logs = capture.take();
    assert_eq!(logs.matches(WARNING).count(), 1, "said once: {logs}");
    assert!(logs.contains("route_layer"), "{logs}");

    // On a nested router.
    let app = Router::new().nest(
        "/api",
        Router::new().route("/jobs", get(handler)).layer(layer()),
    );
    assert_eq!(status(&app, "/hcss/login").await, StatusCode::NOT_FOUND);
    sent_to_login(&app, "/api/jobs", 50).await;
    assert!(capture.take().contains(WARNING));

    // In its place: the outermost router's last layer. The login path reaches it.
    let app = Router::new()
        .nest("/api", Router::new().route("/jobs", get(handler)))
        .layer(layer());
    assert_eq!(status(&app, "/hcss/login").await, StatusCode::SEE_OTHER);
    sent_to_login(&app, "/api/jobs", 100).await;
    assert!(!capture.take().contains(WARNING));
}

/// The missing-layer answer says where the layer goes.
#[tokio::test]
async fn a_missing_layer_names_the_fix() {
    let app = Router::new().route("/jobs", get(|_token: HcssToken| async { "" }));
    let response = app
        .oneshot(Request::get("/jobs").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let message = hcss_auth::HcssRejection::MissingLayer.to_string();
    assert!(message.contains("outermost router"), "{message}");
    assert!(message.contains("not route_layer"), "{message}");
}
