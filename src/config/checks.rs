//! The rules a setting must meet, each a function that names the setting (and its
//! environment variable) in the error it returns.

use std::net::IpAddr;
use std::time::Duration;

use url::Url;

use crate::error::ConfigError;
use crate::seal::{CookieKey, MIN_KEY_BYTES};
use crate::secret::SecretString;

/// The largest bound on code exchanges in flight that a configuration may set.
const MAX_CODE_EXCHANGES: usize = 65_536;

/// The longest wait after a transient failure: the bound of `retry_after` and of a
/// `Retry-After` sent by the identity service.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// The client id, which must not be blank.
pub(super) fn client_id(id: Option<&str>) -> Result<&str, ConfigError> {
    id.filter(|id| !id.trim().is_empty())
        .ok_or(ConfigError::Missing("client_id (HCSS_CLIENT_ID)"))
}

/// At least one scope, and each a single scope.
pub(super) fn scopes(scopes: &[String]) -> Result<(), ConfigError> {
    if scopes.is_empty() {
        return Err(ConfigError::Missing("scopes (HCSS_SCOPES)"));
    }
    if let Some(bad) = scopes
        .iter()
        .find(|s| s.is_empty() || s.contains(|c: char| c.is_whitespace() || c.is_control()))
    {
        return Err(ConfigError::invalid(
            "scopes",
            format!("{bad:?} is not one scope: give each scope separately"),
        ));
    }
    Ok(())
}

/// A client secret, when there is one, is not empty.
pub(super) fn client_secret(secret: Option<&SecretString>) -> Result<(), ConfigError> {
    if secret.is_some_and(|s| s.expose_secret().is_empty()) {
        return Err(ConfigError::invalid(
            "client_secret",
            "it is empty: leave it unset for a public client",
        ));
    }
    Ok(())
}

/// A path on this site, starting with one `/`.
pub(super) fn site_path(field: &'static str, path: &str) -> Result<(), ConfigError> {
    if crate::return_path::valid_return_path(path).is_none() {
        return Err(ConfigError::invalid(
            field,
            format!("{path:?} must be a path on this site starting with one '/'"),
        ));
    }
    Ok(())
}

/// The bound on code exchanges in flight lets someone sign in and stays below its
/// largest.
pub(super) fn max_code_exchanges(exchanges: usize) -> Result<(), ConfigError> {
    if !(1..=MAX_CODE_EXCHANGES).contains(&exchanges) {
        return Err(ConfigError::invalid(
            "max_code_exchanges",
            format!(
                "{exchanges} is not between 1 (or no one can sign in) and {MAX_CODE_EXCHANGES}"
            ),
        ));
    }
    Ok(())
}

/// A duration no longer than its bound (`unit` says the bound in words).
pub(super) fn at_most(
    field: &'static str,
    value: Duration,
    max: Duration,
    unit: &str,
) -> Result<(), ConfigError> {
    if value > max {
        return Err(ConfigError::invalid(
            field,
            format!("{value:?} is longer than the {unit} it may be"),
        ));
    }
    Ok(())
}

/// A cookie key, when one is given, from its base64 text.
pub(super) fn cookie_key(
    field: &'static str,
    text: Option<&SecretString>,
) -> Result<Option<CookieKey>, ConfigError> {
    text.map(|key| parse_cookie_key(field, key)).transpose()
}

/// A cookie key from its base64 text (standard or URL-safe, padded or not).
fn parse_cookie_key(field: &'static str, text: &SecretString) -> Result<CookieKey, ConfigError> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    let text = text.expose_secret().trim();
    let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok());
    match bytes {
        Some(bytes) if bytes.len() >= MIN_KEY_BYTES => Ok(CookieKey::derive(&bytes)),
        Some(bytes) => Err(ConfigError::invalid(
            field,
            format!(
                "it holds {} bytes; use at least {MIN_KEY_BYTES} random bytes, base64 \
                 (`openssl rand -base64 32`)",
                bytes.len()
            ),
        )),
        None => Err(ConfigError::invalid(
            field,
            "it is not base64; use `openssl rand -base64 32`",
        )),
    }
}

