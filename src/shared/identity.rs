//! The identity service's token and revocation endpoints, called where the layer's
//! [`Provider`](crate::oidc::Provider) finds them (its discovery document, or HCSS's
//! layout).

use std::sync::Arc;

use crate::oidc::Endpoints;
use crate::protocol::{self, Grant, TokenError, TokenResponse};

use super::Shared;

impl Shared {
    /// Sends `grant` to the identity service's token endpoint
    /// ([`protocol::request_tokens`]). A discovery document that names another issuer
    /// fails it, with no call made.
    pub(crate) async fn request_tokens(
        &self,
        grant: Grant<'_>,
    ) -> Result<TokenResponse, TokenError> {
        let endpoints = self.endpoints().await?;
        protocol::request_tokens(&self.config, &endpoints.token, grant).await
    }

    /// Revokes `token` at the identity service's revocation endpoint
    /// ([`protocol::revoke`]). A discovery document that names another issuer fails it,
    /// with no call made.
    pub(crate) async fn revoke(&self, token: &str, hint: &'static str) -> Result<(), TokenError> {
        let endpoints = self.endpoints().await?;
        protocol::revoke(&self.config.identity, &endpoints.revocation, token, hint).await
    }

    /// Where the endpoints are; a discovery document that names another issuer is an
    /// error of the answer, so that no call is made.
    async fn endpoints(&self) -> Result<Arc<Endpoints>, TokenError> {
        self.oidc
            .endpoints(&self.config.identity)
            .await
            .map_err(|err| TokenError::InvalidResponse(err.to_string()))
    }
}
