//! The flow's response type, and its redirect.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use crate::http_rules::no_store;

/// A flow response: small, complete, never streamed.
pub(crate) type FlowResponse = Response<Bytes>;

/// A 303 with `Cache-Control: no-store` and the given cookies.
pub(crate) fn see_other(
    location: &str,
    cookies: impl IntoIterator<Item = HeaderValue>,
) -> FlowResponse {
    let mut builder = Response::builder()
        .status(StatusCode::SEE_OTHER)
        .header(header::LOCATION, location);
    for cookie in cookies {
        builder = builder.header(header::SET_COOKIE, cookie);
    }
    let mut response = builder.body(Bytes::new()).unwrap_or_else(|_| {
        // Only reachable with a location that is not a header value, which the
        // validation of return paths and configuration rules out.
        let mut r = Response::new(Bytes::from_static(b"bad redirect"));
        *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        r
    });
    no_store(response.headers_mut());
    response
}
