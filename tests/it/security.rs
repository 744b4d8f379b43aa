//! The security bar (DESIGN.md), item by item where no other test covers it, hostile
//! input on every endpoint, and identity-service faults. `SECURITY.md` maps each item to
//! its tests.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use common::*;
use hcss_auth::store::{Coordination, LoginTransaction, StoreFuture, StoreKey};
use hcss_auth::testing::{MockHcssIdentity, TokenFault};
use hcss_auth::{
    HcssAuth, HcssConfig, HcssToken, MemoryStore, StateStore, StoreError, TokenSet, TokenStore,
};
use tower::ServiceExt;

fn https_config() -> HcssConfig {
    HcssConfig::builder()
        .client_id("client")
        .client_secret("client-secret")
        .scopes(SCOPES)
        .redirect_uri("https://app.example.com/hcss/callback")
        .build()
        .unwrap()
}

fn app_with(auth: HcssAuth) -> Router {
    Router::new()
        .route("/whoami", get(|_t: HcssToken| async { "ok" }))
        .route("/healthz", get(|| async { "ok" }))
        .layer(auth)
}

async fn call(app: &Router, request: Request<Body>) -> axum::response::Response {
    app.clone().oneshot(request).await.unwrap()
}

fn get_req(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

fn location(response: &axum::response::Response) -> String {
    response.headers()[header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn bar_01_state_is_256_bits_and_pkce_is_always_s256() {
    // Logins kept in the store, so the test can read each verifier.
    let store = MemoryStore::new();
    let app = app_with(
        HcssAuth::builder(https_config())
            .token_store(store.clone())
            .state_store(store.clone())
            .build(),
    );
    let mut states = std::collections::HashSet::new();
    for _ in 0..200 {
        let response = call(&app, get_req("/hcss/login")).await;
        let authorize = location(&response);
        let state = query_param(&authorize, "state").unwrap();
        assert_eq!(state.len(), 43, "32 random bytes, base64url");
        assert!(states.insert(state.clone()), "states never repeat");
        assert_eq!(
            query_param(&authorize, "code_challenge_method").as_deref(),
            Some("S256")
        );
        let challenge = query_param(&authorize, "code_challenge").unwrap();
        let tx = store
            .take_transaction(login_key(&state))
            .await
            .unwrap()
            .unwrap();
        let verifier = tx.verifier.expose_secret();
        assert!((43..=128).contains(&verifier.len()));
        use base64::Engine as _;
        use sha2::Digest as _;
        let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(verifier.as_bytes()));
        assert_eq!(
            challenge, expected,
            "challenge = BASE64URL(SHA256(verifier))"
        );
        assert!(
            !authorize.contains(verifier),
            "the verifier is never in the authorize URL"
        );
    }
}

#[tokio::test]
async fn bar_04_identity_errors_are_readable_escaped_pages() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let browser = Browser::new();
    let callback = browser.start_login(&app, None).await;
    let state = query_param(&callback, "state").unwrap();
    let error = format!(
        "{}/hcss/callback?error=server_error&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E&state={state}",
        app.url
    );
    let page = browser.get(&error).await;
    assert_eq!(page.status, 400);
    assert!(!page.body.contains("<script>"), "{}", page.body);
    assert!(page.body.contains("&lt;script&gt;"), "{}", page.body);
    assert_eq!(mock.counts().token, 0);
}

#[tokio::test]
async fn bar_05_same_redirect_uri_and_secrets_only_in_the_body() {
    // The mock refuses a token request whose redirect_uri differs from the authorize
    // one, and any token or revocation request with parameters in its URL.
    let mock = MockHcssIdentity::start().await;
    for auth in [
        hcss_auth::ClientAuth::RequestBody,
        hcss_auth::ClientAuth::BasicAuth,
    ] {
        let app = start_app(&mock, |b| b.client_auth(auth)).await;
        let browser = Browser::new();
        let login = browser.get(&format!("{}/hcss/login", app.url)).await;
        let authorize = login.location().to_owned();
        assert!(
            !authorize.contains("test-secret"),
            "no secret in the authorize URL"
        );
        let consented = browser.get(&authorize).await;
        assert_eq!(
            browser.get(consented.location()).await.status,
            303,
            "{auth:?}"
        );
        assert_eq!(
            browser
                .request("POST", &format!("{}/hcss/logout", app.url), &[])
                .await
                .status,
            303
        );
    }
    assert_eq!(mock.counts().code_exchanges, 2);
    assert_eq!(mock.counts().revocations, 2);
}

/// A TLS server on loopback with a certificate no one trusts; counts HTTP requests that
/// get through the handshake.
async fn untrusted_tls_server() -> (String, Arc<AtomicUsize>) {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_file("tests/fixtures/untrusted.crt").unwrap()];
    let key = PrivateKeyDer::from_pem_file("tests/fixtures/untrusted.key").unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}/identity", listener.local_addr().unwrap());
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    use tokio::io::AsyncWriteExt;
                    counter.fetch_add(1, Ordering::SeqCst);
                    let body =
                        r#"{"access_token":"at_tls","token_type":"bearer","expires_in":3600}"#;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(response.as_bytes()).await;
                }
            });
        }
    });
    (url, served)
}

