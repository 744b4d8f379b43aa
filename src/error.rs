//! Errors, one enum per phase: configuration, stores, and a session's token.

use std::time::Duration;

/// The configuration is incomplete or unsafe. Returned by
/// [`HcssConfigBuilder::build`](crate::HcssConfigBuilder::build) and
/// [`HcssConfig::from_env`](crate::HcssConfig::from_env).
///
/// Its `Debug` output is its message, so that `?` in `main` prints what to fix:
///
/// ```
/// let err = hcss_auth::HcssConfig::builder().build().unwrap_err();
/// assert_eq!(format!("{err:?}"), err.to_string());
/// assert!(format!("{err:?}").contains("HCSS_CLIENT_ID"));
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required setting was not given.
    #[error("{0} is required: set it on the builder (or in the environment for from_env)")]
    Missing(&'static str),
    /// A setting has a value that cannot work.
    #[error("{field} is invalid: {reason}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// What is wrong with it and what to do.
        reason: String,
    },
    /// The HTTP client for the token endpoint could not be built.
    #[error("the HTTP client for the identity service could not be built: {0}")]
    HttpClient(String),
}

impl std::fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl ConfigError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// A store could not do what was asked. Flow endpoints answer it with 503.
///
/// Its `Debug` output is its message, so that `?` in `main` prints what failed:
///
/// ```
/// let err = hcss_auth::StoreError::Misconfigured("DB index is out of range".into());
/// assert_eq!(format!("{err:?}"), err.to_string());
/// ```
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store's backend cannot be reached or failed; the request may be retried.
    #[error("the session store is unavailable: {0}")]
    Unavailable(String),
    /// The store cannot work as configured (a malformed URL, a database that does not
    /// exist, credentials or permissions refused): retrying does not help, the
    /// configuration must change.
    #[error("the session store is misconfigured: {0}")]
    Misconfigured(String),
    /// A stored value could not be read back.
    #[error("a stored value is corrupt: {0}")]
    Corrupt(String),
    /// The store cannot do this at all (an optional capability it does not have).
    #[error("the session store cannot do this: {0}")]
    Unsupported(String),
}

impl std::fmt::Debug for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Why [`HcssSession::token`](crate::HcssSession::token) gave no token.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The request has no session, or its session ended (logged out, expired, or HCSS
    /// refused to refresh it). The user must log in.
    #[error("not signed in with HCSS: log in again at the layer's login path (/hcss/login unless configured otherwise)")]
    NotSignedIn,
    /// The token could not be refreshed for now (HCSS or the store is unreachable or
    /// failing). The session is kept; try again after `retry_after`.
    #[error("the HCSS session cannot be refreshed right now ({reason}); retry later")]
    Unavailable {
        /// What failed, without secrets.
        reason: String,
        /// When to try again.
        retry_after: Duration,
    },
}

/// Why [`HcssCompanyTokens`](crate::HcssCompanyTokens) gave no token. HCSS's answers
/// are read with the table refreshes use: only `invalid_grant` says the company is gone.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompanyTokenError {
    /// HCSS refused the grant for this company (`invalid_grant`): the customer removed
    /// the app in the HCSS Marketplace or changed its scopes. Ask them to connect the app
    /// again; the next call asks HCSS afresh, so a reconnected company works at once.
    #[error(
        "the company {company_id} has not connected this app: ask it to connect the app again"
    )]
    Disconnected {
        /// The company.
        company_id: String,
    },
    /// HCSS or the store cannot be reached or is failing, or HCSS gave an answer this
    /// crate cannot use (a refusal with an error code it does not know, a malformed
    /// response): try again after `retry_after`. The cached token, if any, is kept.
    #[error("HCSS cannot issue company tokens right now ({reason}); retry later")]
    Unavailable {
        /// What failed, without secrets.
        reason: String,
        /// When to try again.
        retry_after: Duration,
    },
    /// HCSS refused this app's request as configured (`invalid_client`,
    /// `unauthorized_client`, `unsupported_grant_type`, `invalid_scope`): fix the client
    /// id or secret, the grants the client may use (`company`, `client_credentials`) or
    /// its scopes. The company is not reported disconnected and its cached token is kept.
    #[error(
        "HCSS refused this app's request ({reason}): check its client id and secret, the grants it may use and its scopes"
    )]
    Misconfigured {
        /// What HCSS said.
        reason: String,
    },
    /// The company id given was empty: the app's mistake (a user whose token named no
    /// company, read as empty, say). HCSS is not asked.
    #[error("no company id was given: give the customer's CompanyId (a signed-in user's is in their token's claims)")]
    NoCompanyId,
}

