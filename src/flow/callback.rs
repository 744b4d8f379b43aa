//! `GET /hcss/callback`: check the returning login, exchange the code, start a session.

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{header, StatusCode};
use subtle::ConstantTimeEq;

use super::sealed::{self, AskStore, SealedLogin};
use super::{
    cookie_value, page, query_params, sealed_cookie_value, see_other, set_cookie, state_or_code,
    unavailable, FlowResponse,
};
use crate::claims::{Claims, Nonce};
use crate::hooks::SignIn;
use crate::http_rules::printable;
use crate::protocol::{ErrorClass, Grant, TokenError, TokenResponse};
use crate::secret::{random_token, SecretString, SessionId};
use crate::shared::{Logins, Shared};
use crate::store::{LoginTransaction, StoreKey};
use crate::token::TokenSet;

/// Answers a callback. Its login cookie is cleared whatever the outcome (a session, a
/// refusal, a failure at HCSS), unless the answer asks to try the same login again (a
/// 503 before its code was sent): the login is over either way, and a cookie left behind
/// would only be replayed.
pub(crate) async fn callback(shared: &Shared, parts: &Parts) -> FlowResponse {
    let mut response = answer(shared, parts).await;
    if response.extensions_mut().remove::<LoginKept>().is_some() {
        return response;
    }
    let state = query_params(parts.uri.query(), ["state"]).ok();
    let Some(state) = state_or_code(state.and_then(|[state]| state)) else {
        return response;
    };
    let config = &shared.config;
    let name = config.binding_cookie_name(&state);
    if super::has_cookie(&parts.headers, &name) {
        response
            .headers_mut()
            .append(header::SET_COOKIE, set_cookie(config, name, "", None));
    }
    response
}

/// Marks an answer that asks the browser to try the same login again (a 503 before its
/// code was sent): its login cookie is kept for the retry.
#[derive(Clone, Copy)]
struct LoginKept;

/// `response`, its login cookie kept for a retry.
fn retry_later(mut response: FlowResponse) -> FlowResponse {
    response.extensions_mut().insert(LoginKept);
    response
}

