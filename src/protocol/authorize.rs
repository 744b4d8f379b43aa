//! The authorize URL the browser is sent to at login.

use crate::config::IdentityClient;

/// The URL the browser is sent to at login.
pub(crate) fn authorize_url(
    client: &IdentityClient,
    endpoint: &url::Url,
    state: &str,
    challenge: &str,
    nonce: Option<&str>,
    extras: &AuthorizeExtras,
) -> String {
    let mut url = endpoint.clone();
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("client_id", &client.client_id)
            .append_pair("scope", &client.scope)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", &client.redirect_uri)
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        if let Some(nonce) = nonce {
            query.append_pair("nonce", nonce);
        }
        if let Some(prompt) = &extras.prompt {
            query.append_pair("prompt", prompt);
        }
        if let Some(hint) = &extras.login_hint {
            query.append_pair("login_hint", hint);
        }
        if let Some(max_age) = extras.max_age {
            query.append_pair("max_age", &max_age.to_string());
        }
    }
    url.into()
}

/// What a login asks of the identity service beyond the flow's own parameters:
/// `prompt`, `login_hint`, `max_age` (from `/hcss/login`'s query, else the config's
/// defaults).
#[derive(Clone, Debug, Default)]
pub(crate) struct AuthorizeExtras {
    pub(crate) prompt: Option<String>,
    pub(crate) login_hint: Option<String>,
    pub(crate) max_age: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientAuth;
    use crate::protocol::test_support::config;

    #[test]
    fn authorize_url_carries_exactly_the_flow_parameters() {
        let c = config(ClientAuth::RequestBody, Some("s"));
        let url = authorize_url(
            &c.identity,
            &c.identity.authorize_url,
            "STATE",
            "CHALLENGE",
            None,
            &AuthorizeExtras::default(),
        );
        assert_eq!(
            url,
            "https://api.hcssapps.com/identity/connect/authorize?client_id=my+client\
             &scope=heavyjob%3Aread+offline_access&response_type=code\
             &redirect_uri=https%3A%2F%2Fapp.example.com%2Fhcss%2Fcallback&state=STATE\
             &code_challenge=CHALLENGE&code_challenge_method=S256"
        );
        assert!(!url.contains("secret"));
    }
}

#[cfg(test)]
mod prompt_tests {
    use crate::config::valid_prompt;

    #[test]
    fn only_known_prompt_values_pass() {
        for good in [
            "login",
            "consent",
            "none",
            "select_account",
            "login consent",
        ] {
            assert!(valid_prompt(good), "{good}");
        }
        for bad in ["", "admin", "none login", "login  consent", "LOGIN"] {
            assert!(!valid_prompt(bad), "{bad}");
        }
    }
}
