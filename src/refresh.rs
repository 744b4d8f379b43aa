//! Refresh: when a token needs one, and the refresh itself.
//!
//! A refresh is a task, not a request. The first request that finds a session's access
//! token expiring spawns it; every request of that session in this process, including
//! those that arrive while it runs, waits for the same outcome. Cancelling requests never
//! cancels it, so a refresh token that HCSS has rotated is always written or kept.
//!
//! The task holds the store's refresh lock (when the store has one) so that instances
//! sharing the store refresh once between them, and writes its result only over the
//! token set it refreshed (`replace_if_version`): a logout meanwhile wins, and the new
//! refresh token is revoked. A write the store refuses is retried, then kept in this
//! process (`Shared::pending`) until the store takes it. A passing failure is remembered
//! until its `Retry-After`, so the session's other requests get the same answer without
//! calling HCSS again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dashmap::mapref::entry::Entry;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::{SessionError, StoreError};
use crate::hooks::SignOut;
use crate::protocol::{self, ErrorClass, Grant};
use crate::secret::{random_token, SecretString, StoreKey};
use crate::shared::{Flight, Outcome, PendingSet, Settled, Shared};
use crate::token::TokenSet;

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

/// The session's token set after whatever refresh it needs: joins the refresh in flight,
/// or the failure remembered, or starts a refresh task.
///
/// With `rejected` (an access token HCSS refused), the session is refreshed even if its
/// token looks fresh, unless it no longer is that token (another refresh came first).
pub(crate) async fn settle(
    shared: &Arc<Shared>,
    key: StoreKey,
    rejected: Option<SecretString>,
) -> Outcome {
    static NEXT_ID: AtomicU64 = AtomicU64::new(0);
    let now = Instant::now();
    let mut settled = match shared.flights.entry(key) {
        Entry::Occupied(flight) if !is_stale(flight.get(), now) => flight.get().settled.clone(),
        entry => {
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            let (publish, settled) = watch::channel(None);
            let flight = Flight {
                id,
                settled: settled.clone(),
            };
            match entry {
                Entry::Occupied(mut old) => {
                    old.insert(flight);
                }
                Entry::Vacant(vacant) => {
                    vacant.insert(flight);
                }
            }
            tokio::spawn(fly(shared.clone(), key, rejected, id, publish));
            settled
        }
    };
    // A request waits one HTTP timeout at most; the task itself goes on (a refresh that
    // HCSS answers late is still kept) and later requests of the session join it.
    let waited = tokio::time::timeout(
        shared.config.identity.http_timeout,
        settled.wait_for(Option::is_some),
    )
    .await;
    let result = match waited {
        Ok(Ok(settled)) => settled.clone(),
        Ok(Err(_)) => None,
        Err(_) => {
            return Err(SessionError::Unavailable {
                reason: "the identity service is slow to refresh this session".into(),
                retry_after: shared
                    .config
                    .identity
                    .retry_after
                    .max(Duration::from_secs(1)),
            })
        }
    };
    match result {
        Some(Settled { outcome, until }) => outcome.map_err(|err| match err {
            // A remembered failure tells a later request how long is left of the wait.
            SessionError::Unavailable { reason, .. } => SessionError::Unavailable {
                reason,
                retry_after: whole_seconds(until.saturating_duration_since(Instant::now())),
            },
            other => other,
        }),
        None => Err(SessionError::Unavailable {
            reason: "the refresh task stopped".into(),
            retry_after: shared.config.identity.retry_after,
        }),
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

/// A wait rounded up to whole seconds, as `Retry-After` counts.
fn whole_seconds(wait: Duration) -> Duration {
    Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
}

/// A flight to replace: its task died, or it ended and its outcome no longer stands.
fn is_stale(flight: &Flight, now: Instant) -> bool {
    match &*flight.settled.borrow() {
        None => flight.settled.has_changed().is_err(),
        Some(settled) => settled.outcome.is_ok() || settled.until <= now,
    }
}

/// The refresh task: runs to the end whoever stops waiting, publishes its outcome, and
/// keeps a failure in the map until its retry time.
async fn fly(
    shared: Arc<Shared>,
    key: StoreKey,
    rejected: Option<SecretString>,
    id: u64,
    publish: watch::Sender<Option<Settled>>,
) {
    let outcome = locked_refresh(&shared, key, rejected.as_ref()).await;
    let remember = match &outcome {
        Err(SessionError::Unavailable { retry_after, .. }) => *retry_after,
        _ => Duration::ZERO,
    };
    let until = Instant::now() + remember;
    publish.send_replace(Some(Settled { outcome, until }));
    if !remember.is_zero() {
        tokio::time::sleep_until(until).await;
    }
    shared.flights.remove_if(&key, |_, flight| flight.id == id);
}

/// Refreshes under the store's lock, or waits for the instance that holds it.
async fn locked_refresh(
    shared: &Arc<Shared>,
    key: StoreKey,
    rejected: Option<&SecretString>,
) -> Outcome {
    // A set kept in memory still holds the lock its refresh took: this process has it.
    let (owner, mut locked) = match shared.pending.get(key) {
        Some(pending) => (pending.lock_owner, true),
        None => (random_token(16), false),
    };
    let kept_before = shared.pending.has(key);
    let outcome = refresh_turns(shared, key, &owner, &mut locked, rejected).await;
    if !shared.pending.has(key) {
        if locked {
            unlock(shared, key, &owner).await;
        }
    } else if !kept_before {
        // A refreshed set the store did not take keeps the lock, so that no instance
        // refreshes from the spent set the store still holds, and is written as soon as
        // the store takes it (which releases the lock).
        tokio::spawn(write_kept(shared.clone(), key));
    }
    outcome
}

/// Writes a set kept in memory once the store takes it, trying again with backoff until
/// it is written, dropped (a logout) or past its session's end.
async fn write_kept(shared: Arc<Shared>, key: StoreKey) {
    let mut pause = Duration::from_millis(50);
    while let Some(pending) = shared.pending.get(key) {
        if pending.tokens.session_expires_at <= shared.config.now() {
            shared.pending.take(key);
            unlock(&shared, key, &pending.lock_owner).await;
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
        let _ = current(&shared, key).await;
    }
}

/// The session is over: its tokens (and any set kept in memory) are dropped.
async fn signed_out(shared: &Shared, key: StoreKey) -> Outcome {
    shared.pending.take(key);
    shared
        .token_store
        .remove(key)
        .await
        .map_err(|err| store_unavailable(&shared.config, err))?;
    Err(SessionError::NotSignedIn)
}

/// Releases the refresh lock `owner` took; one that stays expires by itself.
async fn unlock(shared: &Shared, key: StoreKey, owner: &str) {
    if let Err(err) = shared
        .token_store
        .unlock_refresh(key, owner.to_owned())
        .await
    {
        tracing::warn!(session = key.short(), error = %err,
            "hcss: refresh lock not released; it expires by itself");
    }
}

/// The turns of [`locked_refresh`]; sets `locked` once the store's lock is held, so that
/// it is released whatever this returns. Every turn reloads first: the lock's previous
/// holder may have refreshed already.
async fn refresh_turns(
    shared: &Shared,
    key: StoreKey,
    owner: &str,
    locked: &mut bool,
    rejected: Option<&SecretString>,
) -> Outcome {
    let config = &shared.config;
    // The lock outlives the token call, the write and its retries, and a revocation.
    let lock_ttl = config.identity.http_timeout * (protocol::REFRESH_PATIENCE + 2);
    let deadline = Instant::now() + lock_ttl;
    let mut pause = Duration::from_millis(10);
    loop {
        let tokens = current(shared, key)
            .await?
            .ok_or(SessionError::NotSignedIn)?;
        let mut state = freshness(&tokens, config.now(), config.lifetimes.refresh_skew);
        // HCSS refused this very token: it needs a refresh, or without a refresh token
        // the session has nothing usable left.
        if rejected == Some(&tokens.access_token) && state != Freshness::Over {
            state = match tokens.refresh_token {
                Some(_) => Freshness::Refresh,
                None => Freshness::Over,
            };
        }
        match state {
            Freshness::Fresh | Freshness::LastUse => return Ok(tokens),
            Freshness::Over => return signed_out(shared, key).await,
            Freshness::Refresh if *locked => return refresh_with(shared, key, owner, tokens).await,
            Freshness::Refresh => {}
        }
        if shared
            .token_store
            .try_lock_refresh(key, owner.to_owned(), lock_ttl)
            .await
            .map_err(|err| store_unavailable(config, err))?
        {
            *locked = true;
            continue;
        }
        if Instant::now() >= deadline {
            return Err(SessionError::Unavailable {
                reason: "another instance has been refreshing this session for too long".into(),
                retry_after: config.identity.retry_after,
            });
        }
        // Another instance is refreshing: wait for its result.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// The session's token set as this process knows it: the store's, or a refreshed set
/// that the store has not taken yet (which it then tries to write again).
async fn current(shared: &Shared, key: StoreKey) -> Result<Option<TokenSet>, SessionError> {
    let stored = match shared.token_store.load(key).await {
        Ok(stored) => stored,
        Err(StoreError::Corrupt(_)) => {
            discard_unreadable(shared, key).await;
            None
        }
        Err(err) => {
            // The store is down: a refreshed set waiting here is still this session's.
            return match shared.pending.get(key) {
                Some(pending) => Ok(Some(pending.tokens)),
                None => Err(store_unavailable(&shared.config, err)),
            };
        }
    };
    let Some(PendingSet {
        tokens: pending,
        base_version,
        lock_owner,
    }) = shared.pending.get(key)
    else {
        return Ok(stored);
    };
    match stored {
        // The write landed meanwhile, or the session moved on without it.
        Some(stored) if stored.version >= pending.version => {
            shared.pending.take(key);
            unlock(shared, key, &lock_owner).await;
            Ok(Some(stored))
        }
        Some(_) => {
            let ttl = pending.store_ttl(shared.config.now());
            match shared
                .token_store
                .replace_if_version(key, base_version, pending.clone(), ttl)
                .await
            {
                Ok(true) => {
                    shared.pending.take(key);
                    tracing::info!(
                        session = key.short(),
                        "hcss: refreshed tokens kept in memory are stored now"
                    );
                    unlock(shared, key, &lock_owner).await;
                }
                Ok(false) => {}
                Err(err) => tracing::debug!(session = key.short(), error = %err,
                    "hcss: refreshed tokens still cannot be stored; serving them from memory"),
            }
            Ok(Some(pending))
        }
        // Signed out meanwhile: the refresh token only this process knows must not live on.
        None => {
            if let Some(pending) = shared.pending.take(key) {
                revoke_orphan(shared, key, &pending.tokens).await;
                unlock(shared, key, &pending.lock_owner).await;
            }
            Ok(None)
        }
    }
}

/// A stored value that no longer parses is a signed-out session: removed, logged once.
pub(crate) async fn discard_unreadable(shared: &Shared, key: StoreKey) {
    tracing::warn!(
        session = key.short(),
        "hcss: a stored token set could not be read; the session is removed and must sign in again"
    );
    if let Err(err) = shared.token_store.remove(key).await {
        tracing::warn!(session = key.short(), error = %err, "hcss: the unreadable session could not be removed");
    }
}

/// Spends the refresh token and writes (or keeps) what comes back.
async fn refresh_with(shared: &Shared, key: StoreKey, owner: &str, old: TokenSet) -> Outcome {
    let config = &shared.config;
    let Some(refresh_token) = old.refresh_token.clone() else {
        return Err(SessionError::NotSignedIn);
    };
    let grant = Grant::RefreshToken {
        refresh_token: refresh_token.expose_secret(),
    };
    let err = match protocol::request_tokens(config, grant).await {
        Ok(mut new) => {
            if new.refresh_token.is_none() {
                new.refresh_token = Some(refresh_token);
            }
            if new.scope.is_empty() {
                new.scope = old.scope.clone();
            }
            new.session_expires_at = old.session_expires_at;
            new.keep_identity_from(&old, config);
            new.version = old.version.wrapping_add(1);
            tracing::debug!(session = key.short(), "hcss: access token refreshed");
            return write_or_keep(shared, key, owner, old.version, new).await;
        }
        Err(err) => err,
    };
    let session = key.short();
    let reason = err.to_string();
    let retry_after = err.retry_after().unwrap_or(config.identity.retry_after);
    match err.class() {
        ErrorClass::GrantGone => {
            tracing::warn!(session, reason = %err,
                "hcss: refresh refused, session ended; the user must log in again");
            return signed_out(shared, key).await;
        }
        ErrorClass::Configuration => tracing::error!(session, reason = %err,
            "hcss: refresh refused because of this app's configuration: check the client id, \
             client secret, client authentication and scopes registered at HCSS; sessions are \
             kept and refresh again once it is fixed"),
        ErrorClass::Transient => tracing::warn!(session, reason = %err,
            "hcss: refresh failed for now; the session is kept"),
        ErrorClass::Failed => tracing::warn!(session, reason = %err,
            "hcss: refresh failed; the session is kept"),
    }
    Err(SessionError::Unavailable {
        reason,
        retry_after,
    })
}

/// Writes a refreshed set over the version it came from. A store that fails is retried
/// with backoff for up to half the HTTP timeout (the lock covers it); past that the set is
/// kept in this process, served from there, and written by a later request. A session
/// that is gone (logged out meanwhile) stays gone, and the new refresh token is revoked.
async fn write_or_keep(
    shared: &Shared,
    key: StoreKey,
    owner: &str,
    from_version: u64,
    new: TokenSet,
) -> Outcome {
    let store = &shared.token_store;
    // A refresh of a set kept in memory is written over what the store holds.
    let from_version = shared
        .pending
        .get(key)
        .filter(|pending| pending.tokens.version == from_version)
        .map_or(from_version, |pending| pending.base_version);
    // Half an HTTP timeout: a request waiting on this refresh still gets its outcome.
    let give_up = Instant::now() + shared.config.identity.http_timeout / 2;
    let mut pause = Duration::from_millis(25);
    loop {
        let ttl = new.store_ttl(shared.config.now());
        match store
            .replace_if_version(key, from_version, new.clone(), ttl)
            .await
        {
            Ok(true) => {
                shared.pending.take(key);
                return Ok(new);
            }
            Ok(false) => return superseded(shared, key, new).await,
            Err(err) if Instant::now() + pause >= give_up => {
                tracing::error!(session = key.short(), error = %err,
                    "hcss: refreshed tokens could not be stored; this instance keeps them in \
                     memory and stores them once the store accepts writes again");
                shared.pending.keep(
                    key,
                    PendingSet {
                        tokens: new.clone(),
                        base_version: from_version,
                        lock_owner: owner.to_owned(),
                    },
                );
                return Ok(new);
            }
            Err(err) => {
                tracing::debug!(session = key.short(), error = %err,
                    "hcss: storing refreshed tokens failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// The refreshed set could not be written over the one it came from: the session was
/// removed (a logout) or moved on. Its new refresh token belongs to nobody: revoke it.
async fn superseded(shared: &Shared, key: StoreKey, orphan: TokenSet) -> Outcome {
    shared.pending.take(key);
    revoke_orphan(shared, key, &orphan).await;
    match shared.token_store.load(key).await {
        Ok(None) | Err(StoreError::Corrupt(_)) => {
            tracing::info!(
                session = key.short(),
                "hcss: the session ended while it was being refreshed; it stays ended"
            );
            Err(SessionError::NotSignedIn)
        }
        Ok(Some(tokens)) => {
            match freshness(
                &tokens,
                shared.config.now(),
                shared.config.lifetimes.refresh_skew,
            ) {
                Freshness::Fresh | Freshness::LastUse => Ok(tokens),
                Freshness::Over => Err(SessionError::NotSignedIn),
                Freshness::Refresh => Err(SessionError::Unavailable {
                    reason: "the session changed while it was being refreshed".into(),
                    retry_after: shared.config.identity.retry_after,
                }),
            }
        }
        Err(err) => Err(store_unavailable(&shared.config, err)),
    }
}

/// Revokes the refresh token of a set that no session holds any more.
async fn revoke_orphan(shared: &Shared, key: StoreKey, orphan: &TokenSet) {
    let Some(refresh) = &orphan.refresh_token else {
        return;
    };
    match protocol::revoke(
        &shared.config.identity,
        refresh.expose_secret(),
        "refresh_token",
    )
    .await
    {
        Ok(()) => tracing::debug!(
            session = key.short(),
            "hcss: orphaned refresh token revoked"
        ),
        Err(err) => tracing::warn!(session = key.short(), reason = %err,
            "hcss: an orphaned refresh token could not be revoked"),
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
            discard_unreadable(shared, key).await;
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
        let floor = set(t, t + protocol::MIN_TOKEN_LIFETIME, true);
        assert_eq!(freshness(&floor, t, skew), Freshness::Fresh);
    }
}
