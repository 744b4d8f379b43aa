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
use crate::http_rules::whole_seconds;
use crate::protocol::{self, ErrorClass, Grant, TokenResponse};
use crate::secret::SecretString;
use crate::shared::{Flight, Outcome, PendingSet, Settled, Shared};
use crate::store::StoreKey;
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

/// How long the refresh lock is leased for: the token call with its patience, the write
/// and its retries, and a revocation. Renewed while refreshed tokens wait in memory.
fn lease_ttl(config: &crate::HcssConfig) -> Duration {
    config.identity.http_timeout * (protocol::REFRESH_PATIENCE + 2)
}

/// How long a refresher that finds the stored refresh token spent by another instance's
/// refresh waits for that refresh to write its result (or to clear its mark, when it
/// never sent the token) before it gives the session up. It gets here only once the
/// other's lease has lapsed; a refresher still alive writes within a few seconds of
/// reaching the store.
fn spent_elsewhere_patience(config: &crate::HcssConfig) -> Duration {
    lease_ttl(config).max(Duration::from_secs(5))
}

/// The refresh lock, as this refresh holds it (or not yet).
struct Lease {
    owner: String,
    held: bool,
}

/// Refreshes under the store's lock, or waits for the instance that holds it.
async fn locked_refresh(
    shared: &Arc<Shared>,
    key: StoreKey,
    rejected: Option<&SecretString>,
) -> Outcome {
    // A set kept in memory still holds the lease its refresh took: this process has it
    // (renewed by the task that writes it).
    let mut lease = Lease {
        held: shared.pending.has(key),
        owner: shared.refresher.clone(),
    };
    let outcome = refresh_turns(shared, key, &mut lease, rejected).await;
    if lease.held && !shared.pending.has(key) {
        unlock(shared, key, &lease.owner).await;
    }
    outcome
}

