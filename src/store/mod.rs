//! Where token sets (and, with `HcssAuthBuilder::state_store`, login transactions) live:
//! the store traits, the keys they are given, and the built-in stores.
//!
//! # Choosing a store
//!
//! **Logins in progress** travel sealed in the browser by default (`HcssAuth::new`,
//! `HcssAuth::with_store`): anyone on the internet can call `/hcss/login` as fast as they
//! like, and with nothing kept per attempt a flood neither fills memory nor Redis, nor
//! pushes a real user's login out while they sit on HCSS's consent page. What it takes:
//! every instance of an app seals with the same key. Set `HCSS_COOKIE_KEY`, or use
//! `RedisStore`, which creates one key on first use (`SET NX`) and shares it with every
//! instance; with neither, each process makes its own, which is right for one instance and
//! logged (a login that crosses instances is then refused with a page that says so).
//! [`HcssAuthBuilder::state_store`](crate::HcssAuthBuilder::state_store) keeps logins on
//! the server instead (in a [`StateStore`], with a random binding cookie per login):
//! choose it only when logins in progress must live server-side, and bound what a flood
//! can make it hold.
//!
//! **Sessions** (token sets) live in a [`TokenStore`]:
//!
//! | store | use when |
//! |---|---|
//! | [`MemoryStore`] (default) | one process. Expiring and bounded (100 000 sessions by default, [`MemoryStore::with_capacity`]; as a `StateStore`, 100 000 logins); it evicts only while over capacity, expired entries first, then the oldest, and a write costs O(1) amortized however often a session refreshes. Sessions are lost on restart. |
//! | [`RedisStore`] (feature `redis`) | several instances behind a load balancer, or sessions that survive restarts. A login may start on one instance and finish on another (the cookie key is shared through Redis); a session is refreshed once across all of them (`SET NX PX` lock with a random owner, released by compare-and-delete, expiring by itself), and a refresh writes its result with one Lua script only over the version it refreshed. Logouts take their value with `GETDEL` (Redis 6.2+). Reconnects by itself; while Redis is down, the callback and the extractor answer 503. `RedisStore::connect_cluster` serves a Redis Cluster (every operation touches one key). |
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # async fn redis(config: hcss_auth::HcssConfig) -> Result<(), Box<dyn std::error::Error>> {
//! use hcss_auth::{store::RedisStore, HcssAuth};
//!
//! let store = RedisStore::connect("redis://127.0.0.1:6379").await?.with_prefix("myapp:hcss:");
//! let layer = HcssAuth::with_store(config, store);
//! # Ok(()) }
//! ```
//!
//! For Redis's persistence (sessions that survive a Redis restart) see the crate's
//! [deployment notes](crate#deployment-notes).
//!
//! # Redis at memory speed
//!
//! A [`RedisStore`] keeps the token sets it reads in process (a
//! [near cache](RedisStore#the-near-cache)), so a signed-in request costs no Redis round
//! trip, and Redis keeps those copies true: the store opens one more connection (RESP3)
//! with `CLIENT TRACKING ON BCAST` on its token keys (Redis 6 or later), and Redis pushes
//! a message down it for every write, expiry or deletion of one of them, from whichever
//! instance. So:
//!
//! - a logout, a refresh or an ended session on one instance is seen by every other on its
//!   next request: Redis sends the push as it applies the write, in the same pass as its
//!   reply to the writer, so it reaches the other instances while the writer's answer is
//!   still on its way to the browser;
//! - the instance's own writes and deletes drop its copy before and after they reach Redis;
//! - while that connection is down (a Redis restart, a network cut, or a Redis without
//!   client tracking or RESP3, where a warning is logged), nothing is served from the
//!   cache, which is emptied at once; a `PING` each second finds a cut that sends no reset
//!   within about two seconds;
//! - a copy is served neither past its key's TTL (read with it) nor longer than 30 seconds
//!   after it was read, however it got there (`with_near_cache(max_age)` changes that;
//!   `without_near_cache()` turns the cache off);
//! - only the hot path reads it: refreshes, logouts and the refresh lock always ask Redis.
//!
//! A Redis Cluster store (`connect_cluster`) has no near cache. Redis sends no invalidation
//! for `SWAPDB`: after swapping databases under a running app, copies live out their
//! maximum age (or restart the app).
//!
//! # Writing your own store
//!
//! Your own store implements [`TokenStore`], the storage (object-safe, boxed futures; and
//! [`StateStore`] for `HcssAuthBuilder::state_store`), and [`Coordination`], what instances
//! sharing it agree on: locks ([`try_lock`](Coordination::try_lock),
//! [`renew_lock`](Coordination::renew_lock), [`unlock`](Coordination::unlock)) and a shared
//! secret. A store one process uses keeps `Coordination`'s defaults with an empty
//! `impl Coordination for MyStore {}`; one that several instances share overrides them,
//! atomically. Everything it needs is in this module, and it should pass
//! [`testing::token_store_conformance`](crate::testing::token_store_conformance) (or
//! [`store_conformance`](crate::testing::store_conformance) for both traits), the suites
//! both built-in stores run. [`TokenStore`]'s docs show one over a key-value client.
//!
//! [`TokenStore::cached`] (default: none) is what signed-in requests ask before `load`.
//! Leave it alone unless your store lives in one process or is told of every other
//! process's writes as they happen (as `RedisStore` is): a copy that is merely dropped on
//! your own writes and after a while would keep serving a session logged out elsewhere.
//! Two `TokenStore` methods have defaults that work but are not atomic; override them where
//! the backend can do better: [`replace_if_version`](TokenStore::replace_if_version) (a
//! compare-and-set: without it, a logout that lands between its read and its write is
//! undone) and [`take`](TokenStore::take) (read and delete: without it, a refresh written
//! between the two is removed unrevoked).
//!
//! ## Storage and coordination
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
//! ## Keys
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

mod budget;
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
pub use budget::{CallAdmission, CallLimits};
pub(crate) use budget::{LocalBudget, KEPT_COMPANIES};
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
