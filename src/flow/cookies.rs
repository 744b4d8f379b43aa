//! The cookies of the flow: reading the `Cookie` header (one scanner, one quoting rule)
//! and writing `Set-Cookie` with the crate's attributes.

use std::borrow::Cow;
use std::time::Duration;

use cookie::{Cookie, SameSite};
use http::header::{self, HeaderMap, HeaderValue};

use crate::config::HcssConfig;
use crate::secret::SessionId;

/// The `name=value` pairs of every `Cookie` header, read as bytes: a cookie this crate
/// cannot read (a sibling subdomain may set one with non-ASCII bytes) is skipped, never
/// the whole header. The one cookie scanner of the crate, with one quoting rule: a value
/// in double quotes (RFC 6265's `DQUOTE *cookie-octet DQUOTE`) is read without them.
/// Every request runs it, so it is a plain scan, one pair at a time.
struct CookiePairs<'h> {
    headers: header::ValueIter<'h, HeaderValue>,
    /// What is left of the header being read.
    rest: &'h [u8],
}

impl<'h> CookiePairs<'h> {
    fn new(headers: &'h HeaderMap) -> Self {
        Self {
            headers: headers.get_all(header::COOKIE).iter(),
            rest: &[],
        }
    }
}

impl<'h> Iterator for CookiePairs<'h> {
    type Item = (&'h [u8], &'h [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rest.is_empty() {
                self.rest = self.headers.next()?.as_bytes();
                continue;
            }
            let (pair, rest) = match self.rest.iter().position(|b| *b == b';') {
                Some(end) => (&self.rest[..end], &self.rest[end + 1..]),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            let Some(eq) = pair.iter().position(|b| *b == b'=') else {
                continue;
            };
            return Some((
                pair[..eq].trim_ascii(),
                unquoted(pair[eq + 1..].trim_ascii()),
            ));
        }
    }
}

/// A cookie value without the double quotes that may surround it.
fn unquoted(value: &[u8]) -> &[u8] {
    match value {
        [b'"', inner @ .., b'"'] => inner,
        _ => value,
    }
}

/// The value of the first cookie named `name`.
fn first_cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h [u8]> {
    CookiePairs::new(headers)
        .find(|(n, _)| *n == name.as_bytes())
        .map(|(_, value)| value)
}

/// Whether the request carries a cookie named `name`, whatever its value.
pub(crate) fn has_cookie(headers: &HeaderMap, name: &str) -> bool {
    first_cookie(headers, name).is_some()
}

/// The value of the named cookie, if it is one of ours (43 base64url characters). The
/// first cookie of that name counts; a malformed one counts as none.
pub(crate) fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let value = first_cookie(headers, name)?;
    SessionId::from_bytes(value)?;
    std::str::from_utf8(value).ok()
}

/// The session id in the named cookie, if it is one of ours.
pub(crate) fn session_cookie(headers: &HeaderMap, name: &str) -> Option<SessionId> {
    first_cookie(headers, name).and_then(SessionId::from_bytes)
}

/// The value of the named cookie if it looks like a sealed login (base64url, at most
/// 4 KiB, as browsers keep no larger cookie).
pub(crate) fn sealed_cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    let value = first_cookie(headers, name)?;
    let sealed = !value.is_empty()
        && value.len() <= 4096
        && value
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
    sealed.then(|| std::str::from_utf8(value).ok()).flatten()
}

/// The names of the cookies that start with `prefix`, in the order the browser sent them
/// (oldest first, as browsers order cookies of one path by creation time).
pub(crate) fn cookie_names_with_prefix<'h>(
    headers: &'h HeaderMap,
    prefix: &'h str,
) -> impl Iterator<Item = &'h str> {
    CookiePairs::new(headers)
        .filter(move |(n, _)| n.starts_with(prefix.as_bytes()))
        .filter_map(|(n, _)| std::str::from_utf8(n).ok())
}

/// A `Set-Cookie` value: `HttpOnly; SameSite=Lax; Path=/`, and `Secure` with a `__Host-`
/// name unless development allows plain http. No `max_age` clears the cookie.
pub(crate) fn set_cookie(
    config: &HcssConfig,
    name: impl Into<Cow<'static, str>>,
    value: &str,
    max_age: Option<Duration>,
) -> HeaderValue {
    let age = max_age.map_or(0, |d| d.as_secs().min(i64::MAX as u64) as i64);
    let cookie = Cookie::build((name.into(), value))
        .http_only(true)
        .secure(config.cookies.secure_cookies)
        .same_site(SameSite::Lax)
        .path("/")
        .max_age(cookie::time::Duration::seconds(age))
        .build();
    HeaderValue::try_from(cookie.to_string()).expect("cookie names and values are ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Before, one byte that is not visible ASCII anywhere in a `Cookie` header made the
    /// whole header unreadable, and the user looked signed out.
    #[test]
    fn a_foreign_non_ascii_cookie_hides_nothing() {
        let id = "a".repeat(43);
        let mut headers = HeaderMap::new();
        let mut raw = b"theme=caf\xc3\xa9; hcss-session=".to_vec();
        raw.extend_from_slice(id.as_bytes());
        raw.extend_from_slice(b"; other=\xff");
        headers.insert(header::COOKIE, HeaderValue::from_bytes(&raw).unwrap());
        assert_eq!(cookie_value(&headers, "hcss-session"), Some(id.as_str()));
        assert_eq!(cookie_value(&headers, "theme"), None);
    }

    #[test]
    fn only_well_formed_cookies_are_read() {
        let id = "a".repeat(43);
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("other=1; hcss-session=short"),
        );
        headers.append(
            header::COOKIE,
            format!("x=y; hcss-session={id}").parse().unwrap(),
        );
        // The first cookie of the name wins; a malformed one counts as none.
        assert_eq!(cookie_value(&headers, "hcss-session"), None);
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            format!("x=y;hcss-session={id}").parse().unwrap(),
        );
        assert_eq!(cookie_value(&headers, "hcss-session"), Some(id.as_str()));
        assert_eq!(cookie_value(&headers, "hcss-login"), None);
    }

    /// RFC 6265 lets a cookie's value stand in double quotes. Every cookie is read with
    /// one rule: the quotes are not part of the value. Before, the session cookie dropped
    /// them and the login cookie did not, so a quoted login cookie was refused.
    #[test]
    fn every_cookie_is_read_with_one_quoting_rule() {
        let id = "a".repeat(43);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            format!("hcss-session=\"{id}\"; hcss-login-s=\"c2VhbGVk\"; q=\"")
                .parse()
                .unwrap(),
        );
        assert_eq!(cookie_value(&headers, "hcss-session"), Some(id.as_str()));
        assert_eq!(
            sealed_cookie_value(&headers, "hcss-login-s"),
            Some("c2VhbGVk")
        );
        // A lone quote is a value of its own, not an empty quoted one.
        assert_eq!(sealed_cookie_value(&headers, "q"), None);
    }

    proptest::proptest! {
        #[test]
        fn cookies_yield_only_well_formed_ids(header in "[ -~]{0,120}") {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&header) {
                headers.insert(header::COOKIE, value);
            }
            if let Some(id) = cookie_value(&headers, "hcss-session") {
                proptest::prop_assert_eq!(id.len(), 43);
                proptest::prop_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            }
        }
    }
}
