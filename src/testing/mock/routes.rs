//! The mock's HTTP endpoints: authorize and consent, token and revocation (discovery and
//! the keys are in `oidc`, the HeavyJob-like API in `api`).

use super::grants::{id_token, PendingCode};
use super::*;

pub(super) type Params = HashMap<String, String>;

fn oauth_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// Checks an authorize request; on success, the redirect URI to answer to.
fn check_authorize(state: &MockState, p: &Params) -> Result<String, String> {
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    if get("client_id") != state.options.client_id {
        return Err("unknown client_id".into());
    }
    if get("response_type") != "code" {
        return Err("response_type must be code".into());
    }
    if get("code_challenge_method") != "S256" || get("code_challenge").len() != 43 {
        return Err("PKCE with code_challenge_method=S256 is required".into());
    }
    if get("scope").is_empty() || get("state").is_empty() {
        return Err("scope and state are required".into());
    }
    let redirect = get("redirect_uri");
    if !(redirect.starts_with("http://") || redirect.starts_with("https://")) {
        return Err("redirect_uri must be an absolute URL".into());
    }
    Ok(redirect.to_owned())
}

fn callback_url(state: &MockState, redirect: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        url.append_pair(k, v);
    }
    if state.options.emit_iss {
        url.append_pair("iss", &state.issuer);
    }
    format!("{redirect}?{}", url.finish())
}

/// The cookie of the mock's own session.
const SESSION_COOKIE: &str = "idsrv.session";

/// The mock's session named by the browser's cookie, if it is live.
fn live_session(state: &MockState, headers: &HeaderMap) -> Option<(String, u64)> {
    let sid = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, sid)| sid.to_owned())?;
    let grants = lock(&state.grants);
    let session = grants.sessions.get(&sid)?;
    Some((sid, session.auth_time))
}

/// Signs the browser in at the mock: its live session, or (none, `force`, or one whose
/// user entered credentials longer than `max_age` seconds ago) a new one, as if the user
/// had entered credentials (counted in `credential_prompts`) at the mock's clock's now.
/// Returns the session and the cookie to set, if any.
fn sign_in(
    state: &MockState,
    headers: &HeaderMap,
    force: bool,
    max_age: Option<u64>,
) -> ((String, u64), Option<String>) {
    if let Some(live) = live_session(state, headers)
        .filter(|_| !asks_for_credentials(state, headers, force, max_age))
    {
        return (live, None);
    }
    bump(state, |c| &c.credential_prompts);
    let sid = random_token(16);
    let auth_time = state.clock.now();
    lock(&state.grants)
        .sessions
        .insert(sid.clone(), grants::MockSession { auth_time });
    // Lax: sent on the top-level navigations to the mock (authorize, end-session), and
    // kept by browsers over plain http (`SameSite=None` needs `Secure`).
    let cookie = format!("{SESSION_COOKIE}={sid}; Path=/identity; HttpOnly; SameSite=Lax");
    ((sid, auth_time), Some(cookie))
}

/// Whether signing in asks for credentials: no live session, `force` (`prompt=login`),
/// or a session whose user entered credentials `max_age` seconds ago or longer.
fn asks_for_credentials(
    state: &MockState,
    headers: &HeaderMap,
    force: bool,
    max_age: Option<u64>,
) -> bool {
    let now = state.clock.now();
    match live_session(state, headers) {
        None => true,
        Some((_, auth_time)) => {
            force || max_age.is_some_and(|max| now.saturating_sub(auth_time) >= max)
        }
    }
}

/// `prompt` and `max_age` of an authorize request: whether it forces a sign-in, and the
/// age at which a session must sign in again.
fn sign_in_asked(p: &Params) -> (bool, Option<u64>) {
    let prompt = p.get("prompt").map(String::as_str).unwrap_or("");
    let force = prompt.split(' ').any(|v| v == "login");
    // `max_age` (OpenID Connect Core §3.1.2.1): a session older than it signs in again;
    // `0` always does, as `prompt=login`.
    let max_age = p.get("max_age").and_then(|age| age.parse::<u64>().ok());
    (force, max_age)
}

/// Consents: records a code and sends the browser back with it, signed in at the mock.
fn grant_code(state: &MockState, p: &Params, redirect: &str, headers: &HeaderMap) -> Response {
    let prompt = p.get("prompt").map(String::as_str).unwrap_or("");
    let prompts: Vec<&str> = prompt.split(' ').collect();
    if prompts.contains(&"none") && live_session(state, headers).is_none() {
        return Redirect::to(&callback_url(
            state,
            redirect,
            &[("error", "login_required"), ("state", &p["state"])],
        ))
        .into_response();
    }
    let (force, max_age) = sign_in_asked(p);
    let (session, cookie) = sign_in(state, headers, force, max_age);
    let mut response = grant_code_in(state, p, redirect, session);
    if let Some(cookie) = cookie {
        response
            .headers_mut()
            .append(header::SET_COOKIE, cookie.parse().expect("a cookie"));
    }
    response
}

