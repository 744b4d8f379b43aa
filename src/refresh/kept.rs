//! Refreshed sets the store did not take, kept in this process: served from here,
//! written by a task of their own (which renews the lease meanwhile), never while their
//! refresh token is being spent.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::fence::{same_write, write_over, Fence};
use super::lease::lease_ttl;
use super::{discard_unreadable, revoke_orphan, store_unavailable, unlock};
use crate::error::{SessionError, StoreError};
use crate::shared::{PendingSet, Shared};
use crate::store::StoreKey;
use crate::token::TokenSet;

/// Writes a set kept in memory once the store takes it, trying again with backoff until
/// it is written, dropped (a logout) or past its session's end, and renews its lease
/// meanwhile. One runs per key while a set is kept for it.
pub(super) async fn write_kept(shared: Arc<Shared>, key: StoreKey) {
    let lease = lease_ttl(&shared.config);
    let longest_pause = (lease / 3).min(Duration::from_secs(2));
    let mut pause = Duration::from_millis(50);
    while let Some(pending) = shared.pending.get(key) {
        if pending.tokens.session_expires_at <= shared.config.now() {
            let version = pending.tokens.version;
            if let Some(ended) = shared
                .pending
                .take_if(key, |kept| kept.tokens.version == version)
            {
                revoke_orphan(&shared, key, &ended.tokens).await;
                unlock(&shared, key, &ended.lock_owner).await;
            }
            continue;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(longest_pause);
        match shared
            .token_store
            .renew_lock(key, pending.lock_owner.clone(), lease)
            .await
        {
            Ok(true) => {}
            // Lapsed: the stored set is still marked as spent by this refresh, so another
            // refresher waits for this write.
            Ok(false) => tracing::debug!(
                session = key.short(),
                "the lease of refreshed tokens kept in memory lapsed; writing them still"
            ),
            Err(err) => tracing::debug!(session = key.short(), error = %err,
                "the lease of refreshed tokens kept in memory could not be renewed"),
        }
        let turn = shared.pending.turn(key);
        let writing = turn.lock().await;
        if let Ok(stored) = shared.token_store.load(key).await {
            if let Some(kept) = shared.pending.get(key) {
                write_kept_set(&shared, key, stored, kept).await;
            }
        }
        drop(writing);
        drop(turn);
        shared.pending.end_turn(key);
    }
}

/// Keeps a refreshed set the store did not take, and starts the task that writes it
/// unless one runs already.
pub(super) fn keep(shared: &Arc<Shared>, key: StoreKey, kept: PendingSet) {
    if shared.pending.keep(key, kept) {
        tokio::spawn(write_kept(shared.clone(), key));
    }
}

/// The session's token set as this process knows it: the store's, or a refreshed set
/// that the store has not taken yet (which it then tries to write, unless the set's
/// turn is taken: its writer or a refresh of it is at work).
pub(super) async fn session_tokens(
    shared: &Arc<Shared>,
    key: StoreKey,
) -> Result<Option<TokenSet>, SessionError> {
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
    let Some(kept) = shared.pending.get(key) else {
        return Ok(stored);
    };
    let turn = shared.pending.turn(key);
    let written = match turn.try_lock() {
        Ok(_writing) => write_kept_set(shared, key, stored, kept).await,
        Err(_) => kept_or_stored(shared, key, stored, kept).await,
    };
    drop(turn);
    shared.pending.end_turn(key);
    Ok(written)
}

/// What the session holds, a set being kept: the stored set once the kept one landed
/// (dropped from memory then), nothing once the session ended (the kept set's token
/// revoked), or the kept set.
pub(super) async fn kept_or_stored(
    shared: &Shared,
    key: StoreKey,
    stored: Option<TokenSet>,
    kept: PendingSet,
) -> Option<TokenSet> {
    let Some(stored) = stored else {
        // Signed out meanwhile: the refresh token only this process knows must not live on.
        if let Some(kept) = shared.pending.take(key) {
            tracing::debug!(
                session = key.short(),
                "the session ended while refreshed tokens were kept in memory"
            );
            revoke_orphan(shared, key, &kept.tokens).await;
            unlock(shared, key, &kept.lock_owner).await;
        }
        return None;
    };
    if same_write(&stored, &kept.tokens) {
        // The write landed meanwhile (a retry whose reply was lost, or another request's).
        let version = kept.tokens.version;
        if shared
            .pending
            .take_if(key, |now| now.tokens.version == version)
            .is_some()
        {
            unlock(shared, key, &kept.lock_owner).await;
        }
        return Some(stored);
    }
    Some(kept.tokens)
}

/// Writes the set kept under `key` (its turn held by the caller) over the version its
/// refresh marked. What the session holds after.
pub(super) async fn write_kept_set(
    shared: &Shared,
    key: StoreKey,
    stored: Option<TokenSet>,
    kept: PendingSet,
) -> Option<TokenSet> {
    let Some(current) = stored.as_ref() else {
        return kept_or_stored(shared, key, stored, kept).await;
    };
    if same_write(current, &kept.tokens) {
        return kept_or_stored(shared, key, stored, kept).await;
    }
    let version = kept.tokens.version;
    let landed = || {
        shared
            .pending
            .take_if(key, |now| now.tokens.version == version)
    };
    let base = kept.base_version;
    if base != current.version && current.version >= version {
        // The store is past this set without holding it. Only the refresh that marked the
        // stored set may write over its mark, so this set did land (a reply lost, or a
        // write applied after its writer gave up) and the session moved on from it: its
        // refresh token is the one the store holds, marked, or was spent by the refresh
        // that moved on. It is dropped from memory, never revoked.
        tracing::debug!(
            session = key.short(),
            stored = current.version,
            kept = version,
            "refreshed tokens kept in memory were stored, and the session moved on from them"
        );
        if landed().is_some() {
            unlock(shared, key, &kept.lock_owner).await;
        }
        return stored;
    }
    let mut write = kept.tokens.clone();
    write.version = write.version.max(base.wrapping_add(1));
    match write_over(shared, key, base, &write, Instant::now()).await {
        Ok(Fence::Written) => {
            if landed().is_some() {
                tracing::info!(
                    session = key.short(),
                    "refreshed tokens kept in memory are stored now"
                );
                unlock(shared, key, &kept.lock_owner).await;
            }
            Some(write)
        }
        Ok(Fence::Moved(_)) => {
            tracing::debug!(
                session = key.short(),
                "refreshed tokens kept in memory do not fit the stored set yet"
            );
            Some(kept.tokens)
        }
        Err(err) => {
            tracing::debug!(session = key.short(), error = %err,
                "refreshed tokens still cannot be stored; serving them from memory");
            Some(kept.tokens)
        }
    }
}
