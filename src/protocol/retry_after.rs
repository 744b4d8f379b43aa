//! The identity service's `Retry-After`: read in seconds and clamped to a sane range.

use std::time::Duration;

use crate::config::MAX_RETRY_AFTER;

/// The shortest wait taken from an identity service's `Retry-After`.
const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A `Retry-After` in seconds (RFC 9110 §10.2.3), clamped to a sane range; an HTTP date
/// or anything else is ignored.
pub(crate) fn parse_retry_after(value: Option<&http::HeaderValue>) -> Option<Duration> {
    let secs: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER))
}

/// An HCSS API's `Retry-After`: seconds or an HTTP date (RFC 9110 §10.2.3), as a wait
/// from `now`, at most [`MAX_RETRY_AFTER`]; a date in the past is no wait.
pub(crate) fn parse_api_retry_after(
    value: Option<&http::HeaderValue>,
    now: std::time::SystemTime,
) -> Option<Duration> {
    let text = value?.to_str().ok()?.trim();
    let wait = match text.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(text)
            .ok()?
            .duration_since(now)
            .unwrap_or(Duration::ZERO),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_in_seconds_and_clamped() {
        let value = |v: &'static str| Some(http::HeaderValue::from_static(v));
        assert_eq!(
            parse_retry_after(value("7").as_ref()),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(value("0").as_ref()),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            parse_retry_after(value("999999999999").as_ref()),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after(value("Wed, 21 Oct 2015 07:28:00 GMT").as_ref()),
            None
        );
        assert_eq!(parse_retry_after(None), None);
    }

    #[test]
    fn api_retry_after_reads_seconds_and_http_dates() {
        let value = |v: &'static str| Some(http::HeaderValue::from_static(v));
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let read = |v| parse_api_retry_after(value(v).as_ref(), now);
        assert_eq!(read("7"), Some(Duration::from_secs(7)));
        assert_eq!(read("0"), Some(Duration::ZERO));
        assert_eq!(
            read("Wed, 21 Oct 2015 07:28:42 GMT"),
            Some(Duration::from_secs(42))
        );
        assert_eq!(read("Wed, 21 Oct 2015 07:27:00 GMT"), Some(Duration::ZERO));
        assert_eq!(read("999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(read("soon"), None);
    }
}
