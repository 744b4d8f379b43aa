//! The return-path rule: which paths a login may send the browser back to.

/// Longest value of one parameter (`state`, `code`, `return_to`, ...).
pub(crate) const MAX_PARAM: usize = 2 * 1024;

/// Accepts a local path to redirect to, and refuses anything a browser could read as
/// another origin: `//host`, `/\host`, schemes, control characters, and the same tricks
/// percent-encoded.
pub(crate) fn valid_return_path(path: &str) -> Option<&str> {
    let bytes = path.as_bytes();
    let plain = bytes.len() <= MAX_PARAM
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