/// Writes a set kept in memory once the store takes it, trying again with backoff until
/// it is written, dropped (a logout) or past its session's end, and renews its lease
/// meanwhile. One runs per key while sets are kept for it; a set kept again (refreshed
/// from memory) is picked up by the same task.
async fn write_kept(shared: Arc<Shared>, key: StoreKey) {
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
fn keep(shared: &Arc<Shared>, key: StoreKey, kept: PendingSet) {
    if shared.pending.keep(key, kept) {
        tokio::spawn(write_kept(shared.clone(), key));
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
    if let Err(err) = shared.token_store.unlock(key, owner.to_owned()).await {
        tracing::warn!(session = key.short(), error = %err,
            "hcss: refresh lock not released; it expires by itself");
    }
}

/// The turns of [`locked_refresh`]; sets `lease.held` once the store's lock is held, so
/// that it is released whatever this returns. Every turn reloads first: the lock's
/// previous holder may have refreshed already.
async fn refresh_turns(
    shared: &Arc<Shared>,
    key: StoreKey,
    lease: &mut Lease,
    rejected: Option<&SecretString>,
) -> Outcome {
    let config = &shared.config;
    let deadline = Instant::now() + lease_ttl(config);
    let mut pause = Duration::from_millis(10);
    // The set spent elsewhere that this refresher found, and since when it waits.
    let mut spent_seen: Option<(u64, Instant)> = None;
    loop {
        let tokens = session_tokens(shared, key)
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
            Freshness::Refresh if lease.held => {}
            Freshness::Refresh => {
                if shared
                    .token_store
                    .try_lock(key, lease.owner.clone(), lease_ttl(config))
                    .await
                    .map_err(|err| store_unavailable(config, err))?
                {
                    lease.held = true;
                    continue;
                }
                if Instant::now() >= deadline {
                    return Err(SessionError::Unavailable {
                        reason: "another instance has been refreshing this session for too long"
                            .into(),
                        retry_after: config.identity.retry_after,
                    });
                }
                // Another instance is refreshing: wait for its result.
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
                continue;
            }
        }
        // Its refresh token was spent by another instance's refresh whose lease lapsed:
        // that refresh may hold the new tokens in memory and write them as soon as it
        // reaches the store, or clear its mark if it never sent the token. Spending the
        // token again would be a reuse, which HCSS answers by ending the user's sessions
        // everywhere: it is never sent twice. (A mark of this instance's own is a
        // refresh that failed, whose token was not spent or whose result is kept here.)
        let spent_by_another = tokens
            .spent_by
            .as_deref()
            .is_some_and(|by| by != lease.owner);
        if spent_by_another && !shared.pending.has(key) {
            let since = match spent_seen {
                Some((version, since)) if version == tokens.version => since,
                _ => Instant::now(),
            };
            spent_seen = Some((tokens.version, since));
            if since.elapsed() < spent_elsewhere_patience(config) {
                let _ = shared
                    .token_store
                    .renew_lock(key, lease.owner.clone(), lease_ttl(config))
                    .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            tracing::warn!(
                session = key.short(),
                "the refresh that spent this session's refresh token never stored its result \
                 (its instance stopped, or lost the store); the session ends and the user signs \
                 in again, rather than spending the token twice"
            );
            return signed_out(shared, key).await;
        }
        // A set kept in memory is this process's alone: its token is spent with its
        // turn held, so that it is not written meanwhile (the store would then hold a
        // spent set with no mark), and the result is written over the version the
        // store holds. A stored set is first marked as spent by this refresh.
        if shared.pending.has(key) {
            let turn = shared.pending.turn(key);
            let spending = turn.lock().await;
            let outcome = match shared.pending.get(key) {
                Some(kept) if kept.tokens.version == tokens.version => {
                    refresh_with(shared, key, &lease.owner, tokens, kept.base_version).await
                }
                // Written (or replaced) while this waited for its turn: look again.
                _ => {
                    drop(spending);
                    continue;
                }
            };
            drop(spending);
            drop(turn);
            shared.pending.end_turn(key);
            return outcome;
        }
        let Some(base) = mark_spent(shared, key, &lease.owner, &tokens).await? else {
            // The session moved on meanwhile: look again.
            continue;
        };
        return refresh_with(shared, key, &lease.owner, tokens, base).await;
    }
}

/// The session's token set as this process knows it: the store's, or a refreshed set
/// that the store has not taken yet (which it then tries to write, unless the set's
/// turn is taken: its writer or a refresh of it is at work).
async fn session_tokens(
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
async fn kept_or_stored(
    shared: &Shared,
    key: StoreKey,
    stored: Option<TokenSet>,
    kept: PendingSet,
) -> Option<TokenSet> {
    let Some(stored) = stored else {
        // Signed out meanwhile: the refresh token only this process knows must not live on.
        if let Some(kept) = shared.pending.take(key) {
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

/// Writes the set kept under `key` (its turn held by the caller): over the set it was
/// refreshed from, should the store hold that now (a set kept before it, written
/// meanwhile), else over the version its refresh marked. What the session holds after.
async fn write_kept_set(
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
    let base = match same_write(current, &kept.refreshed_from) {
        true => current.version,
        false => kept.base_version,
    };
    if base != current.version && current.version >= version {
        // The session moved on without it.
        if let Some(orphan) = landed() {
            revoke_orphan(shared, key, &orphan.tokens).await;
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
                    "hcss: refreshed tokens kept in memory are stored now"
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
                "hcss: refreshed tokens still cannot be stored; serving them from memory");
            Some(kept.tokens)
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

/// Whether `stored` is the very write `written`: the same version, marked by the same
/// refresh. A write retried after its reply was lost finds itself this way.
fn same_write(stored: &TokenSet, written: &TokenSet) -> bool {
    stored.version == written.version
        && stored.spent_by == written.spent_by
        && stored.written_by == written.written_by
}

/// What a fenced write found.
enum Fence {
    /// It is in the store (written now, or earlier by a retry whose reply was lost).
    Written,
    /// The store holds another version: this set (or none, after a logout).
    Moved(Option<TokenSet>),
}

/// Writes `set` over `from_version`, retrying a failing store with backoff until
/// `give_up`. A compare that fails reads the store: a set that is this very write (its
/// reply was lost, and it was applied) counts as written, never as moved.
async fn write_over(
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
async fn mark_spent(
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
async fn clear_unspent_mark(shared: Arc<Shared>, key: StoreKey, marked: TokenSet, old: TokenSet) {
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

/// Spends the refresh token of `old`, marked as this refresh's at version `base`, and
/// writes (or keeps) what comes back over that version.
async fn refresh_with(
    shared: &Arc<Shared>,
    key: StoreKey,
    owner: &str,
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
    let err = match protocol::request_tokens(config, grant).await {
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
            new.keep_identity_from(&old, id_token.as_ref(), config);
            new.version = base.max(old.version).wrapping_add(1);
            new.written_by = Some(owner.into());
            tracing::debug!(session = key.short(), "hcss: access token refreshed");
            return write_or_keep(shared, key, owner, base, &old, new).await;
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
    unmark(shared, key, owner, base, &old).await;
    Err(SessionError::Unavailable {
        reason,
        retry_after,
    })
}

/// Gives the stored set this failed refresh marked back to the next refresher, so that
/// no other instance waits for a write that will never come: at once, or in a task of
/// its own while the store refuses.
async fn unmark(shared: &Arc<Shared>, key: StoreKey, owner: &str, base: u64, old: &TokenSet) {
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
fn marked_by(old: &TokenSet, owner: &str, version: u64) -> TokenSet {
    let mut marked = old.clone();
    marked.version = version;
    marked.spent_by = Some(owner.into());
    marked.written_by = None;
    marked
}

/// `old` as it was, written over its mark at `marked_version`.
fn unmarked(old: &TokenSet, marked_version: u64) -> TokenSet {
    let mut restored = old.clone();
    restored.version = marked_version.wrapping_add(1);
    restored.spent_by = None;
    restored.written_by = None;
    restored
}

/// Writes a refreshed set over the version it came from. A store that fails is retried
/// with backoff for up to half the HTTP timeout (the lock covers it); past that the set is
/// kept in this process, served from there, and written by a task of its own. Should the
/// store hold the very set this refresh spent (kept in memory before, and written
/// meanwhile), the new set is written over that. A session that is gone (logged out
/// meanwhile) stays gone, and the new refresh token is revoked.
async fn write_or_keep(
    shared: &Arc<Shared>,
    key: StoreKey,
    owner: &str,
    from_version: u64,
    old: &TokenSet,
    mut new: TokenSet,
) -> Outcome {
    // Half an HTTP timeout: a request waiting on this refresh still gets its outcome.
    let give_up = Instant::now() + shared.config.identity.http_timeout / 2;
    let mut from = from_version;
    loop {
        match write_over(shared, key, from, &new, give_up).await {
            Ok(Fence::Written) => {
                let version = new.version;
                shared
                    .pending
                    .take_if(key, |kept| kept.tokens.version <= version);
                return Ok(new);
            }
            Ok(Fence::Moved(Some(stored)))
                if same_write(&stored, old) && stored.version != from =>
            {
                from = stored.version;
                new.version = stored.version.wrapping_add(1);
            }
            Ok(Fence::Moved(_)) => return superseded(shared, key, new).await,
            Err(err) => {
                tracing::error!(session = key.short(), error = %err,
                    "hcss: refreshed tokens could not be stored; this instance keeps them in \
                     memory and stores them once the store accepts writes again");
                keep(
                    shared,
                    key,
                    PendingSet {
                        tokens: new.clone(),
                        base_version: from,
                        lock_owner: owner.to_owned(),
                        refreshed_from: old.clone(),
                    },
                );
                return Ok(new);
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
                revoke_ended(config, &tokens).await;
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
                "hcss: the on_sign_out hook failed; signed out anyway"
            );
        }
    }
    if let Some(tokens) = tokens.filter(|_| config.identity.revoke_on_logout) {
        revoke_ended(config, &tokens).await;
    }
    Ok(())
}

/// Revokes the live token of an ended session at HCSS: its refresh token, or its access
/// token when it has none.
async fn revoke_ended(config: &crate::HcssConfig, tokens: &TokenSet) {
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
