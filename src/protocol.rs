//! The wire protocol with HCSS's identity service: PKCE, the authorize URL, and the
//! token, refresh and revocation requests with their responses and errors.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::claims::Claims;
use crate::config::{ClientAuth, HcssConfig, IdentityClient, MAX_RETRY_AFTER};
use crate::secret::SecretString;
use crate::token::TokenSet;

/// How long a token is assumed to live when HCSS's response carries no `expires_in`.
pub(crate) const DEFAULT_EXPIRES_IN: u64 = 300;

/// The S256 code challenge of a PKCE verifier (RFC 7636 §4.2).
pub(crate) fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The URL the browser is sent to at login.
pub(crate) fn authorize_url(
    client: &IdentityClient,
    state: &str,
    challenge: &str,
    nonce: Option<&str>,
) -> String {
    let mut url = client.authorize_url.clone();
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("client_id", &client.client_id)
            .append_pair("scope", &client.scope)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", &client.redirect_uri)
            .append_pair("state", state)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        if let Some(nonce) = nonce {
            query.append_pair("nonce", nonce);
        }
    }
    url.into()
}

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

fn push_client_credentials<'a>(client: &'a IdentityClient, form: &mut Vec<(&'a str, &'a str)>) {
    match client.client_auth {
        ClientAuth::RequestBody => {
            form.push(("client_id", &client.client_id));
            if let Some(secret) = &client.client_secret {
                form.push(("client_secret", secret.expose_secret()));
            }
        }
        ClientAuth::BasicAuth if client.client_secret.is_none() => {
            form.push(("client_id", &client.client_id));
        }
        ClientAuth::BasicAuth => {}
    }
}

/// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1), when configured.
pub(crate) fn basic_auth_header(client: &IdentityClient) -> Option<String> {
    let secret = client.client_secret.as_ref()?;
    if client.client_auth != ClientAuth::BasicAuth {
        return None;
    }
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", enc(&client.client_id), enc(secret.expose_secret()));
    Some(format!("Basic {}", STANDARD.encode(pair)))
}

fn encode_form(fields: &[(&str, &str)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// What went wrong talking to the token or revocation endpoint. Never holds a secret.
///
/// The status decides first: only a 400 or 401 carries a verdict, and of the verdicts
/// only `invalid_grant` ends a session. [`TokenError::class`] is the one table.
#[derive(Debug, Clone)]
pub(crate) enum TokenError {
    /// HCSS refused the request with an OAuth error in a 400 or 401 answer.
    Rejected {
        status: u16,
        error: String,
        description: Option<String>,
    },
    /// HCSS could not be reached or failed (timeout, connection, 5xx whatever its body,
    /// 429): try again later, after `retry_after` when HCSS said so.
    Transient {
        why: String,
        retry_after: Option<Duration>,
    },
    /// HCSS answered something that is not a usable token response.
    InvalidResponse(String),
}

/// What a failed token call means for the session and the user: the classification
/// table, in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    /// `invalid_grant`: the grant is gone; the session ends and the user logs in again.
    GrantGone,
    /// `invalid_client`, `unauthorized_client`, `invalid_scope`, `unsupported_grant_type`:
    /// this app's configuration is wrong. The session is kept for when it is fixed.
    Configuration,
    /// Down, slow, overloaded or failing: try again later; the session is kept.
    Transient,
    /// Any other refusal or an unusable answer: the call failed, the session is kept.
    Failed,
}

impl TokenError {
    /// Where this error stands in the classification table.
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            TokenError::Rejected { error, .. } => match error.as_str() {
                "invalid_grant" => ErrorClass::GrantGone,
                "invalid_client"
                | "unauthorized_client"
                | "invalid_scope"
                | "unsupported_grant_type" => ErrorClass::Configuration,
                _ => ErrorClass::Failed,
            },
            TokenError::Transient { .. } => ErrorClass::Transient,
            TokenError::InvalidResponse(_) => ErrorClass::Failed,
        }
    }

    /// The identity service's own `Retry-After`, when it sent one.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            TokenError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn transient(why: impl Into<String>) -> Self {
        TokenError::Transient {
            why: why.into(),
            retry_after: None,
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Rejected {
                status,
                error,
                description,
            } => {
                write!(
                    f,
                    "the identity service refused the request: {error} (HTTP {status})"
                )?;
                if let Some(d) = description {
                    write!(f, ": {d}")?;
                }
                Ok(())
            }
            TokenError::Transient { why, .. } => {
                write!(f, "the identity service is unavailable: {why}")
            }
            TokenError::InvalidResponse(why) => {
                write!(f, "the identity service sent an unusable response: {why}")
            }
        }
    }
}

