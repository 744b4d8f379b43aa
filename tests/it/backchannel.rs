//! Back-channel logout: the identity service posts a signed logout token, and the
//! sessions it names end on every instance sharing the store, within that request; a
//! forged, misaddressed or replayed token is refused with 400 and ends nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::common;

use common::redis_help::{prefix, redis_url, Cleanup};
use common::*;
use hcss_auth::store::{StateStore, TokenStore};
use hcss_auth::testing::{session_exists, FaultyStore, LogoutTokenFault, MockHcssIdentity};
use hcss_auth::{HcssAuth, SignOut};

/// An instance of the app over `store`, with back-channel logout on, counting its
/// `on_sign_out` calls in `signed_out`.
async fn instance<S>(
    mock: &MockHcssIdentity,
    store: S,
    signed_out: &Arc<AtomicUsize>,
) -> (String, HcssAuth)
where
    S: StateStore + TokenStore + Clone,
{
    let signed_out = signed_out.clone();
    serve_app(
        mock,
        |b| b.scopes(OIDC_SCOPES).backchannel_logout(true),
        move |config| {
            HcssAuth::builder(config)
                .token_store(store)
                .on_sign_out(move |_: SignOut| {
                    let signed_out = signed_out.clone();
                    async move {
                        signed_out.fetch_add(1, Ordering::SeqCst);
                    }
                })
                .build()
        },
    )
    .await
}

/// One user signed in on two instances sharing `store` (one HCSS session: the second
/// browser carries the first one's identity-service cookie); one back-channel logout,
/// posted to the first instance, ends both sessions and calls `on_sign_out` for each.
async fn ends_sessions_on_both_instances<S>(store: S)
where
    S: StateStore + TokenStore + Clone,
{
    let mock = mock().await;
    let signed_out = Arc::new(AtomicUsize::new(0));
    let (url_a, auth_a) = instance(&mock, store.clone(), &signed_out).await;
    let (url_b, auth_b) = instance(&mock, store, &signed_out).await;
    mock.set_backchannel_logout_uri(format!("{url_a}/hcss/backchannel-logout"));

    let first = Browser::new();
    first.login_at(&url_a).await;
    let second = Browser::new();
    second.take_cookies_of(&first);
    second.forget("hcss-session");
    second.login_at(&url_b).await;
    assert_eq!(mock.signed_in_browsers(), 1, "one HCSS session");
    let (a, b) = (session_of(&first), session_of(&second));
    assert_ne!(a, b);
    assert!(session_exists(&auth_a, &a).await.unwrap());
    assert!(session_exists(&auth_b, &b).await.unwrap());

    let status = mock.back_channel_logout(SUBJECT).await;
    assert_eq!(status, 200);
    assert!(!session_exists(&auth_a, &a).await.unwrap(), "ended on A");
    assert!(!session_exists(&auth_b, &b).await.unwrap(), "ended on B");
    assert_eq!(signed_out.load(Ordering::SeqCst), 2, "on_sign_out for each");
    let home = second.get(&format!("{url_b}/")).await;
    assert_ne!(home.body, "signed in", "B serves the browser signed out");
}

/// The user the mock signs in.
const SUBJECT: &str = "back-channel-user";

async fn mock() -> MockHcssIdentity {
    MockHcssIdentity::builder().subject(SUBJECT).start().await
}

#[tokio::test]
async fn a_logout_token_ends_the_sessions_on_both_instances_sharing_a_memory_store() {
    ends_sessions_on_both_instances(hcss_auth::MemoryStore::new()).await;
}

#[tokio::test]
async fn a_logout_token_ends_the_sessions_on_both_instances_sharing_redis() {
    let Some(redis) = redis_url("a_logout_token_ends_the_sessions_on_both_instances_sharing_redis")
    else {
        return;
    };
    let prefix = prefix();
    let _cleanup = Cleanup::new(&redis, &prefix);
    let store = hcss_auth::store::RedisStore::connect(&redis)
        .await
        .unwrap()
        .with_prefix(&prefix);
    ends_sessions_on_both_instances(store).await;
}

