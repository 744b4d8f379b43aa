//! An app that signs users in with HCSS and calls HeavyJob on their behalf.
//!
//! `cargo run --example server` with no `HCSS_CLIENT_ID` set starts an embedded mock HCSS
//! identity service (with a consent page) and a HeavyJob-like API, so the whole flow can
//! be clicked through with no HCSS account. With `HCSS_CLIENT_ID` set it uses
//! `HcssConfig::from_env()` against HCSS (see the README for the variables). HeavyJob is
//! called through `HcssApi`, within the company's budget (`HCSS_API_RATE_PER_MINUTE`,
//! `HCSS_API_CONCURRENCY`, and `HCSS_API_MAX_WAIT_SECS` for the longest wait), against
//! the mock too.
//!
//! OpenID Connect, against HCSS or the mock: with `openid` among `HCSS_SCOPES` (e.g.
//! `HCSS_SCOPES="openid heavyjob:read offline_access"`) every ID token's signature is
//! verified against the identity service's keys; `HCSS_POST_LOGOUT_REDIRECT_URI` (e.g.
//! `http://127.0.0.1:3000/hcss/logout/return`) turns on sign-out at HCSS, and the home
//! page's logout button then says it signs out of HCSS too; `HCSS_BACKCHANNEL_LOGOUT=1`
//! serves back-channel logout at `/hcss/backchannel-logout` (the mock is told to post
//! there).
//!
//! Built with `--features metrics`, it serves the crate's metrics at `/metrics` in
//! Prometheus's text format (`metrics-exporter-prometheus`, rendered on each scrape: no
//! listener of its own).

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hcss_auth::testing::{MockApiLimits, MockHcssIdentity};
use hcss_auth::{
    CompanyTokenError, HcssApi, HcssApiError, HcssApiResponse, HcssAuth, HcssConfig, HcssSession,
    HcssToken,
};

/// The home page. With sign-out at HCSS on (`sign_out_at_hcss`), its logout ends the
/// HCSS session too, and its button says so.
async fn home(token: Option<HcssToken>, sign_out_at_hcss: bool) -> Html<String> {
    let logout = if sign_out_at_hcss {
        "<button id=\"logout-hcss\" type=\"submit\">Log out and sign out of HCSS too</button>"
    } else {
        "<button id=\"logout\" type=\"submit\">Log out</button>"
    };
    let status = match &token {
        Some(token) => format!(
            "<p id=\"status\">Signed in with HCSS as {} (scopes: {}).</p>\
             <p><a href=\"/whoami\">/whoami</a> · <a href=\"/business-units\">/business-units</a> · <a href=\"/company/business-units\">/company/business-units</a></p>\
             <form method=\"post\" action=\"/hcss/logout\">{logout}</form>",
            escape(token.claims().subject().unwrap_or("an unnamed user")),
            token.scopes().collect::<Vec<_>>().join(" ")
        ),
        None => "<p id=\"status\">Signed out.</p>\
                 <p><a id=\"login\" href=\"/hcss/login\">Log in with HCSS</a></p>"
            .to_owned(),
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>hcss-auth example</title></head>\
         <body><h1>hcss-auth example</h1>{status}</body></html>"
    ))
}

/// Text for an HTML page.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// What `/whoami` answers: borrowed from the token, serialized as it is.
#[derive(serde::Serialize)]
struct WhoAmI<'t> {
    subject: Option<&'t str>,
    company_id: Option<String>,
    token_type: &'static str,
    scopes: Vec<&'t str>,
    expires_in: u64,
}

async fn whoami(token: HcssToken) -> Response {
    Json(WhoAmI {
        subject: token.claims().subject(),
        company_id: token.claims().company_id().map(str::to_owned),
        token_type: token.token_type(),
        scopes: token.scopes().collect(),
        expires_in: token.expires_in().as_secs(),
    })
    .into_response()
}

