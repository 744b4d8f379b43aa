//! What an access token says about who signed in: its JWT claims, read once when the
//! token arrives and kept with the session.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The claims of a session's access token: who signed in (`sub`), their HCSS company
/// (`CompanyId`), the client the token was issued to, their name and email when HCSS
/// includes them, and every other claim by name.
///
/// HCSS issues JWT access tokens. The crate reads their payload itself, once, when it
/// receives the token from HCSS's token endpoint over TLS (at sign-in and at each
/// refresh), and keeps the claims with the session: reading them costs no decoding per
/// request. The signature is not checked: a token that came straight from the token
/// endpoint over a verified TLS connection is trusted the way OpenID Connect trusts an ID
/// token from the token endpoint. Never build `Claims` from a token a client sent you.
/// A token that is not a JWT has no claims; nothing else changes.
///
/// ```
/// use hcss_auth::HcssToken;
///
/// async fn me(token: HcssToken) -> String {
///     let claims = token.claims();
///     format!(
///         "user {} of company {}",
///         claims.subject().unwrap_or("?"),
///         claims.company_id().as_deref().unwrap_or("none"),
///     )
/// }
/// ```
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Claims(Arc<serde_json::Map<String, serde_json::Value>>);

impl Claims {
    /// The claims of `token` if it is a JWT (`header.payload.signature`, the payload a
    /// base64url JSON object); empty otherwise.
    pub(crate) fn of_access_token(token: &str) -> Self {
        let mut parts = token.split('.');
        let (Some(_header), Some(payload), Some(_signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Self::default();
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(payload)
            .or_else(|_| URL_SAFE.decode(payload));
        match bytes.map(|b| serde_json::from_slice::<serde_json::Value>(&b)) {
            Ok(Ok(serde_json::Value::Object(map))) => Self(Arc::new(map)),
            _ => Self::default(),
        }
    }

    /// These claims with `id_token`'s identity claims on top (who the user is: `sub`,
    /// name, email...), leaving out what only describes the ID token itself.
    pub(crate) fn overlaid_with(&self, id_token: &Claims) -> Claims {
        const ABOUT_THE_TOKEN: [&str; 12] = [
            "iss",
            "aud",
            "exp",
            "iat",
            "nbf",
            "nonce",
            "at_hash",
            "c_hash",
            "azp",
            "auth_time",
            "jti",
            "sid",
        ];
        let mut map = (*self.0).clone();
        for (name, value) in id_token.0.iter() {
            if !ABOUT_THE_TOKEN.contains(&name.as_str()) {
                map.insert(name.clone(), value.clone());
            }
        }
        Claims(Arc::new(map))
    }

    /// Whether there are none (the token was not a JWT).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A claim by name, as JSON.
    pub fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.0.get(name)
    }

    /// A claim by name, when it is a string.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name)?.as_str()
    }

    /// Every claim.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &serde_json::Value)> {
        self.0.iter().map(|(name, value)| (name.as_str(), value))
    }

    /// Who signed in: `sub`, stable for the user at HCSS.
    pub fn subject(&self) -> Option<&str> {
        self.get_str("sub")
    }

    /// The user's HCSS company: `CompanyId` (a string, or a number written as one).
    pub fn company_id(&self) -> Option<String> {
        match self.get("CompanyId")? {
            serde_json::Value::String(id) => Some(id.clone()),
            serde_json::Value::Number(id) => Some(id.to_string()),
            _ => None,
        }
    }

    /// The client the token was issued to: `client_id`.
    pub fn client_id(&self) -> Option<&str> {
        self.get_str("client_id")
    }

    /// The user's name, when HCSS includes it (`name`).
    pub fn name(&self) -> Option<&str> {
        self.get_str("name")
    }

    /// The user's email, when HCSS includes it (`email`).
    pub fn email(&self) -> Option<&str> {
        self.get_str("email")
    }
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!(
            "{}.{}.sig",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(payload)
        )
    }

    #[test]
    fn jwt_claims_are_read_and_anything_else_has_none() {
        let claims = Claims::of_access_token(&jwt(
            r#"{"sub":"u-1","CompanyId":"c-9","client_id":"app","name":"Ann","email":"a@x","scope":["a","b"]}"#,
        ));
        assert_eq!(claims.subject(), Some("u-1"));
        assert_eq!(claims.company_id().as_deref(), Some("c-9"));
        assert_eq!(claims.client_id(), Some("app"));
        assert_eq!(claims.name(), Some("Ann"));
        assert_eq!(claims.email(), Some("a@x"));
        assert!(claims.get("scope").unwrap().is_array());
        let numeric = Claims::of_access_token(&jwt(r#"{"CompanyId":42}"#));
        assert_eq!(numeric.company_id().as_deref(), Some("42"));
        for opaque in [
            "at_abcdef",
            "a.b",
            "a.b.c.d",
            "x.!!!.y",
            &jwt("[1,2]"),
            &jwt("not json"),
        ] {
            assert!(Claims::of_access_token(opaque).is_empty(), "{opaque}");
        }
    }
}
