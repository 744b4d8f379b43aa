//! The names of the crate's cookies: `__Host-` prefixed when cookies are secure.

use super::HcssConfig;

impl HcssConfig {
    /// The name of the session cookie.
    pub(crate) fn session_cookie_name(&self) -> &'static str {
        if self.cookies.secure_cookies {
            "__Host-hcss-session"
        } else {
            "hcss-session"
        }
    }

    /// The prefix of the per-login binding cookies: each login has its own,
    /// `{prefix}{first 8 characters of its state}`, so tabs never overwrite each other's.
    pub(crate) fn binding_cookie_prefix(&self) -> &'static str {
        if self.cookies.secure_cookies {
            "__Host-hcss-login-"
        } else {
            "hcss-login-"
        }
    }

    /// The name of the cookie that holds the `state` of a sign-out at HCSS until the
    /// browser comes back from it.
    pub(crate) fn logout_state_cookie_name(&self) -> &'static str {
        if self.cookies.secure_cookies {
            "__Host-hcss-logout"
        } else {
            "hcss-logout"
        }
    }

    /// The name of the binding cookie of the login with this `state`.
    pub(crate) fn binding_cookie_name(&self, state: &str) -> String {
        let suffix = state.get(..8).unwrap_or(state);
        format!("{}{suffix}", self.binding_cookie_prefix())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::valid_builder as base;

    #[test]
    fn cookie_names_have_the_host_prefix_unless_the_redirect_uri_is_plain_http() {
        let c = base().build().unwrap();
        assert_eq!(c.session_cookie_name(), "__Host-hcss-session");
        assert_eq!(
            c.binding_cookie_name("abcdefghijk"),
            "__Host-hcss-login-abcdefgh"
        );
        let plain_http = base()
            .redirect_uri("http://localhost:3000/hcss/callback")
            .allow_insecure_http_on_loopback(true);
        let c = plain_http.build().unwrap();
        assert_eq!(c.session_cookie_name(), "hcss-session");
        assert_eq!(c.binding_cookie_name("abc"), "hcss-login-abc");
    }
}
