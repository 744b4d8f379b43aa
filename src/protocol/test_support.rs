//! Fixtures for the protocol's unit tests: a configuration and an identity service answer.

use crate::config::{ClientAuth, HcssConfig};
use crate::protocol::transport::Answer;

/// A configuration for client `my client` with the given client authentication.
pub(super) fn config(auth: ClientAuth, secret: Option<&str>) -> HcssConfig {
    let mut b = HcssConfig::builder()
        .client_id("my client")
        .scopes(["heavyjob:read", "offline_access"])
        .redirect_uri("https://app.example.com/hcss/callback")
        .client_auth(auth);
    if let Some(s) = secret {
        b = b.client_secret(s);
    }
    b.build().unwrap()
}

/// An answer with `status` and `body`, without `Retry-After`.
pub(super) fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status,
        retry_after: None,
        body: body.as_bytes().to_vec(),
    }
}
