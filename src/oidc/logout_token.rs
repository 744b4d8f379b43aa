//! The claims of a back-channel logout token, checked as OpenID Connect Back-Channel
//! Logout 1.0 §2.6 says (its signature is checked before, by the caller).

use std::time::Duration;

use crate::claims::Claims;

/// How far a logout token's `iat` may be from now, either way (clock skew and delivery).
pub(crate) const IAT_WINDOW: Duration = Duration::from_secs(5 * 60);

/// The member of `events` that makes a JWT a back-channel logout token.
const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// A logout token whose claims check out: whose sessions to end, and its `jti`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct LogoutToken {
    /// The user (`sub`), when named.
    pub(crate) subject: Option<String>,
    /// The identity service's session (`sid`), when named.
    pub(crate) sid: Option<String>,
    /// The token's unique id, claimed once.
    pub(crate) jti: String,
    /// When it was issued (Unix seconds).
    pub(crate) issued_at: u64,
}

impl std::fmt::Debug for LogoutToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogoutToken")
            .field("subject", &self.subject.is_some())
            .field("sid", &self.sid.is_some())
            .finish_non_exhaustive()
    }
}

impl LogoutToken {
    /// The claims of `token` (a JWT whose signature was verified), checked: `iss` is
    /// `issuer`, `aud` names `client_id`, `iat` is within [`IAT_WINDOW`] of `now`, `exp`
    /// (when present) is in the future, `events` holds the back-channel logout event,
    /// there is no `nonce`, there is a `sub` or a `sid`, and a `jti`. The error says
    /// which check failed (no claim values).
    pub(crate) fn check(
        token: &str,
        issuer: &str,
        client_id: &str,
        now: u64,
    ) -> Result<Self, &'static str> {
        let claims = Claims::of_access_token(token);
        if claims.is_empty() {
            return Err("not a JWT");
        }
        if claims.get_str("iss") != Some(issuer) {
            return Err("iss is not the configured issuer");
        }
        let ours = match claims.get("aud") {
            Some(serde_json::Value::String(aud)) => aud == client_id,
            Some(serde_json::Value::Array(auds)) => {
                auds.iter().any(|a| a.as_str() == Some(client_id))
            }
            _ => false,
        };
        if !ours {
            return Err("aud does not name this client");
        }
        let issued_at = claims
            .get("iat")
            .and_then(serde_json::Value::as_u64)
            .ok_or("iat is missing")?;
        if issued_at.abs_diff(now) > IAT_WINDOW.as_secs() {
            return Err("iat is too far from now");
        }
        if claims
            .get("exp")
            .is_some_and(|exp| exp.as_u64().is_none_or(|exp| exp <= now))
        {
            return Err("expired");
        }
        let is_logout = claims
            .get("events")
            .and_then(serde_json::Value::as_object)
            .and_then(|events| events.get(LOGOUT_EVENT))
            .is_some_and(serde_json::Value::is_object);
        if !is_logout {
            return Err("events has no back-channel logout event");
        }
        if claims.get("nonce").is_some() {
            return Err("a logout token must not have a nonce");
        }
        let text = |name: &str| {
            claims
                .get_str(name)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        let (subject, sid) = (text("sub"), text("sid"));
        if subject.is_none() && sid.is_none() {
            return Err("it names neither a sub nor a sid");
        }
        let jti = text("jti").ok_or("jti is missing")?;
        Ok(Self {
            subject,
            sid,
            jti,
            issued_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    fn jwt(claims: serde_json::Value) -> String {
        format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(claims.to_string()))
    }

    fn valid() -> serde_json::Value {
        serde_json::json!({
            "iss": "https://id.example", "aud": "app", "iat": 1_000, "jti": "j1",
            "sub": "u", "sid": "s", "events": { LOGOUT_EVENT: {} },
        })
    }

    fn check(claims: serde_json::Value) -> Result<LogoutToken, &'static str> {
        LogoutToken::check(&jwt(claims), "https://id.example", "app", 1_100)
    }

    #[test]
    fn a_logout_token_is_checked_as_the_spec_says() {
        let ok = check(valid()).unwrap();
        assert_eq!(
            (ok.subject.as_deref(), ok.sid.as_deref(), ok.jti.as_str()),
            (Some("u"), Some("s"), "j1")
        );
        let mut audiences = valid();
        audiences["aud"] = serde_json::json!(["other", "app"]);
        assert!(check(audiences).is_ok());
        type Breaks = fn(&mut serde_json::Value);
        let broken: [(&str, Breaks); 10] = [
            ("iss", |c| c["iss"] = "https://elsewhere".into()),
            ("aud", |c| c["aud"] = "other".into()),
            ("iat", |c| c["iat"] = (1_100 + 301).into()),
            ("old iat", |c| c["iat"] = (1_100 - 301).into()),
            ("no iat", |c| drop(c.as_object_mut().unwrap().remove("iat"))),
            ("events", |c| {
                c["events"] = serde_json::json!({ "other": {} })
            }),
            ("nonce", |c| c["nonce"] = "n".into()),
            ("no sub, no sid", |c| {
                let map = c.as_object_mut().unwrap();
                map.remove("sub");
                map.remove("sid");
            }),
            ("no jti", |c| drop(c.as_object_mut().unwrap().remove("jti"))),
            ("expired", |c| c["exp"] = 1_100.into()),
        ];
        for (what, breaks) in broken {
            let mut claims = valid();
            breaks(&mut claims);
            assert!(check(claims).is_err(), "{what} is refused");
        }
    }
}
