//! `GET /hcss/login[?return_to=/path]`: start a login and send the browser to HCSS.

use http::request::Parts;
use http::StatusCode;

use super::sealed::{self, AskStore, SealedLogin};
use super::{
    cookie_names_with_prefix, page, query_params, see_other, set_cookie, unavailable, FlowResponse,
};
use crate::config::valid_prompt;
use crate::protocol::{authorize_url, pkce_challenge, AuthorizeExtras};
use crate::return_path::valid_return_path;
use crate::secret::random_token;
use crate::shared::{Logins, Shared};
use crate::store::{LoginTransaction, StoreKey};

/// Logins a browser may have in flight at once (one binding cookie each).
pub(crate) const MAX_LOGINS_IN_FLIGHT: usize = 5;

pub(crate) async fn login(shared: &Shared, parts: &Parts) -> FlowResponse {
    let config = &shared.config;
    let params = query_params(
        parts.uri.query(),
        ["return_to", "prompt", "login_hint", "max_age"],
    );
    let [return_to, prompt, login_hint, max_age] = match params {
        Ok(found) => found,
        Err(err) => {
            tracing::info!(reason = ?err, "login refused: bad query");
            crate::metrics::login_refused("bad_request");
            return page(
                config,
                StatusCode::BAD_REQUEST,
                "Bad sign-in request",
                &err.message(),
            );
        }
    };
    let return_to = match return_to.as_deref() {
        None | Some("") => config.routes.post_login_path.clone(),
        Some(path) => match valid_return_path(path) {
            Some(path) => path.to_owned(),
            None => {
                tracing::info!("login refused: return_to is not a local path");
                crate::metrics::login_refused("return_to");
                return page(
                    config,
                    StatusCode::BAD_REQUEST,
                    "Bad sign-in request",
                    "The page to return to must be a path on this site.",
                );
            }
        },
    };

    let extras = match login_extras(config, prompt, login_hint, max_age) {
        Ok(extras) => extras,
        Err(message) => {
            tracing::info!(reason = %message, "login refused: bad prompt, login_hint or max_age");
            return page(
                config,
                StatusCode::BAD_REQUEST,
                "Bad sign-in request",
                message,
            );
        }
    };

    // The identity service's endpoints (its discovery document, read on first use):
    // one that names another issuer is not signed in with.
    let endpoints = match shared.oidc.endpoints(&config.identity).await {
        Ok(endpoints) => endpoints,
        Err(err) => {
            tracing::error!(reason = %err, "login refused");
            crate::metrics::login_refused("identity_service");
            return page(
                config,
                StatusCode::BAD_GATEWAY,
                "Sign-in unavailable",
                "The sign-in service is not set up correctly. Please try again later.",
            );
        }
    };

    // One cookie per login, named after its state, so that logins started at the same
    // moment in several tabs never overwrite each other's.
    let state = random_token(32);
    let verifier = random_token(32);
    let challenge = pkce_challenge(&verifier);
    // With `openid`, a nonce the ID token must carry back.
    let nonce = config.identity.openid.then(|| random_token(16));
    let cookie_name = config.binding_cookie_name(&state);
    let now = config.now();
    let cookie_value = match &shared.logins {
        // The whole login travels sealed in the cookie: nothing is kept here.
        Logins::Sealed(keys) => {
            let sealer = match sealed::sealer(shared, keys, AskStore::OncePerSecond).await {
                Ok(sealer) => sealer,
                Err(err) => {
                    tracing::error!(error = %err, "login failed: the cookie key is unavailable");
                    crate::metrics::login_refused("unavailable");
                    return unavailable(
                        config,
                        "The sign-in service cannot start a login right now.",
                    );
                }
            };
            let login = SealedLogin {
                state: state.clone(),
                verifier,
                return_to,
                created_at: now,
                nonce: nonce.clone(),
                max_age: extras.max_age,
            };
            let sealed = login.seal(&sealer, &cookie_name);
            // Browsers keep no cookie over 4 KiB: a longer one would fail at the callback.
            if cookie_name.len() + 1 + sealed.len() > 4096 {
                tracing::info!("login refused: return_to makes the login cookie too large");
                crate::metrics::login_refused("return_to");
                return page(
                    config,
                    StatusCode::BAD_REQUEST,
                    "Bad sign-in request",
                    "The page to return to is too long.",
                );
            }
            sealed
        }
        // The login is kept in the store; the cookie binds it to this browser.
        Logins::Stored(store) => {
            let binding = random_token(32);
            let transaction = LoginTransaction::started(
                verifier,
                return_to,
                LoginTransaction::binding_hash_of(&binding),
                now,
            )
            .with_nonce(nonce.clone())
            .with_max_age(extras.max_age);
            if let Err(err) = store
                .put_transaction(
                    StoreKey::of_login_state(&state),
                    transaction,
                    config.lifetimes.transaction_ttl,
                )
                .await
            {
                tracing::error!(error = %err, "login failed: the state store is unavailable");
                crate::metrics::login_refused("unavailable");
                return unavailable(
                    config,
                    "The sign-in service cannot store the login right now.",
                );
            }
            binding
        }
    };
    tracing::debug!("login started, redirecting to the identity service");
    // A browser keeps a few logins in flight at most: past that, the oldest binding
    // cookies are cleared, so the `Cookie` header stays small.
    let mut in_flight: Vec<&str> =
        cookie_names_with_prefix(&parts.headers, config.binding_cookie_prefix()).collect();
    in_flight.dedup();
    let dropped = in_flight.len().saturating_sub(MAX_LOGINS_IN_FLIGHT - 1);
    let cleared = in_flight[..dropped]
        .iter()
        .map(|name| set_cookie(config, name.to_string(), "", None));
    let login_cookie = set_cookie(
        config,
        cookie_name,
        &cookie_value,
        Some(config.lifetimes.transaction_ttl),
    );
    see_other(
        &authorize_url(
            &config.identity,
            &endpoints.authorize,
            &state,
            &challenge,
            nonce.as_deref(),
            &extras,
        ),
        std::iter::once(login_cookie).chain(cleared),
    )
}

