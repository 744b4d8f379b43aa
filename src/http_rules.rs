//! The HTTP rules every answer of the crate follows, one helper each: answers that carry
//! a session decision are never cached, a wait is told in whole seconds, and text from
//! outside reaches a page or a log line printable and short.

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};

/// `Cache-Control: no-store` and, for HTTP/1.0 caches, `Pragma: no-cache`.
pub(crate) fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// `Retry-After` in whole seconds, rounded up, at least one.
pub(crate) fn retry_after(headers: &mut HeaderMap, wait: Duration) {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    headers.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
}

/// `text` without control characters, at most `max_chars` characters long.
pub(crate) fn printable(text: &str, max_chars: usize) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect()
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
}
