//! Fenced writes of a session's token sets: the mark a refresh leaves before it spends
//! a refresh token, its result written only over that mark, and writes retried after a
//! lost reply that recognise themselves.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::kept::keep;
use super::lease::lease_ttl;
use super::{freshness, revoke_orphan, store_unavailable, Freshness};
use crate::error::{SessionError, StoreError};
use crate::shared::{Outcome, PendingSet, Shared};
use crate::store::StoreKey;
use crate::token::TokenSet;

/// Whether `stored` is the very write `written`: the same version, marked by the same
/// refresh. A write retried after its reply was lost finds itself this way.
pub(super) fn same_write(stored: &TokenSet, written: &TokenSet) -> bool {
    stored.version == written.version
        && stored.spent_by == written.spent_by
        && stored.written_by == written.written_by
}

/// What a fenced write found.
pub(super) enum Fence {
    /// It is in the store (written now, or earlier by a retry whose reply was lost).
    Written,
    /// The store holds another version: this set (or none, after a logout).
    Moved(Option<TokenSet>),
}

/// Writes `set` over `from_version`, retrying a failing store with backoff until
/// `give_up`. A compare that fails reads the store: a set that is this very write (its
/// reply was lost, and it was applied) counts as written, never as moved.
pub(super) async fn write_over(
    shared: &Shared,
    key: StoreKey,
    from_version: u64,
    set: &TokenSet,
    give_up: Instant,
) -> Result<Fence, StoreError> {
    let store = &shared.token_store;
    let mut pause = Duration::from_millis(25);
    loop {
        let ttl = set.store_ttl(shared.config.now());
        let attempt = match store
            .replace_if_version(key, from_version, set.clone(), ttl)
            .await
        {
            Ok(true) => return Ok(Fence::Written),
            Ok(false) => store.load(key).await.map(|stored| match stored {
                Some(stored) if same_write(&stored, set) => Fence::Written,
                stored => Fence::Moved(stored),
            }),
            Err(err) => Err(err),
        };
        match attempt {
            Err(err) if Instant::now() + pause < give_up => {
                tracing::debug!(session = key.short(), error = %err,
                    "storing a token set failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            done => return done,
        }
    }
}

/// Marks the stored set as spent by this refresh (one version up) before its refresh
/// token is sent to HCSS, so that no other refresher sends it too: the version the
/// refreshed set is to be written over, or `None` when the session moved on meanwhile.
/// A mark that cannot be confirmed sends nothing; should it land later, a task of its
/// own clears it, so that other instances need not wait for it.
pub(super) async fn mark_spent(
    shared: &Arc<Shared>,
    key: StoreKey,
    owner: &str,
    old: &TokenSet,
) -> Result<Option<u64>, SessionError> {
    let marked = marked_by(old, owner, old.version.wrapping_add(1));
    let give_up = Instant::now() + shared.config.identity.http_timeout / 2;
    match write_over(shared, key, old.version, &marked, give_up).await {
        Ok(Fence::Written) => Ok(Some(marked.version)),
        Ok(Fence::Moved(_)) => Ok(None),
        Err(err) => {
            tokio::spawn(clear_unspent_mark(shared.clone(), key, marked, old.clone()));
            Err(store_unavailable(&shared.config, err))
        }
    }
}

/// Gives a stored set marked as spent by a refresh whose token was never sent (or whose
/// refresh failed) back to the next refresher: the set as it was, one version up. Tried
/// again with backoff for a lease at most, as long as the mark may still land (a write
/// the store answered late) or stays in place.
pub(super) async fn clear_unspent_mark(
    shared: Arc<Shared>,
    key: StoreKey,
    marked: TokenSet,
    old: TokenSet,
) {
    let restored = unmarked(&old, marked.version);
    let until = Instant::now() + lease_ttl(&shared.config);
    let mut pause = Duration::from_millis(50);
    loop {
        if shared.pending.has(key) {
            return;
        }
        match shared.token_store.load(key).await {
            Ok(Some(stored)) if same_write(&stored, &marked) => {
                match write_over(&shared, key, marked.version, &restored, Instant::now()).await {
                    Ok(Fence::Written) => {
                        tracing::debug!(session = key.short(), "an unspent refresh mark cleared");
                        return;
                    }
                    Ok(Fence::Moved(_)) => return,
                    Err(_) => {}
                }
            }
            // Not there yet (the mark may be applied late), or unreadable for now.
            Ok(Some(stored)) if stored.version < marked.version => {}
            Err(_) => {}
            // Moved on, or ended: nothing to clear.
            Ok(_) => return,
        }
        if Instant::now() + pause >= until {
            tracing::debug!(
                session = key.short(),
                "an unspent refresh mark stays; other instances end the session after waiting"
            );
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// Gives the stored set this failed refresh marked back to the next refresher, so that
/// no other instance waits for a write that will never come: at once, or in a task of
/// its own while the store refuses.
pub(super) async fn unmark(
    shared: &Arc<Shared>,
    key: StoreKey,
    owner: &str,
    base: u64,
    old: &TokenSet,
) {
    if shared.pending.has(key) {
        return;
    }
    let marked = marked_by(old, owner, base);
    let restored = unmarked(old, base);
    if write_over(shared, key, base, &restored, Instant::now())
        .await
        .is_err()
    {
        tokio::spawn(clear_unspent_mark(shared.clone(), key, marked, old.clone()));
    }
}

/// `old` marked as spent by the refresh `owner`, at `version`.
pub(super) fn marked_by(old: &TokenSet, owner: &str, version: u64) -> TokenSet {
    let mut marked = old.clone();
    marked.version = version;
    marked.spent_by = Some(owner.into());
    marked.written_by = None;
    marked
}

/// `old` as it was, written over its mark at `marked_version`.
pub(super) fn unmarked(old: &TokenSet, marked_version: u64) -> TokenSet {
    let mut restored = old.clone();
    restored.version = marked_version.wrapping_add(1);
    restored.spent_by = None;
    restored.written_by = None;
    restored
}

/// Writes a refreshed set over the version it came from. A store that fails is retried
/// with backoff for up to half the HTTP timeout (the lock covers it); past that the set is
/// kept in this process, served from there, and written by a task of its own. A session
/// that is gone (logged out meanwhile) stays gone, and the new refresh token is revoked.
pub(super) async fn write_or_keep(
    shared: &Arc<Shared>,
    key: StoreKey,
    owner: &str,
    from: u64,
    new: TokenSet,
) -> Outcome {
    // Half an HTTP timeout: a request waiting on this refresh still gets its outcome.
    let give_up = Instant::now() + shared.config.identity.http_timeout / 2;
    let version = new.version;
    match write_over(shared, key, from, &new, give_up).await {
        Ok(Fence::Written) => {
            shared
                .pending
                .take_if(key, |kept| kept.tokens.version <= version);
            Ok(new)
        }
        // Past this write without holding it: it landed earlier (its reply lost) and the
        // session moved on from it, for only this refresh may write over its mark. Its
        // refresh token lives on in the store: nothing is revoked.
        Ok(Fence::Moved(Some(stored))) if stored.version >= version => {
            shared
                .pending
                .take_if(key, |kept| kept.tokens.version <= version);
            as_it_stands(shared, key, Ok(Some(stored)))
        }
        Ok(Fence::Moved(_)) => superseded(shared, key, new).await,
        Err(err) => {
            tracing::error!(session = key.short(), error = %err,
                "refreshed tokens could not be stored; this instance keeps them in \
                 memory and stores them once the store accepts writes again");
            keep(
                shared,
                key,
                PendingSet {
                    tokens: new.clone(),
                    base_version: from,
                    lock_owner: owner.to_owned(),
                },
            );
            Ok(new)
        }
    }
}

/// The refreshed set could not be written over the one it came from: the session was
/// removed (a logout) or moved on. Its new refresh token belongs to nobody: revoke it.
pub(super) async fn superseded(shared: &Shared, key: StoreKey, orphan: TokenSet) -> Outcome {
    shared.pending.take(key);
    revoke_orphan(shared, key, &orphan).await;
    as_it_stands(shared, key, shared.token_store.load(key).await)
}

/// The outcome of a refresh whose set is not the one stored: the session as the store
/// holds it now (`stored`, as loaded).
fn as_it_stands(
    shared: &Shared,
    key: StoreKey,
    stored: Result<Option<TokenSet>, StoreError>,
) -> Outcome {
    match stored {
        Ok(None) | Err(StoreError::Corrupt(_)) => {
            tracing::info!(
                session = key.short(),
                "the session ended while it was being refreshed; it stays ended"
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
