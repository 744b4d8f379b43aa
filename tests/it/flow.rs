//! The whole authorization code flow against `MockHcssIdentity` on loopback.

use crate::common;

use std::time::Duration;

use common::*;
use hcss_auth::store::LoginTransaction;
use hcss_auth::testing::{MockHcssIdentity, TestClock, TokenFault};
use hcss_auth::{StateStore, TokenStore};

const SESSION: &str = "hcss-session";

#[tokio::test]
async fn full_flow_signs_in_and_calls_the_api() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let browser = Browser::new();

    assert_eq!(browser.get(&app.url).await.body, "signed out");
    let login = browser
        .get(&format!("{}/hcss/login?return_to=%2Fwhoami", app.url))
        .await;
    assert_eq!(login.status, 303);
    assert_eq!(login.headers["cache-control"], "no-store");
    let authorize = login.location().to_owned();
    assert!(authorize.starts_with(&format!("{}/connect/authorize?", mock.identity_url())));
    for (name, expected) in [
        ("client_id", Some("test-client")),
        ("scope", Some("heavyjob:read offline_access")),
        ("response_type", Some("code")),
        ("code_challenge_method", Some("S256")),
    ] {
        assert_eq!(query_param(&authorize, name).as_deref(), expected, "{name}");
    }
    assert_eq!(
        query_param(&authorize, "redirect_uri").unwrap(),
        format!("{}/hcss/callback", app.url)
    );
    assert_eq!(query_param(&authorize, "state").unwrap().len(), 43);
    assert_eq!(query_param(&authorize, "code_challenge").unwrap().len(), 43);

    let consented = browser.get(&authorize).await;
    let callback = consented.location().to_owned();
    assert_eq!(
        query_param(&callback, "iss").as_deref(),
        Some(mock.identity_url())
    );
    let done = browser.get(&callback).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location(), "/whoami");
    assert_eq!(done.headers["cache-control"], "no-store");
    assert_eq!(mock.counts().code_exchanges, 1);

    let whoami = browser.get(&format!("{}/whoami", app.url)).await;
    assert_eq!(whoami.status, 200);
    let json: serde_json::Value = serde_json::from_str(&whoami.body).unwrap();
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(
        json["scopes"],
        serde_json::json!(["heavyjob:read", "offline_access"])
    );
    assert!(json["expires_in"].as_u64().unwrap() > 3500);
    let tokens = app
        .store
        .load(session_key(&browser.cookie(SESSION).unwrap()))
        .await
        .unwrap()
        .unwrap();
    assert!(
        !whoami.body.contains(tokens.access_token.expose_secret()),
        "the token never reaches the browser"
    );

    let units = browser.get(&format!("{}/business-units", app.url)).await;
    assert_eq!(units.status, 200, "{}", units.body);
    assert!(units.body.contains("Main Business Unit"));
    assert_eq!(mock.counts().api_calls, 1);
    assert_eq!(browser.get(&app.url).await.body, "signed in");
}

#[tokio::test]
async fn two_tabs_log_in_at_once() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let browser = Browser::new();
    let first = browser.start_login(&app, Some("/one")).await;
    let second = browser.start_login(&app, Some("/two")).await;
    assert_eq!(browser.login_cookies().len(), 2, "one binding per login");
    // The second tab finishes first; the first one still works afterwards.
    assert_eq!(browser.get(&second).await.location(), "/two");
    let session_two = browser.cookie(SESSION).unwrap();
    assert_eq!(browser.get(&first).await.location(), "/one");
    assert_ne!(browser.cookie(SESSION).unwrap(), session_two);
    assert_eq!(mock.counts().code_exchanges, 2);
}

