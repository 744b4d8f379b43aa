//! The ID token of a refresh response, checked as a sign-in's is (OpenID Connect Core
//! §12.2): its signature against the identity service's JWKS, its `iss`, `aud`, `azp`
//! and expiry, and the same `sub` as the session's.
//!
//! What a bad one does (the refresh token it came with is already spent at HCSS):
//!
//! - a verdict on the token (a signature that does not verify, `alg: none` or HMAC, a
//!   key id the service does not have even after reading its keys again, another issuer,
//!   audience or user, expired) ends the session as `invalid_grant` does, and the new
//!   refresh token is revoked: a token endpoint answer that does not check out is not
//!   signed in with;
//! - keys that cannot be read (unreachable, an error status) say nothing about the
//!   token: the refresh's access and refresh tokens are used, so the session does not
//!   end for a passing fault, but the new ID token is not: the session keeps the identity
//!   verified before (its claims and ID token), and a warning is logged.

use crate::claims::{Claims, Nonce};
use crate::secret::SecretString;
use crate::shared::Shared;
use crate::token::TokenSet;

/// What the check of a refresh's ID token found.
pub(super) enum Checked {
    /// It checks out: its claims.
    Fresh(Claims),
    /// The identity service's keys could not be read: nothing is known about it.
    Unverified(&'static str),
    /// It does not check out.
    Refused(&'static str),
}

/// Checks `id_token`, which came with the refresh of `old`.
pub(super) async fn check(shared: &Shared, old: &TokenSet, id_token: &SecretString) -> Checked {
    let config = &shared.config;
    let identity = &config.identity;
    if let Err(err) = shared
        .oidc
        .verify_id_token(identity, id_token.expose_secret())
        .await
    {
        return if err.keys_unreadable {
            Checked::Unverified(err.why)
        } else {
            Checked::Refused(err.why)
        };
    }
    let claims = match Claims::of_id_token(
        id_token.expose_secret(),
        &identity.issuer,
        &identity.client_id,
        config.now(),
        Nonce::Refresh,
    ) {
        Ok(claims) => claims,
        Err(why) => return Checked::Refused(why),
    };
    let same_user = old
        .claims
        .subject()
        .is_none_or(|sub| claims.subject() == Some(sub));
    if !same_user {
        return Checked::Refused("it names another user (sub) than the session's");
    }
    Checked::Fresh(claims)
}
