//! Callback parameter parsing, cookie parsing and `return_to` validation on arbitrary
//! input: none may panic, and an accepted return path must stay on the app's origin.
#![no_main]

use hcss_auth::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    if let Some(path) = fuzzing::return_path(&text) {
        assert!(path.starts_with('/') && !path.starts_with("//") && !path.starts_with("/\\"));
        let base = url::Url::parse("https://app.example.com/base/").unwrap();
        let joined = base.join(path).expect("an accepted path joins");
        assert_eq!(joined.origin(), base.origin(), "{path:?} left the origin");
    }

    let _ = fuzzing::callback_query(&text);

    if let Ok(header) = http::HeaderValue::from_bytes(data) {
        if let Some(id) = fuzzing::session_cookie(&header) {
            assert_eq!(id.len(), 43);
        }
    }
});
