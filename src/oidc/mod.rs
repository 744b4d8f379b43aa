//! OpenID Connect at the identity service: its discovery document (read lazily, cached,
//! refreshed when stale) and its signing keys (the JWKS), against which ID tokens are
//! verified.
//!
//! One [`Provider`] lives in the layer's shared state (every clone of the layer uses it);
//! the protocol calls are given the endpoints it finds. Nothing here is read at
//! start-up: the first login (or token call) reads the discovery document, the first ID
//! token reads the keys.

mod discovery;
mod keys;
mod logout_token;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::IdentityClient;

use discovery::Discovered;
pub(crate) use discovery::Endpoints;
use keys::KeyCache;
pub(crate) use logout_token::{LogoutToken, IAT_WINDOW};

/// What the identity service publishes, as this process last read it.
#[derive(Default)]
pub(crate) struct Provider {
    /// The discovery document's endpoints (or HCSS's layout), and when they were read.
    discovery: Mutex<Option<(Instant, Discovered)>>,
    /// The signing keys.
    keys: Mutex<KeyCache>,
    /// Whether the log line saying that HCSS's layout is used has been written.
    said_layout: AtomicBool,
    /// Whether the log line saying that no JWKS is published has been written.
    said_no_keys: AtomicBool,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider").finish_non_exhaustive()
    }
}

/// The discovery document names another issuer than the configured one.
#[derive(Clone, Debug)]
pub(crate) struct IssuerMismatch;

impl std::fmt::Display for IssuerMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "the identity service's discovery document names another issuer than the \
             configured identity URL (check HCSS_IDENTITY_URL / identity_url)",
        )
    }
}

/// Why a token's signature was not verified: what failed (no token or key material),
/// and whether it may pass later (the keys could not be read) or is a verdict on the
/// token (a bad signature, a refused algorithm, a key id the service does not have).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SignatureError {
    pub(crate) why: &'static str,
    /// The identity service's keys could not be read (unreachable, an error status, not
    /// a JWKS): nothing was learnt about the token.
    pub(crate) keys_unreadable: bool,
}

impl SignatureError {
    /// A verdict on the token.
    pub(crate) const fn refused(why: &'static str) -> Self {
        Self {
            why,
            keys_unreadable: false,
        }
    }

    /// The keys could not be read.
    pub(crate) const fn keys_unreadable(why: &'static str) -> Self {
        Self {
            why,
            keys_unreadable: true,
        }
    }
}

/// How an ID token's signature was dealt with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signature {
    /// Verified against a key of the identity service's JWKS.
    Verified,
    /// The identity service publishes no JWKS: the claims are checked, not the signature.
    NoKeysPublished,
}

impl Provider {
    /// The identity service's endpoints: from its discovery document when it has one
    /// (read on first use, then again once stale), HCSS's layout otherwise. An error when
    /// the document names another issuer.
    pub(crate) async fn endpoints(
        &self,
        client: &IdentityClient,
    ) -> Result<Arc<Endpoints>, IssuerMismatch> {
        let mut cached = self.discovery.lock().await;
        let now = Instant::now();
        let stale = match &*cached {
            Some((read_at, found)) => now.saturating_duration_since(*read_at) >= found.ttl(),
            None => true,
        };
        if stale {
            let found = discovery::read(client).await;
            if let Discovered::Layout { why, .. } = &found {
                if !self.said_layout.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        reason = %why,
                        "the identity service's discovery document could not be used; \
                         HCSS's known endpoint layout is used"
                    );
                }
            }
            if let Discovered::Mismatch = &found {
                tracing::error!("{IssuerMismatch}: sign-ins are refused");
            }
            *cached = Some((now, found));
        }
        match &cached.as_ref().expect("set above").1 {
            Discovered::Document(endpoints) | Discovered::Layout { endpoints, .. } => {
                Ok(endpoints.clone())
            }
            Discovered::Mismatch => Err(IssuerMismatch),
        }
    }

    /// Verifies the signature of `id_token` (which came from the token endpoint) against
    /// the identity service's JWKS: an algorithm the service signs with (RS256, RS384,
    /// RS512, PS256, PS384, PS512, ES256, ES384; never `none`, never HMAC), a key of
    /// the JWKS that fits it (by `kid`; an unknown `kid` reads the keys again, rate
    /// limited). `Ok(NoKeysPublished)` when the service publishes no JWKS. The error
    /// says what failed, without token or key material, and whether the keys could not
    /// be read.
    pub(crate) async fn verify_id_token(
        &self,
        client: &IdentityClient,
        id_token: &str,
    ) -> Result<Signature, SignatureError> {
        let endpoints = self
            .endpoints(client)
            .await
            .map_err(|_| SignatureError::refused("the discovery document names another issuer"))?;
        let Some(jwks_url) = &endpoints.jwks else {
            self.say_no_keys();
            return Ok(Signature::NoKeysPublished);
        };
        let verdict = keys::verify(&self.keys, client, jwks_url, id_token).await?;
        if verdict == Signature::NoKeysPublished {
            self.say_no_keys();
        }
        Ok(verdict)
    }

    /// Verifies a back-channel logout token: its signature against the identity
    /// service's JWKS (as [`verify_id_token`](Self::verify_id_token) does, but a service
    /// that publishes no keys gets every logout token refused: unsigned, anyone could
    /// send one), then its claims ([`LogoutToken::check`]). The error says what failed,
    /// without token or key material.
    pub(crate) async fn verify_logout_token(
        &self,
        client: &IdentityClient,
        token: &str,
        now: u64,
    ) -> Result<LogoutToken, &'static str> {
        let endpoints = self
            .endpoints(client)
            .await
            .map_err(|_| "the discovery document names another issuer")?;
        let Some(jwks_url) = &endpoints.jwks else {
            return Err("the identity service publishes no keys to verify it with");
        };
        match keys::verify(&self.keys, client, jwks_url, token)
            .await
            .map_err(|err| err.why)?
        {
            Signature::Verified => {}
            Signature::NoKeysPublished => {
                return Err("the identity service publishes no keys to verify it with")
            }
        }
        LogoutToken::check(token, &client.issuer, &client.client_id, now)
    }

    fn say_no_keys(&self) {
        if !self.said_no_keys.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the identity service publishes no JWKS: ID token signatures cannot be \
                 verified; their issuer, audience, expiry and nonce are still checked"
            );
        }
    }
}