async fn answer(shared: &Shared, parts: &Parts) -> FlowResponse {
    let config = &shared.config;
    let bad = |message: &str| page(config, StatusCode::BAD_REQUEST, "Sign-in failed", message);
    let params = query_params(
        parts.uri.query(),
        ["state", "code", "error", "error_description", "iss"],
    );
    let [state, code, error, error_description, iss] = match params {
        Ok(found) => found,
        Err(err) => {
            tracing::info!(reason = ?err, "callback refused: bad query");
            crate::metrics::sign_in_refused("bad_request");
            return bad(&err.message());
        }
    };
    let Some(state) = state_or_code(state) else {
        tracing::info!("callback refused: missing or oversized state");
        crate::metrics::sign_in_refused("bad_request");
        return bad("The sign-in response has no valid state. Please sign in again.");
    };

    // Before the login is opened, so that a stored login is not taken for nothing.
    let Ok(exchange) = shared.code_exchanges.try_acquire() else {
        crate::metrics::sign_in_refused("busy");
        tracing::warn!(
            bound = config.identity.max_code_exchanges,
            "callback refused for now: as many code exchanges in flight as allowed"
        );
        return retry_later(unavailable(
            config,
            "The sign-in service is busy completing other sign-ins.",
        ));
    };
    let binding_name = config.binding_cookie_name(&state);
    let login = match open_login(shared, parts, &state, &binding_name).await {
        Ok(login) => login,
        Err(refused) => return refused,
    };
    let age = config.now().saturating_sub(login.created_at);
    if Duration::from_secs(age) > config.lifetimes.transaction_ttl {
        tracing::info!(age_secs = age, "callback refused: expired login");
        crate::metrics::sign_in_refused("expired");
        return bad("This sign-in took too long and has expired. Please sign in again.");
    }
    if let Some(iss) = &iss {
        if iss.as_ref() != config.identity.issuer {
            tracing::warn!("callback refused: iss is not the configured issuer");
            crate::metrics::sign_in_refused("issuer");
            return bad("The sign-in response came from an unexpected identity service.");
        }
    }

    if let Some(error) = error {
        if code.is_some() {
            tracing::info!("callback refused: both code and error");
            crate::metrics::sign_in_refused("bad_request");
            return bad("The sign-in response is contradictory. Please sign in again.");
        }
        let error = printable(&error, 100);
        if error == "access_denied" {
            crate::metrics::sign_in_refused("denied");
            tracing::info!("login declined by the user");
            return page(
                config,
                StatusCode::FORBIDDEN,
                "Sign-in cancelled",
                "Access to your HCSS account was not granted, so you are not signed in.",
            );
        }
        let description = printable(&error_description.unwrap_or_default(), 300);
        tracing::warn!(error = %error, description = %description, "identity service returned an error");
        crate::metrics::sign_in_refused("denied");
        return bad(&format!("HCSS reported an error: {error}. {description}"));
    }
    let Some(code) = state_or_code(code) else {
        tracing::info!("callback refused: missing or empty code");
        crate::metrics::sign_in_refused("bad_request");
        return bad("The sign-in response has no code. Please sign in again.");
    };

    // A sealed login is claimed once, here and in a store that shares its claims, so a
    // replayed callback makes no token call (a stored login was taken already).
    let login_ends = login
        .created_at
        .saturating_add(config.lifetimes.transaction_ttl.as_secs());
    let claimed = if matches!(shared.logins, Logins::Sealed(_)) {
        match claim(shared, &state, login_ends).await {
            Ok(Some(claimed)) => Some(claimed),
            Ok(None) => {
                tracing::info!("callback refused: replayed state");
                crate::metrics::sign_in_refused("state");
                return bad("This sign-in was already used. Please sign in again.");
            }
            Err(err) => {
                tracing::error!(error = %err, "callback failed: the store is unavailable");
                crate::metrics::sign_in_refused("unavailable");
                return retry_later(unavailable(
                    config,
                    "The sign-in service cannot check the login right now.",
                ));
            }
        }
    } else {
        None
    };

    let grant = Grant::AuthorizationCode {
        code: &code,
        verifier: login.verifier.expose_secret(),
    };
    let exchanged = shared.request_tokens(grant).await;
    drop(exchange);
    let (mut tokens, id_token) = match exchanged {
        Ok(TokenResponse { tokens, id_token }) => (tokens, id_token),
        Err(err) => {
            if let Some(claimed) = claimed {
                claimed.release(shared).await;
            }
            crate::metrics::sign_in_refused("code_exchange");
            return exchange_failed(shared, &err);
        }
    };
    if tokens.scope.is_empty() {
        tokens.scope = Arc::from(config.identity.scope.as_str());
    }
    let identity = &config.identity;
    match id_token {
        Some(id_token) => match verified_id_token(shared, id_token.expose_secret(), &login).await {
            // Its identity claims win over the access token's.
            Ok(identity) => {
                tokens.claims = tokens.claims.overlaid_with(&identity);
                tokens.id_token = Some(id_token);
            }
            Err(why) => {
                tracing::warn!(why, "callback refused: the ID token does not check out");
                crate::metrics::sign_in_refused("id_token");
                revoke_refused(shared, &tokens).await;
                return bad(
                    "HCSS's answer to this sign-in could not be verified. Please sign in again.",
                );
            }
        },
        // Without it, nothing says who signed in for this login (`nonce`), or to whom.
        None if identity.openid || login.nonce.is_some() => {
            tracing::warn!(
                "callback refused: openid was asked for and the token response has no ID token"
            );
            crate::metrics::sign_in_refused("id_token");
            revoke_refused(shared, &tokens).await;
            return page(
                config,
                StatusCode::BAD_GATEWAY,
                "Sign-in failed",
                "HCSS's answer to this sign-in was incomplete. Please sign in again.",
            );
        }
        None => {}
    }

    if tokens.refresh_token.is_none() {
        no_refresh_token(shared);
    }

    // A new session id on every login, so a planted cookie never becomes a session.
    let session_id = SessionId::generate();
    let key = session_id.key();
    if let Some(refused) = run_sign_in_hook(shared, &tokens, key).await {
        crate::metrics::sign_in_refused("hook");
        return refused;
    }
    let ttl = tokens.store_ttl(config.now());
    if let Err(err) = shared.token_store.store(key, tokens, ttl).await {
        tracing::error!(error = %err, "callback failed: the token store is unavailable");
        crate::metrics::sign_in_refused("unavailable");
        return unavailable(
            config,
            "The sign-in service cannot save your session right now.",
        );
    }
    let session_cookie = config.session_cookie_name();
    // The browser's previous session ends as a logout would end it.
    if let Some(old) = super::session_cookie(&parts.headers, session_cookie) {
        if let Err(err) = crate::session::end_session(shared, old.key()).await {
            tracing::warn!(error = %err, "the previous session could not be removed");
        }
    }
    tracing::info!(session = key.short(), "signed in");
    crate::metrics::sign_in();
    // The login cookie is cleared by `callback`, as after any outcome.
    see_other(
        &login.return_to,
        [set_cookie(
            config,
            session_cookie,
            session_id.as_str(),
            Some(ttl),
        )],
    )
}

