//! Who signed in: the claims of the access token, read once when it arrives and kept
//! with the session (the first part of "who signed in, and their company").

use crate::common;

use common::*;
use hcss_auth::testing::MockHcssIdentity;
use hcss_auth::TokenStore;

async fn whoami(mock: &MockHcssIdentity) -> serde_json::Value {
    let app = start_app(mock, |b| b).await;
    let browser = Browser::new();
    browser.login(&app).await;
    let seen = browser.get(&format!("{}/whoami", app.url)).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    serde_json::from_str(&seen.body).unwrap()
}

#[tokio::test]
async fn the_subject_and_company_of_a_jwt_access_token_reach_the_handler() {
    let mock = MockHcssIdentity::builder()
        .subject("user-42")
        .company_id(Some("company-7"))
        .start()
        .await;
    let json = whoami(&mock).await;
    assert_eq!(json["subject"], "user-42");
    assert_eq!(json["company_id"], "company-7");
}

#[tokio::test]
async fn a_user_without_a_company_and_an_opaque_token_break_nothing() {
    let mock = MockHcssIdentity::builder().company_id(None).start().await;
    let json = whoami(&mock).await;
    assert!(json["subject"].is_string());
    assert!(json["company_id"].is_null());

    let mock = MockHcssIdentity::builder()
        .jwt_access_tokens(false)
        .start()
        .await;
    let json = whoami(&mock).await;
    assert!(json["subject"].is_null(), "no claims in an opaque token");
    assert!(json["company_id"].is_null());
}

/// The claims are kept with the session (no decoding per request) and follow a refresh.
#[tokio::test]
async fn claims_are_stored_with_the_session_and_follow_a_refresh() {
    let mock = MockHcssIdentity::builder().subject("user-9").start().await;
    let app = start_app(&mock, |b| b).await;
    let browser = Browser::new();
    browser.login(&app).await;
    let key = session_key(&browser.cookie("hcss-session").unwrap());
    let stored = app.store.load(key).await.unwrap().unwrap();
    assert_eq!(stored.claims.subject(), Some("user-9"));
    assert_eq!(stored.claims.client_id(), Some("test-client"));
    assert_eq!(stored.claims.email(), Some("test.user@example.com"));
    mock.expire_access_tokens();
    let seen = browser.get(&format!("{}/whoami", app.url)).await;
    assert_eq!(seen.status, 200);
    assert_eq!(mock.counts().refreshes, 1);
    let refreshed = app.store.load(key).await.unwrap().unwrap();
    assert_ne!(refreshed.access_token, stored.access_token);
    assert_eq!(refreshed.claims.subject(), Some("user-9"));
}

/// The `on_sign_in` hook refuses a company: the user sees the app's page (escaped), no
/// session starts, and the refresh token is revoked. A hook that panics is a 500 page and
/// the server serves on. The session key it is given is the one the session lives under.
#[tokio::test]
async fn a_sign_in_hook_may_refuse_and_its_panics_are_pages() {
    use hcss_auth::{SignIn, SignInRefused};
    use std::sync::{Arc, Mutex};

    let mock = MockHcssIdentity::builder()
        .company_id(Some("blocked-co"))
        .start()
        .await;
    let app = start_app_built(
        &mock,
        |b| b,
        |auth, _| {
            auth.on_sign_in(|sign_in: SignIn| async move {
                match sign_in.claims().company_id() {
                    Some("blocked-co") => Err(SignInRefused::new(
                        "Your company <b>has not</b> connected this app.",
                    )
                    .with_title("Not connected")),
                    _ => Ok(()),
                }
            })
        },
    )
    .await;
    let browser = Browser::new();
    let callback = browser.start_login(&app, None).await;
    let refused = browser.get(&callback).await;
    assert_eq!(refused.status, 403);
    assert!(refused.body.contains("Not connected"), "{}", refused.body);
    assert!(
        refused.body.contains("&lt;b&gt;has not"),
        "escaped: {}",
        refused.body
    );
    assert!(browser.cookie("hcss-session").is_none(), "no session");
    assert_eq!(
        mock.counts().revocations,
        1,
        "the refresh token was revoked"
    );
    assert_eq!(
        browser.get(&format!("{}/whoami", app.url)).await.status,
        401
    );

    let app = start_app_built(
        &mock,
        |b| b,
        |auth, _| auth.on_sign_in(|_: SignIn| async move { panic!("the app's hook broke") }),
    )
    .await;
    let callback = browser.start_login(&app, None).await;
    let failed = browser.get(&callback).await;
    assert_eq!(failed.status, 500);
    assert!(browser.cookie("hcss-session").is_none());
    assert_eq!(
        browser.get(&format!("{}/healthz", app.url)).await.body,
        "ok"
    );

    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let app = start_app_built(
        &mock,
        |b| b,
        |auth, _| {
            auth.on_sign_in(move |sign_in: SignIn| {
                *record.lock().unwrap() = Some(sign_in.session_key());
                async { Ok(()) }
            })
        },
    )
    .await;
    browser.login(&app).await;
    let key = seen.lock().unwrap().expect("the hook ran");
    assert_eq!(key, session_key(&browser.cookie("hcss-session").unwrap()));
    assert!(app.store.load(key).await.unwrap().is_some());
}

