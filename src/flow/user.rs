//! `GET /hcss/user` (opt-in, `HcssConfigBuilder::user_path`): who is signed in, as JSON,
//! for single-page apps.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use http::request::Parts;
use http::StatusCode;

use super::{session_cookie, FlowResponse};
use crate::error::SessionError;
use crate::http_rules::{json, retry_after};
use crate::session::HcssSession;
use crate::shared::Shared;

fn unix(time: std::time::SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub(crate) async fn user(shared: &Arc<Shared>, parts: &Parts) -> FlowResponse {
    let config = &shared.config;
    let id = session_cookie(&parts.headers, config.session_cookie_name());
    let session = HcssSession::new(shared.clone(), id, None);
    match session.token().await {
        Ok(token) => {
            let claims = token.claims();
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "subject": claims.subject(),
                    "company_id": claims.company_id(),
                    "name": claims.name(),
                    "email": claims.email(),
                    "client_id": claims.client_id(),
                    "scopes": token.scopes().collect::<Vec<_>>(),
                    "token_expires_at": unix(token.expires_at()),
                    "session_expires_at": unix(token.session_expires_at()),
                    "logout_path": config.routes.logout_path,
                }),
            )
        }
        Err(SessionError::NotSignedIn) => json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({
                "error": "login_required",
                "login_path": config.routes.login_path,
            }),
        ),
        Err(SessionError::Unavailable {
            retry_after: wait, ..
        }) => {
            let mut response = json(
                StatusCode::SERVICE_UNAVAILABLE,
                &serde_json::json!({ "error": "temporarily_unavailable" }),
            );
            retry_after(response.headers_mut(), wait);
            response
        }
    }
}
