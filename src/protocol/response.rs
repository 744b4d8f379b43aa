//! The token endpoint's answer read into a [`TokenResponse`]: lenient where HCSS varies
//! (`token_type` case, `expires_in` as a number or a string, or missing), strict on the rest.

use std::sync::Arc;

use serde::Deserialize;

use crate::claims::Claims;
use crate::config::HcssConfig;
use crate::secret::SecretString;
use crate::token::TokenSet;

use super::error::{clip, TokenError};
use super::transport::Answer;

/// How long a token is assumed to live when HCSS's response carries no `expires_in`.
pub(crate) const DEFAULT_EXPIRES_IN: u64 = 300;

/// The shortest access-token lifetime believed: an `expires_in` below it (0, say) is taken
/// as this, so that a session refreshes at most once per lifetime, not on every request.
pub(crate) const MIN_TOKEN_LIFETIME: u64 = 2;

/// A token endpoint's answer: the token set to keep, and what comes with it on the wire
/// only (the ID token, checked by the caller and never stored).
#[derive(Debug)]
pub(crate) struct TokenResponse {
    /// The tokens, as a store keeps them.
    pub(crate) tokens: TokenSet,
    /// The ID token of a grant with `openid`.
    pub(crate) id_token: Option<SecretString>,
}

#[derive(Deserialize)]
struct RawTokenResponse {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
    refresh_token: Option<String>,
    scope: Option<String>,
    id_token: Option<String>,
}

/// Parses a token endpoint response. The status decides first
/// ([`TokenError::of_answer`]): a 5xx or a 429 is transient whatever the body says; only a
/// 400 or 401 with an OAuth `error` is a refusal.
pub(crate) fn parse_token_response(
    config: &HcssConfig,
    answer: &Answer,
    now: u64,
) -> Result<TokenResponse, TokenError> {
    if let Some(err) = TokenError::of_answer(answer) {
        return Err(err);
    }
    let raw: RawTokenResponse = serde_json::from_slice(&answer.body)
        .map_err(|e| TokenError::InvalidResponse(format!("not a JSON token response ({e})")))?;
    let access_token = raw
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| TokenError::InvalidResponse("no access_token".into()))?;
    match raw.token_type.as_deref() {
        Some(t) if t.eq_ignore_ascii_case("bearer") => {}
        Some(t) => {
            return Err(TokenError::InvalidResponse(format!(
                "token_type {:?} is not bearer",
                clip(t)
            )))
        }
        None => return Err(TokenError::InvalidResponse("no token_type".into())),
    }
    let max = config.lifetimes.max_session_age.as_secs();
    let expires_in = match raw.expires_in {
        None | Some(serde_json::Value::Null) => DEFAULT_EXPIRES_IN,
        Some(value) => parse_expires_in(&value)
            .ok_or_else(|| {
                TokenError::InvalidResponse("expires_in is not a count of seconds".into())
            })?
            .min(max),
    };
    let expires_in = expires_in.max(MIN_TOKEN_LIFETIME);
    let claims = Claims::of_access_token(&access_token);
    let tokens = TokenSet {
        claims,
        access_token: SecretString::from(access_token),
        expires_at: now.saturating_add(expires_in),
        refresh_token: raw
            .refresh_token
            .filter(|t| !t.is_empty())
            .map(SecretString::from),
        scope: Arc::from(raw.scope.as_deref().unwrap_or("")),
        session_expires_at: now.saturating_add(max),
        issued_at: now,
        id_token: None,
        version: 0,
        spent_by: None,
        written_by: None,
    };
    Ok(TokenResponse {
        tokens,
        id_token: raw
            .id_token
            .filter(|t| !t.is_empty())
            .map(SecretString::from),
    })
}

fn parse_expires_in(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => n
            .as_u64()
            .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64)),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientAuth;
    use crate::protocol::error::ErrorClass;
    use crate::protocol::test_support::{answer, config};

    #[test]
    fn token_responses_are_parsed_leniently_where_hcss_varies() {
        let c = config(ClientAuth::RequestBody, None);
        let ok = |body: &str| {
            parse_token_response(&c, &answer(200, body), 1000).map(|response| response.tokens)
        };
        let t = ok(r#"{"access_token":"a","token_type":"bearer","expires_in":3600,"refresh_token":"r","scope":"heavyjob:read"}"#).unwrap();
        assert_eq!(t.expires_at, 4600);
        assert_eq!(t.refresh_token.unwrap().expose_secret(), "r");
        assert_eq!(&*t.scope, "heavyjob:read");
        let t = ok(r#"{"access_token":"a","token_type":"Bearer","expires_in":"120"}"#).unwrap();
        assert_eq!(t.expires_at, 1120);
        assert_eq!(&*t.scope, "", "a missing scope is filled in by the caller");
        let t = ok(r#"{"access_token":"a","token_type":"BEARER"}"#).unwrap();
        assert_eq!(t.expires_at, 1000 + DEFAULT_EXPIRES_IN);
        let t =
            ok(r#"{"access_token":"a","token_type":"bearer","expires_in":99999999999}"#).unwrap();
        assert_eq!(t.expires_at, 1000 + 30 * 24 * 3600);
    }

    /// The ID token comes apart from the token set, which never carries it.
    #[test]
    fn the_id_token_is_kept_apart_from_the_tokens() {
        let c = config(ClientAuth::RequestBody, None);
        let parse = |body: &str| parse_token_response(&c, &answer(200, body), 1000).unwrap();
        let response =
            parse(r#"{"access_token":"a","token_type":"bearer","id_token":"header.body.sig"}"#);
        assert_eq!(
            response.id_token.as_ref().map(SecretString::expose_secret),
            Some("header.body.sig")
        );
        let stored = serde_json::to_string(&response.tokens).unwrap();
        assert!(!stored.contains("header.body.sig"), "{stored}");
        for body in [
            r#"{"access_token":"a","token_type":"bearer","id_token":""}"#,
            r#"{"access_token":"a","token_type":"bearer"}"#,
        ] {
            assert!(parse(body).id_token.is_none(), "{body}");
        }
    }

    #[test]
    fn bad_token_responses_are_refused() {
        let c = config(ClientAuth::RequestBody, None);
        let parse = |status, body: &str| parse_token_response(&c, &answer(status, body), 0);
        for (status, body) in [
            (200, r#"{"token_type":"bearer"}"#),
            (200, r#"{"access_token":"a","token_type":"mac"}"#),
            (
                200,
                r#"{"access_token":"a","token_type":"bearer","expires_in":-5}"#,
            ),
            (
                200,
                r#"{"access_token":"a","token_type":"bearer","expires_in":"soon"}"#,
            ),
            (200, "<html>hello</html>"),
            (404, "not found"),
        ] {
            assert!(
                matches!(parse(status, body), Err(TokenError::InvalidResponse(_))),
                "{status} {body}"
            );
        }
        match parse(
            400,
            r#"{"error":"invalid_grant","error_description":"used"}"#,
        ) {
            Err(e @ TokenError::Rejected { .. }) => {
                assert_eq!(e.class(), ErrorClass::GrantGone);
                assert!(e.to_string().contains("invalid_grant"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn short_lifetimes_are_raised_to_the_floor() {
        let c = config(ClientAuth::RequestBody, None);
        let t = parse_token_response(
            &c,
            &answer(
                200,
                r#"{"access_token":"a","token_type":"bearer","expires_in":0}"#,
            ),
            1000,
        )
        .unwrap()
        .tokens;
        assert_eq!(t.issued_at, 1000);
        assert_eq!(t.expires_at, 1000 + MIN_TOKEN_LIFETIME);
    }
}