/// The `on_sign_out` hook hears of a logout with the session's claims.
#[tokio::test]
async fn a_sign_out_hook_hears_who_signed_out() {
    use hcss_auth::SignOut;
    use std::sync::{Arc, Mutex};

    let mock = MockHcssIdentity::builder()
        .subject("leaving-user")
        .start()
        .await;
    let heard = Arc::new(Mutex::new(Vec::new()));
    let record = heard.clone();
    let app = start_app_built(
        &mock,
        |b| b,
        |auth, _| {
            auth.on_sign_out(move |sign_out: SignOut| {
                record
                    .lock()
                    .unwrap()
                    .push(sign_out.claims().subject().map(str::to_owned));
                async {}
            })
        },
    )
    .await;
    let browser = Browser::new();
    browser.login(&app).await;
    let logout = browser
        .request("POST", &format!("{}/hcss/logout", app.url), &[])
        .await;
    assert_eq!(logout.status, 303);
    assert_eq!(
        *heard.lock().unwrap(),
        vec![Some("leaving-user".to_owned())]
    );
}

/// `/hcss/user` (opt-in): who is signed in as JSON for a single-page app; 401 when
/// signed out; never cached; not served unless configured.
#[tokio::test]
async fn the_user_endpoint_says_who_is_signed_in() {
    let mock = MockHcssIdentity::builder()
        .subject("spa-user")
        .company_id(Some("spa-co"))
        .start()
        .await;
    let app = start_app(&mock, |b| b.user_path("/hcss/user")).await;
    let browser = Browser::new();
    let user = format!("{}/hcss/user", app.url);
    let signed_out = browser.get(&user).await;
    assert_eq!(signed_out.status, 401);
    assert_eq!(signed_out.headers["cache-control"], "no-store");
    let json: serde_json::Value = serde_json::from_str(&signed_out.body).unwrap();
    assert_eq!(json["login_path"], "/hcss/login");

    browser.login(&app).await;
    let signed_in = browser.get(&user).await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.body);
    assert_eq!(signed_in.headers["cache-control"], "no-store");
    let json: serde_json::Value = serde_json::from_str(&signed_in.body).unwrap();
    assert_eq!(json["subject"], "spa-user");
    assert_eq!(json["company_id"], "spa-co");
    assert_eq!(json["email"], "test.user@example.com");
    assert_eq!(json["logout_path"], "/hcss/logout");
    assert_eq!(
        json["scopes"],
        serde_json::json!(["heavyjob:read", "offline_access"])
    );
    assert!(
        json["token_expires_at"].as_u64().unwrap() < json["session_expires_at"].as_u64().unwrap()
    );
    assert!(!signed_in.body.contains("eyJ"), "no token in the answer");
    let post = browser.request("POST", &user, &[]).await;
    assert_eq!(post.status, 405);

    let plain = start_app(&mock, |b| b).await;
    assert_eq!(
        browser
            .get(&format!("{}/hcss/user", plain.url))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn sessions_end_by_subject_and_by_company() {
    common::faults::sessions_end_by_subject_and_by_company(hcss_auth::MemoryStore::new()).await;
}

/// With `openid`, the login sends a nonce, and the ID token that comes back must carry
/// it, name this issuer and this client, and be unexpired; its identity claims are
/// preferred. An ID token that fails any check refuses the sign-in.
#[tokio::test]
async fn with_openid_the_id_token_is_checked_and_preferred() {
    use hcss_auth::testing::TokenFault;
    let mock = MockHcssIdentity::builder()
        .subject("oidc-user")
        .start()
        .await;
    let app = start_app(&mock, |b| {
        b.scopes(["openid", "heavyjob:read", "offline_access"])
    })
    .await;
    let browser = Browser::new();
    let callback = browser.start_login(&app, None).await;
    assert_eq!(browser.get(&callback).await.status, 303);
    let key = session_key(&browser.cookie("hcss-session").unwrap());
    let claims = app.store.load(key).await.unwrap().unwrap().claims;
    assert_eq!(
        claims.name(),
        Some("Test User (ID token)"),
        "the ID token's identity wins"
    );
    assert_eq!(claims.subject(), Some("oidc-user"));
    assert!(
        claims.get("nonce").is_none(),
        "not the ID token's own claims"
    );

    for claim in ["iss", "aud", "exp", "nonce"] {
        mock.set_token_fault(Some(TokenFault::BadIdToken(claim)));
        let browser = Browser::new();
        let callback = browser.start_login(&app, None).await;
        let refused = browser.get(&callback).await;
        assert_eq!(refused.status, 400, "{claim}: {}", refused.body);
        assert!(browser.cookie("hcss-session").is_none(), "{claim}");
    }
    mock.set_token_fault(None);

    // Without openid: no nonce is sent, and no ID token is asked for.
    let plain = start_app(&mock, |b| b).await;
    let login = Browser::new()
        .get(&format!("{}/hcss/login", plain.url))
        .await;
    assert!(!login.location().contains("nonce="));
    let login = Browser::new().get(&format!("{}/hcss/login", app.url)).await;
    assert!(login.location().contains("nonce="));
}

/// The ID token's identity claims outlive refreshes (before, the first refresh replaced
/// them with the new access token's: the handler saw another name).
#[tokio::test]
async fn the_id_tokens_identity_claims_survive_refreshes() {
    let mock = MockHcssIdentity::builder()
        .subject("oidc-user")
        .start()
        .await;
    let app = start_app(&mock, |b| {
        b.scopes(["openid", "heavyjob:read", "offline_access"])
    })
    .await;
    let browser = Browser::new();
    browser.login(&app).await;
    let whoami = || async {
        let seen = browser.get(&format!("{}/whoami", app.url)).await;
        assert_eq!(seen.status, 200, "{}", seen.body);
        serde_json::from_str::<serde_json::Value>(&seen.body).unwrap()
    };
    assert_eq!(whoami().await["name"], "Test User (ID token)");
    let id = browser.cookie("hcss-session").unwrap();
    for refreshes in 1..=2 {
        expire_session(&app.store, &id).await;
        let me = whoami().await;
        assert_eq!(mock.counts().refreshes, refreshes);
        assert_eq!(
            me["name"], "Test User (ID token)",
            "after refresh {refreshes}: the ID token's name, not the access token's"
        );
        assert_eq!(me["email"], "test.user@example.com");
        assert_eq!(me["subject"], "oidc-user");
    }
}

/// With `openid`, a token response without an ID token skips every check of the ID
/// token: it is refused (a 502, the identity service's answer is incomplete), no session
/// starts, and the refresh token that came back is revoked.
#[tokio::test]
async fn with_openid_an_answer_without_an_id_token_is_refused() {
    use hcss_auth::testing::TokenFault;
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| {
        b.scopes(["openid", "heavyjob:read", "offline_access"])
    })
    .await;
    mock.set_token_fault(Some(TokenFault::NoIdToken));
    let browser = Browser::new();
    let callback = browser.start_login(&app, None).await;
    let refused = browser.get(&callback).await;
    assert_eq!(refused.status, 502, "{}", refused.body);
    assert!(browser.cookie("hcss-session").is_none(), "no session");
    assert_eq!(mock.counts().code_exchanges, 1);
    assert_eq!(
        mock.counts().revocations,
        1,
        "the refresh token was revoked"
    );
}