/// Two tabs of a browser with no cookie yet start their logins at the same moment: both
/// login requests leave before either answer sets a cookie. Before, both answers set the
/// one binding cookie, the second overwrote the first, and the first tab's login failed.
#[tokio::test]
async fn two_tabs_first_logins_at_the_same_moment_both_succeed() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let login = |path: &str| format!("{}/hcss/login?return_to={path}", app.url);
    // Each request is sent from an empty jar, as both were in flight together.
    let (tab_one, tab_two) = (Browser::new(), Browser::new());
    let one = tab_one.get(&login("/one")).await;
    let two = tab_two.get(&login("/two")).await;
    let browser = Browser::new();
    browser.take_cookies_of(&tab_one);
    browser.take_cookies_of(&tab_two);
    let callback_one = browser.get(one.location()).await.location().to_owned();
    let callback_two = browser.get(two.location()).await.location().to_owned();
    let done_one = browser.get(&callback_one).await;
    assert_eq!(done_one.status, 303, "{}", done_one.body);
    assert_eq!(done_one.location(), "/one");
    let done_two = browser.get(&callback_two).await;
    assert_eq!(done_two.status, 303, "{}", done_two.body);
    assert_eq!(done_two.location(), "/two");
    assert_eq!(mock.counts().code_exchanges, 2);
}

/// A browser that starts many logins keeps a few binding cookies at most (the oldest are
/// cleared), and its newest login still completes.
#[tokio::test]
async fn a_browser_keeps_a_bounded_number_of_login_cookies() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let browser = Browser::new();
    let mut callbacks = Vec::new();
    for _ in 0..8 {
        callbacks.push(browser.start_login(&app, None).await);
        assert!(
            browser.login_cookies().len() <= 5,
            "{:?}",
            browser.login_cookies()
        );
    }
    assert_eq!(browser.login_cookies().len(), 5);
    let newest = browser.get(callbacks.last().unwrap()).await;
    assert_eq!(newest.status, 303, "{}", newest.body);
    let oldest = browser.get(&callbacks[0]).await;
    assert_eq!(oldest.status, 400, "the oldest login's binding was dropped");
}

/// Each refused callback: 400, and not one call to the token endpoint.
async fn assert_refused(mock: &MockHcssIdentity, seen: &Seen, needle: &str) {
    assert_eq!(seen.status, 400, "{}", seen.body);
    assert!(
        seen.body.contains(needle),
        "{needle:?} not in {}",
        seen.body
    );
    assert_eq!(
        mock.counts().token,
        0,
        "no token call for a refused callback"
    );
    assert_eq!(seen.headers["cache-control"], "no-store");
}

#[tokio::test]
async fn bar_02_tampered_or_missing_state_is_refused_without_a_token_call() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let browser = Browser::new();
    let callback = browser.start_login(&app, None).await;
    let tampered = with_param(&callback, "state", "A".repeat(43).as_str());
    assert_refused(
        &mock,
        &browser.get(&tampered).await,
        "expired or was already used",
    )
    .await;
    let missing = callback.replace("state=", "nostate=");
    assert_refused(&mock, &browser.get(&missing).await, "no valid state").await;
}

#[tokio::test]
async fn bar_02_missing_or_foreign_binding_cookie_is_refused() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let victim = Browser::new();
    let callback = victim.start_login(&app, None).await;
    // An attacker's browser (its own binding cookie) cannot finish the victim's login...
    let attacker = Browser::new();
    attacker.get(&format!("{}/hcss/login", app.url)).await;
    assert_eq!(attacker.login_cookies().len(), 1);
    assert_refused(&mock, &attacker.get(&callback).await, "another browser").await;
    // ...nor can a browser without one.
    let callback = victim.start_login(&app, None).await;
    victim.forget_logins();
    assert_refused(&mock, &victim.get(&callback).await, "another browser").await;
}

#[tokio::test]
async fn bar_02_replayed_callback_is_refused() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let browser = Browser::new();
    let callback = browser.start_login(&app, None).await;
    assert_eq!(browser.get(&callback).await.status, 303);
    assert_eq!(mock.counts().token, 1);
    let replay = browser.get(&callback).await;
    assert_eq!(replay.status, 400);
    assert!(replay.body.contains("already used"), "{}", replay.body);
    assert_eq!(mock.counts().token, 1, "a replay makes no token call");
}

