//! Logins in progress sealed in the browser: what the cookie holds, how it is sealed and
//! opened, and the key that seals it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::seal::{CookieKey, Resolved, SealKeys, Sealer, MIN_KEY_BYTES};
use crate::secret::random_bytes;
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
    /// The OpenID Connect `nonce`, with `openid` among the scopes.
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    pub(crate) nonce: Option<String>,
    /// The `max_age` the login sent, against which the ID token's `auth_time` is checked.
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub(crate) max_age: Option<u64>,
}

impl SealedLogin {
    /// The cookie's value: this login sealed, bound to the cookie's name.
    pub(crate) fn seal(&self, sealer: &Sealer, cookie_name: &str) -> String {
        let plain = serde_json::to_vec(self).expect("a login serializes");
        sealer.seal(cookie_name.as_bytes(), &plain)
    }

    /// The login a cookie's value holds, if it opens under `sealer`'s keys.
    pub(crate) fn open(sealer: &Sealer, cookie_name: &str, sealed: &str) -> Option<Self> {
        let plain = sealer.open(cookie_name.as_bytes(), sealed)?;
        serde_json::from_slice(&plain).ok()
    }
}

/// When to ask the store again for the key it shares. A store that lost its key (a
/// Redis restart without persistence, a failover) gets this process's back (`SET NX`),
/// and a process whose key the store no longer holds takes the store's, keeping its own
/// to open cookies it sealed before: instances agree again without a restart.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum AskStore {
    /// Use what this process knows (asking only the first time).
    IfUnknown,
    /// At a login start: ask again if the last time was a second ago or more.
    OncePerSecond,
    /// At a callback whose cookie did not open: ask now.
    Now,
}

/// The layer's sealer: the configured key, else the key the token store shares between
/// its instances, else a random key of this process. A store error with nothing known yet
/// is returned (the request answers 503); with a key known, that key serves.
pub(crate) async fn sealer(
    shared: &Shared,
    keys: &SealKeys,
    ask: AskStore,
) -> Result<Arc<Sealer>, StoreError> {
    let config = &shared.config;
    let known = keys.get();
    if let Some(known) = &known {
        let ask = match ask {
            AskStore::IfUnknown => false,
            AskStore::OncePerSecond => keys.ask_store_due(config.now()),
            AskStore::Now => true,
        };
        if !ask || known.shared_secret.is_none() {
            return Ok(known.sealer.clone());
        }
    }
    if let Some(key) = &config.cookies.cookie_key {
        let sealer = Arc::new(Sealer::new(
            key,
            config.cookies.previous_cookie_key.as_ref(),
        ));
        keys.set(Resolved {
            sealer: sealer.clone(),
            shared_secret: None,
        });
        return Ok(sealer);
    }
    let proposal = match known.as_ref().and_then(|k| k.shared_secret.clone()) {
        Some(ours) => ours,
        None => random_bytes::<32>().to_vec(),
    };
    let answer = shared
        .token_store
        .shared_secret(SHARED_KEY_NAME, proposal.clone())
        .await;
    let secret = match (answer, &known) {
        (Ok(Some(secret)), _) if secret.len() >= MIN_KEY_BYTES => secret,
        (Ok(Some(_)), _) => {
            return Err(StoreError::Corrupt(
                "the shared cookie key is shorter than 32 bytes".into(),
            ))
        }
        (Ok(None), _) => {
            tracing::info!(
                "no cookie key configured: login cookies are sealed with a random key \
                 of this process. If the app runs several instances, give them all the same \
                 HCSS_COOKIE_KEY (or a store that shares one, such as RedisStore), or a \
                 login started on one is refused on another"
            );
            let sealer = Arc::new(Sealer::new(&CookieKey::derive(&proposal), None));
            keys.set(Resolved {
                sealer: sealer.clone(),
                shared_secret: None,
            });
            return Ok(sealer);
        }
        // The store is down: the key this process knows serves meanwhile.
        (Err(_), Some(known)) => return Ok(known.sealer.clone()),
        (Err(err), None) => return Err(err),
    };
    match &known {
        Some(known) if known.shared_secret.as_deref() == Some(secret.as_slice()) => {
            Ok(known.sealer.clone())
        }
        _ => {
            if known.is_some() {
                tracing::warn!(
                    "the store holds another cookie key than this instance used; \
                     taking the store's (cookies sealed with the old one still open)"
                );
            } else {
                tracing::info!("login cookies are sealed with the key the store shares");
            }
            let previous = known
                .as_ref()
                .and_then(|k| k.shared_secret.as_deref())
                .map(CookieKey::derive);
            let sealer = Arc::new(Sealer::new(&CookieKey::derive(&secret), previous.as_ref()));
            keys.set(Resolved {
                sealer: sealer.clone(),
                shared_secret: Some(secret),
            });
            Ok(sealer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_login_opens_only_under_its_cookie_name() {
        let sealer = Sealer::new(&CookieKey::derive(&[7; 32]), None);
        let login = SealedLogin {
            state: "s".into(),
            verifier: "v".into(),
            return_to: "/jobs".into(),
            created_at: 42,
            nonce: None,
            max_age: None,
        };
        let sealed = login.seal(&sealer, "hcss-login-s");
        let opened = SealedLogin::open(&sealer, "hcss-login-s", &sealed).unwrap();
        assert_eq!(
            (
                opened.state.as_str(),
                opened.return_to.as_str(),
                opened.created_at
            ),
            ("s", "/jobs", 42)
        );
        assert!(SealedLogin::open(&sealer, "hcss-login-t", &sealed).is_none());
        assert!(!sealed.contains("jobs"), "sealed, not readable");
    }
}
