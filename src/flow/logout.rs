//! `POST /hcss/logout`: end the session here and, when configured, at HCSS.

use http::request::Parts;
use http::{header, StatusCode};

use super::{cookie_value, page, see_other, set_cookie, unavailable, FlowResponse};
use crate::error::StoreError;
use crate::hooks::SignOut;
use crate::protocol;
use crate::secret::{SessionId, StoreKey};
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

/// Ends the session stored under `key`: its tokens are taken from the store in one step
/// (a refresh writing meanwhile either lands before, and its token is the one revoked
/// here, or finds the session gone and revokes its own), a refreshed set this process
/// could not store yet is dropped, and the live refresh token is revoked at HCSS when
/// configured. An unreadable stored value is removed: nothing is left to revoke.
pub(crate) async fn end_session(shared: &Shared, key: StoreKey) -> Result<(), StoreError> {
    let config = &shared.config;
    let store = &shared.token_store;
    let on_sign_out = shared.hooks().on_sign_out;
    let taken = if config.identity.revoke_on_logout || on_sign_out.is_some() {
        store.take(key).await
    } else {
        store.remove(key).await.map(|()| None)
    };
    let tokens = match taken {
        Ok(tokens) => tokens,
        Err(StoreError::Corrupt(_)) => {
            crate::refresh::discard_unreadable(shared, key).await;
            None
        }
        Err(err) => return Err(err),
    };
    // A refreshed set this process could not store yet is newer than the store's: its
    // refresh token is the live one.
    let tokens = shared.pending.take(key).map(|p| p.tokens).or(tokens);
    if let Some(hook) = on_sign_out {
        let sign_out = SignOut {
            claims: tokens
                .as_ref()
                .map(|t| t.claims.clone())
                .unwrap_or_default(),
            session: key,
        };
        if let Err(err) = tokio::spawn(hook(sign_out)).await {
            tracing::error!(
                panicked = err.is_panic(),
                "hcss: the on_sign_out hook failed; signed out anyway"
            );
        }
    }
    if let Some(tokens) = tokens.filter(|_| config.identity.revoke_on_logout) {
        let (token, hint) = match &tokens.refresh_token {
            Some(refresh) => (refresh, "refresh_token"),
            None => (&tokens.access_token, "access_token"),
        };
        match protocol::revoke(&config.identity, token.expose_secret(), hint).await {
            Ok(()) => tracing::debug!(hint, "hcss: token revoked"),
            Err(err) => {
                tracing::warn!(reason = %err, "hcss: revocation failed; signed out here anyway")
            }
        }
    }
    Ok(())
}

pub(crate) async fn logout(shared: &Shared, parts: &Parts) -> FlowResponse {
    let config = &shared.config;
    if cross_site(shared, parts) {
        tracing::warn!("hcss: logout refused: cross-site request");
        return page(
            config,
            StatusCode::FORBIDDEN,
            "Sign-out refused",
            "Sign-out must be requested from this site.",
        );
    }
    let cookie_name = config.session_cookie_name();
    if let Some(id) = cookie_value(&parts.headers, cookie_name).and_then(SessionId::parse) {
        let key = id.key();
        if let Err(err) = end_session(shared, key).await {
            tracing::error!(error = %err, "hcss: logout failed: the token store is unavailable");
            return unavailable(
                config,
                "The sign-in service cannot end your session right now.",
            );
        }
        tracing::info!(session = key.short(), "hcss: signed out");
    }
    see_other(
        &config.routes.post_logout_path,
        [set_cookie(config, cookie_name, "", None)],
    )
}