/// An ID token with several audiences must name this client in `azp`; one with an `azp`
/// must name this client there. Refused otherwise (a 400, no session, the refresh token
/// revoked).
#[tokio::test]
async fn with_openid_an_id_token_for_several_audiences_needs_azp() {
    use hcss_auth::testing::TokenFault;
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| {
        b.scopes(["openid", "heavyjob:read", "offline_access"])
    })
    .await;
    mock.set_token_fault(Some(TokenFault::BadIdToken("azp")));
    let browser = Browser::new();
    let callback = browser.start_login(&app, None).await;
    let refused = browser.get(&callback).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(browser.cookie("hcss-session").is_none(), "no session");
    assert_eq!(
        mock.counts().revocations,
        1,
        "the refresh token was revoked"
    );
}

/// A layer is configured before it is shared: a hook given to one clone of a builder
/// is not on the layer built from another clone (before: hooks were set through the
/// shared state, so configuring a clone changed every layer and service made from it).
#[tokio::test]
async fn a_hook_given_to_one_builder_clone_is_not_on_another() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    let mock = MockHcssIdentity::start().await;
    let heard = Arc::new(AtomicUsize::new(0));
    let count = heard.clone();
    let (url, _auth) = serve_app(
        &mock,
        |b| b,
        |config| {
            let builder = hcss_auth::HcssAuth::builder(config);
            let _hooked = builder.clone().on_sign_out(move |_| {
                count.fetch_add(1, Ordering::SeqCst);
                async {}
            });
            builder.build()
        },
    )
    .await;
    let browser = Browser::new();
    browser.login_at(&url).await;
    let logout = browser
        .request("POST", &format!("{url}/hcss/logout"), &[])
        .await;
    assert_eq!(logout.status, 303);
    assert_eq!(
        heard.load(Ordering::SeqCst),
        0,
        "the other clone's hook ran"
    );
}