/// The claims of the ID token of `login`'s sign-in: its signature verified against the
/// identity service's JWKS (when it publishes one), then its claims checked.
async fn verified_id_token(
    shared: &Shared,
    id_token: &str,
    login: &Login,
) -> Result<Claims, &'static str> {
    let config = &shared.config;
    let identity = &config.identity;
    shared
        .oidc
        .verify_id_token(identity, id_token)
        .await
        .map_err(|err| err.why)?;
    let now = config.now();
    let claims = Claims::of_id_token(
        id_token,
        &identity.issuer,
        &identity.client_id,
        now,
        Nonce::Login(login.nonce.as_deref()),
    )?;
    // With `max_age`, the user entered credentials at most that long ago (OpenID Connect
    // Core §3.1.2.1), give or take a minute of clock skew.
    if let Some(max_age) = login.max_age {
        const SKEW: u64 = 60;
        match claims.get("auth_time").and_then(serde_json::Value::as_u64) {
            None => return Err("max_age was asked for and the ID token has no auth_time"),
            Some(at) if at.saturating_add(max_age).saturating_add(SKEW) < now => {
                return Err("auth_time is older than max_age allows")
            }
            Some(_) => {}
        }
    }
    Ok(claims)
}

/// Says once per layer that a sign-in came without a refresh token: its session ends with
/// its access token, which users meet as being signed out every hour.
fn no_refresh_token(shared: &Shared) {
    if shared
        .told_no_refresh_token
        .swap(true, std::sync::atomic::Ordering::Relaxed)
    {
        return;
    }
    if shared
        .config
        .identity
        .scope
        .split(' ')
        .any(|s| s == "offline_access")
    {
        tracing::warn!(
            "HCSS answered a sign-in with no refresh token although the scopes ask for \
             offline_access: the session ends when its access token does. Allow offline \
             access for this client at HCSS (its refresh token grant)"
        );
    } else {
        tracing::warn!(
            "HCSS answered a sign-in with no refresh token (the scopes have no \
             offline_access): the session ends when its access token does. Add \
             offline_access to the scopes (HCSS_SCOPES) to keep users signed in"
        );
    }
}

/// The app's `on_sign_in` hook, if it has one: `None` to go on, or the page of a refused
/// sign-in (whose refresh token is then revoked). The hook runs as a task of its own, so
/// that a panic in it is a 500 page, not a dropped connection.
async fn run_sign_in_hook(
    shared: &Shared,
    tokens: &TokenSet,
    key: StoreKey,
) -> Option<FlowResponse> {
    let hook = shared.hooks.on_sign_in.clone()?;
    let sign_in = SignIn {
        claims: tokens.claims.clone(),
        session: key,
        scope: tokens.scope.clone(),
    };
    let config = &shared.config;
    let refused = match tokio::spawn(hook(sign_in)).await {
        Ok(Ok(())) => return None,
        Ok(Err(refused)) => {
            tracing::info!(
                status = refused.status.as_u16(),
                "sign-in refused by the app"
            );
            page(config, refused.status, &refused.title, &refused.message)
        }
        Err(err) => {
            tracing::error!(
                panicked = err.is_panic(),
                "the on_sign_in hook failed; sign-in refused"
            );
            page(
                config,
                StatusCode::INTERNAL_SERVER_ERROR,
                "Sign-in failed",
                "This sign-in could not be completed. Please try again later.",
            )
        }
    };
    revoke_refused(shared, tokens).await;
    Some(refused)
}

