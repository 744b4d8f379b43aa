//! What the layer says about its configuration: when it is built, and at the first
//! sign-ins, so that a mistake is read in a log line rather than met by users.

use crate::common;

use common::*;
use hcss_auth::testing::MockHcssIdentity;
use hcss_auth::HcssConfig;

/// A subscriber that writes into `capture`, plain text.
fn subscriber(capture: &Capture) -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(capture.clone())
        .finish()
}

/// Without `offline_access` HCSS issues no refresh token, and every session ends with its
/// first access token (an hour): `build` says so (before: nothing did).
#[test]
fn scopes_without_offline_access_are_warned_of_when_built() {
    let logs_of_build = |scopes: &[&str]| {
        let capture = Capture::default();
        tracing::subscriber::with_default(subscriber(&capture), || {
            HcssConfig::builder()
                .client_id("id")
                .scopes(scopes.iter().copied())
                .redirect_uri("https://app.example.com/hcss/callback")
                .build()
                .unwrap()
        });
        capture.take()
    };
    let logs = logs_of_build(&["heavyjob:read"]);
    assert!(logs.contains("WARN"), "{logs}");
    assert!(logs.contains("offline_access"), "{logs}");
    assert!(logs.contains("HCSS_SCOPES"), "names the variable: {logs}");
    let logs = logs_of_build(&["heavyjob:read", "offline_access"]);
    assert!(logs.is_empty(), "{logs}");
}

/// A sign-in whose token response has no refresh token is warned of once per layer.
/// Current-thread runtime: the app, the mock and this test log to this thread's
/// subscriber.
#[tokio::test]
async fn a_sign_in_without_a_refresh_token_is_warned_of_once() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(subscriber(&capture));
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b.scopes(["heavyjob:read"])).await;
    capture.take();
    Browser::new().login(&app).await;
    let logs = capture.take();
    assert_eq!(logs.matches("no refresh token").count(), 1, "{logs}");
    assert!(logs.contains("offline_access"), "{logs}");
    Browser::new().login(&app).await;
    let logs = capture.take();
    assert!(!logs.contains("no refresh token"), "said once: {logs}");

    // With offline_access, a refresh token comes back: nothing to say.
    let app = start_app(&mock, |b| b).await;
    Browser::new().login(&app).await;
    let logs = capture.take();
    assert!(!logs.contains("no refresh token"), "{logs}");
}
