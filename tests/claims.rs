//! Who signed in: the claims of the access token, read once when it arrives and kept
//! with the session (the first part of "who signed in, and their company").

mod common;

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
