//! Tokens for HCSS companies with no user present: HCSS's `company` grant, with which a
//! partner app acts for a customer company, and `client_credentials`, for the app's own
//! company.

use std::sync::Arc;
use std::time::Duration;

use dashmap::mapref::entry::Entry;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::CompanyTokenError;
use crate::layer::HcssAuth;
use crate::protocol::{ErrorClass, Grant, TokenError, TokenResponse};
use crate::refresh::{freshness, Freshness};
use crate::secret::random_token;
use crate::shared::{CompanyFlight, CompanySource as Source, Shared};
use crate::store::StoreKey;
use crate::token::{HcssToken, HeldToken, TokenSet};

/// Tokens for HCSS companies, with no user present: [`token`](Self::token) asks HCSS's
/// `company` grant for a customer company's token (the `CompanyId` a user's claims
/// carry), [`own_token`](Self::own_token) `client_credentials` for the app's own
/// company.
///
/// Each token is cached in the layer's token store (so instances sharing a `RedisStore`
/// share it, apart from sessions: it is never ended or revoked as one), and held in
/// process while it is fresh (so that a call reads no store; a token HCSS refuses with 401
/// is dropped and read again), and asked for
/// again before it expires, once however many calls want it at the same moment (and once
/// across instances, through the store's lock). The asking runs as a task of its own: a
/// call that is cancelled (its caller dropped, a timeout) stops neither it nor the other
/// calls waiting for it, and the lock is always released. The request
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

impl Source {
    /// Where the token is cached.
    fn key(&self) -> StoreKey {
        match self {
            Source::Company(id) => StoreKey::of_company(id),
            Source::Own => StoreKey::of_own_company(),
        }
    }
}

/// A fetch's turn in `Shared::company_turns`, given back when the fetch ends, however it
/// ends (a panic included).
struct Turn<'a> {
    shared: &'a Shared,
    key: StoreKey,
    flight: CompanyFlight,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.shared
            .company_turns
            .remove_if(&self.key, |_, flight| flight.same_channel(&self.flight));
    }
}

impl HcssCompanyTokens {
    /// Company tokens with the configuration and the token store of `auth`.
    pub fn new(auth: &HcssAuth) -> Self {
        Self {
            shared: auth.shared.clone(),
            on_disconnected: None,
        }
    }

    /// The layer's shared state, for the API client made from these tokens.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// An async hook started with the company's id each time HCSS refuses a company with
    /// `invalid_grant` (the customer removed the app or changed its scopes), in a task of
    /// its own that no call waits for (the call returns
    /// [`CompanyTokenError::Disconnected`] at once): to mark the company in the app's
    /// records, or to end its users' sessions ([`HcssAuth::end_sessions_for_company`]).
    /// Never for a configuration error ([`CompanyTokenError::Misconfigured`]) or a passing
    /// failure. Once per refusal: calls that wait for the same answer share one call of
    /// the hook (that of the `HcssCompanyTokens` whose call asked HCSS). A hook that
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
    /// [`CompanyTokenError::Disconnected`] when HCSS refuses the company
    /// (`invalid_grant`), [`CompanyTokenError::Misconfigured`] when it refuses the app's
    /// request as configured, [`CompanyTokenError::NoCompanyId`] for an empty
    /// `company_id` (HCSS is not asked), [`CompanyTokenError::Unavailable`] (retry later)
    /// otherwise.
    pub async fn token(&self, company_id: &str) -> Result<HcssToken, CompanyTokenError> {
        Ok(self
            .held_token(&Source::Company(company_id.into()))
            .await?
            .token
            .clone())
    }

    /// A live token for the app's own company (`client_credentials`).
    ///
    /// # Errors
    ///
    /// As [`token`](Self::token).
    pub async fn own_token(&self) -> Result<HcssToken, CompanyTokenError> {
        Ok(self.held_token(&Source::Own).await?.token.clone())
    }

