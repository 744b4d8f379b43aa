//! Test utilities (feature `test-util`): [`MockHcssIdentity`], an HCSS-like identity
//! service on loopback; signing in through the flow ([`sign_in`]) or without it
//! ([`seed_session`]); [`FaultyStore`], a store whose faults a test switches on; and the
//! conformance suites every store should pass ([`store_conformance`] and its parts).
//!
//! # Testing your app
//!
//! Add the feature as a dev-dependency:
//!
//! ```toml
//! [dev-dependencies]
//! hcss-auth = { version = "0.1", features = ["test-util"] }
//! tower = { version = "0.5", features = ["util"] }           # ServiceExt::oneshot
//! ```
//!
//! Then run your handlers through the real flow against the mock, in process:
//!
//! ```
//! use axum::{body::Body, http::Request, routing::get, Router};
//! use hcss_auth::testing::{sign_in, MockHcssIdentity};
//! use hcss_auth::{HcssAuth, HcssToken};
//! use tower::ServiceExt; // oneshot
//!
//! async fn me(token: HcssToken) -> String {
//!     token.scopes().collect::<Vec<_>>().join(" ")
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let mock = MockHcssIdentity::start().await;
//! let config = mock
//!     .config_builder("http://127.0.0.1:3000/hcss/callback") // only its path is served
//!     .scopes(["heavyjob:read", "offline_access"])
//!     .build()
//!     .unwrap();
//! let auth = HcssAuth::new(config);
//! let app = Router::new().route("/me", get(me)).layer(auth.clone());
//!
//! let cookie = sign_in(&app, &auth).await; // GET /hcss/login, consent at the mock, the callback
//! let request = Request::get("/me").header("cookie", &cookie).body(Body::empty()).unwrap();
//! let response = app.clone().oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 200);
//!
//! mock.expire_access_tokens(); // an hour passes, for the mock and the app
//! let request = Request::get("/me").header("cookie", &cookie).body(Body::empty()).unwrap();
//! assert_eq!(app.oneshot(request).await.unwrap().status(), 200);
//! assert_eq!(mock.counts().refreshes, 1);
//! # }
//! ```
//!
//! - [`MockHcssIdentity`]: authorize (instant consent, or a consent page), token (client
//!   authentication, redirect URI, PKCE S256, single-use codes, refresh with rotation and
//!   reuse detection), revocation, the `company` and `client_credentials` grants
//!   ([`disconnect_company`](MockHcssIdentity::disconnect_company) refuses a company as
//!   HCSS does once a customer removed the app), a HeavyJob-like API
//!   ([`api_url`](MockHcssIdentity::api_url): `/heavyjob/api/v1/businessUnits` and the
//!   paged `/heavyjob/api/v1/jobs`, with HCSS's per-company limits when
//!   [`set_api_limits`](MockHcssIdentity::set_api_limits) gives some), call
//!   counters ([`counts`](MockHcssIdentity::counts), reuse detection among them), and
//!   switches that make the token endpoint fail
//!   ([`set_token_fault`](MockHcssIdentity::set_token_fault) with a [`TokenFault`]: any
//!   status with an OAuth error body and `Retry-After`, slow before or after rotating the
//!   refresh token, malformed, oversized, redirect...).
//!   `mock.wait_for(|c| c.refreshes == 1).await` waits for a call without sleeping.
//!   [`config_builder(redirect_uri)`](MockHcssIdentity::config_builder) configures the crate
//!   against it (its identity service and its API); [`MockHcssIdentity::builder`] sets the user, the company, token lifetimes,
//!   rotation and consent.
//! - Time: [`expire_access_tokens`](MockHcssIdentity::expire_access_tokens) lets the
//!   tokens' lifetime pass for the mock and for apps built from its `config_builder` (they
//!   share [`mock.clock()`](MockHcssIdentity::clock), a [`TestClock`]), so the next request
//!   refreshes; [`revoke_access_tokens`](MockHcssIdentity::revoke_access_tokens) makes HCSS
//!   refuse them early instead (the app learns it from an API's 401:
//!   [`HcssSession::refresh`](crate::HcssSession::refresh)).
//! - [`sign_in(&router, &auth)`](sign_in): the cookie of a signed-in session, through the
//!   real flow (from the login path `auth` is configured with);
//!   [`seed_session(&auth, mock.issue_tokens(scope))`](seed_session): one without the login
//!   pages, with tokens the mock's API accepts; [`session_exists`] says whether either
//!   one's session still has tokens (after a logout, say).
//! - [`FaultyStore`]: any store, with writes refused, replies lost after a write was
//!   applied, or values that no longer parse, switched on and off by the test.
//! - [`store_conformance(store)`](store_conformance), and its parts
//!   [`token_store_conformance`], [`state_store_conformance`] and
//!   [`coordination_conformance`]: the suites every store (yours too) must pass; see
//!   [writing your own store](crate::store#writing-your-own-store).
//!
//! ## With Redis
//!
//! To run the same tests on [`RedisStore`](crate::store::RedisStore) (feature `redis`),
//! give each test a key prefix of its own and delete what it leaves: a sign-in writes the
//! session and its entry in the owner index (both for `max_session_age`, 30 days), the
//! claim of its login (10 minutes), and `{prefix}secret:cookie-key`, which has no TTL,
//! when the configuration sets no cookie key; [`HcssApi`](crate::HcssApi) calls write
//! each company's token (for its lifetime) and the company's budget window (for
//! `api_rate_window`). Read the URL from a variable, database included
//! (`redis://127.0.0.1:6379/7` keeps the tests off database 0), and skip the test when it
//! is unset. The `redis` crate, as a dev-dependency, deletes the keys:
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # async fn test() -> Result<(), Box<dyn std::error::Error>> {
//! use hcss_auth::{store::RedisStore, testing::MockHcssIdentity, HcssAuth};
//!
//! let Ok(url) = std::env::var("MYAPP_TEST_REDIS_URL") else {
//!     eprintln!("skipped: set MYAPP_TEST_REDIS_URL to run it");
//!     return Ok(());
//! };
//! let nanos = std::time::UNIX_EPOCH.elapsed()?.as_nanos();
//! let prefix = format!("myapp-test:{}:{nanos}:", std::process::id());
//! let store = RedisStore::connect(&url).await?.with_prefix(prefix.clone());
//! let mock = MockHcssIdentity::start().await;
//! let config = mock.config_builder("http://127.0.0.1:3000/hcss/callback")
//!     .scopes(["heavyjob:read", "offline_access"])
//!     .build()?;
//! let auth = HcssAuth::with_store(config, store);
//! // ... sign_in(&app, &auth), requests, session_exists(&auth, &cookie) ...
//!
//! // Afterwards (or in a guard's `Drop`, so that a failing test cleans up too):
//! let mut conn = redis::Client::open(url.as_str())?.get_multiplexed_async_connection().await?;
//! let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}*")).query_async(&mut conn).await?;
//! if !keys.is_empty() {
//!     redis::cmd("DEL").arg(keys).query_async::<()>(&mut conn).await?;
//! }
//! # Ok(()) }
//! ```

mod conformance;
mod faulty;
mod mock;
mod seed;
mod sign_in;

pub use crate::clock::TestClock;
pub use conformance::{
    coordination_conformance, state_store_conformance, store_conformance, token_store_conformance,
};
pub use faulty::FaultyStore;
pub use mock::{
    DiscoveryFault, LogoutTokenFault, MockApiLimits, MockApiUsage, MockCounts, MockHcssIdentity,
    MockHcssIdentityBuilder, TokenFault,
};
pub use seed::{seed_session, session_exists, SeededSession};
pub use sign_in::sign_in;