fn grant_code_in(
    state: &MockState,
    p: &Params,
    redirect: &str,
    session: (String, u64),
) -> Response {
    let code = random_token(24);
    lock(&state.grants).codes.insert(
        code.clone(),
        PendingCode {
            redirect_uri: redirect.to_owned(),
            challenge: p["code_challenge"].clone(),
            scope: p["scope"].clone(),
            nonce: p.get("nonce").cloned(),
            session,
            expires: Instant::now() + Duration::from_secs(300),
        },
    );
    Redirect::to(&callback_url(
        state,
        redirect,
        &[
            ("code", &code),
            ("state", &p["state"]),
            ("session_state", "mock"),
        ],
    ))
    .into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub(super) async fn authorize(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Response {
    bump(&state, |c| &c.authorize);
    let redirect = match check_authorize(&state, &p) {
        Ok(r) => r,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    if state.options.auto_consent {
        return grant_code(&state, &p, &redirect, &headers);
    }
    let hidden: String = p
        .iter()
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            )
        })
        .collect();
    // What the user meets: a sign-in with credentials, or their live session here.
    let (force, max_age) = sign_in_asked(&p);
    let who = if asks_for_credentials(&state, &headers, force, max_age) {
        format!(
            "<p id=\"credentials\">Sign in to HCSS as <b>{}</b> (the mock asks for no \
             password: allowing below counts as entering credentials).</p>",
            escape(&state.options.user)
        )
    } else {
        format!(
            "<p id=\"hcss-session\">Signed in at HCSS as <b>{}</b>.</p>",
            escape(&state.options.user)
        )
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>HCSS sign-in (mock)</title></head><body>\
         <h1>Mock HCSS identity</h1>{who}\
         <p>The application <b>{client}</b> asks for: \
         <code>{scope}</code>.</p>\
         <form id=\"consent\" method=\"post\" action=\"/identity/connect/authorize/consent\">{hidden}\
         <button type=\"submit\" name=\"decision\" value=\"allow\" id=\"allow\">Allow</button> \
         <button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\">Deny</button>\
         </form></body></html>",
        client = escape(&state.options.client_id),
        scope = escape(p.get("scope").map_or("", String::as_str)),
    ))
    .into_response()
}

pub(super) async fn consent(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    Form(p): Form<Params>,
) -> Response {
    bump(&state, |c| &c.authorize);
    let redirect = match check_authorize(&state, &p) {
        Ok(r) => r,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    if p.get("decision").map(String::as_str) == Some("allow") {
        return grant_code(&state, &p, &redirect, &headers);
    }
    Redirect::to(&callback_url(
        &state,
        &redirect,
        &[
            ("error", "access_denied"),
            ("error_description", "The user denied access"),
            ("state", &p["state"]),
        ],
    ))
    .into_response()
}

/// The client id and secret of a token or revocation request, from Basic or the body.
fn client_credentials(headers: &HeaderMap, p: &Params) -> Option<(String, Option<String>)> {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        let decoded = String::from_utf8(STANDARD.decode(basic).ok()?).ok()?;
        let (id, secret) = decoded.split_once(':')?;
        let dec = |s: &str| {
            form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
        };
        return Some((dec(id)?, Some(dec(secret)?)));
    }
    Some((p.get("client_id")?.clone(), p.get("client_secret").cloned()))
}

fn authenticate(state: &MockState, headers: &HeaderMap, p: &Params) -> bool {
    let Some((id, secret)) = client_credentials(headers, p) else {
        return false;
    };
    id == state.options.client_id && secret == state.options.client_secret
}

/// Client credentials, codes and tokens belong in the body, never in a URL.
fn query_refused(query: &Option<String>) -> Option<Response> {
    query
        .as_ref()
        .map(|_| oauth_error("invalid_request", "parameters must be sent in the body"))
}

pub(super) async fn redirected(State(state): State<Arc<MockState>>) -> Response {
    bump(&state, |c| &c.redirects_followed);
    Json(json!({"access_token": "at_redirected", "token_type": "bearer", "expires_in": 3600}))
        .into_response()
}

