//! `HcssAuth`: the Tower layer that mounts the flow.

use std::sync::Arc;

use tower_layer::Layer;

use crate::config::HcssConfig;
use crate::service::HcssAuthService;
use crate::shared::Shared;
use crate::store::{MemoryStore, StateStore, TokenStore};

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
    /// The layer with a [`MemoryStore`] for login transactions and tokens.
    pub fn new(config: HcssConfig) -> Self {
        Self::with_store(config, MemoryStore::new())
    }

    /// The layer with one store for both login transactions and tokens, such as
    /// `RedisStore` for apps that run several instances.
    pub fn with_store<S>(config: HcssConfig, store: S) -> Self
    where
        S: StateStore + TokenStore,
    {
        let store = Arc::new(store);
        Self::with_stores(config, store.clone(), store)
    }

    /// The layer with separate stores for login transactions and tokens.
    pub fn with_stores(
        config: HcssConfig,
        state_store: Arc<dyn StateStore>,
        token_store: Arc<dyn TokenStore>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared::new(config, state_store, token_store)),
        }
    }

    /// The configuration this layer runs with.
    pub fn config(&self) -> &HcssConfig {
        &self.shared.config
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
