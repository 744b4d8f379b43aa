//! The wire protocol with HCSS's identity service: PKCE, the authorize URL, and the
//! token, refresh and revocation requests with their responses and errors.
//!
//! One job per file: `pkce` the code challenge, `authorize` the login URL,
//! `token_request` the grants and the token request, `client_auth` where the client's
//! credentials go, `transport` the HTTP POST, `response` reading the token answer,
//! `error` what a failure means, `retry_after` the service's `Retry-After`, `revoke`
//! revocation.

mod authorize;
mod client_auth;
mod error;
mod pkce;
mod response;
mod retry_after;
mod revoke;
#[cfg(test)]
mod test_support;
mod token_request;
mod transport;

pub(crate) use authorize::{authorize_url, AuthorizeExtras};
pub(crate) use error::{ErrorClass, TokenError};
pub(crate) use pkce::pkce_challenge;
pub(crate) use response::TokenResponse;
#[cfg(test)]
pub(crate) use response::MIN_TOKEN_LIFETIME;
pub(crate) use retry_after::parse_api_retry_after;
pub(crate) use revoke::revoke;
pub(crate) use token_request::{request_tokens, Grant, REFRESH_PATIENCE};
pub(crate) use transport::get;
