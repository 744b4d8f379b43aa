//! Client authentication (RFC 6749 §2.3.1): the client's id and secret in the form body,
//! or in an HTTP Basic header, as the configuration says.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::config::{ClientAuth, IdentityClient};

/// Adds the client's credentials to a form where the configuration puts them: the id
/// always unless Basic carries it, the secret only in the body mode.
pub(crate) fn push_client_credentials<'a>(
    client: &'a IdentityClient,
    form: &mut Vec<(&'a str, &'a str)>,
) {
    match client.client_auth {
        ClientAuth::RequestBody => {
            form.push(("client_id", &client.client_id));
            if let Some(secret) = &client.client_secret {
                form.push(("client_secret", secret.expose_secret()));
            }
        }
        ClientAuth::BasicAuth if client.client_secret.is_none() => {
            form.push(("client_id", &client.client_id));
        }
        ClientAuth::BasicAuth => {}
    }
}

/// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1), when configured.
pub(crate) fn basic_auth_header(client: &IdentityClient) -> Option<String> {
    let secret = client.client_secret.as_ref()?;
    if client.client_auth != ClientAuth::BasicAuth {
        return None;
    }
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", enc(&client.client_id), enc(secret.expose_secret()));
    Some(format!("Basic {}", STANDARD.encode(pair)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::test_support::config;
    use crate::protocol::token_request::{token_form, Grant};
    use crate::protocol::transport::encode_form;

    #[test]
    fn basic_auth_urlencodes_before_base64() {
        let c = config(ClientAuth::BasicAuth, Some("p&ss"));
        let grant = Grant::RefreshToken {
            refresh_token: "RT",
        };
        assert_eq!(
            encode_form(&token_form(&c.identity, &grant)),
            "grant_type=refresh_token&refresh_token=RT"
        );
        let header = basic_auth_header(&c.identity).unwrap();
        let decoded = STANDARD
            .decode(header.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(decoded, b"my+client:p%26ss");
    }

    #[test]
    fn public_client_sends_only_its_id() {
        let c = config(ClientAuth::BasicAuth, None);
        let grant = Grant::RefreshToken {
            refresh_token: "RT",
        };
        assert_eq!(
            encode_form(&token_form(&c.identity, &grant)),
            "grant_type=refresh_token&refresh_token=RT&client_id=my+client"
        );
    }
}
