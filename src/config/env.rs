//! `HcssConfig::from_env`: the configuration read from `HCSS_*` environment variables.

use crate::error::ConfigError;

use super::HcssConfig;

impl HcssConfig {
    /// Reads the configuration from the environment:
    ///
    /// | variable | meaning |
    /// |---|---|
    /// | `HCSS_CLIENT_ID` | required |
    /// | `HCSS_CLIENT_SECRET` | optional (public clients have none) |
    /// | `HCSS_SCOPES` | required, separated by spaces or commas |
    /// | `HCSS_REDIRECT_URI` | required, the "Post Login Callback URL" registered at HCSS |
    /// | `HCSS_POST_LOGOUT_REDIRECT_URI` | optional: turns on sign-out at HCSS, see [`post_logout_redirect_uri`](crate::HcssConfigBuilder::post_logout_redirect_uri) |
    /// | `HCSS_BACKCHANNEL_LOGOUT` | yes or no (default no): serves back-channel logout at `/hcss/backchannel-logout`, see [`backchannel_logout`](crate::HcssConfigBuilder::backchannel_logout) |
    /// | `HCSS_IDENTITY_URL` | default `https://api.hcssapps.com/identity` |
    /// | `HCSS_COOKIE_KEY` | base64 of at least 32 random bytes: seals login cookies; the same on every instance |
    /// | `HCSS_COOKIE_KEY_PREVIOUS` | the key before it, accepted during a rotation |
    /// | `HCSS_CLIENT_AUTH` | how the client authenticates at the token endpoint: `body` (default, as HCSS documents) or `basic` (HTTP Basic), see [`ClientAuth`](crate::ClientAuth) |
    /// | `HCSS_ALLOW_INSECURE_HTTP` | `1` allows `http://` on loopback, for local development |
    /// | `HCSS_API_URL` | HCSS's API base URL, default `https://api.hcssapps.com` |
    /// | `HCSS_API_RATE_PER_MINUTE` | calls a company may start per minute, all instances together; default 100 |
    /// | `HCSS_API_CONCURRENCY` | calls a company may have in flight, all instances together; default 20 |
    /// | `HCSS_API_MAX_WAIT_SECS` | the longest one API call waits for the budget or `Retry-After`; default 30 |
    ///
    /// A yes-or-no variable takes `1`, `true`, `yes` or `on` for yes and `0`, `false`,
    /// `no` or `off` for no, in any case; anything else is an error that says so.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub(crate) fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let mut builder = Self::builder();
        if let Some(id) = get("HCSS_CLIENT_ID") {
            builder = builder.client_id(id);
        }
        if let Some(secret) = get("HCSS_CLIENT_SECRET") {
            builder = builder.client_secret(secret);
        }
        if let Some(scopes) = get("HCSS_SCOPES") {
            builder = builder.scopes(
                scopes
                    .split(|c: char| c == ',' || c.is_ascii_whitespace())
                    .filter(|scope| !scope.is_empty()),
            );
        }
        if let Some(uri) = get("HCSS_REDIRECT_URI") {
            builder = builder.redirect_uri(uri);
        }
        if let Some(uri) = get("HCSS_POST_LOGOUT_REDIRECT_URI") {
            builder = builder.post_logout_redirect_uri(uri);
        }
        if let Some(url) = get("HCSS_IDENTITY_URL") {
            builder = builder.identity_url(url);
        }
        if let Some(key) = get("HCSS_COOKIE_KEY") {
            builder = builder.cookie_key(key);
        }
        if let Some(key) = get("HCSS_COOKIE_KEY_PREVIOUS") {
            builder = builder.previous_cookie_key(key);
        }
        if let Some(url) = get("HCSS_API_URL") {
            builder = builder.api_url(url);
        }
        if let Some(rate) = get("HCSS_API_RATE_PER_MINUTE") {
            builder = builder.api_rate_per_minute(number("HCSS_API_RATE_PER_MINUTE", &rate)?);
        }
        if let Some(calls) = get("HCSS_API_CONCURRENCY") {
            builder = builder.api_concurrency(number("HCSS_API_CONCURRENCY", &calls)?);
        }
        if let Some(secs) = get("HCSS_API_MAX_WAIT_SECS") {
            let secs: u32 = number("HCSS_API_MAX_WAIT_SECS", &secs)?;
            builder = builder.api_max_wait(std::time::Duration::from_secs(secs.into()));
        }
        if let Some(value) = get("HCSS_BACKCHANNEL_LOGOUT") {
            let on = yes_or_no("HCSS_BACKCHANNEL_LOGOUT", &value)?;
            builder = builder.backchannel_logout(on);
        }
        if let Some(value) = get("HCSS_CLIENT_AUTH") {
            builder = builder.client_auth(client_auth(&value)?);
        }
        if let Some(value) = get("HCSS_ALLOW_INSECURE_HTTP") {
            let allow = yes_or_no("HCSS_ALLOW_INSECURE_HTTP", &value)?;
            builder = builder.allow_insecure_http_on_loopback(allow);
        }
        builder.build()
    }
}