#[tokio::test]
async fn bar_06_tls_is_verified_redirects_are_not_followed_and_responses_are_capped() {
    let (identity, served) = untrusted_tls_server().await;
    let config = HcssConfig::builder()
        .client_id("client")
        .scopes(SCOPES)
        .redirect_uri("https://app.example.com/hcss/callback")
        .identity_url(identity)
        .build()
        .unwrap();
    let app = app_with(HcssAuth::new(config));
    let login = call(&app, get_req("/hcss/login")).await;
    let state = query_param(&location(&login), "state").unwrap();
    let binding = login.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let callback = Request::get(format!("/hcss/callback?code=abc&state={state}"))
        .header(header::COOKIE, binding)
        .body(Body::empty())
        .unwrap();
    let response = call(&app, callback).await;
    assert_eq!(
        response.status(),
        StatusCode::BAD_GATEWAY,
        "an untrusted certificate is refused"
    );
    assert_eq!(
        served.load(Ordering::SeqCst),
        0,
        "no request got past the TLS handshake"
    );

    // Redirects, slowness and oversized bodies (through the mock).
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b.http_timeout(Duration::from_millis(300))).await;
    let browser = Browser::new();
    for fault in [
        TokenFault::Redirect,
        TokenFault::Slow(Duration::from_secs(3)),
        TokenFault::Oversized(70_000),
    ] {
        let callback = browser.start_login(&app, None).await;
        mock.set_token_fault(Some(fault.clone()));
        assert_eq!(browser.get(&callback).await.status, 502, "{fault:?}");
        mock.set_token_fault(None);
    }
    assert_eq!(mock.counts().redirects_followed, 0);

    // The app's own client builder, set up to follow redirects and to wait long: the
    // crate's rules hold on it all the same.
    let app = start_app(&mock, |b| {
        b.http_timeout(Duration::from_millis(300)).http_client(
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::limited(5))
                .timeout(Duration::from_secs(60)),
        )
    })
    .await;
    for fault in [
        TokenFault::Redirect,
        TokenFault::Slow(Duration::from_secs(3)),
        TokenFault::Oversized(70_000),
    ] {
        let callback = browser.start_login(&app, None).await;
        mock.set_token_fault(Some(fault.clone()));
        assert_eq!(
            browser.get(&callback).await.status,
            502,
            "own client: {fault:?}"
        );
        mock.set_token_fault(None);
    }
    assert_eq!(mock.counts().redirects_followed, 0);
    assert_eq!(
        browser.get(&format!("{}/whoami", app.url)).await.status,
        401
    );
    browser.login(&app).await;
    assert_eq!(
        browser.get(&format!("{}/whoami", app.url)).await.status,
        200
    );
}

#[tokio::test]
async fn bar_08_cookies_are_host_prefixed_secure_httponly_lax() {
    let app = app_with(HcssAuth::new(https_config()));
    let login = call(&app, get_req("/hcss/login")).await;
    assert_eq!(login.headers()[header::CACHE_CONTROL], "no-store");
    let binding = login.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(binding.starts_with("__Host-hcss-login-"), "{binding}");
    for attribute in [
        "; HttpOnly",
        "; SameSite=Lax",
        "; Secure",
        "; Path=/",
        "; Max-Age=600",
    ] {
        assert!(binding.contains(attribute), "{attribute} in {binding}");
    }
    assert!(!binding.contains("Domain"), "{binding}");
    let logout = call(
        &app,
        Request::post("/hcss/logout").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(logout.headers()[header::CACHE_CONTROL], "no-store");
    let cleared = logout.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(cleared.starts_with("__Host-hcss-session=;"), "{cleared}");
    for attribute in [
        "; HttpOnly",
        "; SameSite=Lax",
        "; Secure",
        "; Path=/",
        "; Max-Age=0",
    ] {
        assert!(cleared.contains(attribute), "{attribute} in {cleared}");
    }
}

#[tokio::test]
async fn a_page_load_in_a_nested_router_returns_to_its_full_path() {
    let nested = Router::new().route("/whoami", get(|_t: HcssToken| async { "ok" }));
    let app = Router::new()
        .nest("/app", nested)
        .layer(HcssAuth::new(https_config()));
    let request = Request::get("/app/whoami?x=1")
        .header(header::ACCEPT, "text/html")
        .body(Body::empty())
        .unwrap();
    let response = call(&app, request).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        location(&response),
        "/hcss/login?return_to=%2Fapp%2Fwhoami%3Fx%3D1"
    );
}

