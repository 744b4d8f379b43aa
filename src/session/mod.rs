//! `HcssSession`: a request's small handle on its session.

use std::fmt;
use std::sync::Arc;

use crate::error::{SessionError, StoreError};
use crate::refresh::{self, Freshness};

mod end;

use crate::secret::SessionId;
use crate::shared::Shared;
use crate::store::StoreKey;
use crate::token::HcssToken;
pub(crate) use end::end_session;

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
    return_to: Option<http::uri::PathAndQuery>,
}

impl fmt::Debug for HcssSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HcssSession")
            .field("has_cookie", &self.id.is_some())
            .finish_non_exhaustive()
    }
}

impl HcssSession {
    pub(crate) fn new(
        shared: Arc<Shared>,
        id: Option<SessionId>,
        return_to: Option<http::uri::PathAndQuery>,
    ) -> Self {
        Self {
            shared,
            id,
            return_to,
        }
    }

    /// Where a page load comes back to after a login: its path and query as the layer
    /// saw them (shared, not copied); `None` for a request that is not a page load.
    pub(crate) fn return_to(&self) -> Option<&str> {
        self.return_to.as_ref().map(http::uri::PathAndQuery::as_str)
    }

    pub(crate) fn login_path(&self) -> &str {
        &self.shared.config.routes.login_path
    }

    /// Counts a browser sent to the login page, for the layer to say when it is
    /// misplaced (see `shared::Placement`).
    pub(crate) fn sent_to_login(&self) {
        self.shared.placement.sent(&self.shared.config);
    }

    /// The path and query of a page load as the outermost layer saw them.
    pub(crate) fn return_to_uri(&self) -> Option<&http::uri::PathAndQuery> {
        self.return_to.as_ref()
    }

    /// The app's origin (`scheme://host[:port]`), from the redirect URI.
    pub(crate) fn app_origin(&self) -> &str {
        &self.shared.config.routes.app_origin
    }

    /// The key this request's session is stored under (`None` without a session cookie):
    /// the one the `on_sign_in` hook was given, for the app's own records.
    pub fn store_key(&self) -> Option<crate::store::StoreKey> {
        self.id.map(|id| id.key())
    }

    /// Whether the request carried a session cookie. It may still name a session that
    /// has ended: only [`token`](Self::token) says whether the user is signed in.
    pub fn has_cookie(&self) -> bool {
        self.id.is_some()
    }

    /// A live access token for this session.
    ///
    /// Refreshes the token first when it is due, once per session however many requests
    /// ask at the same moment (and once across instances with a store that offers a
    /// refresh lock). The refresh runs as a task of its own: a request that is cancelled
    /// meanwhile does not cancel it. Never returns an expired token.
    ///
    /// # Errors
    ///
    /// [`SessionError::NotSignedIn`] when there is no session or it ended (HCSS said the
    /// grant is gone: the tokens are deleted); [`SessionError::Unavailable`] when HCSS or
    /// the store cannot be reached or refused this app's configuration, with the session
    /// kept for the next try.
    pub async fn token(&self) -> Result<HcssToken, SessionError> {
        let Some(id) = &self.id else {
            return Err(SessionError::NotSignedIn);
        };
        let key = id.key();
        // The hot path awaits nothing: a live set the store holds in process.
        if let Some(token) = self.fresh_in_process(key) {
            return Ok(token);
        }
        // Boxed: loading, refreshing and ending are larger futures, kept out of the
        // state of every request that never needs them.
        Box::pin(self.token_from_store(key)).await
    }

    /// The token of a live set the store can give at once (`TokenStore::cached`), unless
    /// the session has a set kept in memory by a refresh (its own path).
    fn fresh_in_process(&self, key: StoreKey) -> Option<HcssToken> {
        let shared = &self.shared;
        if shared.pending.has(key) {
            return None;
        }
        let tokens = shared.token_store.cached(key)?;
        let lifetimes = &shared.config.lifetimes;
        match refresh::freshness(&tokens, shared.config.now(), lifetimes.refresh_skew) {
            Freshness::Fresh | Freshness::LastUse => Some(HcssToken::from_owned(tokens)),
            Freshness::Refresh | Freshness::Over => None,
        }
    }

    async fn token_from_store(&self, key: StoreKey) -> Result<HcssToken, SessionError> {
        let shared = &self.shared;
        let settle = || refresh::await_refresh(shared, key, None);
        if shared.pending.has(key) {
            return settle().await.map(|tokens| HcssToken::from_set(&tokens));
        }
        let tokens = match shared.token_store.load(key).await {
            Ok(Some(tokens)) => tokens,
            Ok(None) => return Err(SessionError::NotSignedIn),
            Err(StoreError::Corrupt(_)) => {
                refresh::discard_unreadable(shared, key).await;
                return Err(SessionError::NotSignedIn);
            }
            Err(err) => return Err(refresh::store_unavailable(&shared.config, err)),
        };
        match refresh::freshness(
            &tokens,
            shared.config.now(),
            shared.config.lifetimes.refresh_skew,
        ) {
            Freshness::Fresh | Freshness::LastUse => Ok(HcssToken::from_owned(tokens)),
            Freshness::Over => {
                shared
                    .token_store
                    .remove(key)
                    .await
                    .map_err(|err| refresh::store_unavailable(&shared.config, err))?;
                Err(SessionError::NotSignedIn)
            }
            Freshness::Refresh => settle().await.map(|tokens| HcssToken::from_set(&tokens)),
        }
    }

    /// A new access token after HCSS refused `rejected` (an HCSS API answered 401: the
    /// token was revoked or expired early). Refreshes the session even though the token
    /// looked live, once however many requests report the same token; if the session's
    /// token is no longer `rejected` (another refresh came first), returns the current one.
    ///
    /// ```
    /// use hcss_auth::{HcssSession, HcssToken, SessionError};
    ///
    /// async fn call_hcss(session: HcssSession, token: HcssToken) -> Result<String, SessionError> {
    ///     let status = 401; // what the HCSS API answered with `token`
    ///     let token = if status == 401 { session.refresh(&token).await? } else { token };
    ///     Ok(format!("retry with a token that expires in {}s", token.expires_in().as_secs()))
    /// }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`token`](Self::token); [`SessionError::NotSignedIn`] when the session has no
    /// refresh token left to replace a refused access token (the session is ended).
    pub async fn refresh(&self, rejected: &HcssToken) -> Result<HcssToken, SessionError> {
        let Some(id) = &self.id else {
            return Err(SessionError::NotSignedIn);
        };
        let key = id.key();
        let rejected = Some(rejected.access_token().clone());
        Box::pin(refresh::await_refresh(&self.shared, key, rejected))
            .await
            .map(|tokens| HcssToken::from_set(&tokens))
    }

    /// Ends this session, as a logout does (its tokens are deleted here and its refresh
    /// token revoked at HCSS when configured), for example when the app decides a user
    /// must sign in again. The browser's cookie then names nothing: the next request is
    /// signed out. Ending a session that is not there is not an error.
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`] when the store cannot be reached.
    pub async fn end(&self) -> Result<(), SessionError> {
        let Some(id) = &self.id else {
            return Ok(());
        };
        let key = id.key();
        crate::session::end_session(&self.shared, key)
            .await
            .map_err(|err| refresh::store_unavailable(&self.shared.config, err))?;
        crate::metrics::sessions_ended("app", 1);
        Ok(())
    }
}
