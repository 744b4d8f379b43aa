//! Where the layer goes: on the outermost router. A layer added with `route_layer`, or on
//! a nested router, never sees `/hcss/login` (a 404): it says so in a log line as soon as
//! a browser sent there comes back (or after 50 browsers sent there, for clients that
//! keep no cookies); a layer in its place never does.
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

/// A page load of `uri` with `cookie` (a `Cookie` header value), as a browser sends it.
async fn page_load(app: &Router, uri: &str, cookie: Option<&str>) -> axum::response::Response {
    let mut request = Request::get(uri).header(header::ACCEPT, "text/html");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    app.clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

/// The `name=value` of each `Set-Cookie` of `response`.
fn cookies(response: &axum::response::Response) -> Vec<String> {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect()
}

/// A browser that keeps cookies: sent to log in from `page`, it meets the login path,
/// then loads `page` again with the cookies it was given. Returns the login path's status.
async fn there_and_back(app: &Router, page: &str) -> StatusCode {
    let sent = page_load(app, page, None).await;
    assert_eq!(sent.status(), StatusCode::SEE_OTHER);
    let jar = cookies(&sent).join("; ");
    let login = page_load(app, "/hcss/login", Some(&jar)).await.status();
    page_load(app, page, Some(&jar)).await;
    login
}

#[tokio::test]
async fn a_misplaced_layer_says_so_and_a_placed_one_does_not() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let handler = |token: HcssToken| async move { token.scopes().count().to_string() };

    // route_layer: only matched routes pass through the layer. A browser that comes back
    // from the login path's 404 is proof enough (before: 50 browsers sent to log in).
    let app = Router::new()
        .route("/jobs", get(handler))
        .route_layer(layer());
    assert_eq!(there_and_back(&app, "/jobs").await, StatusCode::NOT_FOUND);
    let logs = capture.take();
    assert_eq!(logs.matches(WARNING).count(), 1, "said at once: {logs}");
    assert!(logs.contains("route_layer"), "{logs}");
    sent_to_login(&app, "/jobs", 60).await;
    assert!(!capture.take().contains(WARNING), "said once");

    // Clients that keep no cookies: said after 50 sent to log in, not before.
    let app = Router::new()
        .route("/jobs", get(handler))
        .route_layer(layer());
    sent_to_login(&app, "/jobs", 49).await;
    assert!(!capture.take().contains(WARNING), "not before 50");
    sent_to_login(&app, "/jobs", 10).await;
    assert_eq!(capture.take().matches(WARNING).count(), 1);

    // On a nested router.
    let app = Router::new().nest(
        "/api",
        Router::new().route("/jobs", get(handler)).layer(layer()),
    );
    assert_eq!(
        there_and_back(&app, "/api/jobs").await,
        StatusCode::NOT_FOUND
    );
    assert!(capture.take().contains(WARNING));

    // The cookie of another layer (an earlier run of the app, before the layer moved)
    // proves nothing.
    let earlier = Router::new()
        .route("/jobs", get(handler))
        .route_layer(layer());
    let jar = cookies(&page_load(&earlier, "/jobs", None).await).join("; ");
    assert!(jar.contains("hcss-sent-to-login="), "{jar}");
    let app = Router::new()
        .route("/jobs", get(handler))
        .route_layer(layer());
    page_load(&app, "/jobs", Some(&jar)).await;
    assert!(!capture.take().contains(WARNING));

    // In its place: the outermost router's last layer. The login path reaches it, clears
    // the browser's mark, and nothing is said however many browsers are sent there.
    let app = Router::new()
        .nest("/api", Router::new().route("/jobs", get(handler)))
        .layer(layer());
    let sent = page_load(&app, "/api/jobs", None).await;
    let jar = cookies(&sent).join("; ");
    assert!(jar.contains("hcss-sent-to-login="), "{jar}");
    let login = page_load(&app, "/hcss/login", Some(&jar)).await;
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    assert!(
        cookies(&login).contains(&"__Host-hcss-sent-to-login=".to_owned()),
        "cleared: {:?}",
        cookies(&login)
    );
    page_load(&app, "/api/jobs", Some(&jar)).await;
    sent_to_login(&app, "/api/jobs", 100).await;
    assert!(!capture.take().contains(WARNING));
    let sent = page_load(&app, "/api/jobs", None).await;
    assert!(
        cookies(&sent).is_empty(),
        "no mark once the login path was seen"
    );
}

/// A layer on a nested router as well as on the outermost one: the path to come back
/// to after a login keeps the nested router's prefix (before: `/jobs`, a 404 after the
/// login).
#[tokio::test]
async fn a_nested_layer_inside_the_outer_one_keeps_the_prefix_to_return_to() {
    let auth = layer();
    let handler = |token: HcssToken| async move { token.scopes().count().to_string() };
    let app = Router::new()
        .nest(
            "/api",
            Router::new()
                .route("/jobs", get(handler))
                .layer(auth.clone()),
        )
        .layer(auth);
    let sent = page_load(&app, "/api/jobs?page=2", None).await;
    assert_eq!(sent.status(), StatusCode::SEE_OTHER);
    let location = sent.headers()[header::LOCATION].to_str().unwrap();
    assert_eq!(location, "/hcss/login?return_to=%2Fapi%2Fjobs%3Fpage%3D2");
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
