//! The HTTP rules every answer of the crate follows, one helper each: answers that carry
//! a session decision are never cached, a JSON answer says so, a wait is told in whole
//! seconds, text from outside reaches a page or a log line printable and short, and what
//! a page load is.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};

/// Whether the client accepts an HTML answer: a browser's navigation does, `fetch`,
/// XHR, curl and API clients usually do not.
pub(crate) fn accepts_html(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.as_bytes().windows(9).any(|w| w == b"text/html"))
}

/// A page load: a `GET` or `HEAD` that accepts `text/html`, what a browser sends for its
/// address bar, links and redirects; it is sent to log in and back, not given a 401.
pub(crate) fn is_page_load(method: &Method, headers: &HeaderMap) -> bool {
    (*method == Method::GET || *method == Method::HEAD) && accepts_html(headers)
}

/// `Cache-Control: no-store` and, for HTTP/1.0 caches, `Pragma: no-cache`.
pub(crate) fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// A JSON answer: `Content-Type: application/json`, never cached.
pub(crate) fn json(status: StatusCode, body: &serde_json::Value) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    no_store(headers);
    response
}

/// `Retry-After` in whole seconds, rounded up, at least one.
pub(crate) fn retry_after(headers: &mut HeaderMap, wait: Duration) {
    let secs = whole_seconds(wait).as_secs();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
}

/// A wait rounded up to whole seconds, as `Retry-After` counts.
pub(crate) fn whole_seconds(wait: Duration) -> Duration {
    Duration::from_secs(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
}

/// `text` without control characters, at most `max_chars` characters long.
pub(crate) fn printable(text: &str, max_chars: usize) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect()
}

/// What went wrong with a request, in the words of its innermost cause ("tcp connect
/// error: Connection refused", "dns error: ...", "invalid peer certificate: ..."), which
/// is what an operator acts on; reqwest's own words ("error sending request") otherwise.
/// Never the URL: the innermost causes are the connector's and the OS's, which do not
/// carry it, and reqwest's own message is taken without it.
pub(crate) fn cause(err: reqwest::Error) -> String {
    let mut innermost: Option<&dyn std::error::Error> = None;
    let mut source = std::error::Error::source(&err);
    while let Some(next) = source {
        innermost = Some(next);
        source = next.source();
    }
    match innermost {
        Some(cause) if err.is_timeout() => format!("timed out: {cause}"),
        Some(cause) => cause.to_string(),
        None => err.without_url().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_rule_does_one_thing() {
        let mut headers = HeaderMap::new();
        no_store(&mut headers);
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers[header::PRAGMA], "no-cache");
        retry_after(&mut headers, Duration::ZERO);
        assert_eq!(headers[header::RETRY_AFTER], "1");
        retry_after(&mut headers, Duration::from_millis(4_200));
        assert_eq!(headers[header::RETRY_AFTER], "5");
        assert_eq!(printable("a\r\nb\u{7}c", 2), "ab");
    }

    #[test]
    fn json_answers_say_so_and_are_not_cached() {
        let response = json(
            StatusCode::UNAUTHORIZED,
            &serde_json::json!({ "error": "x" }),
        );
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(&response.body()[..], br#"{"error":"x"}"#);
    }

    #[test]
    fn waits_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), Duration::ZERO);
        assert_eq!(
            whole_seconds(Duration::from_nanos(1)),
            Duration::from_secs(1)
        );
        assert_eq!(
            whole_seconds(Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        assert_eq!(
            whole_seconds(Duration::from_millis(4_200)),
            Duration::from_secs(5)
        );
    }
}
