//! The flow endpoints, each a plain async fn from request parts to a response, and the
//! small pieces they share: query and cookie parsing, cookies, pages and redirects.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use cookie::{Cookie, SameSite};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};

use crate::config::HcssConfig;
use crate::http_rules::{no_store, retry_after};
use crate::return_path::percent_decode;
pub(crate) use crate::return_path::valid_return_path;
use crate::secret::SessionId;

pub(crate) mod callback;
pub(crate) mod login;
pub(crate) mod logout;
pub(crate) mod sealed;
pub(crate) mod user;

/// A flow response: small, complete, never streamed.
pub(crate) type FlowResponse = Response<Bytes>;

/// Longest query string a flow endpoint reads; real ones are a few hundred bytes.
const MAX_QUERY: usize = 8 * 1024;

/// Why a query string was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum QueryError {
    TooLong,
    Duplicate(&'static str),
    NotUtf8(&'static str),
}

impl QueryError {
    pub(crate) fn message(&self) -> String {
        match self {
            QueryError::TooLong => "The request's query string is too long.".into(),
            QueryError::Duplicate(name) => {
                format!("The parameter {name} was given more than once.")
            }
            QueryError::NotUtf8(name) => format!("The parameter {name} is not valid text."),
        }
    }
}

/// Reads the named parameters of a query string. A named parameter given twice or not
/// valid UTF-8 is an error; other parameters are ignored.
pub(crate) fn query_params<'q, const N: usize>(
    query: Option<&'q str>,
    names: [&'static str; N],
) -> Result<[Option<Cow<'q, str>>; N], QueryError> {
    let mut found: [Option<Cow<'q, str>>; N] = std::array::from_fn(|_| None);
    let Some(query) = query else {
        return Ok(found);
    };
    if query.len() > MAX_QUERY {
        return Err(QueryError::TooLong);
    }
    for pair in query.split('&') {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode_component(raw_name);
        let Some(i) = names.iter().position(|n| name.as_deref() == Some(*n)) else {
            continue;
        };
        if found[i].is_some() {
            return Err(QueryError::Duplicate(names[i]));
        }
        found[i] = Some(decode_component(raw_value).ok_or(QueryError::NotUtf8(names[i]))?);
    }
    Ok(found)
}

/// `application/x-www-form-urlencoded` decoding of one component; `None` if the result is
/// not UTF-8.
fn decode_component(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Some(Cow::Borrowed(raw));
    }
    let spaced = raw.replace('+', " ");
    String::from_utf8(percent_decode(spaced.as_bytes()))
        .ok()
        .map(Cow::Owned)
}

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
            return Some((pair[..eq].trim_ascii(), unquoted(pair[eq + 1..].trim_ascii())));
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

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A small HTML page with escaped text and a link to start again.
pub(crate) fn page(
    config: &HcssConfig,
    status: StatusCode,
    title: &str,
    message: &str,
) -> FlowResponse {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}</title></head>\n<body><h1>{title}</h1>\n<p>{message}</p>\n\
         <p><a href=\"{login}\">Sign in with HCSS again</a></p></body></html>\n",
        title = escape_html(title),
        message = escape_html(message),
        login = escape_html(&config.routes.login_path),
    );
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header("x-content-type-options", "nosniff")
        .body(Bytes::from(body))
        .expect("a static response is valid");
    no_store(response.headers_mut());
    response
}

/// A 503 page for a store that cannot be reached.
pub(crate) fn unavailable(config: &HcssConfig, what: &str) -> FlowResponse {
    let mut response = page(
        config,
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in is unavailable",
        &format!("{what} Please try again in a moment."),
    );
    retry_after(response.headers_mut(), config.identity.retry_after);
    response
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths_stay_on_this_origin() {
        for ok in ["/", "/jobs", "/jobs?id=3&x=%20y", "/a/b#frag", "/%41"] {
            assert_eq!(valid_return_path(ok), Some(ok), "{ok}");
        }
        for bad in [
            "",
            "jobs",
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "/ok\r\nSet-Cookie: x=y",
            "/%2F%2Fevil",
            "/%2fevil",
            "/%5Cevil",
            "/a%0d%0ab",
            "/a b",
            "/é",
            "\\\\evil",
            "/a\\b",
        ] {
            assert_eq!(valid_return_path(bad), None, "{bad:?}");
        }
        assert_eq!(valid_return_path(&format!("/{}", "a".repeat(4096))), None);
    }

    #[test]
    fn query_params_refuse_duplicates_and_bad_text() {
        let [code, state] =
            query_params(Some("code=a%2Bb+c&state=s&x=1&x=2"), ["code", "state"]).unwrap();
        assert_eq!(code.as_deref(), Some("a+b c"));
        assert_eq!(state.as_deref(), Some("s"));
        assert_eq!(
            query_params(Some("state=a&state=b"), ["state"]),
            Err(QueryError::Duplicate("state"))
        );
        assert_eq!(
            query_params(Some("st%61te=a&state=b"), ["state"]),
            Err(QueryError::Duplicate("state"))
        );
        assert_eq!(
            query_params(Some("state=%FF%FE"), ["state"]),
            Err(QueryError::NotUtf8("state"))
        );
        let long = format!("state={}", "a".repeat(MAX_QUERY));
        assert_eq!(
            query_params(Some(&long), ["state"]),
            Err(QueryError::TooLong)
        );
        let [none] = query_params(None, ["state"]).unwrap();
        assert!(none.is_none());
    }

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
        fn accepted_return_paths_stay_on_the_origin(
            path in "(/|//|/\\\\|\\\\|%2[fF]|%5[cC]|https:|javascript:|/%2[fF]){0,3}[ -~\\t\\r\\n\\u{80}-\\u{10ffff}]{0,40}"
        ) {
            if let Some(accepted) = valid_return_path(&path) {
                proptest::prop_assert!(accepted.starts_with('/'));
                proptest::prop_assert!(!accepted.starts_with("//") && !accepted.starts_with("/\\"));
                let base = url::Url::parse("https://app.example.com/base/").unwrap();
                let joined = base.join(accepted).unwrap();
                proptest::prop_assert_eq!(joined.origin(), base.origin());
                proptest::prop_assert!(http::HeaderValue::from_str(accepted).is_ok());
            }
        }

        #[test]
        fn query_parsing_finds_only_what_is_there(query in "[a-z%=&+0-9A-F]{0,80}") {
            if let Ok([state, code]) = query_params(Some(&query), ["state", "code"]) {
                proptest::prop_assert!(state.is_none() || query.contains("state") || query.contains('%'));
                proptest::prop_assert!(code.is_none() || query.contains("code") || query.contains('%'));
            }
        }

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

    #[test]
    fn pages_escape_their_text() {
        let config = HcssConfig::builder()
            .client_id("id")
            .scopes(["s"])
            .redirect_uri("https://app.example.com/cb")
            .build()
            .unwrap();
        let r = page(
            &config,
            StatusCode::FORBIDDEN,
            "No",
            "<script>alert('x')</script>",
        );
        let body = std::str::from_utf8(r.body()).unwrap();
        assert!(!body.contains("<script>"), "{body}");
        assert!(body.contains("&lt;script&gt;alert(&#39;x&#39;)"), "{body}");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    }
}
