//! What every clone of the layer, its service and each request's session share.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::watch;

use crate::config::HcssConfig;
use crate::error::CompanyTokenError;
use crate::hooks::Hooks;
use crate::oidc::Provider;
use crate::seal::SealKeys;
use crate::store::{StateStore, StoreKey, TokenStore};
use crate::token::{HeldToken, TokenSet};

pub(crate) mod budgets;
mod flights;
mod identity;
mod kept;
mod placement;
mod used_states;

pub(crate) use flights::{Flight, FlightResult, Outcome};
pub(crate) use kept::{Pending, PendingSet};
pub(crate) use placement::Placement;
pub(crate) use used_states::UsedStates;

/// The configuration, the stores, and this process's refresh state.
pub(crate) struct Shared {
    pub(crate) config: HcssConfig,
    /// Where logins in progress are kept.
    pub(crate) logins: Logins,
    pub(crate) token_store: Arc<dyn TokenStore>,
    /// States of sealed logins whose callback has been answered, so a replay is refused
    /// before any token call.
    pub(crate) used_states: UsedStates,
    /// Places for code exchanges in flight (`max_code_exchanges`): a callback past them
    /// answers 503 before any token call.
    pub(crate) code_exchanges: tokio::sync::Semaphore,
    /// What tells a misplaced layer.
    pub(crate) placement: Placement,
    /// Whether a sign-in without a refresh token was already logged (once per layer).
    pub(crate) told_no_refresh_token: std::sync::atomic::AtomicBool,
    /// The app's hooks, given before the layer was built.
    pub(crate) hooks: Hooks,
    /// The company-token fetch in flight per company, within this process, watched by
    /// every call that waits for it.
    pub(crate) company_turns: DashMap<StoreKey, CompanyFlight>,
    /// The company tokens this process holds, as the store holds them, kept while fresh
    /// so that a call does not read the store for its token: dropped when HCSS refuses
    /// one (401, `invalid_grant`) or it nears its end.
    /// Keyed by whose token it is, not by its store key, so that a call computes no key.
    pub(crate) company_tokens: DashMap<CompanySource, Arc<HeldToken>>,
    /// The SHA-256 of the last company token HCSS refused (401) per company: a call that
    /// read it before the refusal (from the store) neither holds it again nor goes with
    /// it, over the token fetched after the refusal.
    pub(crate) company_refused: DashMap<CompanySource, [u8; 32]>,
    /// The refresh in flight (or the failure remembered) per session key.
    pub(crate) flights: DashMap<StoreKey, Flight>,
    /// Token sets refreshed but not yet written, because the store refused the write:
    /// this process serves and refreshes them, never the spent set the store still has.
    pub(crate) pending: Pending,
    /// Who refreshes for this layer: the owner of its refresh locks and of the marks it
    /// leaves on the sets it spends. One per layer, so that a mark this instance left
    /// (a refresh that failed before it could clear it) does not make it wait for itself.
    pub(crate) refresher: String,
    /// The companies' budgets of API calls, as this layer's calls meet them.
    pub(crate) budgets: budgets::Budgets,
    /// The URLs of the API paths called, by path (`crate::api`'s `target`): a call to a
    /// path called before clones its URL rather than setting the path again.
    pub(crate) api_urls: DashMap<Box<str>, url::Url>,
    /// What the identity service publishes (its discovery document and signing keys),
    /// read on first use and shared by every clone of the layer.
    pub(crate) oidc: Provider,
}

impl Shared {
    pub(crate) fn new(
        config: HcssConfig,
        logins: Logins,
        token_store: Arc<dyn TokenStore>,
        hooks: Hooks,
    ) -> Self {
        Self {
            code_exchanges: tokio::sync::Semaphore::new(config.identity.max_code_exchanges),
            config,
            logins,
            token_store,
            used_states: UsedStates::default(),
            placement: Placement::default(),
            told_no_refresh_token: std::sync::atomic::AtomicBool::new(false),
            hooks,
            company_turns: DashMap::new(),
            company_tokens: DashMap::new(),
            company_refused: DashMap::new(),
            flights: DashMap::new(),
            pending: Pending::default(),
            refresher: crate::secret::random_token(16),
            budgets: Default::default(),
            api_urls: DashMap::new(),
            oidc: Provider::default(),
        }
    }
}

/// Whose company token: a customer company's (HCSS's `company` grant) or the app's own
/// (`client_credentials`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CompanySource {
    /// Shared, not copied, by the requests of one caller.
    Company(Arc<str>),
    Own,
}

/// A company-token fetch: its outcome once settled.
pub(crate) type CompanyFlight = watch::Receiver<Option<Result<TokenSet, CompanyTokenError>>>;

/// Where logins in progress are kept between `/hcss/login` and the callback.
pub(crate) enum Logins {
    /// In the browser: a cookie per login, sealed with a key resolved at first use (from
    /// the configuration, a store that shares one, or a random one of this process).
    Sealed(Box<SealKeys>),
    /// In a store, with a binding cookie per login.
    Stored(Arc<dyn StateStore>),
}