pub(super) async fn token(
    State(state): State<Arc<MockState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Form(p): Form<Params>,
) -> Response {
    bump(&state, |c| &c.token);
    if let Some(refused) = query_refused(&query) {
        return refused;
    }
    match p.get("grant_type").map(String::as_str) {
        Some("authorization_code") => bump(&state, |c| &c.code_exchanges),
        Some("refresh_token") => bump(&state, |c| &c.refreshes),
        Some("company") => bump(&state, |c| &c.company_grants),
        Some("client_credentials") => bump(&state, |c| &c.client_credentials),
        _ => {}
    }
    let mut changed = state.fault_changed.subscribe();
    while matches!(*lock(&state.fault), Some(TokenFault::Stall)) {
        if changed.changed().await.is_err() {
            break;
        }
    }
    let fault = lock(&state.fault).clone();
    match fault {
        None | Some(TokenFault::Stall) => {}
        Some(TokenFault::Slow(delay)) => tokio::time::sleep(delay).await,
        Some(TokenFault::ServerError) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, Html("<h1>500</h1>")).into_response()
        }
        Some(TokenFault::MalformedBody) => {
            return (StatusCode::OK, Html("<html>not json</html>")).into_response()
        }
        Some(TokenFault::NoAccessToken) => {
            return Json(json!({"token_type": "bearer", "expires_in": 3600})).into_response()
        }
        Some(TokenFault::WrongTokenType) => {
            return Json(json!({"access_token": "at_x", "token_type": "mac", "expires_in": 3600}))
                .into_response()
        }
        Some(TokenFault::NegativeExpiry) => {
            return Json(json!({"access_token": "at_x", "token_type": "bearer", "expires_in": -1}))
                .into_response()
        }
        Some(TokenFault::Oversized(n)) => {
            let padding = "x".repeat(n);
            return Json(json!({"access_token": "at_x", "token_type": "bearer", "pad": padding}))
                .into_response();
        }
        Some(TokenFault::Redirect) => {
            return Redirect::temporary(&format!("{}/redirected", state.issuer)).into_response()
        }
        Some(TokenFault::InvalidGrant) => return oauth_error("invalid_grant", "grant revoked"),
        Some(TokenFault::Error {
            status,
            error,
            retry_after,
        }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response = (
                status,
                Json(json!({ "error": error, "error_description": "mock fault" })),
            )
                .into_response();
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, secs.into());
            }
            return response;
        }
        Some(TokenFault::SlowAfterRotating(delay)) => {
            let response = grant(&state, &headers, &p);
            tokio::time::sleep(delay).await;
            return response;
        }
        // The grant itself is right; only its ID token is not (or is missing).
        Some(TokenFault::BadIdToken(_) | TokenFault::NoIdToken) => {}
    }
    grant(&state, &headers, &p)
}

/// The token endpoint's work: checks the client and the grant, issues tokens.
fn grant(state: &MockState, headers: &HeaderMap, p: &Params) -> Response {
    if !authenticate(state, headers, p) {
        return oauth_error("invalid_client", "unknown client or wrong secret");
    }
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    let options = &state.options;
    let mut grants = lock(&state.grants);
    match get("grant_type") {
        "authorization_code" => {
            let Some(pending) = grants.codes.remove(get("code")) else {
                return oauth_error("invalid_grant", "unknown or used code");
            };
            if pending.expires <= Instant::now() {
                return oauth_error("invalid_grant", "expired code");
            }
            if pending.redirect_uri != get("redirect_uri") {
                return oauth_error("invalid_grant", "redirect_uri differs");
            }
            if pkce_challenge(get("code_verifier")) != pending.challenge {
                return oauth_error("invalid_grant", "PKCE verification failed");
            }
            grants.next += 1;
            let grant = grants.next;
            let offline = pending.scope.split(' ').any(|s| s == "offline_access");
            let mut body = grants.issue(options, &state.issuer, grant, &pending.scope, offline);
            grants.grant_sessions.insert(grant, pending.session.clone());
            let fault = lock(&state.fault).clone();
            let with_id_token = fault != Some(TokenFault::NoIdToken);
            if with_id_token && pending.scope.split(' ').any(|s| s == "openid") {
                let fault = match fault {
                    Some(TokenFault::BadIdToken(claim)) => Some(claim),
                    _ => None,
                };
                let claims = id_token(
                    options,
                    &state.issuer,
                    state.clock.now(),
                    pending.nonce.as_deref(),
                    Some(&pending.session),
                    fault,
                );
                body["id_token"] = json!(super::oidc::sign(state, &claims, fault));
            }
            Json(body).into_response()
        }
        "refresh_token" => {
            let presented = get("refresh_token").to_owned();
            let Some(rt) = grants.refresh.get_mut(&presented) else {
                return oauth_error("invalid_grant", "unknown refresh token");
            };
            let (grant, scope, reused) = (rt.grant, rt.scope.clone(), rt.used);
            if options.rotate_refresh_tokens {
                rt.used = true;
            }
            if reused && options.reuse_detection {
                bump(state, |c| &c.reuse_detected);
                grants.revoked.insert(grant);
                return oauth_error("invalid_grant", "refresh token reused; grant revoked");
            }
            if reused || grants.revoked.contains(&grant) {
                return oauth_error("invalid_grant", "refresh token revoked");
            }
            let mut body = grants.issue(
                options,
                &state.issuer,
                grant,
                &scope,
                options.rotate_refresh_tokens,
            );
            // As IdentityServer does, a refresh of a grant with `openid` brings a new ID
            // token: the same user and session, no nonce.
            if scope.split(' ').any(|s| s == "openid") {
                let fault = match lock(&state.fault).clone() {
                    Some(TokenFault::BadIdToken(claim)) => Some(claim),
                    _ => None,
                };
                let session = grants.grant_sessions.get(&grant).cloned();
                let now = state.clock.now();
                let claims = id_token(options, &state.issuer, now, None, session.as_ref(), fault);
                body["id_token"] = json!(super::oidc::sign(state, &claims, fault));
            }
            Json(body).into_response()
        }
        "company" => {
            let company = get("CompanyId");
            if company.is_empty() {
                return oauth_error("invalid_request", "CompanyId is required");
            }
            if lock(&state.disconnected).contains(company) {
                return oauth_error("invalid_grant", "the company has not connected this app");
            }
            Json(grants.issue_company(options, &state.issuer, company, get("scope")))
                .into_response()
        }
        "client_credentials" => Json(grants.issue_company(
            options,
            &state.issuer,
            MockHcssIdentity::OWN_COMPANY,
            get("scope"),
        ))
        .into_response(),
        _ => oauth_error(
            "unsupported_grant_type",
            "use authorization_code, refresh_token, company or client_credentials",
        ),
    }
}

