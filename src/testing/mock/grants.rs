//! The mock's grant model: codes waiting for their exchange, refresh tokens with their
//! rotation state, access tokens, and revoked grants.

use super::*;

pub(super) struct PendingCode {
    pub(super) redirect_uri: String,
    pub(super) challenge: String,
    pub(super) scope: String,
    pub(super) nonce: Option<String>,
    pub(super) expires: Instant,
    /// The mock's own session of the browser that signed in (`sid`), and when its user
    /// entered credentials (`auth_time`).
    pub(super) session: (String, u64),
}

/// A browser signed in at the mock itself (its `idsrv.session` cookie), as HCSS keeps
/// one: the next authorize of that browser asks for no credentials.
pub(super) struct MockSession {
    pub(super) auth_time: u64,
}

pub(super) struct RefreshState {
    pub(super) grant: u64,
    pub(super) scope: String,
    pub(super) used: bool,
}

pub(super) struct AccessState {
    pub(super) grant: u64,
    pub(super) expires: Instant,
    /// The `CompanyId` the token carries: the company whose API limits its calls count
    /// against (`None`: a user with no company).
    pub(super) company: Option<String>,
    pub(super) scope: String,
}

#[derive(Default)]
pub(super) struct Grants {
    pub(super) next: u64,
    pub(super) codes: HashMap<String, PendingCode>,
    pub(super) refresh: HashMap<String, RefreshState>,
    pub(super) access: HashMap<String, AccessState>,
    pub(super) revoked: std::collections::HashSet<u64>,
    /// The mock's own sessions, by `sid`.
    pub(super) sessions: HashMap<String, MockSession>,
    /// The mock's session (`sid`, `auth_time`) each grant of a signed-in user came from,
    /// for the ID tokens of its refreshes.
    pub(super) grant_sessions: HashMap<u64, (String, u64)>,
}

impl Grants {
    /// Issues an access token (and a refresh token when asked) under `grant`.
    pub(super) fn issue(
        &mut self,
        options: &MockHcssIdentityBuilder,
        issuer: &str,
        grant: u64,
        scope: &str,
        with_refresh: bool,
    ) -> serde_json::Value {
        let access = if options.jwt_access_tokens {
            access_jwt(options, issuer, scope)
        } else {
            format!("at_{}", random_token(24))
        };
        self.access.insert(
            access.clone(),
            AccessState {
                grant,
                expires: Instant::now() + options.access_token_lifetime,
                company: options.company_id.clone(),
                scope: scope.to_owned(),
            },
        );
        let mut body = json!({
            "access_token": access,
            "token_type": "bearer",
            "expires_in": options.access_token_lifetime.as_secs(),
            "scope": scope,
        });
        if with_refresh {
            let refresh = format!("rt_{}", random_token(24));
            self.refresh.insert(
                refresh.clone(),
                RefreshState {
                    grant,
                    scope: scope.to_owned(),
                    used: false,
                },
            );
            body["refresh_token"] = json!(refresh);
        }
        body
    }
}

impl Grants {
    /// A token for a company with no user present (`company` or `client_credentials`):
    /// a JWT whose `CompanyId` is `company`, no refresh token.
    pub(super) fn issue_company(
        &mut self,
        options: &MockHcssIdentityBuilder,
        issuer: &str,
        company: &str,
        scope: &str,
    ) -> serde_json::Value {
        self.next += 1;
        let grant = self.next;
        let company_options = MockHcssIdentityBuilder {
            subject: format!("client:{}", options.client_id),
            company_id: Some(company.to_owned()),
            jwt_access_tokens: true,
            ..options.clone()
        };
        self.issue(&company_options, issuer, grant, scope, false)
    }
}

/// The claims of an OpenID Connect ID token for the mock's user (signed by
/// `oidc::sign`): `iss`, `aud`, `exp`, the `nonce` of the authorize request, and the
/// user's identity claims, issued at `now` (the mock's clock). `fault` names a claim to
/// get wrong.
pub(super) fn id_token(
    options: &MockHcssIdentityBuilder,
    issuer: &str,
    now: u64,
    nonce: Option<&str>,
    session: Option<&(String, u64)>,
    fault: Option<&str>,
) -> serde_json::Value {
    let mut claims = json!({
        "iss": issuer,
        "aud": options.client_id,
        "iat": now,
        "exp": now + 300,
        "sub": options.subject,
        "name": "Test User (ID token)",
        "email": options.user,
    });
    if let Some(nonce) = nonce {
        claims["nonce"] = json!(nonce);
    }
    if let Some((sid, auth_time)) = session {
        claims["sid"] = json!(sid);
        claims["auth_time"] = json!(auth_time);
    }
    match fault {
        Some("iss") => claims["iss"] = json!("https://elsewhere.example/identity"),
        Some("aud") => claims["aud"] = json!(["another-client"]),
        Some("azp") => claims["aud"] = json!([options.client_id, "another-client"]),
        Some("exp") => claims["exp"] = json!(now.saturating_sub(60)),
        Some("nonce") => claims["nonce"] = json!("not-the-nonce"),
        Some("sub") => claims["sub"] = json!("someone-else"),
        Some("auth_time") => claims["auth_time"] = json!(now.saturating_sub(3600)),
        _ => {}
    }
    claims
}

/// An access token as HCSS issues them: a JWT with the user's `sub` and `CompanyId`,
/// `client_id` and `scope`. Unsigned (`alg: none`): the crate reads the claims of tokens
/// it got from the token endpoint, it does not check signatures.
fn access_jwt(options: &MockHcssIdentityBuilder, issuer: &str, scope: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = crate::clock::unix_now();
    let mut claims = json!({
        "iss": issuer,
        "sub": options.subject,
        "client_id": options.client_id,
        "scope": scope.split(' ').collect::<Vec<_>>(),
        "name": "Test User",
        "email": options.user,
        "iat": now,
        "exp": now + options.access_token_lifetime.as_secs(),
        "jti": random_token(16),
    });
    if let Some(company) = &options.company_id {
        claims["CompanyId"] = json!(company);
    }
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"at+jwt"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}
