//! `POST /hcss/logout`: end the session here and, when configured, at HCSS.

use http::request::Parts;
use http::{header, StatusCode};

use subtle::ConstantTimeEq;

use super::{
    cookie_value, page, query_params, see_other, session_cookie, set_cookie, state_or_code,
    unavailable, FlowResponse,
};
use crate::http_rules::printable;
use crate::secret::random_token;
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
        crate::metrics::login_refused("cross_site");
        return page(
            config,
            StatusCode::FORBIDDEN,
            "Sign-out refused",
            "Sign-out must be requested from this site.",
        );
    }
    let cookie_name = config.session_cookie_name();
    let mut id_token = None;
    if let Some(id) = session_cookie(&parts.headers, cookie_name) {
        let key = id.key();
        // With sign-out at HCSS, the session's ID token names it there (`id_token_hint`).
        if config.identity.post_logout_redirect_uri.is_some() {
            if let Ok(Some(tokens)) = shared.token_store.load(key).await {
                id_token = tokens.id_token;
            }
        }
        if let Err(err) = crate::session::end_session(shared, key).await {
            tracing::error!(error = %err, "logout failed: the token store is unavailable");
            return unavailable(
                config,
                "The sign-in service cannot end your session right now.",
            );
        }
        tracing::info!(session = key.short(), "signed out");
        crate::metrics::sessions_ended("logout", 1);
    }
    let cleared = set_cookie(config, cookie_name, "", None);
    let Some(post_logout) = &config.identity.post_logout_redirect_uri else {
        return see_other(&config.routes.post_logout_path, [cleared]);
    };
    // Sign-out at HCSS: the browser goes to its end-session endpoint, with a `state` this
    // browser keeps in a cookie until it comes back.
    let end_session = match shared.oidc.endpoints(&config.identity).await {
        Ok(endpoints) => endpoints.end_session.clone(),
        Err(err) => {
            tracing::error!(reason = %err, "signed out here; not sent to sign out at HCSS");
            return see_other(&config.routes.post_logout_path, [cleared]);
        }
    };
    let state = random_token(32);
    let mut url = end_session;
    {
        let mut query = url.query_pairs_mut();
        match &id_token {
            Some(id_token) => query.append_pair("id_token_hint", id_token.expose_secret()),
            None => query.append_pair("client_id", &config.identity.client_id),
        };
        query
            .append_pair("post_logout_redirect_uri", post_logout)
            .append_pair("state", &state);
    }
    tracing::debug!("sending the browser to sign out at the identity service");
    let state_cookie = set_cookie(
        config,
        config.logout_state_cookie_name(),
        &state,
        Some(config.lifetimes.transaction_ttl),
    );
    see_other(url.as_str(), [cleared, state_cookie])
}

/// `GET {post-logout redirect URI's path}`: the browser is back from signing out at
/// HCSS. Its `state` must be the one this browser was sent with (kept in a cookie, and
/// compared in constant time); then the browser goes to `post_logout_path`.
pub(crate) async fn logout_return(shared: &Shared, parts: &Parts) -> FlowResponse {
    let config = &shared.config;
    let cookie_name = config.logout_state_cookie_name();
    let cleared = set_cookie(config, cookie_name, "", None);
    let state = query_params(parts.uri.query(), ["state"])
        .ok()
        .and_then(|[state]| state_or_code(state));
    let kept = cookie_value(&parts.headers, cookie_name);
    let same = match (&state, kept) {
        (Some(state), Some(kept)) => bool::from(state.as_bytes().ct_eq(kept.as_bytes())),
        _ => false,
    };
    if !same {
        tracing::warn!("sign-out return refused: missing or wrong state");
        let mut refused = page(
            config,
            StatusCode::BAD_REQUEST,
            "Sign-out not confirmed",
            "This sign-out response does not belong to a sign-out started here. You are \
             signed out of this site.",
        );
        refused.headers_mut().append(header::SET_COOKIE, cleared);
        return refused;
    }
    tracing::info!("signed out at the identity service");
    see_other(&config.routes.post_logout_path, [cleared])
}