#[tokio::test]
async fn bar_09_redirect_uri_and_issuer_come_from_config_never_from_host() {
    let app = app_with(HcssAuth::new(https_config()));
    let request = Request::get("/hcss/login")
        .header(header::HOST, "evil.example")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "host=evil.example")
        .body(Body::empty())
        .unwrap();
    let authorize = location(&call(&app, request).await);
    assert!(authorize.starts_with("https://api.hcssapps.com/identity/connect/authorize?"));
    assert_eq!(
        query_param(&authorize, "redirect_uri").as_deref(),
        Some("https://app.example.com/hcss/callback")
    );
    assert!(!authorize.contains("evil"));
}

/// A store that is down.
#[derive(Clone)]
struct DownStore;

impl StateStore for DownStore {
    fn put_transaction(
        &self,
        _: StoreKey,
        _: LoginTransaction,
        _: Duration,
    ) -> StoreFuture<'_, ()> {
        Box::pin(async { Err(StoreError::Unavailable("down".into())) })
    }
    fn take_transaction(&self, _: StoreKey) -> StoreFuture<'_, Option<LoginTransaction>> {
        Box::pin(async { Err(StoreError::Unavailable("down".into())) })
    }
}

impl TokenStore for DownStore {
    fn load(&self, _: StoreKey) -> StoreFuture<'_, Option<TokenSet>> {
        Box::pin(async { Err(StoreError::Unavailable("down".into())) })
    }
    fn store(&self, _: StoreKey, _: TokenSet, _: Duration) -> StoreFuture<'_, ()> {
        Box::pin(async { Err(StoreError::Unavailable("down".into())) })
    }
    fn remove(&self, _: StoreKey) -> StoreFuture<'_, ()> {
        Box::pin(async { Err(StoreError::Unavailable("down".into())) })
    }
}

impl Coordination for DownStore {}

#[tokio::test]
async fn bar_12_memory_is_bounded_under_a_login_flood_and_store_outages_are_503() {
    // Logins kept on the server (the option; by default they keep nothing there, see
    // `sealed.rs`): the store's bound holds.
    let store = MemoryStore::with_capacity(1_000, 10);
    let app = app_with(
        HcssAuth::builder(https_config())
            .token_store(store.clone())
            .state_store(store.clone())
            .build(),
    );
    for _ in 0..20_000 {
        assert_eq!(
            call(&app, get_req("/hcss/login")).await.status(),
            StatusCode::SEE_OTHER
        );
    }
    assert!(
        store.transaction_count() <= 1_000,
        "{}",
        store.transaction_count()
    );
    // The newest login is still there.
    let newest = call(&app, get_req("/hcss/login")).await;
    let state = query_param(&location(&newest), "state").unwrap();
    assert!(store
        .take_transaction(login_key(&state))
        .await
        .unwrap()
        .is_some());

    // Every endpoint over stores that are down: 503 with Retry-After, the server serves on.
    let app = app_with(
        HcssAuth::builder(https_config())
            .token_store(DownStore)
            .state_store(DownStore)
            .build(),
    );
    let cookie = format!("__Host-hcss-session={}", "a".repeat(43));
    let binding = format!("__Host-hcss-login-ssssssss={}", "b".repeat(43));
    for (request, what) in [
        (get_req("/hcss/login"), "login"),
        (
            Request::get(format!("/hcss/callback?code=c&state={}", "s".repeat(43)))
                .header(header::COOKIE, &binding)
                .body(Body::empty())
                .unwrap(),
            "callback",
        ),
        (
            Request::post("/hcss/logout")
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap(),
            "logout",
        ),
        (
            Request::get("/whoami")
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap(),
            "extractor",
        ),
    ] {
        let response = call(&app, request).await;
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE, "{what}");
        assert!(
            response.headers().contains_key(header::RETRY_AFTER),
            "{what}"
        );
    }
    assert_eq!(
        call(&app, get_req("/healthz")).await.status(),
        StatusCode::OK
    );
}

