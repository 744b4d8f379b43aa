//! Sign users in with **HCSS** (HeavyJob, HeavyBid, Equipment360, Safety...) from any Axum
//! or Tower service, through the OAuth 2.0 Authorization Code flow with PKCE, and call
//! HCSS APIs on their behalf.
//!
//! One layer mounts the flow, one extractor uses it:
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use hcss_auth::{HcssAuth, HcssConfig, HcssToken};
//!
//! async fn business_units(token: HcssToken) -> String {
//!     // A live token: refreshed before it expires, never handed out expired.
//!     format!("call HCSS with {}", token.token_type())
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = HcssConfig::from_env()?;
//!     let app = Router::new()
//!         .route("/business-units", get(business_units))
//!         .layer(HcssAuth::new(config)); // serves /hcss/login, /hcss/callback, /hcss/logout
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! - [`HcssConfig`]: client id, secret, scopes and redirect URI, checked when built.
//! - [`HcssAuth`]: the layer. It answers `GET /hcss/login`, `GET /hcss/callback` and
//!   `POST /hcss/logout`, and gives every other request an [`HcssSession`].
//! - [`HcssToken`]: the extractor (also as `Option<HcssToken>`); a page load that is not
//!   signed in is sent to log in, an API call gets 401 (see [`HcssRejection`]).
//! - [`store`]: where sessions (and, as an option, logins in flight: by default they are
//!   sealed in the browser's cookies) live; [`MemoryStore`] by default,
//!   `RedisStore` (feature `redis`) for apps that run several instances.
//! - `testing` (feature `test-util`): `MockHcssIdentity`, an HCSS-like identity service on
//!   loopback for your own tests.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(unreachable_pub)]
#![deny(missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod claims;
mod clock;
mod company;
mod config;
mod error;
mod extract;
mod flow;
mod hooks;
mod http_rules;
mod layer;
mod protocol;
mod refresh;
mod return_path;
mod seal;
mod secret;
pub mod service;
mod session;
mod shared;
pub mod store;
mod token;

#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;

pub use claims::Claims;
pub use company::HcssCompanyTokens;
pub use config::{ClientAuth, HcssConfig, HcssConfigBuilder, HCSS_IDENTITY_URL};
pub use error::{CompanyTokenError, ConfigError, SessionError, StoreError};
pub use extract::HcssRejection;
pub use hooks::{SignIn, SignInRefused, SignOut};
pub use layer::{HcssAuth, HcssAuthBuilder};
pub use secret::SecretString;
pub use session::HcssSession;
pub use store::{MemoryStore, StateStore, TokenStore};
pub use token::{HcssToken, TokenSet};

/// The HTTP client crate of [`HcssConfigBuilder::http_client`], re-exported so that its
/// version always matches the one this crate uses.
pub use reqwest;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Entry points for the fuzz targets in `fuzz/` (built only with `--cfg fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    /// `return_to` validation.
    pub fn return_path(input: &str) -> Option<&str> {
        crate::return_path::valid_return_path(input)
    }

    /// Callback query parsing; `true` when accepted.
    pub fn callback_query(query: &str) -> bool {
        crate::flow::query_params(
            Some(query),
            ["state", "code", "error", "error_description", "iss"],
        )
        .is_ok()
    }

    /// Session cookie parsing from one `Cookie` header.
    pub fn session_cookie(header: &http::HeaderValue) -> Option<String> {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::COOKIE, header.clone());
        crate::flow::cookie_value(&headers, "hcss-session").map(str::to_owned)
    }
}
