//! Tokens for HCSS companies with no user present: HCSS's `company` grant, with which a
//! partner app acts for a customer company, and `client_credentials`, for the app's own
//! company.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::layer::HcssAuth;
use crate::protocol::{self, ErrorClass, Grant, TokenError};
use crate::refresh::{freshness, Freshness};
use crate::secret::{random_token, StoreKey};
use crate::shared::Shared;
use crate::token::{HcssToken, TokenSet};

/// Why [`HcssCompanyTokens`] gave no token.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompanyTokenError {
    /// HCSS refused to issue tokens for this company (`invalid_grant`, or another
    /// refusal of the grant): the customer removed the app in the HCSS Marketplace or
    /// changed its scopes. Ask them to connect the app again; the next call asks HCSS
    /// afresh, so a reconnected company works at once.
    #[error(
        "the company {company_id} has not connected this app: ask it to connect the app again"
    )]
    Disconnected {
        /// The company.
        company_id: String,
    },
    /// HCSS or the store cannot be reached, or is failing: try again after `retry_after`.
    #[error("HCSS cannot issue company tokens right now ({reason}); retry later")]
    Unavailable {
        /// What failed, without secrets.
        reason: String,
        /// When to try again.
        retry_after: Duration,
    },
    /// HCSS refused this app's credentials (`invalid_client`): fix the configuration.
    #[error("HCSS refused this app's credentials ({reason}): check the client id and secret")]
    Misconfigured {
        /// What HCSS said.
        reason: String,
    },
}

/// Tokens for HCSS companies, with no user present: [`token`](Self::token) asks HCSS's
/// `company` grant for a customer company's token (the `CompanyId` a user's claims
/// carry), [`own_token`](Self::own_token) `client_credentials` for the app's own
/// company.
///
/// Each token is cached in the layer's token store (so instances sharing a `RedisStore`
/// share it) and asked for again before it expires, once however many calls want it at
/// the same moment (and once across instances, through the store's lock). The request
/// carries the configured scopes without `offline_access` or the OpenID identity scopes
/// (`openid`, `profile`, `email`...), and the client's credentials as configured (body or
/// HTTP Basic).
///
/// ```no_run
/// use hcss_auth::{CompanyTokenError, HcssAuth, HcssCompanyTokens, HcssConfig};
///
/// # async fn run(config: HcssConfig) -> Result<(), Box<dyn std::error::Error>> {
/// let auth = HcssAuth::new(config);
/// let companies = HcssCompanyTokens::new(&auth);
/// match companies.token("4f2d9c7a-0002-4000-8000-0000000000c0").await {
///     Ok(token) => println!("acting for the company until {:?}", token.expires_at()),
///     Err(CompanyTokenError::Disconnected { .. }) => println!("ask them to connect again"),
///     Err(other) => println!("later: {other}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HcssCompanyTokens {
    shared: Arc<Shared>,
    on_disconnected: Option<DisconnectedHook>,
}

type DisconnectedHook = Arc<
    dyn Fn(String) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send + Sync,
>;

impl std::fmt::Debug for HcssCompanyTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HcssCompanyTokens").finish_non_exhaustive()
    }
}

/// Which grant a company token comes from.
#[derive(Clone, Copy)]
enum Source<'a> {
    Company(&'a str),
    Own,
}

impl HcssCompanyTokens {
    /// Company tokens with the configuration and the token store of `auth`.
    pub fn new(auth: &HcssAuth) -> Self {
        Self {
            shared: auth.shared.clone(),
            on_disconnected: None,
        }
    }

