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
}