#[tokio::test]
async fn bar_02_expired_transaction_is_refused() {
    // Sealed in the cookie (the default): the login waits past the 10-minute limit.
    let mock = MockHcssIdentity::start().await;
    let clock = TestClock::new();
    let app = start_app(&mock, |b| b.test_clock(clock.clone())).await;
    let browser = Browser::new();
    let callback = browser.start_login(&app, None).await;
    clock.advance(Duration::from_secs(601));
    assert_refused(&mock, &browser.get(&callback).await, "expired").await;

    // Kept in the store: the stored login is aged instead.
    let app = start_app_stored(&mock, |b| b).await;
    let browser = Browser::new();
    let callback = browser.start_login(&app, None).await;
    let key = login_key(&query_param(&callback, "state").unwrap());
    let old = app.store.take_transaction(key).await.unwrap().unwrap();
    let aged = LoginTransaction::new(
        old.verifier,
        old.return_to,
        old.binding_hash,
        old.created_at - 601,
    );
    app.store
        .put_transaction(key, aged, Duration::from_secs(60))
        .await
        .unwrap();
    assert_refused(&mock, &browser.get(&callback).await, "expired").await;
}

#[tokio::test]
async fn bar_03_iss_mismatch_is_refused_on_success_and_error_callbacks() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let browser = Browser::new();
    let callback = browser.start_login(&app, None).await;
    let forged = with_param(&callback, "iss", "https://evil.example/identity");
    assert_refused(
        &mock,
        &browser.get(&forged).await,
        "unexpected identity service",
    )
    .await;

    let callback = browser.start_login(&app, None).await;
    let state = query_param(&callback, "state").unwrap();
    let error = format!(
        "{}/hcss/callback?error=access_denied&state={state}&iss=https%3A%2F%2Fevil.example",
        app.url
    );
    assert_refused(
        &mock,
        &browser.get(&error).await,
        "unexpected identity service",
    )
    .await;
}

#[tokio::test]
async fn bar_03_duplicate_empty_or_contradictory_parameters_are_refused() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let browser = Browser::new();
    let callback = browser.start_login(&app, None).await;
    assert_refused(
        &mock,
        &browser.get(&format!("{callback}&code=again")).await,
        "more than once",
    )
    .await;
    let callback = browser.start_login(&app, None).await;
    assert_refused(
        &mock,
        &browser.get(&format!("{callback}&error=server_error")).await,
        "contradictory",
    )
    .await;
    let callback = browser.start_login(&app, None).await;
    assert_refused(
        &mock,
        &browser.get(&with_param(&callback, "code", "")).await,
        "no code",
    )
    .await;
}

#[tokio::test]
async fn bar_04_access_denied_is_a_readable_page() {
    let mock = MockHcssIdentity::builder()
        .auto_consent(false)
        .start()
        .await;
    let app = start_app(&mock, |b| b).await;
    let browser = Browser::new();
    let login = browser.get(&format!("{}/hcss/login", app.url)).await;
    let consent = browser.get(login.location()).await;
    assert_eq!(consent.status, 200);
    assert!(consent.body.contains("Allow") && consent.body.contains("Deny"));
    // Press Deny: post the form's hidden fields with decision=deny.
    let mut form: Vec<(String, String)> = url::Url::parse(login.location())
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    form.push(("decision".into(), "deny".into()));
    let denied = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}/connect/authorize/consent", mock.identity_url()))
        .form(&form)
        .send()
        .await
        .unwrap();
    let callback = denied.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        query_param(&callback, "error").as_deref(),
        Some("access_denied")
    );
    let page = browser.get(&callback).await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("not granted"), "{}", page.body);
    assert!(page.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(mock.counts().token, 0);
    assert!(browser.cookie(SESSION).is_none());
}

#[tokio::test]
async fn bar_09_open_redirects_in_return_to_are_refused() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let browser = Browser::new();
    for bad in [
        "//evil.example",
        "/\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "/%2F%2Fevil.example",
        "/ok\r\nLocation: https://evil.example",
    ] {
        let url = format!(
            "{}/hcss/login?return_to={}",
            app.url,
            url::form_urlencoded::byte_serialize(bad.as_bytes()).collect::<String>()
        );
        let seen = browser.get(&url).await;
        assert_eq!(seen.status, 400, "{bad:?}");
        assert!(seen.location().is_empty());
    }
    assert_eq!(mock.counts().authorize, 0);
}