    /// A new token after an HCSS API refused `rejected` with 401 (the company's token or,
    /// with `company_id` `None`, the app's own): the cached token is dropped if it is
    /// still `rejected`, and the token asked for again, once however many calls report
    /// it (the others find the new one cached).
    pub(crate) async fn after_rejection(
        &self,
        source: &Source,
        rejected: &HcssToken,
    ) -> Result<Arc<HeldToken>, CompanyTokenError> {
        let key = source.key();
        // Remembered first: a call that read the refused token before it is dropped
        // below does not hold it again.
        self.shared
            .company_refused
            .insert(source.clone(), digest(rejected.secret()));
        self.shared
            .company_tokens
            .remove_if(source, |_, held| held.token.secret() == rejected.secret());
        if let Ok(Some(current)) = self.shared.token_store.load(key).await {
            if current.access_token.expose_secret() == rejected.secret() {
                if let Err(err) = self.shared.token_store.remove(key).await {
                    tracing::debug!(error = %err, "refused company token not removed");
                }
            }
        }
        self.held_token(source).await
    }

    /// The token for `source`, as held in process (with its `Authorization` header):
    /// the call path's way, which copies no token.
    pub(crate) async fn held_token(
        &self,
        source: &Source,
    ) -> Result<Arc<HeldToken>, CompanyTokenError> {
        if let Some(held) = self.held(source) {
            return Ok(held);
        }
        // Never held: HCSS refuses it as `invalid_request`, which would read as HCSS
        // unavailable.
        if matches!(source, Source::Company(id) if id.trim().is_empty()) {
            return Err(CompanyTokenError::NoCompanyId);
        }
        let key = source.key();
        if let Some(tokens) = self.cached(key, source).await {
            return Ok(self.hold(source, tokens));
        }
        // One fetch per company in this process, in a task of its own: the calls that
        // want it wait for its outcome, and one that goes away cancels nothing, so the
        // fetch always releases the store's lock and its turn.
        let mut settled = match self.shared.company_turns.entry(key) {
            Entry::Occupied(flight) => flight.get().clone(),
            Entry::Vacant(vacant) => {
                let (publish, settled) = watch::channel(None);
                vacant.insert(settled.clone());
                tokio::spawn(self.clone().fetch(key, source.clone(), publish));
                settled
            }
        };
        let outcome = match settled.wait_for(Option::is_some).await {
            Ok(settled) => settled.clone(),
            Err(_) => None,
        };
        match outcome {
            Some(outcome) => outcome.map(|tokens| self.hold(source, tokens)),
            // The task ended without an outcome: it panicked.
            None => Err(CompanyTokenError::Unavailable {
                reason: "the company token fetch failed".into(),
                retry_after: self.retry_after(None),
            }),
        }
    }

    /// The fetch task: asks for the token, gives back its turn, publishes the outcome.
    async fn fetch(
        self,
        key: StoreKey,
        source: Source,
        publish: watch::Sender<Option<Result<TokenSet, CompanyTokenError>>>,
    ) {
        let turn = Turn {
            shared: &self.shared,
            key,
            flight: publish.subscribe(),
        };
        let outcome = self.fetch_locked(key, &source).await;
        // The turn goes first: a call after the outcome starts afresh (and finds the
        // cached token), never waits on a settled fetch.
        drop(turn);
        publish.send_replace(Some(outcome));
    }

    /// When to try again after a passing failure: HCSS's `Retry-After`, or the
    /// configured wait; a second at least.
    fn retry_after(&self, said: Option<Duration>) -> Duration {
        said.unwrap_or(self.shared.config.identity.retry_after)
            .max(Duration::from_secs(1))
    }

    /// The token this process holds for `key` if it is good beyond the refresh skew (no
    /// store read: the call path's way).
    fn held(&self, source: &Source) -> Option<Arc<HeldToken>> {
        let config = &self.shared.config;
        let fresh = |tokens: &TokenSet| {
            freshness(tokens, config.now(), config.lifetimes.refresh_skew) == Freshness::Fresh
        };
        let held = self.shared.company_tokens.get(source)?;
        if fresh(&held.set) {
            return Some(held.clone());
        }
        drop(held);
        self.shared
            .company_tokens
            .remove_if(source, |_, held| !fresh(&held.set));
        None
    }

    /// Holds `tokens` in process for the next calls, unless HCSS refused them (read
    /// before the refusal): checked under the company's entry, so that a refusal
    /// remembered after the check drops them after they are held.
    fn hold(&self, source: &Source, tokens: TokenSet) -> Arc<HeldToken> {
        let held = Arc::new(HeldToken::new(tokens));
        let entry = self.shared.company_tokens.entry(source.clone());
        if !self.refused(source, held.token.secret()) {
            entry.insert(held.clone());
        }
        held
    }

