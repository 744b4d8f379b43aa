//! `POST /hcss/logout`: end the session here and, when configured, at HCSS.

use http::request::Parts;
use http::{header, StatusCode};

use super::{page, see_other, session_cookie, set_cookie, unavailable, FlowResponse};
use crate::http_rules::printable;
use crate::shared::Shared;

/// A logout must come from this app's own pages, or a third-party site could sign users
/// out at will: refused with a `Sec-Fetch-Site: cross-site`, or an `Origin` other than
/// the app's (the redirect URI's).
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
        let told = |name| {
            parts.headers.get(name).map_or(String::from("none"), |v| {
                printable(&String::from_utf8_lossy(v.as_bytes()), 200)
            })
        };
        tracing::warn!(
            origin = %told(header::ORIGIN.as_str()),
            sec_fetch_site = %told("sec-fetch-site"),
            expected_origin = %config.routes.app_origin,
            "logout refused: cross-site request. A sign-out must come from the app's own \
             origin, the redirect URI's; behind a proxy that changes the host or scheme, \
             set the redirect URI to the address browsers use"
        );
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
