//! The authorize URL the browser is sent to at login.

use crate::config::IdentityClient;

/// The URL the browser is sent to at login.
pub(crate) fn authorize_url(
    client: &IdentityClient,
    endpoint: &url::Url,
    state: &str,
    challenge: &str,
    nonce: Option<&str>,
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
    }
    url.into()
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
