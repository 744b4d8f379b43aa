//! The return-path rule: which paths a login may send the browser back to.

/// Longest return path accepted (`return_to`, or the page a browser is sent back to).
pub(crate) const MAX_RETURN_PATH: usize = 2 * 1024;

/// Accepts a local path to redirect to, and refuses anything a browser could read as
/// another origin: `//host`, `/\host`, schemes, control characters, and the same tricks
/// percent-encoded.
pub(crate) fn valid_return_path(path: &str) -> Option<&str> {
    let bytes = path.as_bytes();
    let plain = bytes.len() <= MAX_RETURN_PATH
        && bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && bytes
            .iter()
            .all(|b| (0x21..0x7f).contains(b) && *b != b'\\');
    if !plain {
        return None;
    }
    let decoded: Vec<u8> = percent_decode(bytes);
    let safe = !matches!(decoded.get(1), Some(b'/' | b'\\'))
        && !decoded.iter().any(|b| b.is_ascii_control() || *b == b'\\');
    safe.then_some(path)
}

pub(crate) fn percent_decode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        if bytes[i] == b'%' {
            if let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Where to send a browser to log in and come back to `back_to`: the login path with
/// `return_to`, the one format that `/hcss/login` parses (with [`valid_return_path`]).
/// A path that would be refused there is left out.
pub(crate) fn login_location(login_path: &str, back_to: Option<&str>) -> String {
    match back_to.and_then(valid_return_path) {
        Some(path) => format!(
            "{login_path}?return_to={}",
            form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>()
        ),
        None => login_path.to_owned(),
    }
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
    }
}
