//! Metrics (feature `metrics`): `/metrics` scraped in Prometheus's text format, as the
//! example serves it, after a sign-in and a refresh.

use std::sync::OnceLock;

use axum::routing::get;
use hcss_auth::testing::MockHcssIdentity;
use hcss_auth::{HcssAuth, MemoryStore, TokenStore};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::common::*;

/// The process's recorder: one per test binary, installed by the first test that needs it.
fn recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().unwrap())
        .clone()
}

/// The value of the sample `series` (name and labels, as rendered), 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse::<f64>().unwrap())
        .sum()
}

async fn scrape(url: &str) -> String {
    let answer = reqwest::get(format!("{url}/metrics")).await.unwrap();
    assert_eq!(answer.status(), 200);
    answer.text().await.unwrap()
}

#[tokio::test]
async fn metrics_show_a_sign_in_a_refresh_and_a_refused_callback() {
    let handle = recorder();
    let mock = MockHcssIdentity::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = mock
        .config_builder(&format!("{url}/hcss/callback"))
        .scopes(SCOPES)
        .build()
        .unwrap();
    let store = MemoryStore::new();
    let auth = HcssAuth::with_store(config, store.clone());
    let app = router(auth.clone(), mock.api_url()).route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                handle.run_upkeep();
                handle.render()
            }
        }),
    );
    serve(listener, app);
    let app = TestApp { url, auth, store };

    // Other tests of this binary count too: each check is of a rise.
    let before = scrape(&app.url).await;
    let browser = Browser::new();
    browser.login(&app).await;
    let id = browser.cookie("hcss-session").unwrap();
    let old = expire_session(&app.store, &id).await;
    assert_eq!(
        browser
            .get(&format!("{}/business-units", app.url))
            .await
            .status,
        200
    );
    assert_eq!(mock.counts().refreshes, 1);
    let refused = reqwest::get(format!("{}/hcss/callback?state=unknown&code=c", app.url))
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let after = scrape(&app.url).await;

    for series in [
        "hcss_auth_sign_ins_total",
        r#"hcss_auth_refreshes_total{outcome="ok"}"#,
        r#"hcss_auth_token_endpoint_seconds_count{grant="authorization_code"}"#,
        r#"hcss_auth_token_endpoint_seconds_count{grant="refresh_token"}"#,
        r#"hcss_auth_sign_ins_refused_total{reason="state"}"#,
    ] {
        assert!(
            sample(&after, series) >= sample(&before, series) + 1.0,
            "{series} did not rise:\n{after}"
        );
    }
    // No label carries a session, a token or a user.
    let now = app.store.load(session_key(&id)).await.unwrap().unwrap();
    for secret in [
        id.as_str(),
        now.access_token.expose_secret(),
        old.access_token.expose_secret(),
        now.claims.subject().unwrap(),
    ] {
        assert!(!after.contains(secret), "a metric names a secret or a user");
    }
}
