//! Token revocation at `{identity}/connect/revocation` (RFC 7009).

use crate::config::IdentityClient;

use super::client_auth::push_client_credentials;
use super::error::{clip, RawError, TokenError};
use super::transport::post_form;

/// Revokes a token at `{identity}/connect/revocation` (RFC 7009).
pub(crate) async fn revoke(
    client: &IdentityClient,
    token: &str,
    hint: &'static str,
) -> Result<(), TokenError> {
    let mut form = vec![("token", token), ("token_type_hint", hint)];
    push_client_credentials(client, &mut form);
    let answer = post_form(client, &client.revocation_url, &form, client.http_timeout).await?;
    let status = answer.status;
    match status {
        200..=299 => Ok(()),
        429 | 500.. => Err(TokenError::Transient {
            why: format!("HTTP {status}"),
            retry_after: answer.retry_after,
        }),
        _ => Err(
            serde_json::from_slice::<RawError>(&answer.body).map_or_else(
                |_| TokenError::InvalidResponse(format!("HTTP {status}")),
                |e| TokenError::Rejected {
                    status,
                    error: clip(&e.error),
                    description: e.error_description.as_deref().map(clip),
                },
            ),
        ),
    }
}
