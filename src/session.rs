//! `HcssSession`: a request's view of its session, and refresh, once at a time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::error::SessionError;
use crate::layer::Shared;
use crate::protocol::{self, Grant, RETRY_AFTER};
use crate::token::{unix_now, HcssToken, TokenSet};

/// The HCSS session of one request, put in the request's extensions by the layer.
///
/// Axum handlers usually take [`HcssToken`] instead; plain Tower services read the
/// session from the extensions and call [`token`](Self::token):
///
/// ```
/// use http::{Request, Response};
/// use hcss_auth::HcssSession;
///
/// async fn handle(req: Request<()>) -> Result<Response<String>, std::convert::Infallible> {
///     let Some(session) = req.extensions().get::<HcssSession>() else {
///         return Ok(Response::builder().status(500).body("HcssAuth layer missing".into()).unwrap());
///     };
///     Ok(match session.token().await {
///         Ok(token) => Response::new(format!("token expires in {}s", token.expires_in().as_secs())),
///         Err(err) => Response::builder().status(401).body(err.to_string()).unwrap(),
///     })
/// }
/// ```
#[derive(Clone)]
pub struct HcssSession {
    shared: Arc<Shared>,
    id: Option<SessionId>,
    /// The request's path and query as the layer saw it, before any nested router
    /// stripped a prefix: where to come back to after a login.
    here: Option<http::uri::PathAndQuery>,
}

/// A session id as the cookie carries it: 43 base64url characters, kept inline so that
/// reading it costs no allocation. Never printed.
#[derive(Clone, Copy)]
pub(crate) struct SessionId([u8; 43]);

impl SessionId {
    pub(crate) fn parse(text: &str) -> Option<Self> {
        text.as_bytes().try_into().ok().map(SessionId)
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for HcssSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HcssSession")
            .field("has_cookie", &self.id.is_some())
            .finish_non_exhaustive()
    }
}

/// What a stored token set allows now.
enum Freshness {
    /// The access token is good beyond the refresh skew.
    Fresh,
    /// It needs a refresh and a refresh token is there.
    Refresh,
    /// Expiring soon with nothing to refresh it with: still usable until it expires.
    LastUse,
    /// Nothing usable is left: the session is over.
    Over,
}

fn freshness(tokens: &TokenSet, now: u64, skew: Duration) -> Freshness {
    if tokens.session_expires_at <= now {
        Freshness::Over
    } else if tokens.expires_at > now.saturating_add(skew.as_secs()) {
        Freshness::Fresh
    } else if tokens.refresh_token.is_some() {
        Freshness::Refresh
    } else if tokens.expires_at > now {
        Freshness::LastUse
    } else {
        Freshness::Over
    }
}

impl HcssSession {
    pub(crate) fn new(
        shared: Arc<Shared>,
        id: Option<SessionId>,
        here: Option<http::uri::PathAndQuery>,
    ) -> Self {
        Self { shared, id, here }
    }

    /// The path and query the layer saw (shared, not copied).
    pub(crate) fn here(&self) -> Option<&str> {
        self.here.as_ref().map(http::uri::PathAndQuery::as_str)
    }

    pub(crate) fn login_path(&self) -> &str {
        &self.shared.config.login_path
    }

    /// Whether the request carried a session cookie. It may still name a session that
    /// has ended: only [`token`](Self::token) says whether the user is signed in.
    pub fn has_cookie(&self) -> bool {
        self.id.is_some()
    }

    /// A live access token for this session.
    ///
    /// Refreshes the token first when it expires within the configured skew, once per
    /// session however many requests ask at the same moment (and once across instances
    /// with a store that offers a refresh lock). Never returns an expired token.
    ///
    /// # Errors
    ///
    /// [`SessionError::NotSignedIn`] when there is no session or it ended (HCSS refused
    /// the refresh: the tokens are deleted); [`SessionError::Unavailable`] when HCSS or
    /// the store cannot be reached, with the session kept for the next try.
    pub async fn token(&self) -> Result<HcssToken, SessionError> {
        let Some(id) = &self.id else {
            return Err(SessionError::NotSignedIn);
        };
        let key = protocol::sha256_hex(id.as_str());
        let store = &self.shared.token_store;
        let tokens = store.load(&key).await?.ok_or(SessionError::NotSignedIn)?;
        match freshness(&tokens, unix_now(), self.shared.config.refresh_skew) {
            Freshness::Fresh | Freshness::LastUse => Ok(HcssToken::from_set(&tokens)),
            Freshness::Over => {
                store.remove(&key).await?;
                Err(SessionError::NotSignedIn)
            }
            // Boxed: the refresh machinery (locks, the token call) is a large future, and
            // keeping it out of `token()`'s own state keeps every other request's future
            // small and cheap to move.
            Freshness::Refresh => Box::pin(self.refresh_once(&key)).await,
        }
    }