#[tokio::test]
async fn bar_08_cookies_carry_the_safe_attributes_in_development() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let browser = Browser::new();
    let login = browser.get(&format!("{}/hcss/login", app.url)).await;
    let binding = &login.set_cookies()[0];
    assert!(binding.starts_with("hcss-login-"), "{binding}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=600"] {
        assert!(binding.contains(attribute), "{attribute} in {binding}");
    }
    let callback = browser.get(login.location()).await;
    let done = browser.get(callback.location()).await;
    let session = &done.set_cookies()[0];
    assert!(session.starts_with("hcss-session="), "{session}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(attribute), "{attribute} in {session}");
    }
    assert!(
        !session.contains("Secure"),
        "plain http on loopback only in development"
    );
    assert!(
        done.set_cookies()
            .iter()
            .any(|c| c.starts_with("hcss-login-") && c.contains("Max-Age=0")),
        "this login's binding is cleared"
    );
    assert!(browser.login_cookies().is_empty());
}

#[tokio::test]
async fn bar_07_a_new_session_id_on_every_login() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let browser = Browser::new();
    // A planted session cookie is never adopted.
    let planted = "P".repeat(43);
    browser.set_cookie(SESSION, &planted);
    browser.login(&app).await;
    let first = browser.cookie(SESSION).unwrap();
    assert_ne!(first, planted);
    browser.login(&app).await;
    let second = browser.cookie(SESSION).unwrap();
    assert_ne!(first, second);
    assert!(
        app.store.load(session_key(&first)).await.unwrap().is_none(),
        "the replaced session is removed"
    );
    assert!(app
        .store
        .load(session_key(&second))
        .await
        .unwrap()
        .is_some());
    assert_eq!(app.store.session_count(), 1);
}

#[tokio::test]
async fn bar_06_token_endpoint_failures_are_a_502_and_the_server_keeps_serving() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b.http_timeout(Duration::from_millis(300))).await;
    let browser = Browser::new();
    for fault in [
        TokenFault::ServerError,
        TokenFault::Slow(Duration::from_secs(3)),
        TokenFault::MalformedBody,
        TokenFault::NoAccessToken,
        TokenFault::WrongTokenType,
        TokenFault::NegativeExpiry,
        TokenFault::Oversized(100_000),
        TokenFault::Redirect,
    ] {
        let callback = browser.start_login(&app, None).await;
        mock.set_token_fault(Some(fault.clone()));
        let seen = browser.get(&callback).await;
        mock.set_token_fault(None);
        assert_eq!(seen.status, 502, "{fault:?}: {}", seen.body);
        assert!(seen.body.contains("try again"), "{fault:?}: {}", seen.body);
        assert!(
            browser.cookie(SESSION).is_none(),
            "{fault:?}: no session from a bad response"
        );
        assert_eq!(
            browser.get(&format!("{}/healthz", app.url)).await.body,
            "ok"
        );
    }
    assert_eq!(app.store.session_count(), 0);
    // And a login after the faults works.
    browser.login(&app).await;
    assert_eq!(
        browser.get(&format!("{}/whoami", app.url)).await.status,
        200
    );
}

#[tokio::test]
async fn wrong_client_secret_is_a_502() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b.client_secret("wrong")).await;
    let browser = Browser::new();
    let callback = browser.start_login(&app, None).await;
    let seen = browser.get(&callback).await;
    assert_eq!(seen.status, 502, "{}", seen.body);
    assert_eq!(mock.counts().code_exchanges, 1);
}

