//! The load test's yardstick: the example server's `/healthz` and `/whoami` as a team
//! would hand-roll them with tower-sessions and its `MemoryStore`, the session holding
//! the token and its claims. Not a way to use hcss-auth: `scripts/load.sh` runs it beside
//! the example server to compare their signed-in cost.
//!
//! `HCSS_EXAMPLE_ADDR=127.0.0.1:3056 cargo run --release -p hcss-auth-tools --bin tower_sessions_peer`;
//! `GET /seed` signs the browser in (sets the session cookie).

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use tower_sessions::{MemoryStore, Session, SessionManagerLayer};

/// What a hand-rolled flow keeps in the session after its callback.
#[derive(Serialize, Deserialize)]
struct Signed {
    access_token: String,
    expires_at: u64,
    scope: String,
    subject: String,
    company_id: Option<String>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn seed(session: Session) -> StatusCode {
    let signed = Signed {
        access_token: "peer-access-token".repeat(40),
        expires_at: now() + 3600,
        scope: "heavyjob:read offline_access".into(),
        subject: "5f0c2a7e-0000-4000-8000-000000000001".into(),
        company_id: Some("c0ffee00-0000-4000-8000-000000000001".into()),
    };
    match session.insert("hcss", signed).await {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// What `/whoami` answers, as the example server's.
#[derive(Serialize)]
struct WhoAmI<'s> {
    subject: &'s str,
    company_id: Option<&'s str>,
    token_type: &'static str,
    scopes: Vec<&'s str>,
    expires_in: u64,
}

async fn whoami(session: Session) -> Response {
    match session.get::<Signed>("hcss").await {
        Ok(Some(signed)) if signed.expires_at > now() => Json(WhoAmI {
            subject: &signed.subject,
            company_id: signed.company_id.as_deref(),
            token_type: "Bearer",
            scopes: signed.scope.split_ascii_whitespace().collect(),
            expires_in: signed.expires_at.saturating_sub(now()),
        })
        .into_response(),
        _ => StatusCode::UNAUTHORIZED.into_response(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: SocketAddr = std::env::var("HCSS_EXAMPLE_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:3056".into())
        .parse()?;
    let sessions = SessionManagerLayer::new(MemoryStore::default()).with_secure(false);
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/seed", get(seed))
        .route("/whoami", get(whoami))
        .layer(sessions);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("tower-sessions peer on http://{}/", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
