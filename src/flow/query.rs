//! The query strings the flow endpoints read (`/hcss/login`'s `return_to`, the
//! callback's `state`, `code`, `error`...): parsed strictly, within bounds.

use std::borrow::Cow;

use crate::return_path::percent_decode;

/// Longest query string a flow endpoint reads; real ones are a few hundred bytes.
const MAX_QUERY: usize = 8 * 1024;

/// Longest `state` or `code` a callback looks up (a state is 43 characters, a code a few
/// dozen): a longer one is refused before any lookup.
const MAX_STATE_OR_CODE: usize = 512;

/// `value` if a callback may look it up as a `state` or exchange it as a `code`: not
/// empty, at most [`MAX_STATE_OR_CODE`] bytes.
pub(crate) fn state_or_code(value: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    value.filter(|v| !v.is_empty() && v.len() <= MAX_STATE_OR_CODE)
}

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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_state_or_code_is_looked_up_only_within_bounds() {
        let within = "s".repeat(MAX_STATE_OR_CODE);
        assert_eq!(
            state_or_code(Some(within.as_str().into())).as_deref(),
            Some(within.as_str())
        );
        assert_eq!(state_or_code(Some(format!("{within}s").into())), None);
        assert_eq!(state_or_code(Some("".into())), None);
        assert_eq!(state_or_code(None), None);
    }

    proptest::proptest! {
        #[test]
        fn query_parsing_finds_only_what_is_there(query in "[a-z%=&+0-9A-F]{0,80}") {
            if let Ok([state, code]) = query_params(Some(&query), ["state", "code"]) {
                proptest::prop_assert!(state.is_none() || query.contains("state") || query.contains('%'));
                proptest::prop_assert!(code.is_none() || query.contains("code") || query.contains('%'));
            }
        }
    }
}
