//! `POST /hcss/logout`: end the session here and, when configured, at HCSS.

use http::request::Parts;
use http::{header, StatusCode};

use super::{page, see_other, session_cookie, set_cookie, unavailable, FlowResponse};
use crate::shared::Shared;

/// A logout must come from this app's own pages, or a third-party site could sign users
/// out at will.
fn cross_site(shared: &Shared, parts: &Parts) -> bool {
    let headers = &parts.headers;
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site == Some("cross-site") {
        return true;
    }
    match headers.get(header::ORIGIN) {
        None => false,
        Some(origin) => origin.as_bytes() != shared.config.routes.app_origin.as_bytes(),
    }
}

pub(crate) async fn logout(shared: &Shared, parts: &Parts) -> FlowResponse {
    let config = &shared.config;
    if cross_site(shared, parts) {
        tracing::warn!("logout refused: cross-site request");
        return page(
            config,
            StatusCode::FORBIDDEN,
            "Sign-out refused",
            "Sign-out must be requested from this site.",
        );
    }
    let cookie_name = config.session_cookie_name();
    if let Some(id) = session_cookie(&parts.headers, cookie_name) {
        let key = id.key();
        if let Err(err) = crate::session::end_session(shared, key).await {
            tracing::error!(error = %err, "logout failed: the token store is unavailable");
            return unavailable(
                config,
                "The sign-in service cannot end your session right now.",
            );
        }
        tracing::info!(session = key.short(), "signed out");
    }
    see_other(
        &config.routes.post_logout_path,
        [set_cookie(config, cookie_name, "", None)],
    )
}
