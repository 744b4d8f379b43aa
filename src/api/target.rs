//! Where a call goes: the API base URL with the call's path under it.

use dashmap::DashMap;
use url::Url;

/// The most paths whose URLs a layer keeps: those an app calls again and again. Paths
/// called once each (an id in the path) fill it, then are built on every call.
const KEPT_PATHS: usize = 256;

/// The longest path (in bytes, its `?query` and `#fragment` included) whose URL is kept:
/// the paths an app calls again and again are short, and a longer one (input of the
/// app's own caller in it) kept with its URL would hold its memory for the layer's life.
const KEPT_PATH_LEN: usize = 512;

/// [`call_url`], through `kept`: the URL of a path seen before is cloned, not built
/// (a path longer than [`KEPT_PATH_LEN`] is built every time).
pub(super) fn kept_call_url(
    kept: &DashMap<Box<str>, Url>,
    base_text: &str,
    base: &Url,
    path: &str,
    query: &[(String, String)],
) -> Option<Url> {
    let mut url = match kept.get(path) {
        Some(url) => url.clone(),
        None => {
            let url = call_url(base_text, base, path, &[])?;
            if path.len() <= KEPT_PATH_LEN && kept.len() < KEPT_PATHS {
                kept.insert(path.into(), url.clone());
            }
            url
        }
    };
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Some(url)
}

/// The URL of `path` (with the `?query` and `#fragment` it may carry) under the API base
/// URL, `query` pairs added to it; `None` for a path that does not start with `/`.
///
/// It is the URL that parsing `base_text` and `path` written one after the other gives,
/// without parsing the base, its host above all, on every call: `base`, `base_text` with
/// a `/` after it, was parsed once, with the configuration, and a call only sets its
/// path, query and fragment. Its path (less that last `/`) is the prefix: the path the
/// text gives what follows it, an empty last segment (`/api//.`) or a trailing `\` or
/// space included, which the parse of `base_text` alone drops. A path
/// with a space or a control character (which a parse trims or drops) and a base with a
/// query of its own go through the whole parse.
pub(super) fn call_url(
    base_text: &str,
    base: &Url,
    path: &str,
    query: &[(String, String)],
) -> Option<Url> {
    if !path.starts_with('/') {
        return None;
    }
    let mut url = if base.query().is_some() || path.bytes().any(|b| b <= b' ') {
        Url::parse(&format!("{base_text}{path}")).ok()?
    } else {
        let (rest, fragment) = split(path, '#');
        let (path, path_query) = split(rest, '?');
        let mut url = base.clone();
        let prefix = base.path();
        match prefix.strip_suffix('/').unwrap_or(prefix) {
            "" => url.set_path(path),
            prefix => url.set_path(&format!("{prefix}{path}")),
        }
        url.set_query(path_query);
        url.set_fragment(fragment);
        url
    };
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    Some(url)
}