#[test]
fn bar_13_config_is_validated_when_built() {
    let base = || {
        HcssConfig::builder()
            .client_id("client")
            .scopes(SCOPES)
            .redirect_uri("https://app.example.com/hcss/callback")
    };
    assert!(base().build().is_ok());
    for (builder, field) in [
        (
            base().redirect_uri("http://app.example.com/hcss/callback"),
            "redirect_uri",
        ),
        (
            base().identity_url("http://api.hcssapps.com/identity"),
            "identity_url",
        ),
        (
            base()
                .redirect_uri("http://app.example.com/cb")
                .allow_insecure_http_on_loopback(true),
            "redirect_uri",
        ),
        (base().redirect_uri("/hcss/callback"), "redirect_uri"),
        (
            base().redirect_uri("ftp://app.example.com/cb"),
            "redirect_uri",
        ),
        (base().client_id(""), "client_id"),
        (base().scopes(Vec::<String>::new()), "scopes"),
        (base().max_code_exchanges(0), "max_code_exchanges"),
        (base().max_code_exchanges(usize::MAX), "max_code_exchanges"),
    ] {
        let err = builder.build().unwrap_err().to_string();
        assert!(err.contains(field), "{field}: {err}");
    }
    let dev = base()
        .redirect_uri("http://127.0.0.1:3000/hcss/callback")
        .identity_url("http://[::1]:4000/identity")
        .allow_insecure_http_on_loopback(true);
    assert!(dev.build().is_ok());
}

#[tokio::test]
async fn hostile_input_is_a_4xx_never_a_5xx_and_the_server_keeps_serving() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let browser = Browser::new();
    browser.login(&app).await; // a real session in the jar for some requests
                               // 64 KiB for cookies; a URI cannot exceed 64 KiB, so queries are 60 KiB here and a
                               // 64 KiB one goes over a raw socket below.
    let big = "A".repeat(64 * 1024);
    let long = "A".repeat(60 * 1024);
    let u = &app.url;
    let callback = browser.start_login(&app, None).await;
    let state = query_param(&callback, "state").unwrap();
    let get_urls = [
        format!("{u}/hcss/login?return_to=/{long}"),
        format!("{u}/hcss/login?x={long}"),
        format!("{u}/hcss/callback?state={long}"),
        format!("{u}/hcss/callback?code=a&state={}", "s".repeat(10 * 1024)),
        format!("{u}/hcss/callback?code=%zz&state=%"),
        format!("{u}/hcss/callback?code=a&state=%FF%FE"),
        format!("{u}/hcss/callback?code=a&code=b&state={state}"),
        format!("{u}/hcss/callback?code=a&error=access_denied&state={state}"),
        format!("{u}/hcss/callback?code=&state={state}"),
        format!("{u}/hcss/callback?%=%&&&=="),
        format!("{u}/hcss/login?return_to=%0d%0aSet-Cookie:%20x=y"),
        format!("{u}/hcss/login?return_to=javascript:alert(1)"),
        format!("{u}/hcss/login?return_to=//evil.example"),
        format!("{u}/hcss/login?return_to=/%5Cevil.example"),
        format!("{u}/hcss/login?return_to=%2F%2Fevil.example"),
        format!("{u}/hcss/login?return_to=/a&return_to=/b"),
        format!("{u}/hcss/login?return_to=%FF"),
    ];
    for url in &get_urls {
        let status = browser.get(url).await.status;
        assert!(
            (400..500).contains(&status),
            "{status} for {}",
            &url[..url.len().min(120)]
        );
    }
    let anonymous = Browser::new().get(&format!("{u}/whoami?x={long}")).await;
    assert_eq!(
        anonymous.status, 401,
        "a long query on a protected route is just anonymous"
    );
    let garbage_cookies = [
        format!("hcss-session={big}"),
        "hcss-session=%%%; hcss-login=\"\\\"".to_owned(),
        format!("hcss-session=\"{}\"; hcss-session=x", "Q".repeat(43)),
        format!("hcss-session={}", "Q".repeat(43)),
        ";;;==;hcss-session".to_owned(),
    ];
    for cookie in &garbage_cookies {
        for (method, path) in [
            ("GET", "/whoami"),
            ("GET", "/hcss/login"),
            ("POST", "/hcss/logout"),
        ] {
            let seen = Browser::new()
                .request(
                    method,
                    &format!("{u}{path}"),
                    &[("cookie", cookie.as_str())],
                )
                .await;
            assert!(
                seen.status < 500,
                "{} for {method} {path} with cookie {}",
                seen.status,
                &cookie[..cookie.len().min(60)]
            );
        }
        let seen = Browser::new()
            .request("GET", &callback, &[("cookie", cookie.as_str())])
            .await;
        assert_eq!(
            seen.status,
            400,
            "callback with cookie {}",
            &cookie[..cookie.len().min(60)]
        );
    }
    for path in [
        "/hcss/login?return_to=/",
        "/hcss/callback?state=",
        "/whoami?x=",
    ] {
        let status = raw_get_status(&app.url, &format!("{path}{big}")).await;
        assert!(
            (400..500).contains(&status),
            "{status} for a 64 KiB query on {path}"
        );
    }
    assert_eq!(
        mock.counts().code_exchanges,
        1,
        "only the real login exchanged a code"
    );
    assert_eq!(browser.get(&format!("{u}/healthz")).await.body, "ok");
    assert_eq!(
        browser.get(&format!("{u}/whoami")).await.status,
        200,
        "the real session still works"
    );
}