/// `prompt`, `login_hint` and `max_age` from the query, else the config's defaults:
/// `prompt` from an allow-list, `login_hint` printable and short, `max_age` a number of
/// seconds, no more than the config's. The error is the page's message.
fn login_extras(
    config: &crate::HcssConfig,
    prompt: Option<std::borrow::Cow<'_, str>>,
    login_hint: Option<std::borrow::Cow<'_, str>>,
    max_age: Option<std::borrow::Cow<'_, str>>,
) -> Result<AuthorizeExtras, &'static str> {
    let identity = &config.identity;
    let prompt = match prompt {
        Some(prompt) if valid_prompt(&prompt) => Some(prompt.into_owned()),
        Some(_) => {
            return Err("The sign-in prompt must be login, consent, select_account or none.")
        }
        None => identity.prompt.clone(),
    };
    let login_hint = match login_hint {
        Some(hint) if hint.len() <= 256 && !hint.chars().any(char::is_control) => {
            Some(hint.into_owned())
        }
        Some(_) => return Err("The login hint is too long or not printable."),
        None => None,
    };
    // The query may ask for more recent credentials than the config, never for older
    // ones: the config's `max_age` is the app's bound, which anyone who can open a URL
    // (on a shared computer, say) would otherwise lift.
    let max_age = match max_age {
        Some(age) => match age.parse::<u32>() {
            Ok(age) => Some(
                identity
                    .max_age
                    .map_or(u64::from(age), |c| c.min(age.into())),
            ),
            Err(_) => return Err("max_age must be a number of seconds."),
        },
        None => identity.max_age,
    };
    Ok(AuthorizeExtras {
        prompt,
        login_hint,
        max_age,
    })
}
