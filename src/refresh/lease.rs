//! The refresh under the store's lock, a lease: taken (or waited for), held while the
//! token is spent and its result written, and given up with the session when the
//! token was spent by another instance that never came back.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::fence::mark_spent;
use super::kept::session_tokens;
use super::token_call::refresh_with;
use super::{freshness, signed_out, store_unavailable, unlock, Freshness};
use crate::error::SessionError;
use crate::protocol;
use crate::secret::SecretString;
use crate::shared::{Outcome, Shared};
use crate::store::StoreKey;

/// How long the refresh lock is leased for: the token call with its patience, the write
/// and its retries, and a revocation. Renewed while refreshed tokens wait in memory.
pub(super) fn lease_ttl(config: &crate::HcssConfig) -> Duration {
    config.identity.http_timeout * (protocol::REFRESH_PATIENCE + 2)
}

/// How long a refresher that finds the stored refresh token spent by another instance's
/// refresh waits for that refresh to write its result (or to clear its mark, when it
/// never sent the token) before it gives the session up. It gets here only once the
/// other's lease has lapsed; a refresher still alive writes within a few seconds of
/// reaching the store.
pub(super) fn spent_elsewhere_patience(config: &crate::HcssConfig) -> Duration {
    (lease_ttl(config) * 4).max(Duration::from_secs(10))
}

/// A new mark of this layer's refresher: its id and a value of this attempt's own, so
/// that no two attempts (one given up on, its mark landing late; the next one) look
/// alike to the fenced writes.
fn new_mark(refresher: &str) -> String {
    format!("{refresher}.{}", crate::secret::random_token(8))
}

/// Whether a mark was left by this layer's refresher (one of its earlier attempts).
fn is_own_mark(mark: &str, refresher: &str) -> bool {
    mark.split_once('.').map(|(by, _)| by) == Some(refresher)
}

/// The refresh lock, as this refresh holds it (or not yet).
pub(super) struct Lease {
    owner: String,
    held: bool,
}

/// Refreshes under the store's lock, or waits for the instance that holds it.
pub(super) async fn refresh_session(
    shared: &Arc<Shared>,
    key: StoreKey,
    rejected: Option<&SecretString>,
) -> Outcome {
    let mut lease = Lease {
        held: false,
        owner: shared.refresher.clone(),
    };
    let outcome = refresh_under_lease(shared, key, &mut lease, rejected).await;
    if lease.held && !shared.pending.has(key) {
        unlock(shared, key, &lease.owner).await;
    }
    outcome
}

/// The turns of [`refresh_session`]; sets `lease.held` once the store's lock is held, so
/// that it is released whatever this returns. Every turn reloads first: the lock's
/// previous holder may have refreshed already.
pub(super) async fn refresh_under_lease(
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
        // A set kept in memory is never refreshed from memory: its refresh token is
        // spent only once the set is stored and marked, so that a result that reaches
        // the store late can never be overtaken by a second spend. Until its writer
        // stores it, its access token serves while it lasts; after that the session
        // waits (503) for the store, as every request does while the store is away.
        if state == Freshness::Refresh && shared.pending.has(key) {
            if tokens.expires_at > config.now() && rejected != Some(&tokens.access_token) {
                return Ok(tokens);
            }
            return Err(SessionError::Unavailable {
                reason: "refreshed tokens are waiting for the store to take them".into(),
                retry_after: config.identity.retry_after,
            });
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
                if pause == Duration::from_millis(10) {
                    crate::metrics::refresh_lock_wait();
                }
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
            .is_some_and(|by| !is_own_mark(by, &lease.owner));
        if spent_by_another {
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
        let mark = new_mark(&lease.owner);
        let Some(base) = mark_spent(shared, key, &mark, &tokens).await? else {
            // The session moved on meanwhile: look again.
            continue;
        };
        return refresh_with(shared, key, &lease.owner, &mark, tokens, base).await;
    }
}
