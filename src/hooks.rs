//! Hooks the app gives the layer: one at sign-in, which may refuse it, and one at
//! sign-out.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::StatusCode;

use crate::claims::Claims;
use crate::store::StoreKey;

/// A sign-in about to complete, as the `on_sign_in` hook sees it: who signed in and the
/// key the session will be stored under (for the app's own records).
#[derive(Debug, Clone)]
pub struct SignIn {
    pub(crate) claims: Claims,
    pub(crate) session: StoreKey,
    pub(crate) scope: Arc<str>,
}

impl SignIn {
    /// The claims of the new access token: `sub`, `CompanyId`, name, email...
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The key the session is stored under: the same for the session's whole life, and
    /// what [`HcssSession::store_key`](crate::HcssSession::store_key) gives a handler.
    pub fn session_key(&self) -> StoreKey {
        self.session
    }

    /// The scopes HCSS granted.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope.split_ascii_whitespace()
    }
}

/// A session that ended (a logout, `HcssSession::end`, or a new sign-in in the same
/// browser), as the `on_sign_out` hook sees it.
#[derive(Debug, Clone)]
pub struct SignOut {
    pub(crate) claims: Claims,
    pub(crate) session: StoreKey,
}

impl SignOut {
    /// The claims of the session's last access token (empty if its tokens were gone).
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// The key the session was stored under.
    pub fn session_key(&self) -> StoreKey {
        self.session
    }
}

/// An `on_sign_in` hook's refusal: the page the user sees instead of being signed in
/// (403 unless said otherwise). Its text is escaped.
///
/// ```
/// use hcss_auth::SignInRefused;
///
/// let refused = SignInRefused::new("Your company has not connected this app yet.")
///     .with_title("Not connected");
/// assert_eq!(refused.status(), http::StatusCode::FORBIDDEN);
/// ```
#[derive(Debug, Clone)]
pub struct SignInRefused {
    pub(crate) status: StatusCode,
    pub(crate) title: String,
    pub(crate) message: String,
}

impl SignInRefused {
    /// A refusal with this message for the user.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            title: "Sign-in refused".into(),
            message: message.into(),
        }
    }

    /// The page's title (default "Sign-in refused").
    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    /// The page's status (default 403); a status that is not a client or server error
    /// is taken as 403.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = if status.is_client_error() || status.is_server_error() {
            status
        } else {
            StatusCode::FORBIDDEN
        };
        self
    }

    /// The page's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
pub(crate) type SignInHook =
    Arc<dyn Fn(SignIn) -> BoxFuture<Result<(), SignInRefused>> + Send + Sync>;
pub(crate) type SignOutHook = Arc<dyn Fn(SignOut) -> BoxFuture<()> + Send + Sync>;

/// The hooks a layer has.
#[derive(Default, Clone)]
pub(crate) struct Hooks {
    pub(crate) on_sign_in: Option<SignInHook>,
    pub(crate) on_sign_out: Option<SignOutHook>,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooks")
            .field("on_sign_in", &self.on_sign_in.is_some())
            .field("on_sign_out", &self.on_sign_out.is_some())
            .finish()
    }
}