/// The shortest wait taken from an identity service's `Retry-After`.
const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A `Retry-After` in seconds (RFC 9110 §10.2.3), clamped to a sane range; an HTTP date
/// or anything else is ignored.
fn parse_retry_after(value: Option<&http::HeaderValue>) -> Option<Duration> {
    let secs: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs).clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER))
}

/// The shortest access-token lifetime believed: an `expires_in` below it (0, say) is taken
/// as this, so that a session refreshes at most once per lifetime, not on every request.
pub(crate) const MIN_TOKEN_LIFETIME: u64 = 2;

#[derive(Deserialize)]
struct RawTokenResponse {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
    refresh_token: Option<String>,
    scope: Option<String>,
    id_token: Option<String>,
}

#[derive(Deserialize)]
struct RawError {
    error: String,
    error_description: Option<String>,
}

/// Keeps text from the identity service short and printable before it reaches a log.
fn clip(text: &str) -> String {
    crate::http_rules::printable(text, 200)
}

/// Parses a token endpoint response into a token set. The status decides first: a 5xx
/// or a 429 is transient whatever the body says; only a 400 or 401 with an OAuth `error`
/// is a refusal.
pub(crate) fn parse_token_response(
    config: &HcssConfig,
    answer: &Answer,
    now: u64,
) -> Result<TokenSet, TokenError> {
    let (status, body) = (answer.status, answer.body.as_slice());
    if status >= 500 || status == 429 {
        return Err(TokenError::Transient {
            why: format!("HTTP {status}"),
            retry_after: answer.retry_after,
        });
    }
    if !(200..300).contains(&status) {
        return Err(match serde_json::from_slice::<RawError>(body) {
            Ok(err) if status == 400 || status == 401 => TokenError::Rejected {
                status,
                error: clip(&err.error),
                description: err.error_description.as_deref().map(clip),
            },
            _ => TokenError::InvalidResponse(format!("HTTP {status} without an OAuth error")),
        });
    }
    let raw: RawTokenResponse = serde_json::from_slice(body)
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
    Ok(TokenSet {
        id_token: raw
            .id_token
            .filter(|t| !t.is_empty())
            .map(SecretString::from),
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
        version: 0,
        spent_by: None,
        written_by: None,
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

/// An answer of the identity service: its status, `Retry-After` and body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) body: Vec<u8>,
}

/// Posts a form to `url` and reads at most `max_response_bytes` of the answer.
async fn post_form(
    client: &IdentityClient,
    url: &url::Url,
    fields: &[(&str, &str)],
    timeout: Duration,
) -> Result<Answer, TokenError> {
    let mut request = client
        .http
        .post(url.clone())
        .timeout(timeout)
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json")
        .body(encode_form(fields));
    if let Some(basic) = basic_auth_header(client) {
        request = request.header(http::header::AUTHORIZATION, basic);
    }
    let mut response = request.send().await.map_err(transport_error)?;
    let status = response.status().as_u16();
    let retry_after = parse_retry_after(response.headers().get(http::header::RETRY_AFTER));
    if (300..400).contains(&status) {
        return Err(TokenError::InvalidResponse(format!(
            "HTTP {status} redirect (not followed)"
        )));
    }
    let cap = client.max_response_bytes;
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(TokenError::InvalidResponse(format!(
            "the response is larger than {cap} bytes"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > cap {
            return Err(TokenError::InvalidResponse(format!(
                "the response is larger than {cap} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

fn transport_error(err: reqwest::Error) -> TokenError {
    // reqwest's Display can include the URL; ours carry no secrets, but say less anyway.
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "the response body could not be read"
    } else {
        "request failed"
    };
    TokenError::transient(kind)
}

/// How many HTTP timeouts a refresh waits for HCSS's answer.
pub(crate) const REFRESH_PATIENCE: u32 = 3;

/// Exchanges an authorization code or a refresh token for tokens.
pub(crate) async fn request_tokens(
    config: &HcssConfig,
    grant: Grant<'_>,
) -> Result<TokenSet, TokenError> {
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
    let answer = post_form(&config.identity, &config.identity.token_url, &form, timeout).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let answer = answer.inspect_err(|err| {
        tracing::debug!(grant = kind, elapsed_ms, reason = %err, "hcss: token endpoint unreachable");
    })?;
    tracing::debug!(
        grant = kind,
        status = answer.status,
        elapsed_ms,
        "hcss: token endpoint answered"
    );
    parse_token_response(config, &answer, config.now())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(auth: ClientAuth, secret: Option<&str>) -> HcssConfig {
        let mut b = HcssConfig::builder()
            .client_id("my client")
            .scopes(["heavyjob:read", "offline_access"])
            .redirect_uri("https://app.example.com/hcss/callback")
            .client_auth(auth);
        if let Some(s) = secret {
            b = b.client_secret(s);
        }
        b.build().unwrap()
    }

    #[test]
    fn pkce_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn authorize_url_carries_exactly_the_flow_parameters() {
        let c = config(ClientAuth::RequestBody, Some("s"));
        let url = authorize_url(&c.identity, "STATE", "CHALLENGE", None);
        assert_eq!(
            url,
            "https://api.hcssapps.com/identity/connect/authorize?client_id=my+client\
             &scope=heavyjob%3Aread+offline_access&response_type=code\
             &redirect_uri=https%3A%2F%2Fapp.example.com%2Fhcss%2Fcallback&state=STATE\
             &code_challenge=CHALLENGE&code_challenge_method=S256"
        );
        assert!(!url.contains("secret"));
    }

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

    #[test]
    fn basic_auth_urlencodes_before_base64() {
        let c = config(ClientAuth::BasicAuth, Some("p&ss"));
        let grant = Grant::RefreshToken {
            refresh_token: "RT",
        };
        assert_eq!(
            encode_form(&token_form(&c.identity, &grant)),
            "grant_type=refresh_token&refresh_token=RT"
        );
        let header = basic_auth_header(&c.identity).unwrap();
        let decoded = STANDARD
            .decode(header.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(decoded, b"my+client:p%26ss");
    }

    #[test]
    fn public_client_sends_only_its_id() {
        let c = config(ClientAuth::BasicAuth, None);
        let grant = Grant::RefreshToken {
            refresh_token: "RT",
        };
        assert_eq!(
            encode_form(&token_form(&c.identity, &grant)),
            "grant_type=refresh_token&refresh_token=RT&client_id=my+client"
        );
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            retry_after: None,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn token_responses_are_parsed_leniently_where_hcss_varies() {
        let c = config(ClientAuth::RequestBody, None);
        let ok = |body: &str| parse_token_response(&c, &answer(200, body), 1000);
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

    /// The classification table, row by row: the status decides first, and only
    /// `invalid_grant` in a 400 or 401 ends a session.
    #[test]
    fn token_errors_are_classified_status_first() {
        use ErrorClass::*;
        let c = config(ClientAuth::RequestBody, None);
        let class = |status, body: &str| {
            parse_token_response(&c, &answer(status, body), 0)
                .unwrap_err()
                .class()
        };
        let oauth = |error: &str| format!(r#"{{"error":"{error}","error_description":"d"}}"#);
        for (status, body, expected) in [
            (400, oauth("invalid_grant"), GrantGone),
            (401, oauth("invalid_grant"), GrantGone),
            (400, oauth("invalid_client"), Configuration),
            (401, oauth("invalid_client"), Configuration),
            (400, oauth("unauthorized_client"), Configuration),
            (400, oauth("invalid_scope"), Configuration),
            (400, oauth("unsupported_grant_type"), Configuration),
            (400, oauth("invalid_request"), Failed),
            (400, "not json".to_owned(), Failed),
            (403, oauth("invalid_grant"), Failed),
            (404, "not found".to_owned(), Failed),
            (500, oauth("server_error"), Transient),
            (500, oauth("invalid_grant"), Transient),
            (502, "bad gateway".to_owned(), Transient),
            (503, oauth("temporarily_unavailable"), Transient),
            (504, String::new(), Transient),
            (429, oauth("slow_down"), Transient),
            (200, "<html>".to_owned(), Failed),
        ] {
            assert_eq!(class(status, &body), expected, "{status} {body}");
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_clamped() {
        let value = |v: &'static str| Some(http::HeaderValue::from_static(v));
        assert_eq!(
            parse_retry_after(value("7").as_ref()),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(value("0").as_ref()),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            parse_retry_after(value("999999999999").as_ref()),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(
            parse_retry_after(value("Wed, 21 Oct 2015 07:28:00 GMT").as_ref()),
            None
        );
        assert_eq!(parse_retry_after(None), None);
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
        .unwrap();
        assert_eq!(t.issued_at, 1000);
        assert_eq!(t.expires_at, 1000 + MIN_TOKEN_LIFETIME);
    }
}
