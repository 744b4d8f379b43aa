//! `HcssAuth`: the Tower layer that mounts the flow.

use std::sync::Arc;

use std::future::Future;

use tower_layer::Layer;

use crate::hooks::{Hooks, SignIn, SignInRefused, SignOut};

use crate::config::HcssConfig;
use crate::error::StoreError;
use crate::service::HcssAuthService;
use crate::shared::{Logins, Shared};
use crate::store::{MemoryStore, SessionOwner, StateStore, TokenStore};

/// The layer that signs users in with HCSS.
///
/// It answers `GET /hcss/login`, `GET` on the callback path and `POST /hcss/logout`, and
/// passes every other request on with an [`HcssSession`](crate::HcssSession) in its
/// extensions, which the [`HcssToken`](crate::HcssToken) extractor reads. Cloning it is
/// cheap (one `Arc`).
///
/// ```
/// use axum::{routing::get, Router};
/// use hcss_auth::{HcssAuth, HcssConfig, HcssToken};
///
/// async fn jobs(token: HcssToken) -> String {
///     format!("signed in; token expires in {}s", token.expires_in().as_secs())
/// }
///
/// # fn main() -> Result<(), hcss_auth::ConfigError> {
/// let config = HcssConfig::builder()
///     .client_id("my-client")
///     .scopes(["heavyjob:read", "offline_access"])
///     .redirect_uri("https://app.example.com/hcss/callback")
///     .build()?;
/// let app: Router = Router::new()
///     .route("/jobs", get(jobs))
///     .layer(HcssAuth::new(config));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HcssAuth {
    pub(crate) shared: Arc<Shared>,
}

impl HcssAuth {
    /// The layer with tokens in a [`MemoryStore`], and logins in progress sealed in the
    /// browser's cookies. For hooks or other stores, see [`builder`](Self::builder).
    pub fn new(config: HcssConfig) -> Self {
        Self::builder(config).build()
    }

    /// The layer with tokens in `store`, such as `RedisStore` for apps that run several
    /// instances, and logins in progress sealed in the browser's cookies: the same as
    /// `HcssAuth::builder(config).token_store(store).build()`.
    ///
    /// A login in progress costs the server nothing: its PKCE verifier, return path,
    /// start time and state travel in a cookie of its own, encrypted and authenticated
    /// (AES-256-GCM), so a flood of `/hcss/login` requests fills no memory and evicts no
    /// real user's login. Every instance needs the same key:
    /// [`cookie_key`](crate::HcssConfigBuilder::cookie_key), or, unset, one that `store`
    /// shares between its instances (`RedisStore` does).
    pub fn with_store<S>(config: HcssConfig, store: S) -> Self
    where
        S: TokenStore,
    {
        Self::builder(config).token_store(store).build()
    }

    /// A layer to configure (stores, hooks) before it is built and shared. The builder
    /// is an owned value: configuring one clone of it changes no other, and a built
    /// layer's configuration never changes.
    ///
    /// ```
    /// use hcss_auth::{HcssAuth, HcssConfig, MemoryStore, SignOut};
    ///
    /// # fn main() -> Result<(), hcss_auth::ConfigError> {
    /// # let config = HcssConfig::builder().client_id("id").scopes(["heavyjob:read"])
    /// #     .redirect_uri("https://app.example.com/hcss/callback").build()?;
    /// let layer = HcssAuth::builder(config)
    ///     .token_store(MemoryStore::new())
    ///     .on_sign_out(|sign_out: SignOut| async move {
    ///         tracing::info!(session = %sign_out.session_key(), "signed out");
    ///     })
    ///     .build();
    /// # let _ = layer; Ok(()) }
    /// ```
    pub fn builder(config: HcssConfig) -> HcssAuthBuilder {
        HcssAuthBuilder {
            config,
            token_store: None,
            state_store: None,
            hooks: Hooks::default(),
        }
    }

    /// Ends every session of the user with this `sub` (an administrator's "log out
    /// everywhere"): each as a logout would (tokens taken, refresh token revoked,
    /// `on_sign_out` called). Returns how many sessions it ended.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unsupported`] when the token store keeps no index of sessions by
    /// owner (`MemoryStore` and `RedisStore` do); [`StoreError::Unavailable`] when it
    /// fails.
    pub async fn end_sessions_for_subject(&self, subject: &str) -> Result<usize, StoreError> {
        self.end_sessions_of(SessionOwner::Subject(subject.to_owned()))
            .await
    }

    /// Ends every session of the company with this `CompanyId` (a customer removing the
    /// app in the HCSS Marketplace), as [`end_sessions_for_subject`](Self::end_sessions_for_subject)
    /// does for one user.
    ///
    /// # Errors
    ///
    /// As [`end_sessions_for_subject`](Self::end_sessions_for_subject).
    pub async fn end_sessions_for_company(&self, company_id: &str) -> Result<usize, StoreError> {
        self.end_sessions_of(SessionOwner::Company(company_id.to_owned()))
            .await
    }

    async fn end_sessions_of(&self, owner: SessionOwner) -> Result<usize, StoreError> {
        let keys = self.shared.token_store.sessions_of(owner).await?;
        let mut ended = 0;
        for key in keys {
            crate::session::end_session(&self.shared, key).await?;
            ended += 1;
        }
        tracing::info!(ended, "sessions ended by owner");
        crate::metrics::sessions_ended("admin", ended);
        Ok(ended)
    }

