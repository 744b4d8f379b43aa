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

    /// The body as JSON.
    ///
    /// # Errors
    ///
    /// [`HcssApiError::Invalid`] when it is not `T` in JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, HcssApiError> {
        serde_json::from_slice(&self.body).map_err(|err| HcssApiError::Invalid {
            reason: format!("the response is not the JSON expected: {err}"),
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