/// A token with the wrong audience, with a nonce, with a bad signature, or one seen
/// before is refused with a 400 `invalid_request` and ends nothing.
#[tokio::test]
async fn forged_misaddressed_and_replayed_logout_tokens_are_refused() {
    let mock = mock().await;
    let signed_out = Arc::new(AtomicUsize::new(0));
    let (url, auth) = instance(&mock, hcss_auth::MemoryStore::new(), &signed_out).await;
    let endpoint = format!("{url}/hcss/backchannel-logout");
    mock.set_backchannel_logout_uri(&endpoint);
    let subject = SUBJECT;
    let browser = Browser::new();
    browser.login_at(&url).await;
    let session = session_of(&browser);

    for fault in [
        LogoutTokenFault::WrongAudience,
        LogoutTokenFault::WithNonce,
        LogoutTokenFault::BadSignature,
        LogoutTokenFault::NoLogoutEvent,
        LogoutTokenFault::Stale,
    ] {
        let token = mock.logout_token(subject, Some(fault.clone()));
        let answer = post_form(&endpoint, &token).await;
        assert_eq!(answer.0, 400, "{fault:?}: {}", answer.1);
        assert!(
            answer.1.contains("\"invalid_request\""),
            "{fault:?}: {}",
            answer.1
        );
        assert!(session_exists(&auth, &session).await.unwrap(), "{fault:?}");
    }
    assert_eq!(signed_out.load(Ordering::SeqCst), 0);

    // A valid token ends the session; the same token again ends nothing.
    let token = mock.logout_token(subject, None);
    assert_eq!(mock.post_logout_token(&token).await, 200);
    assert!(!session_exists(&auth, &session).await.unwrap());
    browser.forget("hcss-session");
    browser.login_at(&url).await;
    let again = session_of(&browser);
    let replayed = post_form(&endpoint, &token).await;
    assert_eq!(replayed.0, 400, "{}", replayed.1);
    assert!(
        session_exists(&auth, &again).await.unwrap(),
        "replay ends nothing"
    );
    assert_eq!(signed_out.load(Ordering::SeqCst), 1);

    // No token, or not a form: 400 too.
    let client = reqwest::Client::new();
    let empty = client.post(&endpoint).send().await.unwrap();
    assert_eq!(empty.status(), 400);
    assert_eq!(empty.headers()["cache-control"], "no-store", "never cached");
    assert!(session_exists(&auth, &again).await.unwrap());
}

/// A logout token whose sessions could not be ended (the store refused to remove them)
/// answers 503 and leaves its `jti` unclaimed: the identity service's retry of the same
/// token ends them (before: the retry was refused as a replay, and the sessions lived on).
#[tokio::test]
async fn a_logout_token_the_store_failed_to_carry_out_is_taken_again() {
    let mock = mock().await;
    let signed_out = Arc::new(AtomicUsize::new(0));
    let store = FaultyStore::new(hcss_auth::MemoryStore::new());
    let (url, auth) = instance(&mock, store.clone(), &signed_out).await;
    let endpoint = format!("{url}/hcss/backchannel-logout");
    mock.set_backchannel_logout_uri(&endpoint);
    let browser = Browser::new();
    browser.login_at(&url).await;
    let session = session_of(&browser);

    let token = mock.logout_token(SUBJECT, None);
    store.refuse_writes(true);
    let failed = post_form(&endpoint, &token).await;
    assert_eq!(failed.0, 503, "{}", failed.1);
    store.refuse_writes(false);
    let retried = post_form(&endpoint, &token).await;
    assert_eq!(retried.0, 200, "the retry was refused: {}", retried.1);
    assert!(!session_exists(&auth, &session).await.unwrap(), "ended");
    assert_eq!(signed_out.load(Ordering::SeqCst), 1);
}

/// Without `backchannel_logout`, the path is the app's: nothing is served there.
#[tokio::test]
async fn back_channel_logout_is_off_by_default() {
    let mock = mock().await;
    let app = start_app(&mock, |b| b.scopes(OIDC_SCOPES)).await;
    let token = mock.logout_token("anyone", None);
    let answer = post_form(&format!("{}/hcss/backchannel-logout", app.url), &token).await;
    assert_eq!(answer.0, 404, "{}", answer.1);
}

/// Posts `logout_token` as a form; the status and body.
async fn post_form(url: &str, logout_token: &str) -> (u16, String) {
    let answer = reqwest::Client::new()
        .post(url)
        .form(&[("logout_token", logout_token)])
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.text().await.unwrap())
}
