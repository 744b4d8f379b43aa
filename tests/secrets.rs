//! Security bar 11: no secret in any log line (captured at TRACE) or `Debug` output,
//! through a whole login, a refresh, a logout and a failed exchange.
//!
//! A test binary of its own, not a module of `tests/it/`: it installs the process-wide
//! tracing subscriber (one per process) to read every log line.

#[path = "it/common/mod.rs"]
mod common;

use common::*;
use hcss_auth::testing::{seed_session, MockHcssIdentity, TokenFault};
use hcss_auth::{StateStore, TokenSet, TokenStore};

#[tokio::test]
async fn bar_11_secrets_never_reach_logs_or_debug_output() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(capture.every_line()).unwrap();

    let mock = MockHcssIdentity::builder()
        .client_secret(Some("client-secret-Q7"))
        .start()
        .await;
    // Logins kept in the store, so the test can read the verifier; the sealed logins
    // below cover the cookie key and the sealed cookie.
    let app = start_app_stored(&mock, |b| b).await;
    let browser = Browser::new();
    let mut secrets: Vec<String> = vec!["client-secret-Q7".into()];
    let mut debug = Vec::new();

    // Login, noting the verifier (from the store) and the code (from the callback URL).
    let callback = browser.start_login(&app, None).await;
    let state_key = login_key(&query_param(&callback, "state").unwrap());
    let transaction = app
        .store
        .take_transaction(state_key)
        .await
        .unwrap()
        .unwrap();
    secrets.push(transaction.verifier.expose_secret().to_owned());
    secrets.push(query_param(&callback, "code").unwrap());
    for name in browser.login_cookies() {
        secrets.push(browser.cookie(&name).unwrap());
    }
    debug.push(format!("{transaction:?}"));
    app.store
        .put_transaction(state_key, transaction, std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(browser.get(&callback).await.status, 303);
    let id = browser.cookie("hcss-session").unwrap();
    secrets.push(id.clone());

    // Refresh.
    let before = expire_session(&app.store, &id).await;
    assert_eq!(
        browser
            .get(&format!("{}/business-units", app.url))
            .await
            .status,
        200
    );
    let after = app.store.load(session_key(&id)).await.unwrap().unwrap();
    for tokens in [&before, &after] {
        secrets.extend(token_secrets(tokens));
        debug.push(format!("{tokens:?}"));
    }

    // A failed exchange and a failed refresh.
    let callback = browser.start_login(&app, None).await;
    secrets.push(query_param(&callback, "code").unwrap());
    mock.set_token_fault(Some(TokenFault::InvalidGrant));
    assert_eq!(browser.get(&callback).await.status, 400);
    expire_session(&app.store, &id).await;
    assert_eq!(
        browser.get(&format!("{}/whoami", app.url)).await.status,
        401
    );
    mock.set_token_fault(None);

    // Logout (with revocation) of a fresh session.
    browser.login(&app).await;
    let id = browser.cookie("hcss-session").unwrap();
    secrets.push(id.clone());
    let tokens = app.store.load(session_key(&id)).await.unwrap().unwrap();
    secrets.extend(token_secrets(&tokens));
    assert_eq!(
        browser
            .request("POST", &format!("{}/hcss/logout", app.url), &[])
            .await
            .status,
        303
    );
    assert_eq!(mock.counts().revocations, 1);

    // A sealed login with a configured cookie key: neither the key nor the sealed
    // cookie reaches a log line or Debug output.
    let key = "c2VhbGVkLWtleS1ROS0wMTIzNDU2Nzg5LWFiY2RlZi1naGlqa2w=";
    let sealed_app = start_app(&mock, |b| b.cookie_key(key)).await;
    secrets.push(key.to_owned());
    let sealed = Browser::new();
    let callback = sealed.start_login(&sealed_app, None).await;
    for name in sealed.login_cookies() {
        secrets.push(sealed.cookie(&name).unwrap());
    }
    secrets.push(query_param(&callback, "code").unwrap());
    assert_eq!(sealed.get(&callback).await.status, 303);
    secrets.push(sealed.cookie("hcss-session").unwrap());
    debug.push(format!("{:?}", sealed_app.auth.config()));

    // Debug of every public type that holds a secret.
    let seeded = seed_session(
        &app.auth,
        TokenSet::new("seeded-access-Z9", 60).with_refresh_token("seeded-refresh-Z9"),
    )
    .await
    .unwrap();
    secrets.extend(["seeded-access-Z9".into(), "seeded-refresh-Z9".into()]);
    secrets.push(seeded.cookie_header().split_once('=').unwrap().1.to_owned());
    debug.push(format!("{:?}", app.auth));
    debug.push(format!("{:?}", app.auth.config()));
    debug.push(format!("{seeded:?}"));
    debug.push(format!("{mock:?}"));

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("signed in"), "the capture works: {logs}");
    assert!(logs.contains("refresh refused"), "{logs}");
    assert!(logs.contains("signed out"), "{logs}");
    for secret in &secrets {
        assert!(secret.len() >= 8, "a real secret: {secret}");
        assert!(
            !logs.contains(secret.as_str()),
            "a secret is in the logs:\n{logs}"
        );
        for text in &debug {
            assert!(
                !text.contains(secret.as_str()),
                "a secret is in Debug output: {text}"
            );
        }
    }
}