pub(super) async fn revocation(
    State(state): State<Arc<MockState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    Form(p): Form<Params>,
) -> Response {
    bump(&state, |c| &c.revocations);
    if let Some(refused) = query_refused(&query) {
        return refused;
    }
    if !authenticate(&state, &headers, &p) {
        return oauth_error("invalid_client", "unknown client or wrong secret");
    }
    let token = p.get("token").map(String::as_str).unwrap_or("");
    let mut grants = lock(&state.grants);
    if let Some(grant) = grants.refresh.get(token).map(|rt| rt.grant) {
        grants.revoked.insert(grant);
    }
    grants.access.remove(token);
    StatusCode::OK.into_response()
}

/// `GET /identity/connect/endsession` (OpenID Connect RP-initiated logout): ends the
/// mock's session of the browser (its cookie's, and the one `id_token_hint` names), then
/// sends it back to `post_logout_redirect_uri` with the `state`, when the request names
/// this client (by `id_token_hint` or `client_id`); else says the user is signed out.
pub(super) async fn end_session(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Response {
    bump(&state, |c| &c.end_sessions);
    let hint = p
        .get("id_token_hint")
        .map(|t| crate::claims::Claims::of_access_token(t));
    let ours = match &hint {
        Some(claims) => {
            claims.get_str("aud") == Some(&state.options.client_id)
                && claims.get_str("iss") == Some(&state.issuer)
        }
        None => p.get("client_id") == Some(&state.options.client_id),
    };
    {
        let mut grants = lock(&state.grants);
        if let Some(sid) = hint.as_ref().and_then(|c| c.get_str("sid")) {
            grants.sessions.remove(sid);
        }
        drop(grants);
        if let Some((sid, _)) = live_session(&state, &headers) {
            lock(&state.grants).sessions.remove(&sid);
        }
    }
    let cleared = format!("{SESSION_COOKIE}=; Path=/identity; Max-Age=0");
    let registered = state.options.post_logout_redirect_uri.as_deref();
    let back = p
        .get("post_logout_redirect_uri")
        .filter(|uri| ours && registered.is_none_or(|r| r == uri.as_str()));
    let mut response = match back {
        Some(uri) => {
            let mut url = uri.clone();
            if let Some(s) = p.get("state") {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(
                    &form_urlencoded::Serializer::new(String::new())
                        .append_pair("state", s)
                        .finish(),
                );
            }
            Redirect::to(&url).into_response()
        }
        None => Html("<!doctype html><title>Signed out</title><p>You are signed out of HCSS.</p>")
            .into_response(),
    };
    response
        .headers_mut()
        .append(header::SET_COOKIE, cleared.parse().expect("a cookie"));
    response
}
