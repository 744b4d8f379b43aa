//! The configuration doctor (`HcssAuth::check`) against the mock identity service: a
//! configuration that works, and each way one does not.

use hcss_auth::testing::{DiscoveryFault, MockHcssIdentity};
use hcss_auth::{CheckReport, CheckStatus, HcssAuth, HcssConfigBuilder};

const REDIRECT: &str = "http://127.0.0.1:9/hcss/callback";

async fn check(
    mock: &MockHcssIdentity,
    configure: impl FnOnce(HcssConfigBuilder) -> HcssConfigBuilder,
) -> CheckReport {
    let config = configure(
        mock.config_builder(REDIRECT)
            .scopes(["heavyjob:read", "offline_access"]),
    )
    .build()
    .unwrap();
    HcssAuth::new(config).check().await
}

fn status(report: &CheckReport, name: &str) -> CheckStatus {
    report
        .item(name)
        .unwrap_or_else(|| panic!("no {name} item in:\n{report}"))
        .status()
}

#[tokio::test]
async fn a_working_configuration_passes_with_the_development_settings_flagged() {
    let mock = MockHcssIdentity::start().await;
    let report = check(&mock, |b| b).await;
    assert!(!report.has_failures(), "{report}");
    for name in [
        "discovery",
        "client credentials",
        "clock",
        "offline_access",
        "cookie key",
    ] {
        assert_eq!(status(&report, name), CheckStatus::Pass, "{report}");
    }
    // The mock speaks plain http on loopback: allowed for development, and said so.
    assert_eq!(
        status(&report, "token endpoint"),
        CheckStatus::Warn,
        "{report}"
    );
    let redirect = report.item("redirect URI").unwrap();
    assert_eq!(redirect.status(), CheckStatus::Warn);
    assert!(redirect.fix().unwrap().contains("https://"), "{report}");
    // The mock's API answers as HCSS's (401 without a token), over plain http.
    let api = report.item("API URL").unwrap();
    assert_eq!(api.status(), CheckStatus::Warn, "{report}");
    assert!(api.detail().contains("answers as HCSS's API"), "{report}");
    let text = report.to_string();
    assert!(text.contains("[ok]   client credentials"), "{text}");
    assert!(text.contains("0 failed"), "{text}");
}

#[tokio::test]
async fn a_wrong_client_secret_fails_as_invalid_client() {
    let mock = MockHcssIdentity::start().await;
    let report = check(&mock, |b| b.client_secret("not-the-secret")).await;
    assert!(report.has_failures());
    let item = report.item("client credentials").unwrap();
    assert_eq!(item.status(), CheckStatus::Fail, "{report}");
    assert!(item.detail().contains("invalid_client"), "{report}");
    assert!(item.fix().unwrap().contains("HCSS_CLIENT_SECRET"));
    // Reached all the same, and the secret is nowhere in the report.
    assert_ne!(status(&report, "token endpoint"), CheckStatus::Fail);
    assert!(!report.to_string().contains("not-the-secret"));
    assert!(report.to_string().contains("[FAIL] client credentials"));
}

#[tokio::test]
async fn a_clock_off_by_minutes_fails() {
    let mock = MockHcssIdentity::start().await;
    mock.set_date_skew(-120);
    let report = check(&mock, |b| b).await;
    let item = report.item("clock").unwrap();
    assert_eq!(item.status(), CheckStatus::Fail, "{report}");
    assert!(item.detail().contains("ahead of"), "{report}");
    mock.set_date_skew(3);
    assert_eq!(
        status(&check(&mock, |b| b).await, "clock"),
        CheckStatus::Pass
    );
}

#[tokio::test]
async fn another_issuer_in_the_discovery_document_fails() {
    let mock = MockHcssIdentity::start().await;
    mock.set_discovery_fault(Some(DiscoveryFault::OtherIssuer));
    let report = check(&mock, |b| b).await;
    let item = report.item("discovery").unwrap();
    assert_eq!(item.status(), CheckStatus::Fail, "{report}");
    assert!(item.fix().unwrap().contains("HCSS_IDENTITY_URL"));
    // The layer would refuse to sign in with it: nothing is said to work.
    assert_eq!(
        status(&report, "token endpoint"),
        CheckStatus::Fail,
        "{report}"
    );
    assert_eq!(status(&report, "client credentials"), CheckStatus::Fail);
    // No document at all is a fallback, not a failure.
    mock.set_discovery_fault(Some(DiscoveryFault::Absent));
    let report = check(&mock, |b| b).await;
    assert_eq!(status(&report, "discovery"), CheckStatus::Warn, "{report}");
}

#[tokio::test]
async fn missing_offline_access_fails() {
    let mock = MockHcssIdentity::start().await;
    let report = check(&mock, |b| b.scopes(["heavyjob:read"])).await;
    let item = report.item("offline_access").unwrap();
    assert_eq!(item.status(), CheckStatus::Fail, "{report}");
    assert!(item.fix().unwrap().contains("HCSS_SCOPES"));
}

