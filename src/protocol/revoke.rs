//! Token revocation at `{identity}/connect/revocation` (RFC 7009).

use url::Url;

use crate::config::IdentityClient;

use super::client_auth::push_client_credentials;
use super::error::TokenError;
use super::transport::post_form;

/// Revokes a token at `revocation_url` (`{identity}/connect/revocation` in HCSS's
/// layout; RFC 7009). Its answer is read
/// by the token endpoint's table ([`TokenError::of_answer`]): RFC 7009 §2.2.1 answers
/// errors as RFC 6749 §5.2 does.
pub(crate) async fn revoke(
    client: &IdentityClient,
    revocation_url: &Url,
    token: &str,
    hint: &'static str,
) -> Result<(), TokenError> {
    let mut form = vec![("token", token), ("token_type_hint", hint)];
    push_client_credentials(client, &mut form);
    let answer = post_form(client, revocation_url, &form, client.http_timeout).await?;
    match TokenError::of_answer(&answer) {
        None => Ok(()),
        Some(err) => Err(err),
    }
}
