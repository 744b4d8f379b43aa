//! [`HcssApiResponse`]: an HCSS API's answer, read whole.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use crate::error::HcssApiError;

/// An HCSS API's answer, its body read whole (so that the call's slot in the company's
/// budget is given back as soon as HCSS is done with it).
#[derive(Clone, Debug)]
pub struct HcssApiResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl HcssApiResponse {
    pub(crate) fn new(status: StatusCode, headers: HeaderMap, body: Bytes) -> Self {
        Self {
            status,
            headers,
            body,
        }
    }

    /// The status: a success, or one the client leaves to the app (404, 400, 409...).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The body.
    pub fn bytes(&self) -> &Bytes {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, whatever the status: [`success_json`](Self::success_json)
    /// checks the status first (a 404's or a 400's body is seldom the `T` of a success).
    ///
    /// # Errors
    ///
    /// [`HcssApiError::Invalid`] when it is not `T` in JSON (naming the status when it
    /// was not a success).
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HcssApiError> {
        serde_json::from_slice(&self.body).map_err(|err| {
            let reason = if self.status.is_success() {
                format!("the response is not the JSON expected: {err}")
            } else {
                format!(
                    "the response (HCSS answered {}) is not the JSON expected: {err}",
                    self.status
                )
            };
            HcssApiError::Invalid { reason }
        })
    }

    /// The body as JSON when the status is a success (2xx).
    ///
    /// # Errors
    ///
    /// [`HcssApiError::Invalid`] for another status, or a body that is not `T`.
    pub fn success_json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HcssApiError> {
        if !self.status.is_success() {
            return Err(HcssApiError::Invalid {
                reason: format!("HCSS answered {}", self.status),
            });
        }
        self.json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that does not decode names the status it came with, when that was no
    /// success: a 404's "Not Found" read as JSON said only that it was not the JSON
    /// expected, hiding the 404. Seen failing before the status was named.
    #[test]
    fn json_of_a_refusal_names_its_status() {
        let response = HcssApiResponse::new(
            StatusCode::NOT_FOUND,
            HeaderMap::new(),
            Bytes::from_static(b"Not Found"),
        );
        let err = response.json::<Vec<serde_json::Value>>().unwrap_err();
        assert!(err.to_string().contains("404 Not Found"), "{err}");
        let ok = HcssApiResponse::new(StatusCode::OK, HeaderMap::new(), Bytes::from_static(b"{}"));
        let err = ok.json::<Vec<serde_json::Value>>().unwrap_err();
        assert!(!err.to_string().contains("200"), "{err}");
    }
}
