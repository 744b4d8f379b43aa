//! [`sign_in`]: a browser's whole sign-in, run in process against an app and the mock
//! identity service it is configured against.

use crate::layer::HcssAuth;

/// Signs a browser in through the whole flow and returns the `Cookie` header value that
/// carries its session: `GET` on the login path of `auth` (the layer on `app`), consent
/// at the [`MockHcssIdentity`](super::MockHcssIdentity) the app is configured against
/// (which consents at once, as it does by default), and the callback on `app`. No server
/// is needed: `app` is called in process.
///
/// ```
/// use axum::{routing::get, Router};
/// use hcss_auth::testing::{sign_in, MockHcssIdentity};
/// use hcss_auth::{HcssAuth, HcssToken};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mock = MockHcssIdentity::start().await;
/// let config = mock
///     .config_builder("http://127.0.0.1:3000/hcss/callback")
///     .scopes(["heavyjob:read", "offline_access"])
///     .build()
///     .unwrap();
/// let auth = HcssAuth::new(config);
/// let app = Router::new()
///     .route("/me", get(|token: HcssToken| async move { token.scopes().count().to_string() }))
///     .layer(auth.clone());
///
/// let cookie = sign_in(&app, &auth).await;
/// let request = http::Request::get("/me")
///     .header("cookie", &cookie)
///     .body(axum::body::Body::empty())
///     .unwrap();
/// let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
/// assert_eq!(response.status(), 200);
/// # }
/// ```
///
/// # Panics
///
/// When a step of the flow does not answer as it should, naming the step: `auth` is not
/// the layer on `app` or the layer is misplaced, the app is not configured against a mock
/// that consents at once, or the callback was refused.
pub async fn sign_in(app: &axum::Router, auth: &HcssAuth) -> String {
    use http::header::{COOKIE, LOCATION, SET_COOKIE};
    async fn call(
        app: &axum::Router,
        request: http::Request<axum::body::Body>,
    ) -> http::Response<axum::body::Body> {
        let mut service = app.clone();
        std::future::poll_fn(|cx| {
            <axum::Router as tower_service::Service<http::Request<axum::body::Body>>>::poll_ready(
                &mut service,
                cx,
            )
        })
        .await
        .unwrap_or_else(|never| match never {});
        tower_service::Service::call(&mut service, request)
            .await
            .unwrap_or_else(|never| match never {})
    }
    let get = |uri: &str, cookie: Option<&str>| {
        let mut request = http::Request::get(uri);
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        request
            .body(axum::body::Body::empty())
            .expect("a valid request")
    };
    let cookie_of = |response: &http::Response<axum::body::Body>| {
        response
            .headers()
            .get(SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned)
    };
    let location = |response: &http::Response<axum::body::Body>| {
        response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };

    let login_path = auth.config().login_path();
    let login = call(app, get(login_path, None)).await;
    assert_eq!(
        login.status(),
        http::StatusCode::SEE_OTHER,
        "sign_in: GET {login_path} did not redirect: is this HcssAuth layer on the outermost router?"
    );
    let (authorize, login_cookie) = (
        location(&login).expect("sign_in: the login redirect has a Location"),
        cookie_of(&login).expect("sign_in: the login sets its cookie"),
    );
    let consent = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
        .get(&authorize)
        .send()
        .await
        .expect("sign_in: the identity service answers (is the app configured with MockHcssIdentity::config_builder?)");
    let callback = consent
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| url::Url::parse(v).ok())
        .expect(
            "sign_in: the mock consents at once (build it with auto_consent(true), the default)",
        );
    let path = match callback.query() {
        Some(query) => format!("{}?{query}", callback.path()),
        None => callback.path().to_owned(),
    };
    let done = call(app, get(&path, Some(&login_cookie))).await;
    assert_eq!(
        done.status(),
        http::StatusCode::SEE_OTHER,
        "sign_in: the callback refused the sign-in"
    );
    cookie_of(&done).expect("sign_in: the callback sets the session cookie")
}