/// A whole number read from the variable `name`, or an error that names it.
fn number(name: &'static str, text: &str) -> Result<u32, ConfigError> {
    text.trim()
        .parse()
        .map_err(|_| ConfigError::invalid(name, format!("{text:?} is not a whole number")))
}

/// `HCSS_CLIENT_AUTH`: `body` or `basic`, in any case, spaces around ignored.
fn client_auth(value: &str) -> Result<crate::ClientAuth, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "body" => Ok(crate::ClientAuth::RequestBody),
        "basic" => Ok(crate::ClientAuth::BasicAuth),
        _ => Err(ConfigError::invalid(
            "HCSS_CLIENT_AUTH",
            "use body (the client's id and secret in the form body, as HCSS documents) or basic (HTTP Basic)",
        )),
    }
}

/// The one rule for a yes-or-no variable: `1`, `true`, `yes`, `on` or `0`, `false`,
/// `no`, `off`, in any case, spaces around ignored.
fn yes_or_no(name: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::invalid(
            name,
            "use 1, true, yes or on to turn it on; 0, false, no or off (or leave it unset) to leave it off",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The environment of a minimal valid configuration redirecting to `redirect_uri`,
    /// with `name` set to `value`.
    fn env_with(
        redirect_uri: &'static str,
        name: &'static str,
        value: &'static str,
    ) -> impl Fn(&str) -> Option<String> {
        move |var: &str| {
            let found = match var {
                "HCSS_CLIENT_ID" => "id",
                "HCSS_SCOPES" => "heavyjob:read offline_access",
                "HCSS_REDIRECT_URI" => redirect_uri,
                _ if var == name => value,
                _ => return None,
            };
            Some(found.to_owned())
        }
    }

    #[test]
    fn from_env_reads_every_variable() {
        let env = |name: &str| {
            Some(
                match name {
                    "HCSS_CLIENT_ID" => "env-id",
                    "HCSS_CLIENT_SECRET" => "env-secret",
                    "HCSS_SCOPES" => "heavyjob:read,  offline_access",
                    "HCSS_REDIRECT_URI" => "http://127.0.0.1:3000/hcss/callback",
                    "HCSS_IDENTITY_URL" => "http://127.0.0.1:4000/identity",
                    "HCSS_ALLOW_INSECURE_HTTP" => "1",
                    "HCSS_COOKIE_KEY" => "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=",
                    "HCSS_API_URL" => "http://127.0.0.1:4000/",
                    "HCSS_API_RATE_PER_MINUTE" => "30",
                    "HCSS_API_CONCURRENCY" => " 5 ",
                    "HCSS_API_MAX_WAIT_SECS" => "12",
                    _ => return None,
                }
                .to_owned(),
            )
        };
        let c = HcssConfig::from_lookup(env).unwrap();
        assert_eq!(c.client_id(), "env-id");
        assert_eq!(c.identity.scope, "heavyjob:read offline_access");
        assert_eq!(c.issuer(), "http://127.0.0.1:4000/identity");
        assert!(c.identity.client_secret.is_some());
        assert!(c.cookies.cookie_key.is_some());
        assert_eq!(c.api.url, "http://127.0.0.1:4000");
        assert_eq!((c.api.rate, c.api.concurrency), (30, 5));
        assert_eq!(c.api.max_wait, std::time::Duration::from_secs(12));
        let debug = format!("{c:?}");
        assert!(!debug.contains("env-secret"), "{debug}");
        assert!(!debug.contains("QUFB"), "{debug}");
    }

    #[test]
    fn api_settings_have_hcss_defaults_and_bad_values_name_their_variable() {
        let base = |extra: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                let value = match name {
                    "HCSS_CLIENT_ID" => "id",
                    "HCSS_SCOPES" => "heavyjob:read",
                    "HCSS_REDIRECT_URI" => "https://app.example.com/hcss/callback",
                    other => extra.iter().find(|(n, _)| *n == other)?.1,
                };
                Some(value.to_owned())
            }
        };
        let c = HcssConfig::from_lookup(base(&[])).unwrap();
        assert_eq!(c.api.url, "https://api.hcssapps.com");
        assert_eq!((c.api.rate, c.api.concurrency), (100, 20));
        assert_eq!(c.api.rate_window, std::time::Duration::from_secs(60));
        assert_eq!(c.api.max_wait, std::time::Duration::from_secs(30));
        for (name, value) in [
            ("HCSS_API_RATE_PER_MINUTE", "many"),
            ("HCSS_API_RATE_PER_MINUTE", "0"),
            ("HCSS_API_CONCURRENCY", "-1"),
            ("HCSS_API_CONCURRENCY", "0"),
            ("HCSS_API_MAX_WAIT_SECS", "3600"),
            ("HCSS_API_URL", "http://api.example.com"),
        ] {
            let pair: &'static [(&'static str, &'static str)] =
                Box::leak(Box::new([(name, value)]));
            let err = HcssConfig::from_lookup(base(pair)).unwrap_err().to_string();
            assert!(err.contains(name), "{name}={value}: {err}");
        }
    }

    /// The doctor tells a client refused as `invalid_client` to check `HCSS_CLIENT_AUTH`:
    /// the variable is read (`body` or `basic`), and another value names it.
    #[test]
    fn client_auth_is_read_from_its_variable() {
        let with = |value| {
            env_with(
                "https://app.example.com/hcss/callback",
                "HCSS_CLIENT_AUTH",
                value,
            )
        };
        let auth = |value| {
            HcssConfig::from_lookup(with(value))
                .unwrap()
                .identity
                .client_auth
        };
        assert_eq!(auth("basic"), crate::ClientAuth::BasicAuth);
        assert_eq!(auth(" Basic "), crate::ClientAuth::BasicAuth);
        assert_eq!(auth("body"), crate::ClientAuth::RequestBody);
        assert_eq!(auth(""), crate::ClientAuth::RequestBody);
        let err = HcssConfig::from_lookup(with("header"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("HCSS_CLIENT_AUTH"), "{err}");
        assert!(err.contains("body") && err.contains("basic"), "{err}");
    }

    /// One rule for a yes-or-no variable: `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`
    /// in any case, and the error says so (before: `true` was taken, `yes` refused with
    /// "use 1 or 0").
    #[test]
    fn a_boolean_variable_takes_the_usual_words_and_says_which() {
        let with = |value| {
            env_with(
                "http://127.0.0.1:3000/hcss/callback",
                "HCSS_ALLOW_INSECURE_HTTP",
                value,
            )
        };
        for yes in ["1", "true", "TRUE", "yes", "Yes", "on", " on "] {
            assert!(HcssConfig::from_lookup(with(yes)).is_ok(), "{yes:?}");
        }
        for no in ["0", "false", "no", "off", "OFF"] {
            let err = HcssConfig::from_lookup(with(no)).unwrap_err().to_string();
            assert!(err.contains("redirect_uri"), "{no:?} allows http: {err}");
        }
        let err = HcssConfig::from_lookup(with("maybe"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("HCSS_ALLOW_INSECURE_HTTP"), "{err}");
        for word in ["1", "0", "true", "false", "yes", "no", "on", "off"] {
            assert!(err.contains(word), "{word} in {err}");
        }
    }
}
