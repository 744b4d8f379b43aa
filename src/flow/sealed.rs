//! Logins in progress sealed in the browser: what the cookie holds, and the key.

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::seal::{random_bytes, CookieKey, Sealer, MIN_KEY_BYTES};
use crate::shared::Shared;

/// The name under which a store shares the cookie key between instances.
const SHARED_KEY_NAME: &str = "cookie-key";

/// A login in progress as its cookie carries it (sealed: the browser cannot read or
/// change it).
#[derive(Serialize, Deserialize)]
pub(crate) struct SealedLogin {
    /// The login's `state`, compared with the callback's in constant time.
    #[serde(rename = "s")]
    pub(crate) state: String,
    /// The PKCE code verifier.
    #[serde(rename = "v")]
    pub(crate) verifier: String,
    /// The validated local path to return to.
    #[serde(rename = "r")]
    pub(crate) return_to: String,
    /// When the login started (Unix seconds).
    #[serde(rename = "t")]
    pub(crate) created_at: u64,
}

/// The layer's sealer: the configured key, else one the token store shares between its
/// instances, else a random key of this process. Resolved once; a store error is
/// returned (the request answers 503) and the next login tries again.
pub(crate) async fn sealer<'s>(
    shared: &'s Shared,
    keys: &'s tokio::sync::OnceCell<Sealer>,
) -> Result<&'s Sealer, StoreError> {
    keys.get_or_try_init(|| async {
        let config = &shared.config;
        if let Some(key) = &config.cookies.cookie_key {
            return Ok(Sealer::new(
                key,
                config.cookies.previous_cookie_key.as_ref(),
            ));
        }
        let proposal = random_bytes::<32>();
        let key = match shared
            .token_store
            .shared_secret(SHARED_KEY_NAME, proposal.to_vec())
            .await?
        {
            Some(secret) if secret.len() >= MIN_KEY_BYTES => {
                tracing::info!("hcss: login cookies are sealed with the key the store shares");
                CookieKey::derive(&secret)
            }
            Some(_) => {
                return Err(StoreError::Corrupt(
                    "the shared cookie key is shorter than 32 bytes".into(),
                ))
            }
            None => {
                tracing::info!(
                    "hcss: no cookie key configured: login cookies are sealed with a random key \
                     of this process. If the app runs several instances, give them all the same \
                     HCSS_COOKIE_KEY (or a store that shares one, such as RedisStore), or a \
                     login started on one is refused on another"
                );
                CookieKey::derive(&proposal)
            }
        };
        Ok(Sealer::new(
            &key,
            config.cookies.previous_cookie_key.as_ref(),
        ))
    })
    .await
}
