//! [`Coordination`]: what the instances of an app that share a store agree on through
//! it (leases on keys, a shared secret), with defaults for a store that one process uses.

use std::time::Duration;

use super::{CallAdmission, CallLimits, StoreError, StoreFuture, StoreKey};

/// What several instances of an app that share a store agree on through it: a lease on a
/// key (a lock that expires by itself), and secrets every instance uses. Every
/// [`TokenStore`](super::TokenStore) is one.
///
/// Each method has a default for a store that **one process** uses, where the layer
/// already coordinates in memory: a lock is always granted, no secret is shared. A store
/// used by one process declares that with an empty implementation:
///
/// ```
/// # struct MyStore;
/// impl hcss_auth::store::Coordination for MyStore {}
/// ```
///
/// A store that several instances share overrides them all, with the atomicity each
/// method states (`RedisStore`: `SET NX PX`, and compare-and-delete or
/// compare-and-`PEXPIRE` scripts).
///
/// # What the layer locks
///
/// A lock is taken on the [`StoreKey`] of what it guards, whose [`kind`](StoreKey::kind)
/// says what that is, with a random `owner` per holder:
///
/// - [`KeyKind::Session`](super::KeyKind::Session): one refresh of a session at a time
///   across instances; the holder renews its lease while refreshed tokens wait in memory
///   for the store to take them;
/// - [`KeyKind::CompanyToken`](super::KeyKind::CompanyToken): one request for a company's
///   token at a time across instances;
/// - [`KeyKind::StateClaim`](super::KeyKind::StateClaim): the callback that uses a sealed
///   login claims its `state` and keeps the lock (until the login would have expired
///   anyway) once HCSS gave tokens, so that a replay is refused on every instance.
///
/// # A company's budget of API calls
///
/// HCSS limits each company's calls to its APIs (100 a minute, 20 at once, counted
/// across every client). [`HcssApi`](crate::HcssApi) keeps every instance within them
/// through [`acquire_call`](Self::acquire_call) and [`release_calls`](Self::release_calls)
/// on a key of kind [`KeyKind::ApiBudget`](super::KeyKind::ApiBudget). A store that one
/// process uses keeps the defaults, and the layer counts in process.
///
/// Keep the locks of different kinds apart (`RedisStore`: `lock:tok:`, `lock:co:`,
/// `lock:claim:`), and apart from what the keys name when stored (a lock on a session is
/// not its token set).
pub trait Coordination: Send + Sync + 'static {
    /// Takes the lock on `key` for `owner`, for at most `ttl`, if no one holds it: returns
    /// whether it was taken. Atomic: of any number of concurrent calls for a free lock,
    /// exactly one gets `true`. A lock not released expires after `ttl`, so that a holder
    /// that died wedges nothing. The default, for a single-process store, always grants.
    fn try_lock(&self, key: StoreKey, owner: String, ttl: Duration) -> StoreFuture<'_, bool> {
        let _ = (key, owner, ttl);
        Box::pin(async { Ok(true) })
    }

    /// Extends the lock on `key` to `ttl` from now if `owner` still holds it; returns
    /// whether it does. Atomic (compare-and-extend), and never takes a free lock: a
    /// lapsed lease stays lapsed. A refresh whose new tokens wait in memory for the store
    /// to take them renews its lock this way, so that no other instance refreshes from the
    /// spent set the store still holds. The default, for a single-process store, always
    /// succeeds.
    fn renew_lock(&self, key: StoreKey, owner: String, ttl: Duration) -> StoreFuture<'_, bool> {
        let _ = (key, owner, ttl);
        Box::pin(async { Ok(true) })
    }

    /// Releases the lock on `key` if `owner` still holds it. Atomic (compare-and-delete):
    /// a holder whose lease lapsed never releases the lock another owner took since.
    fn unlock(&self, key: StoreKey, owner: String) -> StoreFuture<'_, ()> {
        let _ = (key, owner);
        Box::pin(async { Ok(()) })
    }

    /// Agrees on a secret that every instance sharing this store uses, such as the key
    /// that seals login cookies: keeps `proposal` under `name` unless a value is there
    /// already, and returns the value that is there. Atomic (`SET NX`, then `GET`): of
    /// instances proposing at once, all get the same value. The default, for a store that
    /// one process uses, shares nothing: `None`.
    fn shared_secret(
        &self,
        name: &'static str,
        proposal: Vec<u8>,
    ) -> StoreFuture<'_, Option<Vec<u8>>> {
        let _ = (name, proposal);
        Box::pin(async { Ok(None) })
    }

    /// What [`HcssAuth::check`](crate::HcssAuth::check) reports of this store: `None`
    /// for a store that one process uses (the default); for a store that several
    /// instances share, its own checks (`RedisStore`: Redis reachable, client tracking
    /// for its near cache), each with what to do when it fails.
    fn shared_store_checks(&self) -> StoreFuture<'_, Option<Vec<crate::CheckItem>>> {
        Box::pin(async { Ok(None) })
    }

    /// Takes a slot for the call `call` (an id new to the budget: the layer's ids are
    /// unique across instances, and a store may count an id given back and then taken
    /// again as two calls) in the budget `budget` if `limits` allow one:
    /// fewer than `limits.in_flight` calls hold a slot whose lease has not ended, and fewer
    /// than `limits.per_window` calls are in the rolling `limits.window`. Granted, the call
    /// holds a slot leased for `limits.lease` and counts in the window from now. A call
    /// leaves the window once it is older than the window, strictly.
    ///
    /// First, whatever the answer, the slots of the calls `released` are given back as
    /// [`release_calls`](Self::release_calls) does: the calls that ended since this
    /// process last asked, so that giving a slot back costs no round trip of its own.
    /// Atomic: of any number of concurrent calls, no more are granted than the limits
    /// allow (one round trip: `RedisStore` runs one script, on Redis's clock).
    ///
    /// The default, for a store that one process uses, is
    /// [`StoreError::Unsupported`]: the layer then counts in process.
    fn acquire_call<'a>(
        &'a self,
        budget: StoreKey,
        call: &'a str,
        released: &'a [String],
        limits: CallLimits,
    ) -> StoreFuture<'a, CallAdmission> {
        let _ = (budget, call, released, limits);
        Box::pin(async { Err(StoreError::Unsupported("no shared call budget".into())) })
    }

    /// Gives back the slots of the calls `calls` (releasing one that is gone, or was never
    /// granted, is not an error), and counts each call still in the window from now, when
    /// it ended, rather than from when it started: HCSS saw it at some moment in between.
    /// Atomic.
    fn release_calls(
        &self,
        budget: StoreKey,
        calls: Vec<String>,
        limits: CallLimits,
    ) -> StoreFuture<'_, ()> {
        let _ = (budget, calls, limits);
        Box::pin(async { Err(StoreError::Unsupported("no shared call budget".into())) })
    }
}