#[tokio::test]
async fn an_unreachable_identity_service_fails_the_token_endpoint() {
    let mock = MockHcssIdentity::start().await;
    let config = mock
        .config_builder(REDIRECT)
        .scopes(["heavyjob:read", "offline_access"])
        .identity_url("http://127.0.0.1:9/identity")
        .build()
        .unwrap();
    let report = HcssAuth::new(config).check().await;
    assert_eq!(
        status(&report, "token endpoint"),
        CheckStatus::Fail,
        "{report}"
    );
    assert_eq!(status(&report, "client credentials"), CheckStatus::Fail);
    // What went wrong in the network's words (refused, DNS, TLS), not only reqwest's
    // "error sending request".
    let discovery = report.item("discovery").unwrap().detail();
    assert!(discovery.contains("refused"), "{report}");
    assert!(!discovery.contains("error sending request"), "{report}");
}

#[tokio::test]
async fn the_summary_says_warning_for_one_and_warnings_for_several() {
    let mock = MockHcssIdentity::start().await;
    // The mock's plain http warns three times (token endpoint, redirect URI, API URL)...
    let report = check(&mock, |b| b).await;
    assert!(
        report
            .to_string()
            .starts_with("hcss-auth configuration check: 5 passed, 3 warnings, 0 failed"),
        "{report}"
    );
    // ...and twice with an https redirect URI.
    let report = check(&mock, |b| {
        b.redirect_uri("https://app.example.com/hcss/callback")
    })
    .await;
    assert!(
        report
            .to_string()
            .starts_with("hcss-auth configuration check: 6 passed, 2 warnings, 0 failed"),
        "{report}"
    );
}

#[tokio::test]
async fn an_identity_url_that_is_no_identity_service_fails_the_token_endpoint() {
    let mock = MockHcssIdentity::start().await;
    // The API's host: it answers, but 404 at /connect/token.
    let report = check(&mock, |b| {
        b.identity_url(format!("{}/elsewhere", mock.api_url()))
    })
    .await;
    let item = report.item("token endpoint").unwrap();
    assert_eq!(item.status(), CheckStatus::Fail, "{report}");
    assert!(
        item.detail().contains("not as an OAuth token endpoint"),
        "{report}"
    );
    assert_eq!(status(&report, "client credentials"), CheckStatus::Fail);
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn a_redis_store_is_checked_reachable_with_tracking_and_unreachable() {
    use crate::common::redis_help::{prefix, redis_url, remove_keys};
    use hcss_auth::store::RedisStore;
    let Some(redis) = redis_url("a_redis_store_is_checked_reachable_with_tracking_and_unreachable")
    else {
        return;
    };
    let mock = MockHcssIdentity::start().await;
    let config = || {
        mock.config_builder(REDIRECT)
            .scopes(["heavyjob:read", "offline_access"])
            .build()
            .unwrap()
    };
    let prefix = prefix();
    let store = RedisStore::connect(&redis)
        .await
        .unwrap()
        .with_prefix(prefix.clone());
    let report = HcssAuth::with_store(config(), store).check().await;
    assert_eq!(status(&report, "redis"), CheckStatus::Pass, "{report}");
    assert_eq!(
        status(&report, "client tracking"),
        CheckStatus::Pass,
        "{report}"
    );
    // Shared by instances, with no cookie key of their own.
    assert_eq!(status(&report, "cookie key"), CheckStatus::Warn, "{report}");
    remove_keys(&redis, &prefix).await;

    let nowhere = RedisStore::connect_lazy("redis://127.0.0.1:9").unwrap();
    let report = HcssAuth::with_store(config(), nowhere).check().await;
    assert_eq!(status(&report, "redis"), CheckStatus::Fail, "{report}");
    assert!(report.has_failures());
}

/// An API URL nothing answers at fails, in the network's words; one that answers but
/// not as HCSS's API (here the identity service) warns, naming what it answered.
#[tokio::test]
async fn an_api_url_that_is_not_hcss_api_is_named() {
    let mock = MockHcssIdentity::start().await;
    let report = check(&mock, |b| b.api_url("http://127.0.0.1:9")).await;
    let item = report.item("API URL").unwrap();
    assert_eq!(item.status(), CheckStatus::Fail, "{report}");
    assert!(item.detail().contains("refused"), "{report}");
    assert!(item.fix().unwrap().contains("HCSS_API_URL"), "{report}");

    let report = check(&mock, |b| b.api_url(mock.identity_url())).await;
    let item = report.item("API URL").unwrap();
    assert_eq!(item.status(), CheckStatus::Warn, "{report}");
    assert!(item.detail().contains("404"), "{report}");
    assert!(item.fix().unwrap().contains("HCSS_API_URL"), "{report}");
}