#[tokio::test]
async fn identity_service_unreachable_is_a_502() {
    // A port with nothing listening.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let identity = format!("http://{}/identity", closed.local_addr().unwrap());
    drop(closed);
    let mock = MockHcssIdentity::start().await;
    let key = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=";
    let app = start_app(&mock, |b| b.cookie_key(key)).await;
    let browser = Browser::new();
    let callback = browser.start_login(&app, None).await;
    // The same app (its cookie key too), but its token endpoint is unreachable.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = mock
        .config_builder(&format!("{}/hcss/callback", app.url))
        .identity_url(&identity)
        .scopes(SCOPES)
        .cookie_key(key)
        .build()
        .unwrap();
    serve(
        listener,
        router(
            HcssAuth::with_store(config, app.store.clone()),
            mock.api_url(),
        ),
    );
    let seen = browser.get(&callback.replacen(&app.url, &url, 1)).await;
    // The iss in the callback is the mock's, not this config's: refused before any call.
    assert_eq!(seen.status, 400);
    let callback = browser.start_login(&app, None).await;
    let without_iss = callback.replacen(&app.url, &url, 1);
    let without_iss = without_iss.split("&iss=").next().unwrap().to_owned();
    let seen = browser.get(&without_iss).await;
    assert_eq!(seen.status, 502, "{}", seen.body);
    assert_eq!(browser.get(&format!("{url}/healthz")).await.body, "ok");
}

/// Sends `GET target` over a plain socket (for targets no HTTP client will build) and
/// returns the status code.
async fn raw_get_status(base: &str, target: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut head = [0u8; 12];
    socket.read_exact(&mut head).await.unwrap();
    std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
}

/// Code exchanges in flight are bounded per process (`max_code_exchanges`): past the
/// bound a callback answers 503 with `Retry-After` before any token call, keeps its login
/// cookie, and its retry completes. Before, every forged callback with a junk code made a
/// token call at once, however many were in flight.
#[tokio::test]
async fn code_exchanges_in_flight_are_bounded() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b.max_code_exchanges(2)).await;
    let mut logins = Vec::new();
    for _ in 0..5 {
        let browser = Browser::new();
        let callback = browser.start_login(&app, None).await;
        logins.push((browser, callback));
    }
    mock.set_token_fault(Some(TokenFault::Stall));
    let held: Vec<_> = logins
        .drain(..2)
        .map(|(browser, callback)| tokio::spawn(async move { browser.get(&callback).await }))
        .collect();
    mock.wait_for(|c| c.code_exchanges == 2).await;
    for (browser, callback) in &logins {
        // Answered at once, or the mock sees a third exchange (a failure either way).
        let busy = tokio::select! {
            busy = browser.get(callback) => busy,
            () = mock.wait_for(|c| c.code_exchanges > 2) => panic!("a call past the bound"),
        };
        assert_eq!(busy.status, 503, "{}", busy.body);
        assert!(busy.headers.contains_key("retry-after"));
        assert_eq!(browser.login_cookies().len(), 1, "kept for the retry");
    }
    assert_eq!(mock.counts().code_exchanges, 2, "no call past the bound");
    mock.set_token_fault(None);
    for done in held {
        assert_eq!(done.await.unwrap().status, 303);
    }
    for (browser, callback) in &logins {
        let retry = browser.get(callback).await;
        assert_eq!(retry.status, 303, "{}", retry.body);
    }
    assert_eq!(mock.counts().code_exchanges, 5);
}