    /// Checks, with no user, that this configuration works against the identity service
    /// it names, and reports each item with what to do when it fails: the discovery
    /// document and its issuer; the token endpoint reached over TLS; the client's
    /// credentials (a code exchange with a made-up code: `invalid_grant` means the client
    /// was accepted, `invalid_client` that it was not); this machine's clock against the
    /// identity service's `Date`; the redirect URI; `offline_access`; the cookie key; and
    /// a shared store's own checks (`RedisStore`: reachable, client tracking). Run it at
    /// deploy time (`cargo run --example doctor` prints it); it changes nothing.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let auth = hcss_auth::HcssAuth::new(hcss_auth::HcssConfig::from_env()?);
    /// let report = auth.check().await;
    /// print!("{report}");
    /// if report.has_failures() {
    ///     std::process::exit(1);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn check(&self) -> crate::CheckReport {
        crate::doctor::run(&self.shared).await
    }

    /// The configuration this layer runs with.
    pub fn config(&self) -> &HcssConfig {
        &self.shared.config
    }
}

/// Configures an [`HcssAuth`] before it is built: where tokens (and, optionally, logins
/// in progress) are stored, and the app's hooks. Made by [`HcssAuth::builder`].
#[derive(Clone)]
#[must_use]
pub struct HcssAuthBuilder {
    config: HcssConfig,
    token_store: Option<Arc<dyn TokenStore>>,
    state_store: Option<Arc<dyn StateStore>>,
    hooks: Hooks,
}

impl HcssAuthBuilder {
    /// Keeps the tokens of signed-in sessions in `store` (default: a [`MemoryStore`]),
    /// such as `RedisStore` for apps that run several instances.
    pub fn token_store<S: TokenStore>(mut self, store: S) -> Self {
        self.token_store = Some(Arc::new(store));
        self
    }

    /// Keeps logins in progress in `store` (the browser then holds only a random binding
    /// cookie per login) instead of sealing them in the browser's cookies (the default).
    ///
    /// Choose this when logins in progress must live on the server; the store must then
    /// bound what a flood of logins can make it hold (`MemoryStore` is bounded; Redis
    /// grows with the flood).
    pub fn state_store<S: StateStore>(mut self, store: S) -> Self {
        self.state_store = Some(Arc::new(store));
        self
    }

    /// An async hook called at each sign-in, once HCSS has issued the tokens and before
    /// the session starts: it sees who signed in ([`SignIn::claims`]) and the session's
    /// key, and may refuse the sign-in with a page ([`SignInRefused`]), for example when
    /// the user's company has not connected the app. A refused sign-in stores nothing and
    /// its refresh token is revoked. A hook that panics refuses the sign-in (500) and the
    /// server serves on.
    ///
    /// ```
    /// use hcss_auth::{HcssAuth, HcssConfig, SignIn, SignInRefused};
    ///
    /// # fn main() -> Result<(), hcss_auth::ConfigError> {
    /// # let config = HcssConfig::builder().client_id("id").scopes(["heavyjob:read"])
    /// #     .redirect_uri("https://app.example.com/hcss/callback").build()?;
    /// let layer = HcssAuth::builder(config)
    ///     .on_sign_in(|sign_in: SignIn| async move {
    ///         match sign_in.claims().company_id() {
    ///             Some(_company) => Ok(()), // look it up in your records here
    ///             None => Err(SignInRefused::new("Your HCSS user belongs to no company.")),
    ///         }
    ///     })
    ///     .build();
    /// # let _ = layer; Ok(()) }
    /// ```
    pub fn on_sign_in<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(SignIn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), SignInRefused>> + Send + 'static,
    {
        self.hooks.on_sign_in = Some(Arc::new(move |sign_in| Box::pin(hook(sign_in))));
        self
    }

    /// An async hook called when a session ends: a logout, [`HcssSession::end`], a new
    /// sign-in in the same browser, or [`HcssAuth::end_sessions_for_subject`] and its
    /// company twin. It sees the session's last claims and its key. A hook that panics is
    /// logged; the sign-out stands.
    ///
    /// [`HcssSession::end`]: crate::HcssSession::end
    pub fn on_sign_out<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(SignOut) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.hooks.on_sign_out = Some(Arc::new(move |sign_out| Box::pin(hook(sign_out))));
        self
    }

    /// The layer, ready to be shared: clones of it share its stores and its refresh
    /// state.
    pub fn build(self) -> HcssAuth {
        let token_store = self
            .token_store
            .unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let logins = match self.state_store {
            Some(store) => Logins::Stored(store),
            None => Logins::Sealed(Box::default()),
        };
        HcssAuth {
            shared: Arc::new(Shared::new(self.config, logins, token_store, self.hooks)),
        }
    }
}

impl std::fmt::Debug for HcssAuthBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HcssAuthBuilder")
            .field("config", &self.config)
            .field("state_store", &self.state_store.is_some())
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for HcssAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HcssAuth")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for HcssAuth {
    type Service = HcssAuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HcssAuthService::new(inner, self.clone())
    }
}