/// Why an [`HcssApi`](crate::HcssApi) call gave no response. Each variant says what the
/// app should do; as a response (`IntoResponse`) it is what a browser or script should
/// get: 401 `login_required`, 403, or 503 with `Retry-After`.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HcssApiError {
    /// The request has no session, or its session ended: the user must sign in.
    #[error("not signed in with HCSS: log in again at the layer's login path (/hcss/login unless configured otherwise)")]
    NotSignedIn,
    /// HCSS refused the token with 401, and refused the new one the crate got for it
    /// (a refresh of the session, or the company's token asked for again): the user
    /// must sign in again (the session is not ended by this), or the company connect the
    /// app again.
    #[error("HCSS refused the access token even after a refresh: sign in again (for a company's call: the company may have to connect the app again)")]
    Unauthorized,
    /// HCSS refused the call with 403: the token lacks a scope the call needs. `scopes`
    /// are those the token has; add the missing one to the configured scopes (and, for a
    /// user, sign in again to consent to it).
    #[error("HCSS refused the call with 403: the token's scopes are [{}]; add the one the call needs", scopes.join(" "))]
    Forbidden {
        /// The scopes the token has.
        scopes: Vec<String>,
    },
    /// The call could not be made within the maximum wait
    /// ([`api_max_wait`](crate::HcssConfigBuilder::api_max_wait)): the company's budget
    /// was spent, or HCSS answered 429 with a `Retry-After` past it. Answer 503 with
    /// `Retry-After`, or try again after `retry_after`.
    #[error("the company's HCSS API budget is spent for now: retry after {}s", crate::http_rules::whole_seconds(*retry_after).as_secs().max(1))]
    Busy {
        /// When to try again.
        retry_after: Duration,
    },
    /// HCSS or the store failed (5xx, a connection error or timeout after the retries a
    /// call may take; the session's refresh unavailable): try again after `retry_after`.
    ///
    /// A request the client does not send twice (a `POST` or `PATCH`, or any with a
    /// body) may have reached HCSS and been carried out before the failure: a 5xx, a
    /// timeout, a connection lost after it was sent, even a success whose body was cut
    /// off. Check what HCSS holds before sending such a request again.
    #[error("HCSS cannot be called right now ({reason}); retry later")]
    Unavailable {
        /// What failed, without secrets.
        reason: String,
        /// When to try again.
        retry_after: Duration,
    },
    /// No company token: see the error.
    #[error(transparent)]
    Company(#[from] CompanyTokenError),
    /// The request could not be built (a body that does not serialize, a path that is
    /// not one), or a response did not decode as asked.
    #[error("HCSS API call or response unusable: {reason}")]
    Invalid {
        /// What was wrong.
        reason: String,
    },
}

impl HcssApiError {
    /// When to try again, for the errors that pass.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            HcssApiError::Busy { retry_after }
            | HcssApiError::Unavailable { retry_after, .. }
            | HcssApiError::Company(CompanyTokenError::Unavailable { retry_after, .. }) => {
                Some(*retry_after)
            }
            _ => None,
        }
    }
}

impl axum_core::response::IntoResponse for HcssApiError {
    fn into_response(self) -> axum_core::response::Response {
        use http::StatusCode;
        let (status, error) = match &self {
            HcssApiError::NotSignedIn | HcssApiError::Unauthorized => {
                (StatusCode::UNAUTHORIZED, "login_required")
            }
            HcssApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "insufficient_scope"),
            HcssApiError::Company(CompanyTokenError::Disconnected { .. }) => {
                (StatusCode::FORBIDDEN, "company_disconnected")
            }
            HcssApiError::Company(
                CompanyTokenError::Misconfigured { .. } | CompanyTokenError::NoCompanyId,
            ) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
            HcssApiError::Invalid { .. } => (StatusCode::BAD_GATEWAY, "bad_gateway"),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
        };
        let body = serde_json::json!({ "error": error, "message": self.to_string() });
        let mut response = crate::http_rules::json(status, &body).map(axum_core::body::Body::from);
        if let Some(wait) = self.retry_after() {
            crate::http_rules::retry_after(response.headers_mut(), wait);
        }
        // A 401 says how to authenticate (RFC 9110), as the extractors' does: with the
        // session's cookie, got by signing in.
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Cookie realm=\"hcss\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum_core::response::IntoResponse;

    /// The message of a `Busy` answer names the wait its `Retry-After` header gives (both
    /// rounded up to whole seconds). Seen failing before the message rounded up: the
    /// header said 60 and the message "retry after 59s".
    #[test]
    fn a_busy_message_names_the_wait_of_its_retry_after() {
        let err = HcssApiError::Busy {
            retry_after: Duration::from_millis(59_357),
        };
        assert_eq!(
            err.to_string(),
            "the company's HCSS API budget is spent for now: retry after 60s"
        );
        let response = err.into_response();
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "60");
    }

    /// "Not signed in" says where to sign in, as far as the error knows: it said "the
    /// login path", naming none. Seen failing before the default path was named.
    #[test]
    fn not_signed_in_names_the_default_login_path() {
        assert!(HcssApiError::NotSignedIn
            .to_string()
            .contains("/hcss/login"));
        assert!(SessionError::NotSignedIn
            .to_string()
            .contains("/hcss/login"));
    }

    /// A 401 says how to authenticate, as RFC 9110 asks and the extractors' 401 does:
    /// it had no `WWW-Authenticate` (seen failing so); the others have none.
    #[test]
    fn a_401_names_its_authentication_scheme() {
        for err in [HcssApiError::NotSignedIn, HcssApiError::Unauthorized] {
            let response = err.into_response();
            assert_eq!(response.status(), 401);
            assert_eq!(
                response.headers()[http::header::WWW_AUTHENTICATE],
                "Cookie realm=\"hcss\""
            );
        }
        let busy = HcssApiError::Busy {
            retry_after: Duration::from_secs(1),
        };
        assert!(!busy
            .into_response()
            .headers()
            .contains_key(http::header::WWW_AUTHENTICATE));
    }

    /// `Unauthorized` of a company's call does not tell only to sign in (which gives no
    /// company token): it said "sign in again" alone. Seen failing before the company
    /// case was named.
    #[test]
    fn unauthorized_names_the_company_case_too() {
        let said = HcssApiError::Unauthorized.to_string();
        assert!(said.contains("sign in again"), "{said}");
        assert!(said.contains("company"), "{said}");
    }
}