const BUSINESS_UNITS: &str = "/heavyjob/api/v1/businessUnits";

/// HCSS's answer relayed as it is. The client's errors are answers of their own
/// ([`HcssApiError`]'s `IntoResponse`): a call that cannot be made within the maximum
/// wait is 503 with `Retry-After`, a 401 that survives the refresh is 401
/// `login_required`, a missing scope 403 `insufficient_scope`.
fn relay(answer: Result<HcssApiResponse, HcssApiError>) -> Response {
    match answer {
        Ok(response) => {
            let status =
                StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            (
                status,
                [("content-type", "application/json")],
                response.text(),
            )
                .into_response()
        }
        Err(err) => {
            tracing::warn!(error = %err, "HeavyJob API call not made");
            err.into_response()
        }
    }
}

/// The business units, as the signed-in user, through the company's budget.
async fn business_units(State(api): State<HcssApi>, session: HcssSession) -> Response {
    relay(api.as_user(&session).get(BUSINESS_UNITS).send().await)
}

/// The signed-in user's company's business units, read with a token for the company
/// (HCSS's `company` grant), not the user's.
async fn company_business_units(State(api): State<HcssApi>, token: HcssToken) -> Response {
    let Some(company) = token.claims().company_id() else {
        return (
            StatusCode::CONFLICT,
            "Your HCSS user belongs to no company, so there is no company to act for.",
        )
            .into_response();
    };
    match api.for_company(company).get(BUSINESS_UNITS).send().await {
        Err(HcssApiError::Company(CompanyTokenError::Disconnected { .. })) => (
            StatusCode::FORBIDDEN,
            "Your company has not connected this app in HCSS: ask an administrator to connect it.",
        )
            .into_response(),
        Err(HcssApiError::Company(other @ CompanyTokenError::Misconfigured { .. })) => {
            tracing::error!(error = %other, "company token refused");
            (
                StatusCode::BAD_GATEWAY,
                "HCSS refused this app's request as configured.",
            )
                .into_response()
        }
        answer => relay(answer),
    }
}

#[cfg(feature = "redis")]
async fn layer(config: HcssConfig) -> Result<HcssAuth, Box<dyn std::error::Error>> {
    match std::env::var("HCSS_REDIS_URL") {
        Ok(url) if !url.is_empty() => {
            let store = hcss_auth::store::RedisStore::connect(&url)
                .await
                .map_err(|err| format!("cannot use Redis at HCSS_REDIS_URL: {err}"))?;
            tracing::info!("storing sessions in Redis");
            Ok(HcssAuth::with_store(config, store))
        }
        _ => Ok(HcssAuth::new(config)),
    }
}

#[cfg(not(feature = "redis"))]
async fn layer(config: HcssConfig) -> Result<HcssAuth, Box<dyn std::error::Error>> {
    if std::env::var("HCSS_REDIS_URL").is_ok_and(|url| !url.is_empty()) {
        tracing::warn!(
            "HCSS_REDIS_URL is set, but this build has no Redis store: sessions stay in \
             memory. Build with `--features redis` to use it"
        );
    }
    Ok(HcssAuth::new(config))
}

/// `/metrics` in Prometheus's text format: the process's recorder installed here, its
/// handle rendered on each scrape. Token-endpoint latencies are histograms with buckets
/// from 5 ms to 30 s.
#[cfg(feature = "metrics")]
fn with_metrics(app: Router) -> Result<Router, Box<dyn std::error::Error>> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ],
        )?
        .install_recorder()?;
    Ok(app.route(
        "/metrics",
        get(move || {
            let handle = handle.clone();
            async move {
                handle.run_upkeep();
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    handle.render(),
                )
            }
        }),
    ))
}

#[cfg(not(feature = "metrics"))]
fn with_metrics(app: Router) -> Result<Router, Box<dyn std::error::Error>> {
    Ok(app)
}