/// `text` before the first `at`, and what follows it if it is there.
fn split(text: &str, at: char) -> (&str, Option<&str>) {
    match text.split_once(at) {
        Some((before, after)) => (before, Some(after)),
        None => (text, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole parse of the two written one after the other, as calls were made before.
    fn parsed(base_text: &str, path: &str) -> Option<Url> {
        Url::parse(&format!("{base_text}{path}"))
            .ok()
            .filter(|_| path.starts_with('/'))
    }

    #[test]
    fn a_calls_url_is_the_one_the_whole_parse_gives() {
        let bases = [
            "http://127.0.0.1:4000",
            "https://api.hcssapps.com",
            "https://API.HCSSapps.com:443",
            "https://h.example/api",
            "https://h.example/api/v1/.",
            "https://h.example/a/..",
            "https://h.example/%7Eapi",
            "https://h.example/?tenant=1",
            "https://[::1]:8443/x",
            "https://h.example/api//.",
            "https://h.example//.",
            "https://h.example/a/b//..",
            "https://h.example/api\\",
            "https://h.example\\",
            "https://h.example/api/ ",
            "https://h.example/api\t",
            "https://h.example/api/%2e",
            "https://h.example/api/%2e%2E",
            "https://h.example/api%2F",
            "https://h.example.",
            "https://[::1]",
        ];
        let paths = [
            "/",
            "/heavyjob/api/v1/businessUnits",
            "/heavyjob/api/v1/jobs?businessUnitId=7&cursor=a%20b",
            "/a?",
            "/a?#",
            "/a#frag",
            "/a#f?g",
            "/a?q#f",
            "/a?q=1?2",
            "//evil.example/x",
            "///x",
            "/a/../../b",
            "/a/./b/.",
            "/%2e%2E/c",
            "/a\\b\\..\\c",
            "/é/ü?ß=ñ#ø",
            "/a b",
            "/a\tb\nc",
            "/a ",
            " /a",
            "/a\u{7f}b",
            "/a%zz",
            "/a@b:c",
            "/a?x=<>\"'`{}|^",
            "/<>\"`{}|^",
            "/a;b=c",
            "relative",
            "",
            "?q",
            "#f",
        ];
        for base_text in bases {
            let base = Url::parse(&format!("{base_text}/")).unwrap();
            for path in paths {
                assert_eq!(
                    call_url(base_text, &base, path, &[]),
                    parsed(base_text, path),
                    "{base_text} + {path:?}"
                );
            }
        }
    }

    proptest::proptest! {
        /// Bases and paths made of the characters that steer a parse (slashes, dots,
        /// `%`, `?`, `#`, `@`, `:`, `\`, a space, a tab, non-ASCII): the call's URL is the
        /// whole parse's, and the host, port and credentials are the base's.
        #[test]
        fn any_calls_url_is_the_whole_parses(
            base_path in "[/.a%2eE\\\\ \t]{0,8}",
            path in "/[/.a%2eEF?#@:\\\\ \té]{0,16}",
        ) {
            for host in ["https://h.example", "https://[::1]:8443", "http://127.0.0.1:4000"] {
                let base_text = format!("{host}{base_path}");
                let Ok(checked) = Url::parse(&base_text) else { continue };
                if checked.query().is_some() || checked.fragment().is_some() {
                    continue;
                }
                // No call's URL parses under a base a path cannot follow (a space
                // after the host): the configuration refuses it.
                let Ok(base) = Url::parse(&format!("{base_text}/")) else {
                    proptest::prop_assert_eq!(parsed(&base_text, &path), None);
                    continue;
                };
                let url = call_url(&base_text, &base, &path, &[]);
                proptest::prop_assert_eq!(&url, &parsed(&base_text, &path));
                let url = url.unwrap();
                proptest::prop_assert_eq!(url.origin(), checked.origin());
                proptest::prop_assert_eq!(url.username(), "");
                proptest::prop_assert_eq!(url.password(), None);
            }
        }
    }

    proptest::proptest! {
        /// Paths that differ only after a `?` or `#`, or in their escapes, called one
        /// after another through one kept map, with and without pairs of their own (a
        /// `?`, `#`, `&` or `%` in them): each URL is the one built afresh.
        #[test]
        fn a_kept_url_is_any_paths_fresh_one(
            base_text in "https://h\\.example(/[a.%?]{0,3})?",
            calls in proptest::collection::vec(
                ("/[/.a%2E?#& é]{0,6}", proptest::collection::vec(("[a?#&%=]{0,2}", "[a?#&% ]{0,2}"), 0..2)),
                1..24,
            ),
        ) {
            let Ok(base) = Url::parse(&format!("{base_text}/")) else { return Ok(()) };
            let kept = DashMap::new();
            for (path, query) in &calls {
                proptest::prop_assert_eq!(
                    kept_call_url(&kept, &base_text, &base, path, query),
                    call_url(&base_text, &base, path, query),
                    "{} {:?} {:?}", base_text, path, query
                );
            }
        }
    }

    #[test]
    fn query_pairs_are_added_to_the_paths_own() {
        let base = Url::parse("https://api.hcssapps.com/").unwrap();
        let pairs = [("cursor".to_owned(), "a&b c".to_owned())];
        let url = call_url("https://api.hcssapps.com", &base, "/jobs?x=1#f", &pairs).unwrap();
        assert_eq!(
            url.as_str(),
            "https://api.hcssapps.com/jobs?x=1&cursor=a%26b+c#f"
        );
    }

    #[test]
    fn a_kept_url_is_the_one_built_and_the_paths_kept_are_bounded() {
        let base_text = "https://h.example/api";
        let base = Url::parse(&format!("{base_text}/")).unwrap();
        let kept = DashMap::new();
        let pairs = [("cursor".to_owned(), "a&b".to_owned())];
        for path in ["/jobs", "/jobs?x=1#f", "/a/../b", "/%7E", "/jobs"] {
            for query in [&[][..], &pairs[..]] {
                // Built the first time, cloned the next: the same URL, a query of the
                // call's own never kept with the path.
                for _ in 0..2 {
                    assert_eq!(
                        kept_call_url(&kept, base_text, &base, path, query),
                        call_url(base_text, &base, path, query),
                        "{path:?} {query:?}"
                    );
                }
            }
        }
        assert_eq!(
            kept_call_url(&kept, base_text, &base, "relative", &[]),
            None
        );
        assert!(kept
            .iter()
            .all(|entry| entry.value().query() != Some("cursor=a%26b")));
        for n in 0..KEPT_PATHS * 2 {
            let path = format!("/jobs/{n}");
            assert_eq!(
                kept_call_url(&kept, base_text, &base, &path, &[]),
                call_url(base_text, &base, &path, &[])
            );
        }
        assert_eq!(
            kept.len(),
            KEPT_PATHS,
            "paths called once each are not all kept"
        );
    }

    /// A long path is built on every call, not kept: an app that puts its own caller's
    /// input in a path (`/jobs/{id}`, the id from a form) would otherwise keep the first
    /// 256 such paths, each with its URL (up to three times its length once escaped),
    /// for the layer's life. Seen on the code before the bound: 256 paths of 32 KiB kept
    /// 32 MiB (`kept 33564708 bytes`); paths of 2 MiB (axum's default body limit) would
    /// keep 2 GiB.
    #[test]
    fn long_paths_are_not_kept() {
        let base_text = "https://h.example/api";
        let base = Url::parse(&format!("{base_text}/")).unwrap();
        let kept = DashMap::new();
        for n in 0..KEPT_PATHS + 1 {
            let path = format!("/jobs/{n}-{}", "é".repeat(16 * 1024));
            assert_eq!(
                kept_call_url(&kept, base_text, &base, &path, &[]),
                call_url(base_text, &base, &path, &[])
            );
        }
        let bytes: usize = kept
            .iter()
            .map(|entry| entry.key().len() + entry.value().as_str().len())
            .sum();
        assert!(bytes <= 1024 * 1024, "kept {bytes} bytes");
        // A path of the usual length is kept still.
        let path = "/heavyjob/api/v1/jobs/4f2d9c7a-0002-4000-8000-0000000000c0/costCodes";
        kept_call_url(&kept, base_text, &base, path, &[]);
        assert!(kept.contains_key(path));
    }
}
