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
///         claims.company_id().unwrap_or("none"),
///     )
/// }
/// ```
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Claims(Arc<serde_json::Map<String, serde_json::Value>>);

/// Read back from a store: `CompanyId` as text, as when the token arrived (sets stored by
/// earlier versions may hold it as a number).
impl<'de> Deserialize<'de> for Claims {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_json::Map::deserialize(deserializer).map(Claims::from_map)
    }
}

impl Claims {
    /// The claims of a JWT payload, `CompanyId` kept as text: HCSS writes it as a string,
    /// and a number is kept as its decimal digits, so that every claim the accessors
    /// give is a `&str`.
    fn from_map(mut map: serde_json::Map<String, serde_json::Value>) -> Self {
        if let Some(serde_json::Value::Number(id)) = map.get("CompanyId") {
            let text = id.to_string();
            map.insert("CompanyId".to_owned(), serde_json::Value::String(text));
        }
        Self(Arc::new(map))
    }

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
            Ok(Ok(serde_json::Value::Object(map))) => Self::from_map(map),
            _ => Self::default(),
        }
    }

    /// The claims of an ID token that came from the token endpoint, once they check out
    /// (OpenID Connect Core §3.1.3.7 and §12.2): `iss` is the configured issuer, `aud`
    /// names this client, `azp` names it when present and is present when `aud` names
    /// several audiences, `exp` is in the future, and the `nonce` is what `nonce` says.
    /// The signature is not checked: the token came from the token endpoint over
    /// verified TLS. The error says which check failed (no claim values, for logs).
    pub(crate) fn of_id_token(
        id_token: &str,
        issuer: &str,
        client_id: &str,
        now: u64,
        nonce: Nonce<'_>,
    ) -> Result<Claims, &'static str> {
        let claims = Claims::of_access_token(id_token);
        if claims.is_empty() {
            return Err("not a JWT");
        }
        if claims.get_str("iss") != Some(issuer) {
            return Err("iss is not the configured issuer");
        }
        let (ours, several) = match claims.get("aud") {
            Some(serde_json::Value::String(aud)) => (aud == client_id, false),
            Some(serde_json::Value::Array(auds)) => (
                auds.iter().any(|a| a.as_str() == Some(client_id)),
                auds.len() > 1,
            ),
            _ => (false, false),
        };
        if !ours {
            return Err("aud does not name this client");
        }
        match claims.get("azp") {
            Some(azp) if azp.as_str() != Some(client_id) => {
                return Err("azp is not this client");
            }
            None if several => return Err("aud names several audiences and there is no azp"),
            _ => {}
        }
        let expires = claims.get("exp").and_then(serde_json::Value::as_u64);
        if expires.is_none_or(|exp| exp <= now) {
            return Err("expired");
        }
        if let Nonce::Login(nonce) = nonce {
            if claims.get_str("nonce") != nonce {
                return Err("nonce is not the login's");
            }
        }
        Ok(claims)
    }

    /// What these claims (a session's) hold beyond those of its access token `access`:
    /// the claims its ID token brought, that the access token lacks or says otherwise.
    /// Nothing when the two agree; everything when the access token is not a JWT.
    pub(crate) fn beyond(&self, access: &Claims) -> Claims {
        let map: serde_json::Map<String, serde_json::Value> = self
            .0
            .iter()
            .filter(|(name, value)| access.get(name) != Some(*value))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        Claims(Arc::new(map))
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

    /// The user's HCSS company: `CompanyId` (a string; a number in the token is read as
    /// its decimal digits).
    pub fn company_id(&self) -> Option<&str> {
        self.get_str("CompanyId")
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

/// What the `nonce` of an ID token must be.
#[derive(Clone, Copy)]
pub(crate) enum Nonce<'a> {
    /// At a sign-in: the login's, or none when the login sent none.
    Login(Option<&'a str>),
    /// At a refresh: not checked (OpenID Connect Core §12.2: a refreshed ID token
    /// answers no authorization request).
    Refresh,
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
    fn an_id_token_must_name_this_client_in_aud_and_azp() {
        let check = |claims: &str, nonce| {
            Claims::of_id_token(&jwt(claims), "https://id.example", "app", 1_000, nonce)
        };
        let ok = |aud: &str, azp: &str| {
            format!(r#"{{"iss":"https://id.example","aud":{aud}{azp},"exp":2000,"sub":"u"}}"#)
        };
        let login = Nonce::Login(None);
        assert!(check(&ok(r#""app""#, ""), login).is_ok());
        assert!(check(&ok(r#"["app"]"#, ""), login).is_ok());
        assert!(check(&ok(r#"["app","api"]"#, r#","azp":"app""#), login).is_ok());
        assert!(check(&ok(r#""app""#, r#","azp":"app""#), login).is_ok());
        for (aud, azp, why) in [
            (
                r#"["app","api"]"#,
                "",
                "several audiences and there is no azp",
            ),
            (
                r#"["app","api"]"#,
                r#","azp":"api""#,
                "azp is not this client",
            ),
            (r#""app""#, r#","azp":"other""#, "azp is not this client"),
            (r#""app""#, r#","azp":7"#, "azp is not this client"),
            (r#"["api"]"#, "", "aud does not name this client"),
        ] {
            let err = check(&ok(aud, azp), login).unwrap_err();
            assert!(err.contains(why), "{aud} {azp}: {err}");
        }
        // The nonce: the login's at a sign-in, not checked at a refresh.
        let with_nonce = r#"{"iss":"https://id.example","aud":"app","exp":2000,"nonce":"n1"}"#;
        assert!(check(with_nonce, Nonce::Login(Some("n1"))).is_ok());
        assert!(check(with_nonce, Nonce::Login(Some("n2"))).is_err());
        assert!(check(with_nonce, Nonce::Login(None)).is_err());
        assert!(check(with_nonce, Nonce::Refresh).is_ok());
        let expired = r#"{"iss":"https://id.example","aud":"app","exp":1000}"#;
        assert_eq!(check(expired, Nonce::Refresh).unwrap_err(), "expired");
    }

    #[test]
    fn what_a_session_holds_beyond_its_access_token() {
        let access = Claims::of_access_token(&jwt(r#"{"sub":"u","name":"A","jti":"1"}"#));
        let session = access.overlaid_with(&Claims::of_access_token(&jwt(
            r#"{"sub":"u","name":"A (ID)","email":"a@x","nonce":"n"}"#,
        )));
        let beyond = session.beyond(&access);
        assert_eq!(beyond.name(), Some("A (ID)"));
        assert_eq!(beyond.email(), Some("a@x"));
        assert!(beyond.get("sub").is_none() && beyond.get("jti").is_none());
        assert!(beyond.get("nonce").is_none());
        assert!(access.beyond(&access).is_empty());
        assert_eq!(session.beyond(&Claims::default()), session);
    }

    #[test]
    fn jwt_claims_are_read_and_anything_else_has_none() {
        let claims = Claims::of_access_token(&jwt(
            r#"{"sub":"u-1","CompanyId":"c-9","client_id":"app","name":"Ann","email":"a@x","scope":["a","b"]}"#,
        ));
        assert_eq!(claims.subject(), Some("u-1"));
        assert_eq!(claims.company_id(), Some("c-9"));
        assert_eq!(claims.client_id(), Some("app"));
        assert_eq!(claims.name(), Some("Ann"));
        assert_eq!(claims.email(), Some("a@x"));
        assert!(claims.get("scope").unwrap().is_array());
        let numeric = Claims::of_access_token(&jwt(r#"{"CompanyId":42}"#));
        assert_eq!(numeric.company_id(), Some("42"));
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

    /// `company_id` has the shape of the other accessors, `Option<&str>`, for a string
    /// and for a number in the token, and for a number in a set stored before.
    #[test]
    fn company_id_is_a_str_whether_the_token_has_a_string_or_a_number() {
        let of = |payload: &str| Claims::of_access_token(&jwt(payload));
        let claims = of(r#"{"CompanyId":"c-7"}"#);
        let text: Option<&str> = claims.company_id();
        assert_eq!(text, Some("c-7"));
        let number = of(r#"{"CompanyId":42}"#);
        assert_eq!(number.company_id(), Some("42"));
        assert_eq!(of(r#"{"CompanyId":true}"#).company_id(), None);
        assert_eq!(of(r#"{"sub":"u"}"#).company_id(), None);
        let stored: Claims = serde_json::from_str(r#"{"CompanyId":42,"sub":"u"}"#).unwrap();
        assert_eq!(stored.company_id(), Some("42"));
        assert_eq!(
            serde_json::to_string(&number).unwrap(),
            r#"{"CompanyId":"42"}"#
        );
    }
}