/// The environment variable `name`, if set and not empty.
fn env_text(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|value| !value.trim().is_empty())
}

/// A number from the environment variable `name`, if set.
fn env_number(name: &str) -> Result<Option<u32>, String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("{name} must be a whole number, not {value:?}")),
        _ => Ok(None),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,hcss_auth=debug".into()),
        )
        .init();
    let addr: SocketAddr = std::env::var("HCSS_EXAMPLE_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3000".into())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;

    // With no HCSS client configured, run against the embedded mock identity service.
    // `HcssConfig::from_env` reads the API's URL and the company's budget
    // (`HCSS_API_URL`, `HCSS_API_RATE_PER_MINUTE`, `HCSS_API_CONCURRENCY`,
    // `HCSS_API_MAX_WAIT_SECS`); against the mock, the budget's variables are read too.
    let mut _mock = None;
    let config = if std::env::var("HCSS_CLIENT_ID").is_ok_and(|v| !v.is_empty()) {
        HcssConfig::from_env()?
    } else {
        // At `localhost`, the identity service is another site than the app at
        // 127.0.0.1, as HCSS is: browsers apply their cross-site cookie rules.
        let mock = MockHcssIdentity::builder()
            .auto_consent(false)
            .hostname("localhost")
            .start()
            .await;
        // The mock's API applies HCSS's published limits to each company.
        mock.set_api_limits(Some(MockApiLimits::hcss()));
        // The same variables as against HCSS (`HcssConfig::from_env`) for the scopes,
        // sign-out at HCSS and back-channel logout.
        let scopes = env_text("HCSS_SCOPES").unwrap_or("heavyjob:read offline_access".into());
        let mut builder = mock
            .config_builder(&format!("http://{addr}/hcss/callback"))
            .scopes(
                scopes
                    .split(|c: char| c == ',' || c.is_ascii_whitespace())
                    .filter(|scope| !scope.is_empty()),
            )
            .api_url(mock.api_url());
        if let Some(uri) = env_text("HCSS_POST_LOGOUT_REDIRECT_URI") {
            builder = builder.post_logout_redirect_uri(uri);
        }
        if env_text("HCSS_BACKCHANNEL_LOGOUT").is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        }) {
            builder = builder.backchannel_logout(true);
            mock.set_backchannel_logout_uri(format!("http://{addr}/hcss/backchannel-logout"));
        }
        if let Some(calls) = env_number("HCSS_API_RATE_PER_MINUTE")? {
            builder = builder.api_rate_per_minute(calls);
        }
        if let Some(calls) = env_number("HCSS_API_CONCURRENCY")? {
            builder = builder.api_concurrency(calls);
        }
        if let Some(secs) = env_number("HCSS_API_MAX_WAIT_SECS")? {
            builder = builder.api_max_wait(std::time::Duration::from_secs(secs.into()));
        }
        println!(
            "No HCSS_CLIENT_ID set: using the embedded mock identity service at {}",
            mock.identity_url()
        );
        _mock = Some(mock);
        builder.build()?
    };

    let sign_out_at_hcss = env_text("HCSS_POST_LOGOUT_REDIRECT_URI").is_some();
    let auth = layer(config).await?;
    // Calls HCSS's APIs within the company's budget, shared with every instance through
    // the layer's store.
    let api = HcssApi::new(&auth);
    let app = Router::new()
        .route(
            "/",
            get(move |token: Option<HcssToken>| home(token, sign_out_at_hcss)),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/whoami", get(whoami))
        .route("/business-units", get(business_units))
        .route("/company/business-units", get(company_business_units))
        .with_state(api);
    // `/metrics` with the feature; outside the layer's routes, yet behind it (put it on
    // a port of its own, or a network only the scraper reaches, in production).
    let app = with_metrics(app)?.layer(auth);

    println!("Open http://{addr}/");
    axum::serve(listener, app).await?;
    Ok(())
}
