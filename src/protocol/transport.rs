//! The HTTP POST of a form to the identity service: timeouts, no redirects followed, the
//! answer's size capped, and transport failures said without their URL.

use std::time::Duration;

use crate::config::IdentityClient;

use super::client_auth::basic_auth_header;
use super::error::TokenError;
use super::retry_after::parse_retry_after;

/// An answer of the identity service: its status, `Retry-After` and body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) body: Vec<u8>,
}

/// The `application/x-www-form-urlencoded` body of `fields`, in order.
pub(crate) fn encode_form(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// Posts a form to `url` and reads at most `max_response_bytes` of the answer.
pub(crate) async fn post_form(
    client: &IdentityClient,
    url: &url::Url,
    fields: &[(&str, &str)],
    timeout: Duration,
) -> Result<Answer, TokenError> {
    let mut request = client
        .http
        .post(url.clone())
        .timeout(timeout)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json")
        .body(encode_form(fields));
    if let Some(basic) = basic_auth_header(client) {
        request = request.header(http::header::AUTHORIZATION, basic);
    }
    read_capped(client, request).await
}

/// GETs `url` (a discovery document, a JWKS) and reads at most `max_response_bytes` of
/// the answer.
pub(crate) async fn get(client: &IdentityClient, url: &url::Url) -> Result<Answer, TokenError> {
    let request = client
        .http
        .get(url.clone())
        .timeout(client.http_timeout)
        .header(http::header::ACCEPT, "application/json");
    read_capped(client, request).await
}

/// Sends `request`: redirects refused, the answer's size capped.
async fn read_capped(
    client: &IdentityClient,
    request: reqwest::RequestBuilder,
) -> Result<Answer, TokenError> {
    let mut response = request.send().await.map_err(transport_error)?;
    let status = response.status().as_u16();
    let retry_after = parse_retry_after(response.headers().get(http::header::RETRY_AFTER));
    if (300..400).contains(&status) {
        return Err(TokenError::InvalidResponse(format!(
            "HTTP {status} redirect (not followed)"
        )));
    }
    let cap = client.max_response_bytes;
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(TokenError::InvalidResponse(format!(
            "the response is larger than {cap} bytes"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > cap {
            return Err(TokenError::InvalidResponse(format!(
                "the response is larger than {cap} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

fn transport_error(err: reqwest::Error) -> TokenError {
    // reqwest's Display can include the URL; ours carry no secrets, but say less anyway.
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "the response body could not be read"
    } else {
        "request failed"
    };
    TokenError::transient(kind)
}