/// Revokes the refresh token of a sign-in refused after HCSS issued its tokens, so that
/// no grant outlives it.
async fn revoke_refused(shared: &Shared, tokens: &TokenSet) {
    if let Some(refresh) = &tokens.refresh_token {
        if let Err(err) = shared
            .revoke(refresh.expose_secret(), "refresh_token")
            .await
        {
            tracing::warn!(reason = %err, "the refused sign-in's refresh token could not be revoked");
        }
    }
}

/// A login in progress, opened from its cookie or taken from the store.
struct Login {
    verifier: SecretString,
    return_to: String,
    created_at: u64,
    nonce: Option<String>,
    max_age: Option<u64>,
}

/// The login that `state` names, checked to belong to this browser: opened from its
/// sealed cookie, or taken (read and deleted at once) from the state store. Whatever
/// happens next, a stored login cannot be used twice.
async fn open_login(
    shared: &Shared,
    parts: &Parts,
    state: &str,
    cookie_name: &str,
) -> Result<Login, FlowResponse> {
    let config = &shared.config;
    let bad = |message: &str| page(config, StatusCode::BAD_REQUEST, "Sign-in failed", message);
    let keys = match &shared.logins {
        Logins::Sealed(keys) => keys,
        Logins::Stored(store) => {
            let transaction = match store
                .take_transaction(StoreKey::of_login_state(state))
                .await
            {
                Ok(Some(tx)) => tx,
                Ok(None) => {
                    tracing::info!("callback refused: unknown, expired or replayed state");
                    crate::metrics::sign_in_refused("state");
                    return Err(bad(
                        "This sign-in has expired or was already used. Please sign in again.",
                    ));
                }
                Err(err) => {
                    tracing::error!(error = %err, "callback failed: the state store is unavailable");
                    crate::metrics::sign_in_refused("unavailable");
                    return Err(retry_later(unavailable(
                        config,
                        "The sign-in service cannot read the login right now.",
                    )));
                }
            };
            let binding =
                cookie_value(&parts.headers, cookie_name).map(LoginTransaction::binding_hash_of);
            let same_browser = binding.is_some_and(|b| {
                bool::from(b.as_bytes().ct_eq(transaction.binding_hash.as_bytes()))
            });
            if !same_browser {
                tracing::warn!("callback refused: the login was started in another browser");
                crate::metrics::sign_in_refused("state");
                return Err(bad(
                    "This sign-in was started in another browser. Please sign in again here.",
                ));
            }
            return Ok(Login {
                verifier: transaction.verifier,
                return_to: transaction.return_to,
                created_at: transaction.created_at,
                nonce: transaction.nonce,
                max_age: transaction.max_age,
            });
        }
    };
    let Some(sealed) = sealed_cookie_value(&parts.headers, cookie_name) else {
        tracing::info!("callback refused: no login cookie for this state");
        crate::metrics::sign_in_refused("state");
        return Err(bad(
            "This sign-in has expired or was already used, or it was started in another \
             browser. Please sign in again.",
        ));
    };
    let mut opened = None;
    // With what this instance knows; then, if the cookie does not open, with what the
    // store shares now (another instance may have made the key after the store lost it).
    for ask in [AskStore::IfUnknown, AskStore::Now] {
        let sealer = match sealed::sealer(shared, keys, ask).await {
            Ok(sealer) => sealer,
            Err(err) => {
                tracing::error!(error = %err, "callback failed: the cookie key is unavailable");
                crate::metrics::sign_in_refused("unavailable");
                return Err(retry_later(unavailable(
                    config,
                    "The sign-in service cannot read the login right now.",
                )));
            }
        };
        opened = SealedLogin::open(&sealer, cookie_name, sealed);
        if opened.is_some() {
            break;
        }
    }
    let Some(login) = opened else {
        crate::metrics::sign_in_refused("state");
        tracing::warn!(
            "callback refused: the login cookie does not open with this instance's key \
             (altered, or sealed by an instance with another key: give every instance the same \
             HCSS_COOKIE_KEY, or a store that shares one)"
        );
        return Err(bad(
            "This sign-in could not be verified (it may have been started on another server \
             of this site). Please sign in again.",
        ));
    };
    if !bool::from(login.state.as_bytes().ct_eq(state.as_bytes())) {
        tracing::warn!("callback refused: the login cookie belongs to another login");
        crate::metrics::sign_in_refused("state");
        return Err(bad(
            "This sign-in belongs to another login. Please sign in again.",
        ));
    }
    Ok(Login {
        verifier: SecretString::from(login.verifier),
        return_to: login.return_to,
        created_at: login.created_at,
        nonce: login.nonce,
        max_age: login.max_age,
    })
}

