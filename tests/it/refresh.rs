//! Token lifecycle: refresh once under concurrency, rotation, failures, logout.

use crate::common;

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use common::*;
use hcss_auth::testing::{MockHcssIdentity, TokenFault};
use hcss_auth::{HcssSession, SessionError, TokenStore};

const SESSION: &str = "hcss-session";

async fn signed_in(mock: &MockHcssIdentity) -> (TestApp, Browser, String) {
    let app = start_app(mock, |b| b).await;
    let browser = Browser::new();
    browser.login(&app).await;
    let id = browser.cookie(SESSION).unwrap();
    (app, browser, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bar_10_hundred_concurrent_requests_refresh_exactly_once() {
    let mock = MockHcssIdentity::start().await;
    let (app, browser, id) = signed_in(&mock).await;
    let old = expire_session(&app.store, &id).await;

    let url = format!("{}/business-units", app.url);
    let requests: Vec<_> = (0..100)
        .map(|_| {
            let (browser, url) = (browser.clone(), url.clone());
            tokio::spawn(async move { browser.get(&url).await.status })
        })
        .collect();
    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    let counts = mock.counts();
    assert_eq!(counts.refreshes, 1, "exactly one refresh for 100 requests");
    assert_eq!(counts.reuse_detected, 0);
    assert_eq!(counts.api_calls, 100);

    // Rotation: the new refresh token is stored, and is the one used next.
    let now = app.store.load(session_key(&id)).await.unwrap().unwrap();
    assert_ne!(now.refresh_token, old.refresh_token);
    assert!(now.expires_at > old.expires_at);
    expire_session(&app.store, &id).await;
    assert_eq!(browser.get(&url).await.status, 200);
    assert_eq!(mock.counts().refreshes, 2);
    assert_eq!(
        mock.counts().reuse_detected,
        0,
        "the rotated token was used, not the old one"
    );
}

#[tokio::test]
async fn bar_10_the_old_refresh_token_is_kept_when_none_comes_back() {
    let mock = MockHcssIdentity::builder()
        .rotate_refresh_tokens(false)
        .start()
        .await;
    let (app, browser, id) = signed_in(&mock).await;
    let old = expire_session(&app.store, &id).await;
    assert_eq!(
        browser.get(&format!("{}/whoami", app.url)).await.status,
        200
    );
    let now = app.store.load(session_key(&id)).await.unwrap().unwrap();
    assert_eq!(mock.counts().refreshes, 1);
    assert!(old.refresh_token.is_some());
    assert_eq!(now.refresh_token, old.refresh_token);
    assert_ne!(now.access_token, old.access_token);
    assert_eq!(
        now.session_expires_at, old.session_expires_at,
        "refresh does not extend the session"
    );
}

#[tokio::test]
async fn bar_10_tokens_expiring_within_the_skew_are_refreshed_and_others_are_not() {
    let mock = MockHcssIdentity::start().await;
    let (app, browser, id) = signed_in(&mock).await;
    let key = session_key(&id);
    let whoami = format!("{}/whoami", app.url);
    let set_expiry = |secs_from_now: u64| {
        let store = app.store.clone();
        async move {
            let mut tokens = store.load(key).await.unwrap().unwrap();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            // An hour-long token with this much left.
            tokens.expires_at = now + secs_from_now;
            tokens.issued_at = tokens.expires_at - 3600;
            store
                .store(key, tokens, Duration::from_secs(3600))
                .await
                .unwrap();
        }
    };
    set_expiry(120).await;
    assert_eq!(browser.get(&whoami).await.status, 200);
    assert_eq!(
        mock.counts().refreshes,
        0,
        "two minutes left: no refresh with a 60 s skew"
    );
    set_expiry(30).await;
    assert_eq!(browser.get(&whoami).await.status, 200);
    assert_eq!(
        mock.counts().refreshes,
        1,
        "30 s left: refreshed before expiry"
    );
}

#[tokio::test]
async fn an_expired_session_without_refresh_token_is_logged_out() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b.scopes(["heavyjob:read"])).await;
    let browser = Browser::new();
    browser.login(&app).await;
    let id = browser.cookie(SESSION).unwrap();
    let tokens = app.store.load(session_key(&id)).await.unwrap().unwrap();
    assert!(
        tokens.refresh_token.is_none(),
        "no offline_access, no refresh token"
    );
    expire_session(&app.store, &id).await;
    assert_eq!(
        browser.get(&format!("{}/whoami", app.url)).await.status,
        401
    );
    assert!(app.store.load(session_key(&id)).await.unwrap().is_none());
    assert_eq!(mock.counts().refreshes, 0);
}

