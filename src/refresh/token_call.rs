//! The refresh token spent at HCSS, and its answer read: the new set written (or kept),
//! the session ended on `invalid_grant`, kept on anything else.

use std::sync::Arc;

use super::fence::{unmark, write_or_keep};
use super::id_token::{self, Checked};
use super::{revoke_orphan, signed_out};
use crate::error::SessionError;
use crate::protocol::{ErrorClass, Grant, TokenResponse};
use crate::shared::{Outcome, Shared};
use crate::store::StoreKey;
use crate::token::TokenSet;

/// Spends the refresh token of `old`, marked as this refresh's (`mark`) at version
/// `base`, and writes (or keeps) what comes back over that version; `owner` is the
/// refresh lock's owner, which a kept result holds on to.
pub(super) async fn refresh_with(
    shared: &Arc<Shared>,
    key: StoreKey,
    owner: &str,
    mark: &str,
    old: TokenSet,
    base: u64,
) -> Outcome {
    let config = &shared.config;
    let Some(refresh_token) = old.refresh_token.clone() else {
        return Err(SessionError::NotSignedIn);
    };
    let grant = Grant::RefreshToken {
        refresh_token: refresh_token.expose_secret(),
    };
    let err = match shared.request_tokens(grant).await {
        Ok(TokenResponse {
            tokens: mut new,
            id_token,
        }) => {
            if new.refresh_token.is_none() {
                new.refresh_token = Some(refresh_token);
            }
            if new.scope.is_empty() {
                new.scope = old.scope.clone();
            }
            new.session_expires_at = old.session_expires_at;
            let checked = match &id_token {
                Some(id_token) => Some(id_token::check(shared, &old, id_token).await),
                None => None,
            };
            let fresh = match &checked {
                Some(Checked::Fresh(claims)) => id_token.as_ref().map(|token| (token, claims)),
                Some(Checked::Unverified(why)) => {
                    tracing::warn!(
                        session = key.short(),
                        why,
                        "the ID token of a refresh could not be verified for now; the \
                         refreshed tokens are used and the session keeps its identity"
                    );
                    None
                }
                Some(Checked::Refused(why)) => {
                    tracing::error!(
                        session = key.short(),
                        why,
                        "the ID token of a refresh does not check out: the refresh is not \
                         used, the session is ended and its new refresh token revoked"
                    );
                    crate::metrics::refresh("id_token");
                    revoke_orphan(shared, key, &new).await;
                    return signed_out(shared, key).await;
                }
                None => None,
            };
            new.keep_identity_from(&old, fresh);
            new.version = base.max(old.version).wrapping_add(1);
            new.written_by = Some(mark.into());
            tracing::debug!(session = key.short(), "access token refreshed");
            crate::metrics::refresh("ok");
            return write_or_keep(shared, key, owner, base, new).await;
        }
        Err(err) => err,
    };
    let session = key.short();
    let reason = err.to_string();
    let retry_after = err.retry_after().unwrap_or(config.identity.retry_after);
    crate::metrics::refresh(err.class().metric_label());
    match err.class() {
        ErrorClass::GrantGone => {
            tracing::warn!(session, reason = %err,
                "refresh refused, session ended; the user must log in again");
            return signed_out(shared, key).await;
        }
        ErrorClass::Configuration => tracing::error!(session, reason = %err,
            "refresh refused because of this app's configuration: check the client id, \
             client secret, client authentication and scopes registered at HCSS; sessions are \
             kept and refresh again once it is fixed"),
        ErrorClass::Transient => tracing::warn!(session, reason = %err,
            "refresh failed for now; the session is kept"),
        ErrorClass::Failed => tracing::warn!(session, reason = %err,
            "refresh failed; the session is kept"),
    }
    unmark(shared, key, mark, base, &old).await;
    Err(SessionError::Unavailable {
        reason,
        retry_after,
    })
}
