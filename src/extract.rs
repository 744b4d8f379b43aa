//! Axum extractors: `HcssToken`, `Option<HcssToken>` and `HcssSession`, and `HcssRejection`.

use std::fmt;
use std::time::Duration;

use axum_core::body::Body;
use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, StatusCode};

use crate::error::SessionError;
use crate::http_rules::{self, no_store};
use crate::return_path::login_location;
use crate::session::HcssSession;
use crate::token::HcssToken;

/// Why a handler that asks for an [`HcssToken`] was not called.
///
/// As a response: a browser page load gets a 303 to the login page (which brings the
/// user back afterwards), an API call gets 401 with a short JSON body, a missing layer is
/// a 500 (and an error log line naming the fix), and an unavailable identity service or
/// store is a 503 with `Retry-After`.
///
/// A **page load** is a `GET` or `HEAD` whose `Accept` includes `text/html`: what a
/// browser sends for its address bar, links and redirects. An **HTML form's POST**
/// (form content type, `Accept` with `text/html`) is sent to log in too, and back to the
/// page that had the form (its same-origin `Referer`). Everything else, `fetch` and XHR
/// calls, curl, and test requests without an `Accept` header among them, gets the 401,
/// which names the login path for the client to send the user to: in its body,
/// `{"error":"login_required","message":...,"login_path":"/hcss/login"}`, and in
/// `WWW-Authenticate: Cookie realm="hcss", login_path="/hcss/login"`.
///
/// ```
/// use http::StatusCode;
/// use hcss_auth::HcssRejection;
///
/// let api = HcssRejection::LoginRequired {
///     login_location: None,
///     login_path: "/hcss/login".into(),
/// };
/// assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum HcssRejection {
    /// The user is not signed in (or the session ended).
    LoginRequired {
        /// Where to send a browser to sign in; `None` for API callers.
        login_location: Option<String>,
        /// The login path, which an API caller's 401 names (in its JSON body and its
        /// `WWW-Authenticate`) for its client to send the user to.
        login_path: String,
    },
    /// The session could not be checked or refreshed right now; try again later.
    Unavailable {
        /// When to retry.
        retry_after: Duration,
    },
    /// The [`HcssAuth`](crate::HcssAuth) layer is not on this route.
    MissingLayer,
}

impl HcssRejection {
    /// The status of this rejection's response.
    pub fn status(&self) -> StatusCode {
        match self {
            HcssRejection::LoginRequired {
                login_location: Some(_),
                ..
            } => StatusCode::SEE_OTHER,
            HcssRejection::LoginRequired {
                login_location: None,
                ..
            } => StatusCode::UNAUTHORIZED,
            HcssRejection::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            HcssRejection::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl fmt::Display for HcssRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HcssRejection::LoginRequired { .. } => {
                f.write_str("not signed in with HCSS: log in first")
            }
            HcssRejection::Unavailable { .. } => {
                f.write_str("the HCSS session cannot be checked right now: retry after a moment")
            }
            HcssRejection::MissingLayer => f.write_str(
                "HcssToken needs the HcssAuth layer: add .layer(HcssAuth::new(config)) as the \
                 last call on the outermost router (Router::layer, not route_layer, and not \
                 on a nested router), so that it wraps every route and serves /hcss/login",
            ),
        }
    }
}

impl std::error::Error for HcssRejection {}

/// The JSON answer of a rejection: `{"error": ..., "message": ...}`.
fn json(status: StatusCode, error: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": error, "message": message });
    http_rules::json(status, &body).map(Body::from)
}

/// `WWW-Authenticate` of a 401: the session cookie's scheme, and where to log in (an
/// auth-param, a quoted string).
fn www_authenticate(login_path: &str) -> HeaderValue {
    let quoted = login_path.replace('\\', "\\\\").replace('"', "\\\"");
    HeaderValue::from_str(&format!("Cookie realm=\"hcss\", login_path=\"{quoted}\""))
        .unwrap_or(HeaderValue::from_static("Cookie realm=\"hcss\""))
}