#[tokio::test]
async fn bar_10_invalid_grant_on_refresh_logs_the_session_out() {
    let mock = MockHcssIdentity::start().await;
    let (app, browser, id) = signed_in(&mock).await;
    expire_session(&app.store, &id).await;
    mock.set_token_fault(Some(TokenFault::InvalidGrant));
    let page = browser.open(&format!("{}/whoami", app.url)).await;
    assert_eq!(page.status, 303);
    assert!(page.location().starts_with("/hcss/login?return_to="));
    assert!(
        app.store.load(session_key(&id)).await.unwrap().is_none(),
        "session deleted"
    );
    let api = browser.get(&format!("{}/whoami", app.url)).await;
    assert_eq!(api.status, 401);
    assert_eq!(
        mock.counts().refreshes,
        1,
        "a dead session is not refreshed again"
    );
}

#[tokio::test]
async fn reuse_detection_revokes_and_logs_out() {
    let mock = MockHcssIdentity::start().await;
    let (app, browser, id) = signed_in(&mock).await;
    let old = expire_session(&app.store, &id).await;
    assert_eq!(
        browser.get(&format!("{}/whoami", app.url)).await.status,
        200
    );
    // Someone puts the spent refresh token back (a stale replica, a restored backup).
    app.store
        .store(session_key(&id), old.clone(), Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        browser.get(&format!("{}/whoami", app.url)).await.status,
        401
    );
    assert_eq!(mock.counts().reuse_detected, 1);
    assert!(mock.is_revoked(old.refresh_token.unwrap().expose_secret()));
}

#[tokio::test]
async fn bar_10_server_errors_and_timeouts_keep_the_session_for_the_next_try() {
    let mock = MockHcssIdentity::start().await;
    // Nothing remembered between tries, so that each fault meets HCSS afresh.
    let app = start_app(&mock, |b| {
        b.http_timeout(Duration::from_millis(300))
            .retry_after(Duration::ZERO)
    })
    .await;
    let browser = Browser::new();
    browser.login(&app).await;
    let id = browser.cookie(SESSION).unwrap();
    expire_session(&app.store, &id).await;
    let whoami = format!("{}/whoami", app.url);
    for fault in [
        TokenFault::ServerError,
        TokenFault::Slow(Duration::from_secs(3)),
    ] {
        mock.set_token_fault(Some(fault.clone()));
        let seen = browser.get(&whoami).await;
        assert_eq!(seen.status, 503, "{fault:?}");
        assert_eq!(seen.headers["retry-after"], "1", "at least a second");
        assert!(
            app.store.load(session_key(&id)).await.unwrap().is_some(),
            "{fault:?}: kept"
        );
        let page = browser.open(&whoami).await;
        assert_eq!(
            page.status, 503,
            "{fault:?}: a page load is not sent to log in"
        );
    }
    mock.set_token_fault(None);
    // A refresh still waiting on the slow answer finishes first (it waits three HTTP
    // timeouts for HCSS); each try below waits on it for one timeout at most.
    let mut tries = 0;
    while browser.get(&whoami).await.status != 200 {
        tries += 1;
        assert!(tries < 10, "recovered within a few tries");
    }
    assert_eq!(mock.counts().reuse_detected, 0);
}