/// An absolute URL that is https, or http on loopback when development allows it, with
/// no fragment, credentials or query string.
pub(super) fn checked_url(
    field: &'static str,
    text: &str,
    allow_http: bool,
) -> Result<Url, ConfigError> {
    let url = Url::parse(text).map_err(|e| {
        ConfigError::invalid(field, format!("{text:?} is not an absolute URL ({e})"))
    })?;
    if url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::invalid(
            field,
            "it must not carry a fragment or credentials",
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if allow_http && is_loopback(&url) => {}
        "http" if allow_http => {
            return Err(ConfigError::invalid(
                field,
                "http:// is allowed only on a loopback host (127.0.0.1, ::1, localhost)",
            ))
        }
        "http" => {
            return Err(ConfigError::invalid(
                field,
                "it must be https:// (for local development on loopback, set \
                 allow_insecure_http_on_loopback / HCSS_ALLOW_INSECURE_HTTP=1)",
            ))
        }
        other => {
            return Err(ConfigError::invalid(
                field,
                format!("the scheme {other:?} is not https"),
            ))
        }
    }
    if url.query().is_some() {
        return Err(ConfigError::invalid(
            field,
            "it must not have a query string",
        ));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// The `prompt` values a login may ask for: `login` (sign in again, e.g. as someone
/// else), `consent` (consent again, e.g. after the app's scopes changed),
/// `select_account`, and `none` (alone: no page at all, or an error).
pub(crate) fn valid_prompt(prompt: &str) -> bool {
    const ALLOWED: [&str; 4] = ["login", "consent", "select_account", "none"];
    let values: Vec<&str> = prompt.split(' ').collect();
    !prompt.is_empty()
        && values.iter().all(|v| ALLOWED.contains(v))
        && (values.len() == 1 || !values.contains(&"none"))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::valid_builder as base;
    use crate::config::{HcssConfig, HcssConfigBuilder};

    #[test]
    fn http_is_refused_unless_loopback_development_allows_it() {
        let err = base()
            .redirect_uri("http://app.example.com/cb")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("https"), "{err}");
        let err = base()
            .redirect_uri("http://app.example.com/cb")
            .allow_insecure_http_on_loopback(true)
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("loopback"), "{err}");
        let c = base()
            .redirect_uri("http://127.0.0.1:3000/cb")
            .identity_url("http://localhost:9/identity/")
            .allow_insecure_http_on_loopback(true)
            .build()
            .unwrap();
        assert!(!c.cookies.secure_cookies);
        assert_eq!(c.issuer(), "http://localhost:9/identity");
        let err = base()
            .identity_url("http://localhost:9/identity")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("identity_url"), "{err}");
    }

    #[test]
    fn missing_and_bad_settings_are_named() {
        let err = HcssConfig::builder().build().unwrap_err();
        assert!(err.to_string().contains("client_id"), "{err}");
        let err = base().scopes(Vec::<String>::new()).build().unwrap_err();
        assert!(err.to_string().contains("scopes"), "{err}");
        let err = base().scopes(["a b"]).build().unwrap_err();
        assert!(err.to_string().contains("scopes"), "{err}");
        let err = base()
            .redirect_uri("https://app.example.com/hcss/login")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("redirect_uri"), "{err}");
        let err = base()
            .post_login_path("//evil.example")
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("post_login_path"), "{err}");
        let err = base().client_secret("").build().unwrap_err();
        assert!(err.to_string().contains("client_secret"), "{err}");
    }

    /// Durations past their bound are refused when built: before, `Duration::MAX` built
    /// fine and panicked at the first login (`Instant + ttl`) or refresh (`timeout * 3`).
    #[test]
    fn huge_durations_are_refused_with_the_setting_named() {
        type Set = fn(HcssConfigBuilder, Duration) -> HcssConfigBuilder;
        let setters: [(&str, Set); 5] = [
            ("transaction_ttl", HcssConfigBuilder::transaction_ttl),
            ("refresh_skew", HcssConfigBuilder::refresh_skew),
            ("max_session_age", HcssConfigBuilder::max_session_age),
            ("http_timeout", HcssConfigBuilder::http_timeout),
            ("retry_after", HcssConfigBuilder::retry_after),
        ];
        for (field, set) in setters {
            let err = set(base(), Duration::MAX).build().unwrap_err();
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
        let ok = base()
            .transaction_ttl(Duration::from_secs(24 * 3600))
            .max_session_age(Duration::from_secs(400 * 24 * 3600))
            .retry_after(Duration::ZERO)
            .build();
        assert!(ok.is_ok(), "the bounds themselves are accepted");
    }

    /// The durations that cannot be zero name the settings, by their setters' names.
    #[test]
    fn zero_durations_are_refused_with_the_settings_named() {
        type Set = fn(HcssConfigBuilder, Duration) -> HcssConfigBuilder;
        let setters: [Set; 3] = [
            HcssConfigBuilder::transaction_ttl,
            HcssConfigBuilder::max_session_age,
            HcssConfigBuilder::http_timeout,
        ];
        for set in setters {
            let err = set(base(), Duration::ZERO).build().unwrap_err();
            assert!(
                err.to_string()
                    .contains("transaction_ttl / max_session_age / http_timeout"),
                "{err}"
            );
        }
    }

    #[test]
    fn cookie_keys_must_be_base64_of_32_bytes_or_more() {
        for (key, says) in [
            ("c2hvcnQ=", "5 bytes"),
            ("not base64 at all!", "not base64"),
        ] {
            let err = base().cookie_key(key).build().unwrap_err();
            assert!(err.to_string().contains("cookie_key"), "{err}");
            assert!(err.to_string().contains(says), "{err}");
        }
        let err = base().previous_cookie_key("c2hvcnQ=").build().unwrap_err();
        assert!(err.to_string().contains("previous_cookie_key"), "{err}");
        let key = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE";
        assert!(base().cookie_key(key).build().is_ok(), "unpadded base64");
    }
}