impl IntoResponse for HcssRejection {
    fn into_response(self) -> Response {
        match &self {
            HcssRejection::LoginRequired {
                login_location: Some(location),
                ..
            } => {
                let mut response = StatusCode::SEE_OTHER.into_response();
                let headers = response.headers_mut();
                if let Ok(location) = HeaderValue::from_str(location) {
                    headers.insert(header::LOCATION, location);
                }
                no_store(headers);
                response
            }
            HcssRejection::LoginRequired {
                login_location: None,
                login_path,
            } => {
                let body = serde_json::json!({
                    "error": "login_required",
                    "message": self.to_string(),
                    "login_path": login_path,
                });
                let mut response =
                    http_rules::json(StatusCode::UNAUTHORIZED, &body).map(Body::from);
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, www_authenticate(login_path));
                response
            }
            HcssRejection::Unavailable { retry_after } => {
                let mut response = json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    &self.to_string(),
                );
                http_rules::retry_after(response.headers_mut(), *retry_after);
                response
            }
            HcssRejection::MissingLayer => {
                tracing::error!("{self}");
                json(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "server misconfigured",
                )
            }
        }
    }
}

/// An HTML form's submission: a POST of form data from a browser.
fn is_form_post(parts: &Parts) -> bool {
    let form = parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(HeaderValue::as_bytes)
        .is_some_and(|t| {
            t.starts_with(b"application/x-www-form-urlencoded")
                || t.starts_with(b"multipart/form-data")
        });
    parts.method == Method::POST && form && http_rules::accepts_html(&parts.headers)
}

/// Where a form's page was: the `Referer`'s path, when it is on this app's origin.
fn form_page<'p>(parts: &'p Parts, origin: &str) -> Option<&'p str> {
    let referer = parts.headers.get(header::REFERER)?.to_str().ok()?;
    let path = referer.strip_prefix(origin)?;
    path.starts_with('/').then_some(path)
}

/// The rejection of a request that is not signed in. A page load (`GET` or `HEAD` that
/// accepts `text/html`) is sent to log in and back to where it was; an HTML form's POST
/// is sent to log in and back to the page that had the form; anything else gets 401.
fn login_required(parts: &Parts, session: &HcssSession) -> HcssRejection {
    let back_to = if http_rules::is_page_load(&parts.method, &parts.headers) {
        // The layer's view of the path: a nested router strips its prefix from `parts.uri`.
        session
            .return_to()
            .or_else(|| parts.uri.path_and_query().map(|pq| pq.as_str()))
    } else if is_form_post(parts) {
        form_page(parts, session.app_origin())
    } else {
        return HcssRejection::LoginRequired {
            login_location: None,
            login_path: session.login_path().to_owned(),
        };
    };
    session.sent_to_login();
    let location = login_location(session.login_path(), back_to);
    HcssRejection::LoginRequired {
        login_location: Some(location),
        login_path: session.login_path().to_owned(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for HcssSession {
    type Rejection = HcssRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<HcssSession>()
            .cloned()
            .ok_or(HcssRejection::MissingLayer)
    }
}

/// Signed in or not: `None` when not signed in, the token when signed in.
impl<S: Send + Sync> OptionalFromRequestParts<S> for HcssToken {
    type Rejection = HcssRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let session = parts
            .extensions
            .get::<HcssSession>()
            .ok_or(HcssRejection::MissingLayer)?;
        match session.token().await {
            Ok(token) => Ok(Some(token)),
            Err(SessionError::NotSignedIn) => Ok(None),
            Err(SessionError::Unavailable { retry_after, .. }) => {
                Err(HcssRejection::Unavailable { retry_after })
            }
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for HcssToken {
    type Rejection = HcssRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let session = parts
            .extensions
            .get::<HcssSession>()
            .ok_or(HcssRejection::MissingLayer)?;
        match session.token().await {
            Ok(token) => Ok(token),
            Err(SessionError::NotSignedIn) => Err(login_required(parts, session)),
            Err(SessionError::Unavailable { retry_after, .. }) => {
                Err(HcssRejection::Unavailable { retry_after })
            }
        }
    }
}