#[tokio::test]
async fn logout_revokes_and_ends_the_session() {
    let mock = MockHcssIdentity::start().await;
    let (app, browser, id) = signed_in(&mock).await;
    let refresh = app
        .store
        .load(session_key(&id))
        .await
        .unwrap()
        .unwrap()
        .refresh_token
        .unwrap();
    let logout = format!("{}/hcss/logout", app.url);

    // Cross-site POSTs are refused and change nothing.
    for headers in [
        vec![("sec-fetch-site", "cross-site")],
        vec![("origin", "https://evil.example")],
        vec![("origin", "null")],
    ] {
        let seen = browser.request("POST", &logout, &headers).await;
        assert_eq!(seen.status, 403, "{headers:?}");
        assert_eq!(
            browser.get(&format!("{}/whoami", app.url)).await.status,
            200
        );
    }
    assert_eq!(mock.counts().revocations, 0);

    let origin = app.url.clone();
    let seen = browser
        .request(
            "POST",
            &logout,
            &[("origin", &origin), ("sec-fetch-site", "same-origin")],
        )
        .await;
    assert_eq!(seen.status, 303);
    assert_eq!(seen.location(), "/");
    assert_eq!(seen.headers["cache-control"], "no-store");
    assert!(seen.set_cookies()[0].contains("Max-Age=0"));
    assert_eq!(mock.counts().revocations, 1);
    assert!(mock.is_revoked(refresh.expose_secret()));
    assert!(browser.cookie(SESSION).is_none());
    // The old cookie no longer works.
    browser.set_cookie(SESSION, &id);
    assert_eq!(
        browser.get(&format!("{}/whoami", app.url)).await.status,
        401
    );
}

#[tokio::test]
async fn a_failing_revocation_does_not_block_logout() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b.http_timeout(Duration::from_millis(300))).await;
    let browser = Browser::new();
    browser.login(&app).await;
    drop(mock); // the identity service goes away
    let seen = browser
        .request("POST", &format!("{}/hcss/logout", app.url), &[])
        .await;
    assert_eq!(seen.status, 303);
    assert_eq!(
        browser.get(&format!("{}/whoami", app.url)).await.status,
        401
    );
}

/// The same lifecycle through a plain Tower service that reads `HcssSession`.
#[tokio::test]
async fn plain_tower_service_refreshes_through_hcss_session() {
    let mock = MockHcssIdentity::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = mock
        .config_builder(&format!("{url}/hcss/callback"))
        .scopes(SCOPES)
        .build()
        .unwrap();
    let store = hcss_auth::MemoryStore::new();
    let auth = hcss_auth::HcssAuth::with_store(config, store.clone());
    let inner = tower::service_fn(|req: Request<Body>| async move {
        let session = req.extensions().get::<HcssSession>().cloned();
        let text = match session {
            None => "no layer".to_owned(),
            Some(session) => match session.token().await {
                Ok(token) => format!("token for {}", token.scopes().count()),
                Err(SessionError::NotSignedIn) => "signed out".to_owned(),
                Err(other) => format!("error: {other}"),
            },
        };
        Ok::<_, Infallible>(Response::new(Body::from(text)))
    });
    let service = tower_layer::Layer::layer(&auth, inner);
    let app = axum::Router::new().fallback_service(service);
    serve(listener, app);
    let test_app = TestApp {
        url: url.clone(),
        auth,
        store: store.clone(),
    };

    let browser = Browser::new();
    assert_eq!(browser.get(&url).await.body, "signed out");
    browser.login(&test_app).await;
    assert_eq!(browser.get(&url).await.body, "token for 2");
    expire_session(&store, &browser.cookie(SESSION).unwrap()).await;
    assert_eq!(browser.get(&url).await.body, "token for 2");
    assert_eq!(mock.counts().refreshes, 1);
}

#[tokio::test]
async fn logout_without_revocation_ends_the_session_here_only() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b.revoke_on_logout(false)).await;
    let browser = Browser::new();
    browser.login(&app).await;
    let id = browser.cookie(SESSION).unwrap();
    let seen = browser
        .request("POST", &format!("{}/hcss/logout", app.url), &[])
        .await;
    assert_eq!(seen.status, 303);
    assert_eq!(mock.counts().revocations, 0);
    assert!(app.store.load(session_key(&id)).await.unwrap().is_none());
}