#[tokio::test]
async fn basic_auth_and_public_clients_work() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b.client_auth(hcss_auth::ClientAuth::BasicAuth)).await;
    let browser = Browser::new();
    browser.login(&app).await;
    assert_eq!(
        browser.get(&format!("{}/whoami", app.url)).await.status,
        200
    );

    let public = MockHcssIdentity::builder()
        .client_secret(None)
        .start()
        .await;
    let app = start_app(&public, |b| b).await;
    let browser = Browser::new();
    browser.login(&app).await;
    assert_eq!(
        browser.get(&format!("{}/whoami", app.url)).await.status,
        200
    );
}

#[tokio::test]
async fn bar_07_unknown_sessions_are_anonymous_and_extractor_rules_hold() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let browser = Browser::new();
    let page = browser.open(&format!("{}/whoami?x=1", app.url)).await;
    assert_eq!(page.status, 303);
    assert_eq!(page.location(), "/hcss/login?return_to=%2Fwhoami%3Fx%3D1");
    let api = browser.get(&format!("{}/whoami", app.url)).await;
    assert_eq!(api.status, 401);
    let json: serde_json::Value = serde_json::from_str(&api.body).unwrap();
    assert_eq!(json["error"], "login_required");
    // A session cookie for a session that never existed is simply anonymous.
    browser.set_cookie(SESSION, &"Z".repeat(43));
    assert_eq!(
        browser.get(&format!("{}/whoami", app.url)).await.status,
        401
    );
    assert_eq!(browser.get(&app.url).await.body, "signed out");

    // The layer missing: 500.
    use axum::routing::get;
    use tower::ServiceExt;
    let bare = axum::Router::new().route("/", get(|_t: hcss_auth::HcssToken| async { "x" }));
    let response = bare
        .oneshot(
            axum::http::Request::get("/")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
}

#[tokio::test]
async fn wrong_methods_on_flow_paths_are_405() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let browser = Browser::new();
    let seen = browser
        .request("PUT", &format!("{}/hcss/logout", app.url), &[])
        .await;
    assert_eq!(seen.status, 405);
    assert_eq!(seen.headers["allow"], "GET, HEAD, POST");
    let seen = browser
        .request("POST", &format!("{}/hcss/login", app.url), &[])
        .await;
    assert_eq!(seen.status, 405);
}

/// `GET /hcss/logout` (a plain link) gets a page whose form signs out, not a bare 405;
/// the page itself signs nobody out, and cannot be framed by another site.
#[tokio::test]
async fn a_link_to_logout_gets_a_page_with_the_sign_out_form() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let browser = Browser::new();
    browser.login(&app).await;
    let logout = format!("{}/hcss/logout", app.url);
    let seen = browser.open(&logout).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert!(
        seen.body
            .contains(r#"<form method="post" action="/hcss/logout">"#),
        "{}",
        seen.body
    );
    assert!(seen.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(seen.headers["cache-control"], "no-store");
    assert_eq!(
        seen.headers["content-security-policy"],
        "frame-ancestors 'none'"
    );
    assert_eq!(
        browser.get(&format!("{}/whoami", app.url)).await.status,
        200,
        "a GET signs nobody out"
    );
    // The form's POST, from the app's own page.
    let seen = browser
        .request("POST", &logout, &[("origin", &app.url)])
        .await;
    assert_eq!(seen.status, 303, "{}", seen.body);
    assert_eq!(
        browser.get(&format!("{}/whoami", app.url)).await.status,
        401
    );
}

/// A refused cross-site logout's log line names the origin it came from and the one it
/// had to come from (the redirect URI's), so that a proxy that rewrites origins is
/// found. Current-thread runtime: the app logs to this thread's subscriber.
#[tokio::test]
async fn a_refused_cross_site_logout_names_the_expected_origin() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let seen = Browser::new()
        .request(
            "POST",
            &format!("{}/hcss/logout", app.url),
            &[("origin", "https://elsewhere.example")],
        )
        .await;
    assert_eq!(seen.status, 403);
    let logs = capture.take();
    assert!(logs.contains("logout refused"), "{logs}");
    assert!(logs.contains(&app.url), "the expected origin: {logs}");
    assert!(logs.contains("https://elsewhere.example"), "{logs}");
}

