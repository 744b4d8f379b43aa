//! Axum extractors: `HcssToken`, `Option<HcssToken>` and `HcssSession`, and `HcssRejection`.

use std::fmt;
use std::time::Duration;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, StatusCode};

use crate::error::SessionError;
use crate::return_path::valid_return_path;
use crate::session::HcssSession;
use crate::token::HcssToken;

/// Why a handler that asks for an [`HcssToken`] was not called.
///
/// As a response: a browser page load gets a 303 to the login page (which brings the
/// user back afterwards), an API call gets 401 with a short JSON body, a missing layer is
/// a 500 (and an error log line naming the fix), and an unavailable identity service or
/// store is a 503 with `Retry-After`.
#[derive(Debug)]
#[non_exhaustive]
pub enum HcssRejection {
    /// The user is not signed in (or the session ended).
    LoginRequired {
        /// Where to send a browser to sign in; `None` for API callers.
        login_location: Option<String>,
    },
    /// The session could not be checked or refreshed right now; try again later.
    Unavailable {
        /// When to retry.
        retry_after: Duration,
    },
    /// The [`HcssAuth`](crate::HcssAuth) layer is not on this route.
    MissingLayer,
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
                "HcssToken needs the HcssAuth layer: add .layer(HcssAuth::new(config)) \
                 to the router that serves this route",
            ),
        }
    }
}

impl std::error::Error for HcssRejection {}

fn json(status: StatusCode, error: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": error, "message": message }).to_string();
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl IntoResponse for HcssRejection {
    fn into_response(self) -> Response {
        match &self {
            HcssRejection::LoginRequired {
                login_location: Some(location),
            } => {
                let mut response = StatusCode::SEE_OTHER.into_response();
                let headers = response.headers_mut();
                if let Ok(location) = HeaderValue::from_str(location) {
                    headers.insert(header::LOCATION, location);
                }
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                response
            }
            HcssRejection::LoginRequired {
                login_location: None,
            } => {
                let mut response = json(
                    StatusCode::UNAUTHORIZED,
                    "login_required",
                    &self.to_string(),
                );
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Cookie realm=\"hcss\""),
                );
                response
            }
            HcssRejection::Unavailable { retry_after } => {
                let mut response = json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    &self.to_string(),
                );
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after.as_secs().max(1)),
                );
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

/// A browser loading a page, as opposed to a script or an API client.
fn is_page_load(parts: &Parts) -> bool {
    (parts.method == Method::GET || parts.method == Method::HEAD)
        && parts
            .headers
            .get_all(header::ACCEPT)
            .iter()
            .any(|v| v.as_bytes().windows(9).any(|w| w == b"text/html"))
}

fn login_required(parts: &Parts, session: &HcssSession) -> HcssRejection {
    if !is_page_load(parts) {
        return HcssRejection::LoginRequired {
            login_location: None,
        };
    }
    let login = session.login_path();
    // The layer's view of the path: a nested router strips its prefix from `parts.uri`.
    let here = session
        .here()
        .or_else(|| parts.uri.path_and_query().map(|pq| pq.as_str()))
        .unwrap_or("/");
    let location = match valid_return_path(here) {
        Some(path) => format!(
            "{login}?return_to={}",
            form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>()
        ),
        None => login.to_owned(),
    };
    HcssRejection::LoginRequired {
        login_location: Some(location),
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
