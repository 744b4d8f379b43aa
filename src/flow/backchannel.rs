//! `POST /hcss/backchannel-logout`: the identity service says a user signed out there
//! (OpenID Connect Back-Channel Logout 1.0). The logout token is verified, its `jti`
//! claimed once across instances, and the matching sessions end as a logout ends them.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{request::Parts, Response, StatusCode};
use http_body::Body;

use super::FlowResponse;
use crate::oidc::{LogoutToken, IAT_WINDOW};
use crate::secret::random_token;
use crate::shared::Shared;
use crate::store::{SessionOwner, StoreKey};

/// The largest request body read: a logout token is a few kilobytes.
pub(crate) const MAX_BODY: usize = 16 * 1024;

/// Answers a back-channel logout request: 200 once the matching sessions ended, 400
/// (`invalid_request`) when the token does not check out or was seen before, 503 when
/// the store failed (the sessions may stand).
pub(crate) async fn backchannel_logout<B>(shared: &Shared, parts: &Parts, body: B) -> FlowResponse
where
    B: Body,
{
    let form = is_form(parts);
    let body = match read_bounded(body, MAX_BODY).await {
        Ok(body) => body,
        Err(why) => return refused(why),
    };
    if !form {
        return refused("the body is not application/x-www-form-urlencoded");
    }
    let mut tokens = form_urlencoded::parse(&body).filter(|(name, _)| name == "logout_token");
    let token = match (tokens.next(), tokens.next()) {
        (Some((_, token)), None) if !token.is_empty() => token,
        (Some(_), Some(_)) => return refused("logout_token is given more than once"),
        _ => return refused("logout_token is missing"),
    };
    let config = &shared.config;
    let identity = &config.identity;
    let now = config.now();
    let logout = match shared.oidc.verify_logout_token(identity, &token, now).await {
        Ok(logout) => logout,
        Err(why) => {
            tracing::warn!(why, "a back-channel logout token was refused");
            return refused(why);
        }
    };
    let claim = match claim_jti(shared, &logout, now).await {
        Ok(Some(claim)) => claim,
        Ok(None) => {
            tracing::warn!("a back-channel logout token was replayed; refused");
            return refused("the logout token was used before");
        }
        Err(err) => {
            tracing::error!(error = %err, "back-channel logout: the store failed");
            return unavailable();
        }
    };
    match end_matching(shared, &logout).await {
        Ok(ended) => {
            tracing::info!(ended, "back-channel logout: sessions ended");
            crate::metrics::sessions_ended("back_channel", ended);
            let mut response = Response::new(Bytes::new());
            crate::http_rules::no_store(response.headers_mut());
            response
        }
        Err(err) => {
            tracing::error!(error = %err, "back-channel logout: the store failed");
            // Not carried out: the identity service's retry must not be taken for a replay.
            let (key, owner) = claim;
            shared.used_states.release(key);
            let _ = shared.token_store.unlock(key, owner).await;
            unavailable()
        }
    }
}

/// Whether the request says its body is a form (a missing type is taken as one).
fn is_form(parts: &Parts) -> bool {
    parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_none_or(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(';').next().is_some_and(|t| {
                    t.trim()
                        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                })
            })
        })
}

/// Claims the token's `jti` until it could no longer be accepted: in this process, then
/// through the store's lock (so that every instance sharing it refuses a replay). The
/// claim (its key and owner, to give it back should the logout fail), or `None` when
/// the `jti` was claimed before.
async fn claim_jti(
    shared: &Shared,
    logout: &LogoutToken,
    now: u64,
) -> Result<Option<(StoreKey, String)>, crate::error::StoreError> {
    let key = StoreKey::of_logout_jti(&logout.jti);
    let until = logout.issued_at + IAT_WINDOW.as_secs() + 1;
    if !shared.used_states.claim(key, now, until) {
        return Ok(None);
    }
    let ttl = Duration::from_secs(until.saturating_sub(now).max(1));
    let owner = random_token(16);
    match shared.token_store.try_lock(key, owner.clone(), ttl).await {
        Ok(claimed) => Ok(claimed.then_some((key, owner))),
        Err(err) => {
            // Nothing ended: the identity service's retry must not be refused as a replay.
            shared.used_states.release(key);
            Err(err)
        }
    }
}

/// Ends the sessions the token names: those of its `sid`, and those of its `sub` that
/// have no `sid` (signed in without `openid`: which identity-service session they belong
/// to is unknown); every session of its `sub` when it names no `sid`.
async fn end_matching(
    shared: &Shared,
    logout: &LogoutToken,
) -> Result<usize, crate::error::StoreError> {
    let store = &shared.token_store;
    let mut keys = Vec::new();
    if let Some(sid) = &logout.sid {
        keys.extend(
            store
                .sessions_of(SessionOwner::IdentitySession(sid.clone()))
                .await?,
        );
    }
    if let Some(subject) = &logout.subject {
        for key in store
            .sessions_of(SessionOwner::Subject(subject.clone()))
            .await?
        {
            if keys.contains(&key) {
                continue;
            }
            let unknown_sid = logout.sid.is_none()
                || match store.load(key).await {
                    Ok(Some(tokens)) => !SessionOwner::of(&tokens)
                        .iter()
                        .any(|owner| matches!(owner, SessionOwner::IdentitySession(_))),
                    Ok(None) => false,
                    // Unreadable: ending it removes it.
                    Err(_) => true,
                };
            if unknown_sid {
                keys.push(key);
            }
        }
    }
    let mut ended = 0;
    for key in keys {
        crate::session::end_session(shared, key).await?;
        ended += 1;
    }
    Ok(ended)
}

/// Reads at most `limit` bytes of `body`; an error when it is longer or fails.
pub(crate) async fn read_bounded<B>(body: B, limit: usize) -> Result<Bytes, &'static str>
where
    B: Body,
{
    const TOO_LARGE: &str = "the body is too large";
    if body.size_hint().lower() > limit as u64 {
        return Err(TOO_LARGE);
    }
    let mut body = std::pin::pin!(body);
    let mut read = BytesMut::new();
    while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        let Ok(frame) = frame else {
            return Err("the body could not be read");
        };
        if let Ok(mut data) = frame.into_data() {
            if read.len() + data.remaining() > limit {
                return Err(TOO_LARGE);
            }
            while data.has_remaining() {
                let chunk = data.chunk();
                let n = chunk.len();
                read.extend_from_slice(chunk);
                data.advance(n);
            }
        }
    }
    Ok(read.freeze())
}

/// 400 with an OAuth-style error, as the spec asks.
fn refused(why: &str) -> FlowResponse {
    crate::http_rules::json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({ "error": "invalid_request", "error_description": why }),
    )
}

fn unavailable() -> FlowResponse {
    crate::http_rules::json(
        StatusCode::SERVICE_UNAVAILABLE,
        &serde_json::json!({
            "error": "temporarily_unavailable",
            "error_description": "the session store failed; try again",
        }),
    )
}