/// The 401 of a protected route says where to log in, as `/hcss/user`'s does: in the
/// JSON body and in `WWW-Authenticate`.
#[tokio::test]
async fn an_api_call_signed_out_is_told_the_login_path() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b.login_path("/auth/hcss")).await;
    let seen = Browser::new().get(&format!("{}/whoami", app.url)).await;
    assert_eq!(seen.status, 401);
    let json: serde_json::Value = serde_json::from_str(&seen.body).unwrap();
    assert_eq!(json["error"], "login_required");
    assert_eq!(json["login_path"], "/auth/hcss");
    assert_eq!(
        seen.headers["www-authenticate"],
        r#"Cookie realm="hcss", login_path="/auth/hcss""#
    );
}

/// Which requests are sent to log in and which get 401, as the docs define it: a page
/// load (GET/HEAD accepting HTML) and an HTML form's POST are sent to log in (the form
/// back to its page), anything else gets 401 JSON.
#[tokio::test]
async fn page_loads_and_form_posts_go_to_login_and_api_calls_get_401() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let browser = Browser::new();
    let html = ("accept", "text/html,application/xhtml+xml");
    let form = ("content-type", "application/x-www-form-urlencoded");
    let page = format!("{}/whoami?id=3", app.url);
    let submit = format!("{}/submit", app.url);
    for (method, url, headers, status, location) in [
        ("GET", &page, vec![], 401, ""),
        ("GET", &page, vec![("accept", "*/*")], 401, ""),
        (
            "GET",
            &page,
            vec![html],
            303,
            "/hcss/login?return_to=%2Fwhoami%3Fid%3D3",
        ),
        (
            "HEAD",
            &page,
            vec![html],
            303,
            "/hcss/login?return_to=%2Fwhoami%3Fid%3D3",
        ),
        (
            "POST",
            &submit,
            vec![html, form, ("referer", page.as_str())],
            303,
            "/hcss/login?return_to=%2Fwhoami%3Fid%3D3",
        ),
        ("POST", &submit, vec![html, form], 303, "/hcss/login"),
        (
            "POST",
            &submit,
            vec![html, form, ("referer", "https://evil.example/jobs")],
            303,
            "/hcss/login",
        ),
        (
            "POST",
            &submit,
            vec![html, ("content-type", "application/json")],
            401,
            "",
        ),
        ("POST", &submit, vec![form], 401, ""),
    ] {
        let seen = browser.request(method, url, &headers).await;
        assert_eq!(seen.status, status, "{method} {headers:?}");
        assert_eq!(seen.location(), location, "{method} {headers:?}");
    }
}

/// `testing::sign_in` signs in through the login path the app configured; before, it
/// always asked `/hcss/login`, and an app with another login path could not use it.
#[tokio::test]
async fn sign_in_uses_the_configured_login_path() {
    let mock = MockHcssIdentity::start().await;
    let config = mock
        .config_builder("http://127.0.0.1:3000/auth/callback")
        .login_path("/auth/login")
        .scopes(SCOPES)
        .build()
        .unwrap();
    let auth = hcss_auth::HcssAuth::new(config);
    let app = axum::Router::new()
        .route(
            "/me",
            axum::routing::get(|token: hcss_auth::HcssToken| async move {
                token.claims().subject().unwrap_or_default().to_owned()
            }),
        )
        .layer(auth.clone());
    let cookie = hcss_auth::testing::sign_in(&app, &auth).await;
    let request = axum::http::Request::get("/me")
        .header("cookie", &cookie)
        .body(axum::body::Body::empty())
        .unwrap();
    let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
    assert_eq!(response.status(), 200);
}