/// A session seeded with the mock's tokens has the claims a sign-in gets (before: none,
/// so a handler reading the company saw nobody).
#[tokio::test]
async fn a_seeded_session_has_the_claims_a_sign_in_would_get() {
    let mock = MockHcssIdentity::builder()
        .subject("user-42")
        .company_id(Some("company-7"))
        .start()
        .await;
    let app = start_app(&mock, |b| b).await;
    let seeded = hcss_auth::testing::seed_session(
        &app.auth,
        mock.issue_tokens("heavyjob:read offline_access"),
    )
    .await
    .unwrap();
    let seen = Browser::new()
        .request(
            "GET",
            &format!("{}/whoami", app.url),
            &[("cookie", &seeded.cookie_header())],
        )
        .await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    let seeded: serde_json::Value = serde_json::from_str(&seen.body).unwrap();
    let signed_in = whoami(&mock).await;
    for claim in ["subject", "company_id", "name", "email"] {
        assert_eq!(seeded[claim], signed_in[claim], "{claim}");
    }
    assert_eq!(seeded["subject"], "user-42");
    assert_eq!(seeded["company_id"], "company-7");
}

/// The guide's guards for a group of routes: `from_extractor::<HcssToken>()` admits the
/// signed-in, a `from_fn` that checks `company_id` the users of one company.
#[tokio::test]
async fn a_route_guard_admits_the_users_of_one_company() {
    use axum::extract::Request;
    use axum::middleware::{self, Next};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use hcss_auth::testing::sign_in;
    use hcss_auth::HcssToken;
    use tower::ServiceExt as _;

    async fn company_7_only(token: HcssToken, request: Request, next: Next) -> Response {
        match token.claims().company_id() {
            Some("company-7") => next.run(request).await,
            _ => axum::http::StatusCode::FORBIDDEN.into_response(),
        }
    }
    for (company, admitted) in [("company-7", 200), ("company-8", 403)] {
        let mock = MockHcssIdentity::builder()
            .company_id(Some(company))
            .start()
            .await;
        let config = mock
            .config_builder("http://127.0.0.1:3000/hcss/callback")
            .scopes(SCOPES)
            .build()
            .unwrap();
        let auth = hcss_auth::HcssAuth::new(config);
        let app = axum::Router::new()
            .route("/reports", get(|| async { "reports" }))
            .route_layer(middleware::from_extractor::<HcssToken>())
            .merge(
                axum::Router::new()
                    .route("/admin", get(|| async { "admin" }))
                    .route_layer(middleware::from_fn(company_7_only)),
            )
            .layer(auth.clone());
        let cookie = sign_in(&app, &auth).await;
        for (uri, signed_in) in [("/reports", 200), ("/admin", admitted)] {
            for (cookie, status) in [(Some(&cookie), signed_in), (None, 401)] {
                let mut request = axum::http::Request::get(uri);
                if let Some(cookie) = cookie {
                    request = request.header("cookie", cookie);
                }
                let request = request.body(axum::body::Body::empty()).unwrap();
                let seen = app.clone().oneshot(request).await.unwrap().status();
                assert_eq!(seen, status, "{company} {uri} cookie: {}", cookie.is_some());
            }
        }
    }
}
