//! [`StateStore`]: where logins in progress wait between `/hcss/login` and the callback
//! when they are kept on the server, and [`LoginTransaction`], what it keeps.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{StoreFuture, StoreKey};
use crate::secret::SecretString;

/// A login in progress, kept between `/hcss/login` and `/hcss/callback`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LoginTransaction {
    /// The PKCE code verifier.
    pub verifier: SecretString,
    /// The validated local path to return to after login.
    pub return_to: String,
    /// SHA-256 (hex) of the browser-binding cookie that started this login.
    pub binding_hash: String,
    /// When the login started (Unix seconds).
    pub created_at: u64,
    /// The OpenID Connect `nonce` sent with the login, when `openid` is among the scopes.
    #[serde(default)]
    pub nonce: Option<String>,
    /// The `max_age` the login sent (seconds), against which the ID token's `auth_time`
    /// is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
}

impl LoginTransaction {
    /// The transaction of a login that starts now.
    pub(crate) fn started(
        verifier: impl Into<SecretString>,
        return_to: impl Into<String>,
        binding_hash: impl Into<String>,
        created_at: u64,
    ) -> Self {
        Self {
            verifier: verifier.into(),
            return_to: return_to.into(),
            binding_hash: binding_hash.into(),
            created_at,
            nonce: None,
            max_age: None,
        }
    }

    /// A transaction, for a store's own tests (feature `test-util`); the layer makes its
    /// own.
    #[cfg(any(test, feature = "test-util"))]
    #[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
    pub fn new(
        verifier: impl Into<SecretString>,
        return_to: impl Into<String>,
        binding_hash: impl Into<String>,
        created_at: u64,
    ) -> Self {
        Self::started(verifier, return_to, binding_hash, created_at)
    }

    /// What a transaction keeps of its login's binding cookie: its SHA-256, in lowercase
    /// hex.
    pub(crate) fn binding_hash_of(binding_cookie: &str) -> String {
        super::key::sha256_hex(&[binding_cookie.as_bytes()])
    }

    /// The same, with the `max_age` the login sent.
    pub fn with_max_age(mut self, max_age: Option<u64>) -> Self {
        self.max_age = max_age;
        self
    }

    /// The same, with the OpenID Connect `nonce` the login sent.
    pub fn with_nonce(mut self, nonce: Option<String>) -> Self {
        self.nonce = nonce;
        self
    }
}

/// Keeps login transactions for the few minutes between login and callback, when the
/// layer is built with [`HcssAuthBuilder::state_store`](crate::HcssAuthBuilder::state_store) (by
/// default logins travel sealed in the browser's cookies and need no store). Its keys
/// are of kind [`KeyKind::Login`](super::KeyKind::Login).
///
/// `take` must be atomic: of any number of concurrent takes of one key, exactly one gets
/// the transaction. That is what makes a callback impossible to replay.
///
/// Keys and values are owned, so the obvious `async move` block compiles. A store over a
/// key-value map:
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use std::time::{Duration, Instant};
/// use hcss_auth::store::{LoginTransaction, StateStore, StoreFuture, StoreKey};
///
/// #[derive(Default)]
/// struct MapStore(Mutex<HashMap<StoreKey, (LoginTransaction, Instant)>>);
///
/// impl StateStore for MapStore {
///     fn put_transaction(&self, key: StoreKey, tx: LoginTransaction, ttl: Duration)
///         -> StoreFuture<'_, ()> {
///         Box::pin(async move {
///             self.0.lock().unwrap().insert(key, (tx, Instant::now() + ttl));
///             Ok(())
///         })
///     }
///
///     fn take_transaction(&self, key: StoreKey) -> StoreFuture<'_, Option<LoginTransaction>> {
///         Box::pin(async move {
///             let taken = self.0.lock().unwrap().remove(&key);
///             Ok(taken.filter(|(_, until)| *until > Instant::now()).map(|(tx, _)| tx))
///         })
///     }
/// }
/// ```
pub trait StateStore: Send + Sync + 'static {
    /// Stores a transaction under `key` for `ttl`.
    fn put_transaction(
        &self,
        key: StoreKey,
        transaction: LoginTransaction,
        ttl: Duration,
    ) -> StoreFuture<'_, ()>;

    /// Removes and returns the transaction under `key`, atomically; `None` if there is
    /// none or it expired.
    fn take_transaction(&self, key: StoreKey) -> StoreFuture<'_, Option<LoginTransaction>>;
}