/// `session_exists` takes the cookie `sign_in` returns, as well as a seeded session
/// (before: only a `SeededSession`, so a signed-in browser's session could not be
/// checked after a logout).
#[tokio::test]
async fn session_exists_takes_the_cookie_of_a_sign_in() {
    use hcss_auth::testing::{seed_session, session_exists, sign_in};
    use tower::ServiceExt as _;

    let mock = MockHcssIdentity::start().await;
    let config = mock
        .config_builder("http://127.0.0.1:3000/hcss/callback")
        .scopes(SCOPES)
        .build()
        .unwrap();
    let auth = hcss_auth::HcssAuth::new(config);
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "home" }))
        .layer(auth.clone());
    let cookie = sign_in(&app, &auth).await;
    assert!(session_exists(&auth, &cookie).await.unwrap());
    let seeded = seed_session(&auth, mock.issue_tokens("heavyjob:read"))
        .await
        .unwrap();
    assert!(session_exists(&auth, &seeded).await.unwrap());
    assert!(!session_exists(&auth, "theme=dark").await.unwrap());

    let logout = axum::http::Request::post("/hcss/logout")
        .header("cookie", &cookie)
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(app.oneshot(logout).await.unwrap().status(), 303);
    assert!(!session_exists(&auth, &cookie).await.unwrap());
    assert!(session_exists(&auth, &seeded).await.unwrap());
}

/// The standalone mock's binary (`examples/mock_hcss.rs`), which `cargo test` builds
/// beside the test binaries; `None` (the test says it was skipped) when only the
/// integration tests were built (`--test it`).
fn mock_hcss_binary(test: &str) -> Option<std::path::PathBuf> {
    use std::io::Write as _;
    // target/<profile>/deps/it-… -> target/<profile>/examples/mock_hcss
    let binary = std::env::current_exe()
        .ok()?
        .parent()?
        .parent()?
        .join("examples/mock_hcss");
    if binary.exists() {
        return Some(binary);
    }
    let _ = writeln!(
        std::io::stderr(),
        "{test}: skipped (build it: cargo build --all-features --example mock_hcss)"
    );
    None
}

/// A child process killed when dropped, even when the test fails.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The standalone mock refuses arguments it cannot use, naming the argument, with exit
/// code 2 and before it binds a port.
#[test]
fn the_standalone_mock_refuses_bad_arguments() {
    let Some(binary) = mock_hcss_binary("the_standalone_mock_refuses_bad_arguments") else {
        return;
    };
    for (bad, named) in [
        ("--access-token-lifetime 0", "--access-token-lifetime"),
        ("--access-token-lifetime soon", "--access-token-lifetime"),
        ("--access-token-lifetime", "--access-token-lifetime"),
        ("--api-rate-per-minute 0", "--api-rate-per-minute"),
        ("--api-rate-per-minute many", "--api-rate-per-minute"),
        ("--api-concurrency 0", "--api-concurrency"),
        ("--api-concurrency", "--api-concurrency"),
        ("--speed fast", "--speed"),
    ] {
        let output = std::process::Command::new(&binary)
            .args(bad.split(' '))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{bad}: {said}");
        assert!(
            said.contains(named) && said.contains("usage:"),
            "{bad}: {said}"
        );
    }
}

/// What the standalone mock prints, a line at a time, read on a thread of its own: a
/// line that does not come within 30 s fails the test rather than hanging it.
struct Printed(std::sync::mpsc::Receiver<String>);

impl Printed {
    fn next(&self) -> String {
        self.0
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the standalone mock printed the next line")
    }
}