    /// Whether `token` is the last HCSS refused for `source`.
    pub(crate) fn was_refused(&self, source: &Source, token: &HcssToken) -> bool {
        self.refused(source, token.secret())
    }

    /// Whether the access token `secret` is the last HCSS refused for `source`.
    fn refused(&self, source: &Source, secret: &str) -> bool {
        self.shared
            .company_refused
            .get(source)
            .is_some_and(|refused| *refused == digest(secret))
    }

    /// The cached token if it is good beyond the refresh skew and not the one HCSS
    /// last refused (the store may still have it while the call that saw the refusal
    /// removes it).
    async fn cached(&self, key: StoreKey, source: &Source) -> Option<TokenSet> {
        let config = &self.shared.config;
        self.shared
            .token_store
            .load(key)
            .await
            .unwrap_or_else(|err| {
                tracing::debug!(error = %err, "cached company token unreadable; asking HCSS");
                None
            })
            .filter(|tokens| {
                freshness(tokens, config.now(), config.lifetimes.refresh_skew) == Freshness::Fresh
                    && !self.refused(source, tokens.access_token.expose_secret())
            })
    }

    /// Under the store's lock (other instances), asks HCSS unless the cache has a fresh
    /// token by now.
    async fn fetch_locked(
        &self,
        key: StoreKey,
        source: &Source,
    ) -> Result<TokenSet, CompanyTokenError> {
        let shared = &self.shared;
        let config = &shared.config;
        let owner = random_token(16);
        let lease = config.identity.http_timeout * 2;
        let deadline = Instant::now() + lease;
        let mut pause = Duration::from_millis(10);
        let unavailable = |reason: String| CompanyTokenError::Unavailable {
            reason,
            retry_after: self.retry_after(None),
        };
        loop {
            if let Some(tokens) = self.cached(key, source).await {
                return Ok(tokens);
            }
            match shared.token_store.try_lock(key, owner.clone(), lease).await {
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
        if let Err(err) = shared.token_store.unlock(key, owner).await {
            tracing::debug!(error = %err, "company token lock not released; it expires by itself");
        }
        result
    }

    async fn ask_hcss(
        &self,
        key: StoreKey,
        source: &Source,
    ) -> Result<TokenSet, CompanyTokenError> {
        let shared = &self.shared;
        let config = &shared.config;
        if let Some(tokens) = self.cached(key, source).await {
            return Ok(tokens);
        }
        let grant = match source {
            Source::Company(company_id) => Grant::Company { company_id },
            Source::Own => Grant::ClientCredentials,
        };
        match shared.request_tokens(grant).await {
            Ok(TokenResponse { mut tokens, .. }) => {
                // No refresh token: the token lives as long as it says, then is asked for again.
                tokens.refresh_token = None;
                tokens.session_expires_at = tokens.expires_at;
                crate::metrics::company_token("fetched");
                let ttl = tokens.store_ttl(config.now());
                if let Err(err) = shared.token_store.store(key, tokens.clone(), ttl).await {
                    tracing::warn!(error = %err, "company token not cached; the next call asks HCSS again");
                }
                Ok(tokens)
            }
            Err(err) => Err(self.classify(key, source, &err).await),
        }
    }

    /// What a refusal or failure means for the caller, by the table refreshes use
    /// ([`TokenError::class`]): only `invalid_grant` says the company is gone.
    async fn classify(
        &self,
        key: StoreKey,
        source: &Source,
        err: &TokenError,
    ) -> CompanyTokenError {
        match err.class() {
            ErrorClass::GrantGone => {
                let company_id = match source {
                    Source::Company(id) => id.to_string(),
                    Source::Own => "(this app's own)".to_owned(),
                };
                tracing::info!(reason = %err, "company token refused: the company has not connected this app");
                self.shared.company_tokens.remove(source);
                if let Err(store) = self.shared.token_store.remove(key).await {
                    tracing::debug!(error = %store, "cached company token not removed");
                }
                if let Some(hook) = &self.on_disconnected {
                    // In a task of its own, not awaited: a slow hook (ending the company's
                    // sessions one by one) holds up no call for the company.
                    let hook = tokio::spawn(hook(company_id.clone()));
                    tokio::spawn(async move {
                        if let Err(err) = hook.await {
                            tracing::error!(
                                panicked = err.is_panic(),
                                "the on_disconnected hook failed"
                            );
                        }
                    });
                }
                crate::metrics::company_token("disconnected");
                CompanyTokenError::Disconnected { company_id }
            }
            ErrorClass::Configuration => {
                tracing::error!(reason = %err, "company token refused: this app's client id, secret, allowed grants or scopes are wrong");
                CompanyTokenError::Misconfigured {
                    reason: err.to_string(),
                }
            }
            ErrorClass::Transient | ErrorClass::Failed => {
                tracing::warn!(reason = %err, "company token unavailable for now");
                CompanyTokenError::Unavailable {
                    reason: err.to_string(),
                    retry_after: self.retry_after(err.retry_after()),
                }
            }
        }
    }
}

/// The SHA-256 of a refused token: what is remembered of it.
fn digest(secret: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(secret.as_bytes()).into()
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use super::*;
    use crate::testing::{MockHcssIdentity, TokenFault};

    async fn companies(mock: &MockHcssIdentity) -> (HcssAuth, HcssCompanyTokens) {
        let config = mock
            .config_builder("http://127.0.0.1:9/hcss/callback")
            .scopes(["heavyjob:read"])
            .build()
            .unwrap();
        let auth = HcssAuth::new(config);
        let companies = HcssCompanyTokens::new(&auth);
        (auth, companies)
    }

    /// A caller dropped while its call asks HCSS cancels nothing: the fetch goes on, a
    /// later caller gets its token (no second grant), and no turn is left behind.
    #[tokio::test]
    async fn a_cancelled_call_leaves_the_fetch_running_and_no_turn_behind() {
        let mock = MockHcssIdentity::start().await;
        let (auth, companies) = companies(&mock).await;
        mock.set_token_fault(Some(TokenFault::Slow(Duration::from_millis(300))));
        let cancelled = tokio::spawn({
            let companies = companies.clone();
            async move { companies.token("co-1").await }
        });
        mock.wait_for(|c| c.company_grants == 1).await;
        cancelled.abort();
        assert!(cancelled.await.unwrap_err().is_cancelled());
        mock.set_token_fault(None);
        companies.token("co-1").await.unwrap();
        assert_eq!(
            mock.counts().company_grants,
            1,
            "the cancelled call's fetch served the next caller"
        );
        assert!(
            auth.shared.company_turns.is_empty(),
            "a company's turn left behind"
        );
    }

    /// A token a call read (from the store) before HCSS refused it is not held once
    /// another call found it refused and fetched the next: the call's late `hold` put
    /// the refused token back over the new one, and every call after it (one that had
    /// already refreshed included, which then failed `Unauthorized`) went with it.
    #[tokio::test]
    async fn a_refused_token_read_before_its_refusal_is_not_held_again() {
        let mock = MockHcssIdentity::start().await;
        let (_auth, companies) = companies(&mock).await;
        let source = Source::Company("co-1".into());
        let first = companies.held_token(&source).await.unwrap();
        // A call reads the store (its answer on its way)...
        let read_before = companies.cached(source.key(), &source).await.unwrap();
        // ... while another call gets 401 with the token and fetches the next one.
        let next = companies
            .after_rejection(&source, &first.token)
            .await
            .unwrap();
        assert_ne!(next.token.secret(), first.token.secret());
        // The first call holds what it read.
        drop(companies.hold(&source, read_before));
        let held = companies.held_token(&source).await.unwrap();
        assert!(
            held.token.secret() == next.token.secret(),
            "the refused token is held again"
        );
        assert_eq!(mock.counts().company_grants, 2);
    }

    /// A configuration error keeps the cached token (it is no disconnection).
    #[tokio::test]
    async fn a_configuration_error_keeps_the_cached_token() {
        let mock = MockHcssIdentity::start().await;
        let (auth, companies) = companies(&mock).await;
        companies.token("co-1").await.unwrap();
        // Within the refresh skew of its end: asked for again.
        mock.clock().advance(Duration::from_secs(3600 - 30));
        mock.set_token_fault(Some(TokenFault::Error {
            status: 400,
            error: "unauthorized_client",
            retry_after: None,
        }));
        assert!(matches!(
            companies.token("co-1").await,
            Err(CompanyTokenError::Misconfigured { .. })
        ));
        let key = Source::Company("co-1".into()).key();
        assert!(
            auth.shared.token_store.load(key).await.unwrap().is_some(),
            "the cached token was removed"
        );
    }
}
