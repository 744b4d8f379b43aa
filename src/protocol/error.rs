//! What a failed call to the identity service means: `TokenError`, and the one table
//! ([`ErrorClass`]) that says what each failure does to the session.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use super::transport::Answer;

/// What went wrong talking to the token or revocation endpoint. Never holds a secret.
///
/// The status decides first: only a 400 or 401 carries a verdict, and of the verdicts
/// only `invalid_grant` ends a session. [`TokenError::class`] is the one table.
#[derive(Debug, Clone)]
pub(crate) enum TokenError {
    /// HCSS refused the request with an OAuth error in a 400 or 401 answer.
    Rejected {
        status: u16,
        error: String,
        description: Option<String>,
    },
    /// HCSS could not be reached or failed (timeout, connection, 5xx whatever its body,
    /// 429): try again later, after `retry_after` when HCSS said so.
    Transient {
        why: String,
        retry_after: Option<Duration>,
    },
    /// HCSS answered something that is not a usable token response.
    InvalidResponse(String),
}

/// What a failed token call means for the session and the user: the classification
/// table, in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    /// `invalid_grant`: the grant is gone; the session ends and the user logs in again.
    GrantGone,
    /// `invalid_client`, `unauthorized_client`, `invalid_scope`, `unsupported_grant_type`:
    /// this app's configuration is wrong. The session is kept for when it is fixed.
    Configuration,
    /// Down, slow, overloaded or failing: try again later; the session is kept.
    Transient,
    /// Any other refusal or an unusable answer: the call failed, the session is kept.
    Failed,
}

impl ErrorClass {
    /// The class's word in metrics' labels.
    pub(crate) fn metric_label(self) -> &'static str {
        match self {
            Self::GrantGone => "invalid_grant",
            Self::Configuration => "configuration",
            Self::Transient => "transient",
            Self::Failed => "failed",
        }
    }
}

impl TokenError {
    /// Where this error stands in the classification table.
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            TokenError::Rejected { error, .. } => match error.as_str() {
                "invalid_grant" => ErrorClass::GrantGone,
                "invalid_client"
                | "unauthorized_client"
                | "invalid_scope"
                | "unsupported_grant_type" => ErrorClass::Configuration,
                _ => ErrorClass::Failed,
            },
            TokenError::Transient { .. } => ErrorClass::Transient,
            TokenError::InvalidResponse(_) => ErrorClass::Failed,
        }
    }

    /// The identity service's own `Retry-After`, when it sent one.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            TokenError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// What a failed answer of the token or revocation endpoint means, status first: a 5xx
    /// or a 429 is transient whatever its body says; only a 400 or 401 with an OAuth
    /// `error` is a refusal; anything else is unusable. `None` for a 2xx answer.
    pub(crate) fn of_answer(answer: &Answer) -> Option<TokenError> {
        let status = answer.status;
        if status >= 500 || status == 429 {
            return Some(TokenError::Transient {
                why: format!("HTTP {status}"),
                retry_after: answer.retry_after,
            });
        }
        if (200..300).contains(&status) {
            return None;
        }
        Some(match serde_json::from_slice::<RawError>(&answer.body) {
            Ok(err) if status == 400 || status == 401 => TokenError::Rejected {
                status,
                error: clip(&err.error),
                description: err.error_description.as_deref().map(clip),
            },
            _ => TokenError::InvalidResponse(format!("HTTP {status} without an OAuth error")),
        })
    }

    pub(crate) fn transient(why: impl Into<String>) -> Self {
        TokenError::Transient {
            why: why.into(),
            retry_after: None,
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Rejected {
                status,
                error,
                description,
            } => {
                write!(
                    f,
                    "the identity service refused the request: {error} (HTTP {status})"
                )?;
                if let Some(d) = description {
                    write!(f, ": {d}")?;
                }
                Ok(())
            }
            TokenError::Transient { why, .. } => {
                write!(f, "the identity service is unavailable: {why}")
            }
            TokenError::InvalidResponse(why) => {
                write!(f, "the identity service sent an unusable response: {why}")
            }
        }
    }
}

/// An OAuth error body (RFC 6749 §5.2).
#[derive(Deserialize)]
struct RawError {
    error: String,
    error_description: Option<String>,
}

/// Keeps text from the identity service short and printable before it reaches a log.
pub(crate) fn clip(text: &str) -> String {
    crate::http_rules::printable(text, 200)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientAuth;
    use crate::protocol::response::parse_token_response;
    use crate::protocol::test_support::{answer, config};

    /// The classification table, row by row: the status decides first, and only
    /// `invalid_grant` in a 400 or 401 ends a session.
    #[test]
    fn token_errors_are_classified_status_first() {
        use ErrorClass::*;
        let c = config(ClientAuth::RequestBody, None);
        let class = |status, body: &str| {
            parse_token_response(&c, &answer(status, body), 0)
                .unwrap_err()
                .class()
        };
        let oauth = |error: &str| format!(r#"{{"error":"{error}","error_description":"d"}}"#);
        for (status, body, expected) in [
            (400, oauth("invalid_grant"), GrantGone),
            (401, oauth("invalid_grant"), GrantGone),
            (400, oauth("invalid_client"), Configuration),
            (401, oauth("invalid_client"), Configuration),
            (400, oauth("unauthorized_client"), Configuration),
            (400, oauth("invalid_scope"), Configuration),
            (400, oauth("unsupported_grant_type"), Configuration),
            (400, oauth("invalid_request"), Failed),
            (400, "not json".to_owned(), Failed),
            (403, oauth("invalid_grant"), Failed),
            (404, "not found".to_owned(), Failed),
            (500, oauth("server_error"), Transient),
            (500, oauth("invalid_grant"), Transient),
            (502, "bad gateway".to_owned(), Transient),
            (503, oauth("temporarily_unavailable"), Transient),
            (504, String::new(), Transient),
            (429, oauth("slow_down"), Transient),
            (200, "<html>".to_owned(), Failed),
        ] {
            assert_eq!(class(status, &body), expected, "{status} {body}");
        }
    }

    /// Revocation reads its answer by the same table: an empty 2xx is a success, a
    /// transient failure keeps the service's `Retry-After`, only a 400 or 401 refuses.
    #[test]
    fn any_answer_is_read_status_first() {
        use std::time::Duration;
        assert!(TokenError::of_answer(&answer(200, "")).is_none());
        let mut busy = answer(503, r#"{"error":"invalid_grant"}"#);
        busy.retry_after = Some(Duration::from_secs(7));
        let err = TokenError::of_answer(&busy).unwrap();
        assert_eq!(err.class(), ErrorClass::Transient);
        assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
        let forbidden = answer(403, r#"{"error":"invalid_grant"}"#);
        assert!(matches!(
            TokenError::of_answer(&forbidden),
            Some(TokenError::InvalidResponse(_))
        ));
        let refused = answer(400, r#"{"error":"unsupported_token_type"}"#);
        assert!(matches!(
            TokenError::of_answer(&refused),
            Some(TokenError::Rejected { status: 400, .. })
        ));
    }
}
