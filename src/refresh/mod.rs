//! Refresh: when a session's tokens need one, and the refresh itself.
//!
//! A refresh is a task, not a request ([`flight`]). The first request that finds a
//! session's access token expiring spawns it; every request of that session in this
//! process, including those that arrive while it runs, waits for the same outcome.
//! Cancelling requests never cancels it, so a refresh token that HCSS has rotated is
//! always written or kept.
//!
//! The task holds the store's lock on the session, a lease ([`lease`]), so that instances
//! sharing the store refresh once between them. Before it sends the refresh token to
//! HCSS it marks the stored set as spent by it, and it writes its result only over that
//! mark ([`fence`]): a logout meanwhile wins (the new refresh token is revoked), a write
//! retried after a lost reply recognises itself, and no other instance ever sends the
//! same token. A result the store refuses is kept in this process and written by a task
//! of its own ([`kept`]). A passing failure is remembered until its `Retry-After`, so the
//! session's other requests get the same answer without calling HCSS again.
//! [`token_call`] is the call to HCSS itself and how its answer is read; [`id_token`]
//! checks the ID token a refresh may bring.

use std::time::Duration;

use crate::error::{SessionError, StoreError};
use crate::shared::{Outcome, Shared};
use crate::store::StoreKey;
use crate::token::TokenSet;

mod fence;
mod flight;
mod id_token;
mod kept;
mod lease;
mod token_call;

pub(crate) use flight::await_refresh;

/// What a token set allows now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Freshness {
    /// The access token is good beyond its refresh point.
    Fresh,
    /// It needs a refresh and a refresh token is there.
    Refresh,
    /// Past its refresh point with nothing to refresh it with: usable until it expires.
    LastUse,
    /// Nothing usable is left: the session is over.
    Over,
}

/// Where a token set stands at `now`. A token is refreshed `skew` before it expires, or
/// at half its life when its life is shorter than twice the skew: so a short-lived token
/// is refreshed once per lifetime, not by every request.
pub(crate) fn freshness(tokens: &TokenSet, now: u64, skew: Duration) -> Freshness {
    let lifetime = tokens.expires_at.saturating_sub(tokens.issued_at);
    let skew = skew.as_secs().min(lifetime / 2);
    if tokens.session_expires_at <= now {
        Freshness::Over
    } else if tokens.expires_at.saturating_sub(skew) > now {
        Freshness::Fresh
    } else if tokens.refresh_token.is_some() {
        Freshness::Refresh
    } else if tokens.expires_at > now {
        Freshness::LastUse
    } else {
        Freshness::Over
    }
}

/// A store that failed: the session is kept, and the client told to retry after the
/// configured wait.
pub(crate) fn store_unavailable(config: &crate::HcssConfig, err: StoreError) -> SessionError {
    SessionError::Unavailable {
        reason: err.to_string(),
        retry_after: config.identity.retry_after,
    }
}

/// A stored value that no longer parses is a signed-out session: removed, logged once.
pub(crate) async fn discard_unreadable(shared: &Shared, key: StoreKey) {
    tracing::warn!(
        session = key.short(),
        "a stored token set could not be read; the session is removed and must sign in again"
    );
    if let Err(err) = shared.token_store.remove(key).await {
        tracing::warn!(session = key.short(), error = %err, "the unreadable session could not be removed");
    }
}

/// The session is over: its tokens (and any set kept in memory) are dropped.
pub(super) async fn signed_out(shared: &Shared, key: StoreKey) -> Outcome {
    shared.pending.take(key);
    shared
        .token_store
        .remove(key)
        .await
        .map_err(|err| store_unavailable(&shared.config, err))?;
    Err(SessionError::NotSignedIn)
}

/// Releases the refresh lock `owner` took; one that stays expires by itself.
pub(super) async fn unlock(shared: &Shared, key: StoreKey, owner: &str) {
    if let Err(err) = shared.token_store.unlock(key, owner.to_owned()).await {
        tracing::warn!(session = key.short(), error = %err,
            "refresh lock not released; it expires by itself");
    }
}

/// Revokes the refresh token of a set that no session holds any more.
pub(super) async fn revoke_orphan(shared: &Shared, key: StoreKey, orphan: &TokenSet) {
    let Some(refresh) = &orphan.refresh_token else {
        return;
    };
    match shared
        .revoke(refresh.expose_secret(), "refresh_token")
        .await
    {
        Ok(()) => tracing::debug!(session = key.short(), "orphaned refresh token revoked"),
        Err(err) => tracing::warn!(session = key.short(), reason = %err,
            "an orphaned refresh token could not be revoked"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(issued_at: u64, expires_at: u64, refresh: bool) -> TokenSet {
        let mut set = TokenSet::new("a", 0);
        set.issued_at = issued_at;
        set.expires_at = expires_at;
        set.session_expires_at = 1_000_000;
        if refresh {
            set.refresh_token = Some("r".into());
        }
        set
    }

    #[test]
    fn freshness_follows_the_skew_and_the_session() {
        let skew = Duration::from_secs(60);
        let now = 10_000;
        assert_eq!(
            freshness(&set(now, now + 3600, true), now, skew),
            Freshness::Fresh
        );
        assert_eq!(
            freshness(&set(now - 3600, now + 30, true), now, skew),
            Freshness::Refresh
        );
        assert_eq!(
            freshness(&set(now - 3600, now + 30, false), now, skew),
            Freshness::LastUse
        );
        assert_eq!(
            freshness(&set(now - 3600, now, false), now, skew),
            Freshness::Over
        );
        let mut ended = set(now, now + 3600, true);
        ended.session_expires_at = now;
        assert_eq!(freshness(&ended, now, skew), Freshness::Over);
        // Unknown issue time (sets stored before it was kept): the plain skew.
        assert_eq!(
            freshness(&set(0, now + 30, true), now, skew),
            Freshness::Refresh
        );
    }

    /// Before, a lifetime within the skew (or 0) made every request refresh.
    #[test]
    fn short_lifetimes_refresh_at_half_their_life() {
        let skew = Duration::from_secs(60);
        let t = 10_000;
        let short = set(t, t + 30, true);
        assert_eq!(freshness(&short, t, skew), Freshness::Fresh);
        assert_eq!(freshness(&short, t + 14, skew), Freshness::Fresh);
        assert_eq!(freshness(&short, t + 15, skew), Freshness::Refresh);
        let floor = set(t, t + crate::protocol::MIN_TOKEN_LIFETIME, true);
        assert_eq!(freshness(&floor, t, skew), Freshness::Fresh);
    }
}