/// Starts the standalone mock with `args` (and `--port 0`, a port the system picks,
/// `--auto-consent`, a redirect URI to `app_url`), reads what it prints up to
/// "Serving": its `export` settings and the line on its API's limits.
fn start_mock_hcss(
    binary: &std::path::Path,
    app_url: &str,
    args: &[&str],
) -> (
    Child,
    Printed,
    std::collections::HashMap<String, String>,
    String,
) {
    use std::io::BufRead as _;
    let mut child = std::process::Command::new(binary)
        .args(["--port", "0", "--auto-consent"])
        .args(["--redirect-uri", &format!("{app_url}/hcss/callback")])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let child = Child(child);
    let (lines, printed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let printed = Printed(printed);
    let (mut settings, mut limits) = (std::collections::HashMap::new(), String::new());
    loop {
        let line = printed.next();
        if line.starts_with("Serving") {
            break;
        }
        if line.starts_with("it allows each company") {
            limits = line.clone();
        }
        if let Some((name, value)) = line
            .strip_prefix("export ")
            .and_then(|pair| pair.split_once('='))
        {
            settings.insert(name.to_owned(), value.trim_matches('\'').to_owned());
        }
    }
    (child, printed, settings, limits)
}

/// The standalone mock's API applies HCSS's limits unless told otherwise, and says so.
#[tokio::test]
async fn the_standalone_mock_applies_hcss_limits_by_default() {
    let Some(binary) = mock_hcss_binary("the_standalone_mock_applies_hcss_limits_by_default")
    else {
        return;
    };
    let (_child, _, _, limits) = start_mock_hcss(&binary, "http://127.0.0.1:3000", &[]);
    assert!(
        limits.contains("100 calls a minute and 20 at once"),
        "{limits:?}"
    );
}

/// The standalone mock (`examples/mock_hcss.rs`) prints settings an app signs in with:
/// the app below is configured from them alone, signs in through the mock and calls its
/// API within the limits asked for (`--api-rate-per-minute 3 --api-concurrency 1`: the
/// fourth call of the minute served is refused with 429). `revoke` typed on its standard input
/// refuses the access tokens issued so far: the app's next call gets 401, and one that
/// refreshes the session gets 200.
#[tokio::test]
async fn the_standalone_mock_prints_the_settings_an_app_signs_in_with() {
    use std::io::Write as _;

    let Some(binary) =
        mock_hcss_binary("the_standalone_mock_prints_the_settings_an_app_signs_in_with")
    else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_url = format!("http://{}", listener.local_addr().unwrap());
    let (mut child, said, settings, limits) = start_mock_hcss(
        &binary,
        &app_url,
        &["--api-rate-per-minute", "3", "--api-concurrency", "1"],
    );
    assert!(
        limits.contains("3 calls a minute and 1 at once"),
        "{limits:?}"
    );
    let setting = |name: &str| settings.get(name).cloned().unwrap_or_default();
    assert_eq!(setting("HCSS_ALLOW_INSECURE_HTTP"), "1", "{settings:?}");
    let config = hcss_auth::HcssConfig::builder()
        .client_id(setting("HCSS_CLIENT_ID"))
        .client_secret(setting("HCSS_CLIENT_SECRET"))
        .scopes(setting("HCSS_SCOPES").split(' '))
        .redirect_uri(setting("HCSS_REDIRECT_URI"))
        .identity_url(setting("HCSS_IDENTITY_URL"))
        .allow_insecure_http_on_loopback(true)
        .build()
        .unwrap();
    serve(
        listener,
        router(hcss_auth::HcssAuth::new(config), setting("HCSS_API_URL")),
    );
    let browser = Browser::new();
    browser.login_at(&app_url).await;
    let whoami = browser.get(&format!("{app_url}/whoami")).await;
    assert_eq!(whoami.status, 200, "{}", whoami.body);
    let units = browser.get(&format!("{app_url}/business-units")).await;
    assert_eq!(units.status, 200, "{}", units.body);

    let stdin = child.0.stdin.as_mut().unwrap();
    writeln!(stdin, "revoke").unwrap();
    stdin.flush().unwrap();
    let answer = said.next();
    assert!(answer.starts_with("Revoked"), "{answer}");
    let units = browser.get(&format!("{app_url}/business-units")).await;
    assert_eq!(units.status, 401, "{}", units.body);
    let units = browser
        .get(&format!("{app_url}/business-units-retrying"))
        .await;
    assert_eq!(units.status, 200, "{}", units.body);
    // Calls refused with 401 are not counted: two served so far, a third, then none.
    let units = browser.get(&format!("{app_url}/business-units")).await;
    assert_eq!(units.status, 200, "{}", units.body);
    let units = browser.get(&format!("{app_url}/business-units")).await;
    assert_eq!(units.status, 429, "{}", units.body);

    writeln!(stdin, "revok").unwrap();
    stdin.flush().unwrap();
    let answer = said.next();
    assert!(answer.contains("`revoke`"), "names the commands: {answer}");
}
