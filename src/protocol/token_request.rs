//! The token request: the grants, the form each sends, and the request itself.

use url::Url;

use crate::config::{HcssConfig, IdentityClient};

use super::client_auth::push_client_credentials;
use super::error::TokenError;
use super::response::{parse_token_response, TokenResponse};
use super::transport::post_form;

/// A grant sent to the token endpoint.
pub(crate) enum Grant<'a> {
    AuthorizationCode {
        code: &'a str,
        verifier: &'a str,
    },
    RefreshToken {
        refresh_token: &'a str,
    },
    /// HCSS's `company` grant: a token for a customer company, with no user present.
    Company {
        company_id: &'a str,
    },
    /// `client_credentials`: a token for the app's own company.
    ClientCredentials,
}

/// The form fields of a token request, in order, with the client's credentials where
/// the configuration puts them.
pub(crate) fn token_form<'a>(
    client: &'a IdentityClient,
    grant: &Grant<'a>,
) -> Vec<(&'a str, &'a str)> {
    let mut form = match grant {
        Grant::AuthorizationCode { code, verifier } => vec![
            ("grant_type", "authorization_code"),
            ("code", *code),
            ("redirect_uri", client.redirect_uri.as_str()),
            ("code_verifier", *verifier),
        ],
        Grant::RefreshToken { refresh_token } => vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", *refresh_token),
        ],
        Grant::Company { company_id } => vec![
            ("grant_type", "company"),
            ("CompanyId", *company_id),
            ("scope", client.company_scope.as_str()),
        ],
        Grant::ClientCredentials => vec![
            ("grant_type", "client_credentials"),
            ("scope", client.company_scope.as_str()),
        ],
    };
    push_client_credentials(client, &mut form);
    form
}

/// How many HTTP timeouts a refresh waits for HCSS's answer. Generous: the refresh runs
/// in a task no request waits on for longer than one timeout, and an answer given up on
/// may carry a refresh token HCSS has already rotated (the old one is then spent, and
/// the session can only sign in again).
pub(crate) const REFRESH_PATIENCE: u32 = 6;

/// Exchanges an authorization code or a refresh token for tokens at `token_url` (the
/// identity service's token endpoint, as its discovery document or HCSS's layout names
/// it).
pub(crate) async fn request_tokens(
    config: &HcssConfig,
    token_url: &Url,
    grant: Grant<'_>,
) -> Result<TokenResponse, TokenError> {
    let kind = match grant {
        Grant::AuthorizationCode { .. } => "authorization_code",
        Grant::RefreshToken { .. } => "refresh_token",
        Grant::Company { .. } => "company",
        Grant::ClientCredentials => "client_credentials",
    };
    // A refresh waits longer for its answer than a request waits for the refresh: HCSS
    // may have rotated the refresh token already, and an answer that comes late must
    // still be kept, or the session is lost to reuse detection.
    let timeout = match grant {
        Grant::RefreshToken { .. } => config.identity.http_timeout * REFRESH_PATIENCE,
        _ => config.identity.http_timeout,
    };
    let form = token_form(&config.identity, &grant);
    let started = std::time::Instant::now();
    let answer = post_form(&config.identity, token_url, &form, timeout).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    crate::metrics::token_endpoint(kind, started.elapsed());
    let answer = answer.inspect_err(|err| {
        tracing::debug!(grant = kind, elapsed_ms, reason = %err, "token endpoint unreachable");
    })?;
    tracing::debug!(
        grant = kind,
        status = answer.status,
        elapsed_ms,
        "token endpoint answered"
    );
    parse_token_response(config, &answer, config.now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientAuth;
    use crate::protocol::client_auth::basic_auth_header;
    use crate::protocol::test_support::config;
    use crate::protocol::transport::encode_form;

    #[test]
    fn code_exchange_form_has_the_secret_in_the_body() {
        let c = config(ClientAuth::RequestBody, Some("p&ss"));
        let grant = Grant::AuthorizationCode {
            code: "CODE",
            verifier: "VERIFIER",
        };
        assert_eq!(
            encode_form(&token_form(&c.identity, &grant)),
            "grant_type=authorization_code&code=CODE\
             &redirect_uri=https%3A%2F%2Fapp.example.com%2Fhcss%2Fcallback\
             &code_verifier=VERIFIER&client_id=my+client&client_secret=p%26ss"
        );
        assert_eq!(basic_auth_header(&c.identity), None);
    }

    #[test]
    fn company_grants_send_exactly_their_fields() {
        let c = config(ClientAuth::RequestBody, Some("p&ss"));
        let grant = Grant::Company {
            company_id: "c0ffee-01",
        };
        assert_eq!(
            encode_form(&token_form(&c.identity, &grant)),
            "grant_type=company&CompanyId=c0ffee-01&scope=heavyjob%3Aread\
             &client_id=my+client&client_secret=p%26ss",
            "no offline_access: company tokens have no refresh token"
        );
        let c = config(ClientAuth::BasicAuth, Some("s"));
        assert_eq!(
            encode_form(&token_form(&c.identity, &Grant::ClientCredentials)),
            "grant_type=client_credentials&scope=heavyjob%3Aread"
        );
        assert!(basic_auth_header(&c.identity).is_some());
    }
}
