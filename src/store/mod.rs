//! Where token sets (and, with `HcssAuthBuilder::state_store`, login transactions) live:
//! the store traits, the keys they are given, and the built-in stores.
//!
//! # Storage and coordination
//!
//! A store does two jobs, named apart so that an implementer sees which is which:
//!
//! - **storage**, [`TokenStore`] (and [`StateStore`] for logins kept on the server):
//!   token sets under keys, with TTLs. `load`, `store` and `remove` are required; `take`
//!   and `replace_if_version` have defaults that work but are not atomic; `cached` and
//!   `sessions_of` are optional. The owner index behind `sessions_of` is storage too: it
//!   is written by the same calls that write the token sets (`store` files a session
//!   under its owners, `remove` and `take` take it out), so its contract can only be kept
//!   beside theirs, and no instance agrees on anything through it.
//! - **coordination**, [`Coordination`]: what several instances sharing the store agree
//!   on through it, each method with its atomicity contract: a lease on a key
//!   ([`try_lock`](Coordination::try_lock), [`renew_lock`](Coordination::renew_lock),
//!   [`unlock`](Coordination::unlock)) and a [`shared_secret`](Coordination::shared_secret).
//!   Every method has a default that is right for a store one process uses.
//!
//! `TokenStore` has `Coordination` as its supertrait: the layer holds one
//! `Arc<dyn TokenStore>` (object-safe, so the extractor needs no generics) and reaches
//! both jobs through it, and a store written for one process says so with an empty
//! `impl Coordination for MyStore {}`, a choice made in sight rather than a default
//! inherited unseen. (Two objects, a storage and a coordination built from the same
//! store, would give the layer two handles to keep in step for no gain: the built-in
//! stores do both over one connection.)
//!
//! # Keys
//!
//! Keys handed to a store are [`StoreKey`]s: lowercase hex SHA-256 digests of the state,
//! session id or name they stand for, never the secret values themselves, so a dump of a
//! store hands out no live cookie. Each has a [`KeyKind`] (a session, a company token, a
//! login, a claimed state, an owner index), and a store keeps each kind in a keyspace of
//! its own (`RedisStore`: `tok:`, `co:`, `tx:`, `own:`; a lock is `lock:` and the kind it
//! locks).
//!
//! Everything an implementer needs is here: the traits, [`StoreKey`], [`StoreFuture`],
//! [`StoreError`] and [`TokenSet`]; [`testing`](crate::testing) (feature `test-util`)
//! has the conformance suites every store should pass.

use std::future::Future;
use std::pin::Pin;

mod coordination;
mod key;
mod memory;
#[cfg(feature = "redis")]
mod near_cache;
mod owner;
#[cfg(feature = "redis")]
mod redis;
mod state_store;
mod token_store;

pub use crate::error::StoreError;
pub use crate::token::TokenSet;
pub use coordination::Coordination;
pub use key::{KeyKind, StoreKey};
pub use memory::MemoryStore;
pub(crate) use owner::owners_of;
pub use owner::SessionOwner;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisStore;
pub use state_store::{LoginTransaction, StateStore};
pub use token_store::TokenStore;

/// The future a store method returns: boxed so that the traits stay object-safe.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;