/// A sealed login's claim on its state, held in this process and, through the store's
/// lock, by every instance that shares the store.
struct Claimed {
    key: StoreKey,
    owner: String,
}

impl Claimed {
    /// Gives back the store's lock once HCSS refused the code or the exchange failed:
    /// no token came of it, so there is nothing a replay could reach, and the code is
    /// single-use at HCSS. A forged callback (a login of one's own and a made-up code)
    /// then leaves no key in the store. This process still refuses the state, and a
    /// lock that cannot be given back expires with the login.
    async fn release(self, shared: &Shared) {
        if let Err(err) = shared.token_store.unlock(self.key, self.owner).await {
            tracing::warn!(error = %err, "the claim of a failed sign-in could not be given back; it expires with the login");
        }
    }
}

/// Claims a sealed login's state for its callback, until `until` (Unix seconds, when the
/// login expires anyway): `None` if it was claimed before, in this process or (through
/// the store's lock) by another instance. The claim of a successful exchange stays until
/// then: its replay is refused before any token call, on every instance.
async fn claim(
    shared: &Shared,
    state: &str,
    until: u64,
) -> Result<Option<Claimed>, crate::error::StoreError> {
    let config = &shared.config;
    let key = StoreKey::of_state_claim(state);
    let now = config.now();
    if !shared.used_states.claim(key, now, until) {
        return Ok(None);
    }
    let owner = random_token(16);
    let ttl = Duration::from_secs(until.saturating_sub(now).max(1));
    match shared.token_store.try_lock(key, owner.clone(), ttl).await {
        Ok(true) => Ok(Some(Claimed { key, owner })),
        Ok(false) => Ok(None),
        Err(err) => {
            // No token call was made, and the 503 says "try again": the retry must not be
            // refused as a replay.
            shared.used_states.release(key);
            Err(err)
        }
    }
}

/// The answer to a failed code exchange. A code is never retried: whatever the class,
/// the user starts again, but a passing failure or this app's configuration is a 502
/// (the fault is not the user's) and only a refusal of this sign-in is a 400.
fn exchange_failed(shared: &Shared, err: &TokenError) -> FlowResponse {
    let config = &shared.config;
    match err.class() {
        ErrorClass::Configuration => tracing::error!(reason = %err,
            "code exchange refused because of this app's configuration: check the client \
             id, client secret, client authentication and scopes registered at HCSS"),
        ErrorClass::GrantGone | ErrorClass::Failed
            if matches!(err, TokenError::Rejected { .. }) =>
        {
            tracing::warn!(reason = %err, "code exchange refused");
            return page(
                config,
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                "HCSS did not accept this sign-in. Please sign in again.",
            );
        }
        _ => tracing::warn!(reason = %err, "code exchange failed"),
    }
    page(
        config,
        StatusCode::BAD_GATEWAY,
        "Sign-in failed",
        "HCSS could not complete the sign-in right now. Please try again in a moment.",
    )
}
