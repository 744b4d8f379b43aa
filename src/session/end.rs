//! Ending a session: its tokens taken from the store, the live refresh token revoked at
//! HCSS, the app's `on_sign_out` hook told.

use crate::error::StoreError;
use crate::hooks::SignOut;
use crate::refresh::discard_unreadable;
use crate::shared::Shared;
use crate::store::StoreKey;
use crate::token::TokenSet;

/// Ends the session stored under `key`: its tokens are taken from the store in one step
/// (a refresh writing meanwhile either lands before, and its token is the one revoked
/// here, or finds the session gone and revokes its own), a refreshed set this process
/// could not store yet is dropped, and the live refresh token is revoked at HCSS when
/// configured. An unreadable stored value is removed: nothing is left to revoke.
pub(crate) async fn end_session(shared: &Shared, key: StoreKey) -> Result<(), StoreError> {
    let config = &shared.config;
    let store = &shared.token_store;
    let on_sign_out = shared.hooks.on_sign_out.clone();
    // Read first, so that a take whose reply is lost (applied, but answered with an
    // error) still knows what it removed: the retried logout finds nothing to take.
    let before = match config.identity.revoke_on_logout {
        true => store.load(key).await.ok().flatten(),
        false => None,
    };
    let taken = if config.identity.revoke_on_logout || on_sign_out.is_some() {
        store.take(key).await
    } else {
        store.remove(key).await.map(|()| None)
    };
    let tokens = match taken {
        Ok(tokens) => tokens,
        Err(StoreError::Corrupt(_)) => {
            discard_unreadable(shared, key).await;
            None
        }
        Err(err) => {
            // The user asked to sign out: whether or not the take was applied, the
            // refresh token read before is revoked now (a session left behind can no
            // longer refresh, and the retried logout removes it).
            let known = shared.pending.get(key).map(|p| p.tokens).or(before);
            if let Some(tokens) = known {
                revoke_ended(shared, &tokens).await;
            }
            return Err(err);
        }
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
                "the on_sign_out hook failed; signed out anyway"
            );
        }
    }
    if let Some(tokens) = tokens.filter(|_| config.identity.revoke_on_logout) {
        revoke_ended(shared, &tokens).await;
    }
    Ok(())
}

/// Revokes the live token of an ended session at HCSS: its refresh token, or its access
/// token when it has none.
async fn revoke_ended(shared: &Shared, tokens: &TokenSet) {
    let (token, hint) = match &tokens.refresh_token {
        Some(refresh) => (refresh, "refresh_token"),
        None => (&tokens.access_token, "access_token"),
    };
    match shared.revoke(token.expose_secret(), hint).await {
        Ok(()) => tracing::debug!(hint, "token revoked"),
        Err(err) => {
            tracing::warn!(reason = %err, "revocation failed; signed out here anyway")
        }
    }
}