    /// An async hook called with the company's id each time HCSS refuses a company
    /// (the customer removed the app or changed its scopes), before the call returns
    /// [`CompanyTokenError::Disconnected`]: to mark the company in the app's records, or
    /// to end its users' sessions ([`HcssAuth::end_sessions_for_company`]). A hook that
    /// panics is logged.
    ///
    /// ```
    /// # fn run(auth: hcss_auth::HcssAuth) {
    /// let companies = hcss_auth::HcssCompanyTokens::new(&auth).on_disconnected(|company| async move {
    ///     tracing::warn!(%company, "a customer disconnected the app");
    /// });
    /// # let _ = companies; }
    /// ```
    pub fn on_disconnected<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        self.on_disconnected = Some(Arc::new(move |company| Box::pin(hook(company))));
        self
    }

    /// A live token for the customer company `company_id` (HCSS's `company` grant).
    ///
    /// # Errors
    ///
    /// [`CompanyTokenError::Disconnected`] when HCSS refuses the company,
    /// [`CompanyTokenError::Unavailable`] (retry later) and
    /// [`CompanyTokenError::Misconfigured`].
    pub async fn token(&self, company_id: &str) -> Result<HcssToken, CompanyTokenError> {
        self.get(Source::Company(company_id)).await
    }

    /// A live token for the app's own company (`client_credentials`).
    ///
    /// # Errors
    ///
    /// As [`token`](Self::token).
    pub async fn own_token(&self) -> Result<HcssToken, CompanyTokenError> {
        self.get(Source::Own).await
    }

    async fn get(&self, source: Source<'_>) -> Result<HcssToken, CompanyTokenError> {
        let shared = &self.shared;
        let key = match source {
            Source::Company(id) => {
                StoreKey::of_company_token(&format!("company-token\0company\0{id}"))
            }
            Source::Own => StoreKey::of_company_token("company-token\0client_credentials"),
        };
        if let Some(tokens) = self.cached(key).await? {
            return Ok(HcssToken::from_set(&tokens));
        }
        // One call at a time per company in this process; the others find its token.
        let turn = shared.company_turns.entry(key).or_default().clone();
        let result = {
            let _turn = turn.lock().await;
            self.fetch_locked(key, source).await
        };
        drop(turn);
        shared
            .company_turns
            .remove_if(&key, |_, turn| Arc::strong_count(turn) == 1);
        result.map(|tokens| HcssToken::from_set(&tokens))
    }

    /// The cached token if it is good beyond the refresh skew.
    async fn cached(&self, key: StoreKey) -> Result<Option<TokenSet>, CompanyTokenError> {
        let config = &self.shared.config;
        Ok(self
            .shared
            .token_store
            .load(key)
            .await
            .unwrap_or_else(|err| {
                tracing::debug!(error = %err, "hcss: cached company token unreadable; asking HCSS");
                None
            })
            .filter(|tokens| {
                freshness(tokens, config.now(), config.lifetimes.refresh_skew) == Freshness::Fresh
            }))
    }

    /// Under the store's lock (other instances), asks HCSS unless the cache has a fresh
    /// token by now.
    async fn fetch_locked(
        &self,
        key: StoreKey,
        source: Source<'_>,
    ) -> Result<TokenSet, CompanyTokenError> {
        let shared = &self.shared;
        let config = &shared.config;
        let owner = random_token(16);
        let lease = config.identity.http_timeout * 2;
        let deadline = Instant::now() + lease;
        let mut pause = Duration::from_millis(10);
        let unavailable = |reason: String| CompanyTokenError::Unavailable {
            reason,
            retry_after: config.identity.retry_after.max(Duration::from_secs(1)),
        };
        loop {
            if let Some(tokens) = self.cached(key).await? {
                return Ok(tokens);
            }
            match shared
                .token_store
                .try_lock_refresh(key, owner.clone(), lease)
                .await
            {
                Ok(true) => break,
                Ok(false) if Instant::now() < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Ok(false) => return Err(unavailable("another instance is asking HCSS".into())),
                Err(err) => return Err(unavailable(err.to_string())),
            }
        }
        let result = self.ask_hcss(key, source).await;
        if let Err(err) = shared.token_store.unlock_refresh(key, owner).await {
            tracing::debug!(error = %err, "hcss: company token lock not released; it expires by itself");
        }
        result
    }

    async fn ask_hcss(
        &self,
        key: StoreKey,
        source: Source<'_>,
    ) -> Result<TokenSet, CompanyTokenError> {
        let shared = &self.shared;
        let config = &shared.config;
        if let Some(tokens) = self.cached(key).await? {
            return Ok(tokens);
        }
        let grant = match source {
            Source::Company(company_id) => Grant::Company { company_id },
            Source::Own => Grant::ClientCredentials,
        };
        match protocol::request_tokens(config, grant).await {
            Ok(mut tokens) => {
                // No refresh token: the token lives as long as it says, then is asked for again.
                tokens.refresh_token = None;
                tokens.session_expires_at = tokens.expires_at;
                let ttl = tokens.store_ttl(config.now());
                if let Err(err) = shared.token_store.store(key, tokens.clone(), ttl).await {
                    tracing::warn!(error = %err, "hcss: company token not cached; the next call asks HCSS again");
                }
                Ok(tokens)
            }
            Err(err) => Err(self.classify(key, source, &err).await),
        }
    }

    async fn classify(
        &self,
        key: StoreKey,
        source: Source<'_>,
        err: &TokenError,
    ) -> CompanyTokenError {
        let config = &self.shared.config;
        let company_id = match source {
            Source::Company(id) => id.to_owned(),
            Source::Own => "(this app's own)".to_owned(),
        };
        match (err.class(), err) {
            (ErrorClass::Transient, _) | (ErrorClass::Failed, TokenError::InvalidResponse(_)) => {
                tracing::warn!(reason = %err, "hcss: company token unavailable for now");
                CompanyTokenError::Unavailable {
                    reason: err.to_string(),
                    retry_after: err
                        .retry_after()
                        .unwrap_or(config.identity.retry_after)
                        .max(Duration::from_secs(1)),
                }
            }
            (_, TokenError::Rejected { error, .. }) if error == "invalid_client" => {
                tracing::error!(reason = %err, "hcss: company token refused: this app's credentials are wrong");
                CompanyTokenError::Misconfigured {
                    reason: err.to_string(),
                }
            }
            _ => {
                tracing::info!(reason = %err, "hcss: company token refused: the company has not connected this app");
                if let Err(store) = self.shared.token_store.remove(key).await {
                    tracing::debug!(error = %store, "hcss: cached company token not removed");
                }
                if let Some(hook) = &self.on_disconnected {
                    if let Err(err) = tokio::spawn(hook(company_id.clone())).await {
                        tracing::error!(
                            panicked = err.is_panic(),
                            "hcss: the on_disconnected hook failed"
                        );
                    }
                }
                CompanyTokenError::Disconnected { company_id }
            }
        }
    }
}