    /// Refreshes under this process's per-session single flight.
    async fn refresh_once(&self, key: &str) -> Result<HcssToken, SessionError> {
        let flight = self
            .shared
            .flights
            .entry(key.to_owned())
            .or_default()
            .clone();
        let result = {
            let _turn = flight.lock().await;
            self.refresh_locked(key).await
        };
        drop(flight);
        self.shared
            .flights
            .remove_if(key, |_, f| Arc::strong_count(f) == 1);
        result
    }

    /// Refreshes under the store's lock, or waits for whoever holds it. Every turn reloads
    /// first: the previous holder may have refreshed already.
    async fn refresh_locked(&self, key: &str) -> Result<HcssToken, SessionError> {
        let owner = protocol::random_token(16);
        let mut locked = false;
        let result = self.refresh_turns(key, &owner, &mut locked).await;
        if locked {
            if let Err(err) = self.shared.token_store.unlock_refresh(key, &owner).await {
                tracing::warn!(session = &key[..8], error = %err,
                    "hcss: refresh lock not released; it expires by itself");
            }
        }
        result
    }

    /// The turns of [`refresh_locked`](Self::refresh_locked); sets `locked` once the
    /// store's lock is held, so that it is released whatever this returns.
    async fn refresh_turns(
        &self,
        key: &str,
        owner: &str,
        locked: &mut bool,
    ) -> Result<HcssToken, SessionError> {
        let store = &self.shared.token_store;
        // Longer than a refresh can take, so the lock outlives its holder's token call.
        let lock_ttl = self.shared.config.http_timeout * 3;
        let deadline = tokio::time::Instant::now() + lock_ttl;
        let mut pause = Duration::from_millis(10);
        loop {
            let tokens = store.load(key).await?.ok_or(SessionError::NotSignedIn)?;
            match freshness(&tokens, unix_now(), self.shared.config.refresh_skew) {
                Freshness::Fresh | Freshness::LastUse => return Ok(HcssToken::from_set(&tokens)),
                Freshness::Over => {
                    store.remove(key).await?;
                    return Err(SessionError::NotSignedIn);
                }
                Freshness::Refresh if *locked => return self.refresh_with(key, tokens).await,
                Freshness::Refresh => {}
            }
            if store.try_lock_refresh(key, owner, lock_ttl).await? {
                // Reload once more under the lock before spending the refresh token.
                *locked = true;
                continue;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(SessionError::Unavailable {
                    reason: "another instance has been refreshing this session for too long".into(),
                    retry_after: RETRY_AFTER,
                });
            }
            // Another instance is refreshing: wait for its result.
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Spends the refresh token and stores what comes back.
    async fn refresh_with(&self, key: &str, old: TokenSet) -> Result<HcssToken, SessionError> {
        let store = &self.shared.token_store;
        let config = &self.shared.config;
        let short = &key[..8];
        let Some(refresh_token) = old.refresh_token.clone() else {
            return Err(SessionError::NotSignedIn);
        };
        let grant = Grant::RefreshToken {
            refresh_token: refresh_token.expose_secret(),
        };
        match protocol::request_tokens(config, grant).await {
            Ok(mut new) => {
                if new.refresh_token.is_none() {
                    new.refresh_token = Some(refresh_token);
                }
                if new.scope.is_empty() {
                    new.scope = old.scope.clone();
                }
                new.session_expires_at = old.session_expires_at;
                let now = unix_now();
                if let Err(err) = store.store(key, new.clone(), new.store_ttl(now)).await {
                    tracing::error!(session = short, error = %err,
                        "hcss: refreshed tokens could not be stored; the session may have to log in again");
                }
                tracing::debug!(session = short, "hcss: access token refreshed");
                Ok(HcssToken::from_set(&new))
            }
            Err(err) if err.ends_session() => {
                tracing::warn!(session = short, reason = %err,
                    "hcss: refresh refused, session ended; the user must log in again");
                store.remove(key).await?;
                Err(SessionError::NotSignedIn)
            }
            Err(err) => {
                tracing::warn!(session = short, reason = %err,
                    "hcss: refresh failed for now; the session is kept");
                Err(SessionError::Unavailable {
                    reason: err.to_string(),
                    retry_after: RETRY_AFTER,
                })
            }
        }
    }
}