/// HCSS refuses a token that looked live (revoked, or expired early): the handler asks
/// `HcssSession::refresh`, and concurrent handlers that saw the same token make one
/// refresh between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_refreshes_a_token_hcss_refused_once() {
    let mock = MockHcssIdentity::start().await;
    let (app, browser, _id) = signed_in(&mock).await;
    mock.revoke_access_tokens();
    let url = format!("{}/business-units-retrying", app.url);
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let (browser, url) = (browser.clone(), url.clone());
            tokio::spawn(async move { browser.get(&url).await.status })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    let counts = mock.counts();
    assert_eq!(counts.refreshes, 1, "one refresh for five handlers");
    assert_eq!(counts.reuse_detected, 0);
}

/// A handler ends the session: its tokens are gone, the refresh token revoked, and the
/// same cookie is signed out on the next request.
#[tokio::test]
async fn a_handler_ends_the_session() {
    let mock = MockHcssIdentity::start().await;
    let (app, browser, id) = signed_in(&mock).await;
    let ended = browser
        .request("POST", &format!("{}/end-session", app.url), &[])
        .await;
    assert_eq!(ended.status, 204);
    assert_eq!(mock.counts().revocations, 1);
    assert!(app.store.load(session_key(&id)).await.unwrap().is_none());
    assert_eq!(
        browser.get(&format!("{}/whoami", app.url)).await.status,
        401
    );
}

/// `MockHcssIdentity::expire_access_tokens` lets the tokens' lifetime pass for the mock
/// and for the app (their shared test clock): the app's next request refreshes.
#[tokio::test]
async fn expiring_the_mocks_access_tokens_makes_the_next_request_refresh() {
    let mock = MockHcssIdentity::start().await;
    let (app, browser, _id) = signed_in(&mock).await;
    let units = format!("{}/business-units", app.url);
    assert_eq!(browser.get(&units).await.status, 200);
    mock.expire_access_tokens();
    assert_eq!(browser.get(&units).await.status, 200);
    assert_eq!(mock.counts().refreshes, 1);
}

/// A session seeded with tokens the mock issued works against the mock's API, and
/// refreshes at the mock like a real one.
#[tokio::test]
async fn seeded_sessions_with_mock_tokens_call_the_api_and_refresh() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let seeded = hcss_auth::testing::seed_session(
        &app.auth,
        mock.issue_tokens("heavyjob:read offline_access"),
    )
    .await
    .unwrap();
    let (name, value) = seeded
        .cookie_header()
        .split_once('=')
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .unwrap();
    let browser = Browser::new();
    browser.set_cookie(&name, &value);
    let units = format!("{}/business-units", app.url);
    assert_eq!(browser.get(&units).await.status, 200);
    mock.expire_access_tokens();
    assert_eq!(browser.get(&units).await.status, 200);
    assert_eq!(mock.counts().refreshes, 1);
    assert_eq!(mock.counts().reuse_detected, 0);
}

/// A passing refresh failure is remembered for its `Retry-After` on the flow's clock: a
/// test that moves the mock's clock past it is answered at once (before: the wait ran on
/// the real clock, and the session answered 503 for the rest of it).
#[tokio::test]
async fn the_test_clock_ends_a_remembered_refresh_failure() {
    let mock = MockHcssIdentity::start().await;
    let (app, browser, id) = signed_in(&mock).await;
    expire_session(&app.store, &id).await;
    let whoami = format!("{}/whoami", app.url);
    mock.set_token_fault(Some(TokenFault::Error {
        status: 503,
        error: "temporarily_unavailable",
        retry_after: Some(60),
    }));
    let seen = browser.get(&whoami).await;
    assert_eq!(seen.status, 503, "{}", seen.body);
    assert_eq!(seen.headers["retry-after"], "60");
    mock.set_token_fault(None);
    assert_eq!(browser.get(&whoami).await.status, 503, "remembered");
    assert_eq!(mock.counts().refreshes, 1);

    mock.clock().advance(Duration::from_secs(61));
    let seen = browser.get(&whoami).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(mock.counts().refreshes, 2);
}
