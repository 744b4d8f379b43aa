//! Adversarial review of OpenID Connect (issue 21): algorithm confusion and header
//! tricks on signed tokens, JWKS refetch storms, hostile discovery documents and JWKS
//! bodies, back-channel logout tokens forged, misaddressed or replayed (concurrently,
//! across instances), RP-initiated logout's state and redirects, `prompt`, `login_hint`
//! and `max_age` smuggling, and secrets in logs. Each test asserts a defence and fails
//! without it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;

use crate::common;

use common::*;
use hcss_auth::store::{StateStore, TokenStore};
use hcss_auth::testing::{session_exists, DiscoveryFault, MockHcssIdentity, TokenFault};
use hcss_auth::{HcssAuth, HcssConfig};

const SUBJECT: &str = "adversary-21-user";
const LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The mock's current signing key (before any rotation) and its key id.
const MOCK_KEY: &str = include_str!("../../src/testing/mock/keys/signing-1.pem");
const MOCK_KID: &str = "mock-signing-key-1";
/// A key the identity service never published (the mock's next one).
const OTHER_KEY: &str = include_str!("../../src/testing/mock/keys/signing-2.pem");

fn rsa(pem: &str) -> EncodingKey {
    EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JWS of `claims` under exactly `header` (any members), signed with `key` as `alg`.
fn jws(
    header: serde_json::Value,
    claims: &serde_json::Value,
    alg: Algorithm,
    key: &EncodingKey,
) -> String {
    let message = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{signature}")
}

/// A genuine logout token's claims for the mock's app: `sub` (and `sid` when given),
/// issued now on the app's clock.
fn logout_claims(mock: &MockHcssIdentity, sid: Option<&str>) -> serde_json::Value {
    let now = now(mock);
    let mut claims = json!({
        "iss": mock.identity_url(),
        "aud": mock.client_id(),
        "iat": now,
        "exp": now + 120,
        "jti": format!("adv21-{}", rand_id()),
        "sub": SUBJECT,
        "events": { LOGOUT_EVENT: {} },
    });
    if let Some(sid) = sid {
        claims["sid"] = json!(sid);
    }
    claims
}

/// Signed as the mock signs: RS256, its current key, its key id.
fn genuine(claims: &serde_json::Value) -> String {
    jws(
        json!({ "alg": "RS256", "typ": "JWT", "kid": MOCK_KID }),
        claims,
        Algorithm::RS256,
        &rsa(MOCK_KEY),
    )
}

fn now(mock: &MockHcssIdentity) -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + mock.clock().offset().as_secs()
}

fn rand_id() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos}-{}", NEXT.fetch_add(1, Ordering::SeqCst))
}

/// Posts `logout_token` as a form to `endpoint`; the status and body.
async fn post_token(endpoint: &str, logout_token: &str) -> (u16, String) {
    let answer = reqwest::Client::new()
        .post(endpoint)
        .form(&[("logout_token", logout_token)])
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.text().await.unwrap())
}

/// An app over `store` with back-channel logout on, and the endpoint's URL.
async fn backchannel_app<S>(mock: &MockHcssIdentity, store: S) -> (String, HcssAuth, String)
where
    S: StateStore + TokenStore,
{
    let (url, auth) = start_app_with_store(
        mock,
        |b| b.scopes(OIDC_SCOPES).backchannel_logout(true),
        store,
    )
    .await;
    let endpoint = format!("{url}/hcss/backchannel-logout");
    (url, auth, endpoint)
}

async fn mock() -> MockHcssIdentity {
    MockHcssIdentity::builder().subject(SUBJECT).start().await
}

// ---------------------------------------------------------------------------------
// Algorithm confusion and header tricks (through the unauthenticated back-channel
// endpoint, which reaches the same signature check as an ID token).
// ---------------------------------------------------------------------------------

/// A little server an attacker controls: counts every request it gets (a `jku` or
/// `x5u` it names must never be fetched).
async fn attacker_server() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = Router::new().fallback(move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            StatusCode::NOT_FOUND
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    serve(listener, app);
    (url, hits)
}

/// Tokens whose claims are right but whose header tries to choose the key or the
/// algorithm: `alg: none`, HS256 keyed with the identity service's public key (its JWKS
/// and its modulus), RS256 by another key carried in a `jwk` header or named by `jku`/
/// `x5u` (never fetched), `crit`, PS256 made with the genuine private key under a JWK
/// that says RS256, kid tricks. Every one is refused with 400 and ends nothing; the
/// same claims, genuinely signed, end the session (so the claims were right).
#[tokio::test]
async fn hostile_headers_on_a_logout_token_are_refused() {
    let mock = mock().await;
    let (url, auth, endpoint) = backchannel_app(&mock, hcss_auth::MemoryStore::new()).await;
    let browser = Browser::new();
    browser.login_at(&url).await;
    let session = session_of(&browser);
    let (evil, evil_hits) = attacker_server().await;

    let jwks_body = reqwest::get(format!(
        "{}/.well-known/openid-configuration/jwks",
        mock.identity_url()
    ))
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    let jwks: serde_json::Value = serde_json::from_str(&jwks_body).unwrap();
    let modulus = URL_SAFE_NO_PAD
        .decode(jwks["keys"][0]["n"].as_str().unwrap())
        .unwrap();
    let other_jwk: Jwk = Jwk::from_encoding_key(&rsa(OTHER_KEY), Algorithm::RS256).unwrap();
    let mut other_jwk_json = serde_json::to_value(&other_jwk).unwrap();
    other_jwk_json["kid"] = json!("attacker-key");

    let claims = logout_claims(&mock, None);
    let rs256 =
        |header: serde_json::Value, pem: &str| jws(header, &claims, Algorithm::RS256, &rsa(pem));
    let hs256 = |secret: &[u8]| {
        jws(
            json!({ "alg": "HS256", "typ": "JWT", "kid": MOCK_KID }),
            &claims,
            Algorithm::HS256,
            &EncodingKey::from_secret(secret).unwrap(),
        )
    };
    let payload = b64(claims.to_string());
    let hostile: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!("{}.{payload}.", b64(r#"{"alg":"none","typ":"JWT"}"#)),
        ),
        ("alg None, genuine signature kept", {
            let good = genuine(&claims);
            let signature = good.rsplit('.').next().unwrap().to_owned();
            format!(
                "{}.{payload}.{signature}",
                b64(r#"{"alg":"None","kid":"mock-signing-key-1"}"#)
            )
        }),
        ("HS256 keyed with the JWKS", hs256(jwks_body.as_bytes())),
        ("HS256 keyed with the modulus", hs256(&modulus)),
        (
            "HS256 keyed with the JWK's n",
            hs256(jwks["keys"][0]["n"].as_str().unwrap().as_bytes()),
        ),
        (
            "jwk header with the signer's own key",
            rs256(
                json!({ "alg": "RS256", "kid": "attacker-key", "jwk": other_jwk_json }),
                OTHER_KEY,
            ),
        ),
        (
            "jwk header under the genuine kid",
            rs256(
                json!({ "alg": "RS256", "kid": MOCK_KID, "jwk": other_jwk_json }),
                OTHER_KEY,
            ),
        ),
        (
            "jku to the attacker's JWKS",
            rs256(
                json!({ "alg": "RS256", "kid": "attacker-key", "jku": format!("{evil}/jwks") }),
                OTHER_KEY,
            ),
        ),
        (
            "x5u to the attacker's certificate",
            rs256(
                json!({ "alg": "RS256", "kid": "attacker-key", "x5u": format!("{evil}/cert") }),
                OTHER_KEY,
            ),
        ),
        (
            "crit with a genuine signature",
            rs256(
                json!({ "alg": "RS256", "kid": MOCK_KID, "crit": ["exp"], "exp": 1 }),
                MOCK_KEY,
            ),
        ),
        (
            "b64 false under crit, genuine signature",
            rs256(
                json!({ "alg": "RS256", "kid": MOCK_KID, "crit": ["b64"], "b64": false }),
                MOCK_KEY,
            ),
        ),
        (
            "PS256 with the genuine key under a JWK that says RS256",
            jws(
                json!({ "alg": "PS256", "kid": MOCK_KID }),
                &claims,
                Algorithm::PS256,
                &rsa(MOCK_KEY),
            ),
        ),
        (
            "kid path traversal",
            rs256(
                json!({ "alg": "RS256", "kid": "../../../../dev/null" }),
                OTHER_KEY,
            ),
        ),
        (
            "no kid, another key",
            rs256(json!({ "alg": "RS256" }), OTHER_KEY),
        ),
        ("four segments", format!("{}.x", genuine(&claims))),
        ("two segments", {
            let good = genuine(&claims);
            good.rsplit_once('.').unwrap().0.to_owned()
        }),
    ];
    for (what, token) in &hostile {
        let (status, body) = post_token(&endpoint, token).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert!(body.contains("invalid_request"), "{what}: {body}");
        assert!(
            !body.contains(token.as_str()),
            "{what}: the token is not echoed"
        );
        assert!(
            session_exists(&auth, &session).await.unwrap(),
            "{what} ended the session"
        );
    }
    assert_eq!(evil_hits.load(Ordering::SeqCst), 0, "jku/x5u were fetched");

    // The same claims, genuinely signed, are accepted: the refusals were the headers'.
    let (status, body) = post_token(&endpoint, &genuine(&claims)).await;
    assert_eq!(status, 200, "{body}");
    assert!(!session_exists(&auth, &session).await.unwrap());
}

/// Genuinely signed logout tokens whose claims are wrong: another issuer, another
/// audience, `iat` an hour ahead or behind, no `iat`, no `events` or an `events` whose
/// member is not an object, a `nonce`, neither `sub` nor `sid` (or empty ones), no
/// `jti`, an `exp` in the past, an ID token (no `events`). Each is refused with 400
/// and ends nothing.
#[tokio::test]
async fn genuinely_signed_logout_tokens_with_wrong_claims_are_refused() {
    let mock = mock().await;
    let (url, auth, endpoint) = backchannel_app(&mock, hcss_auth::MemoryStore::new()).await;
    let browser = Browser::new();
    browser.login_at(&url).await;
    let session = session_of(&browser);
    let now = now(&mock);

    type Breaks = Box<dyn Fn(&mut serde_json::Value)>;
    let remove = |name: &'static str| -> Breaks {
        Box::new(move |c: &mut serde_json::Value| {
            c.as_object_mut().unwrap().remove(name);
        })
    };
    let set = |name: &'static str, value: serde_json::Value| -> Breaks {
        Box::new(move |c: &mut serde_json::Value| c[name] = value.clone())
    };
    let broken: Vec<(&str, Breaks)> = vec![
        (
            "another issuer",
            set("iss", json!("https://elsewhere.example/identity")),
        ),
        (
            "issuer with a trailing slash",
            set("iss", json!(format!("{}/", mock.identity_url()))),
        ),
        ("another audience", set("aud", json!("another-client"))),
        (
            "audience list without us",
            set("aud", json!(["another-client"])),
        ),
        ("iat an hour ahead", set("iat", json!(now + 3600))),
        ("iat an hour behind", set("iat", json!(now - 3600))),
        ("iat as a string", set("iat", json!(now.to_string()))),
        ("no iat", remove("iat")),
        ("no events", remove("events")),
        (
            "events member not an object",
            set("events", json!({ LOGOUT_EVENT: "yes" })),
        ),
        ("events an array", set("events", json!([LOGOUT_EVENT]))),
        ("a nonce", set("nonce", json!("n-0"))),
        ("an empty nonce", set("nonce", json!(""))),
        (
            "neither sub nor sid",
            Box::new(|c: &mut serde_json::Value| {
                let map = c.as_object_mut().unwrap();
                map.remove("sub");
                map.remove("sid");
            }),
        ),
        ("empty sub, no sid", set("sub", json!(""))),
        ("no jti", remove("jti")),
        ("empty jti", set("jti", json!(""))),
        ("expired", set("exp", json!(now - 1))),
    ];
    for (what, breaks) in &broken {
        let mut claims = logout_claims(&mock, None);
        breaks(&mut claims);
        let (status, body) = post_token(&endpoint, &genuine(&claims)).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert!(
            session_exists(&auth, &session).await.unwrap(),
            "{what} ended the session"
        );
    }
}

/// An attacker posting logout tokens with ever new key ids makes the app read the JWKS
/// again at most ten times a minute, however many it sends.
#[tokio::test]
async fn unknown_key_ids_do_not_make_a_jwks_refetch_storm() {
    let mock = mock().await;
    let (_url, _auth, endpoint) = backchannel_app(&mock, hcss_auth::MemoryStore::new()).await;
    let claims = logout_claims(&mock, None);
    for i in 0..40 {
        let token = jws(
            json!({ "alg": "RS256", "kid": format!("unknown-kid-{i}") }),
            &claims,
            Algorithm::RS256,
            &rsa(MOCK_KEY),
        );
        let (status, body) = post_token(&endpoint, &token).await;
        assert_eq!(status, 400, "{body}");
    }
    let reads = mock.counts().jwks;
    assert!(
        reads <= 11,
        "the JWKS was read {reads} times for 40 unknown kids"
    );
}

// ---------------------------------------------------------------------------------
// A hand-rolled identity service: its discovery document and JWKS as a test says.
// ---------------------------------------------------------------------------------

/// How the hand-rolled identity service answers for its JWKS.
#[derive(Clone, Copy, Debug)]
enum Keys {
    /// 500, as a service having trouble.
    Failing,
    /// A body far larger than any JWKS (over the app's response cap).
    Huge,
    /// 200 with a body that is not JSON.
    Malformed,
}

struct Idp {
    base: String,
    keys: Keys,
    jwks_reads: AtomicUsize,
    discovery: serde_json::Value,
}

async fn idp_discovery(State(idp): State<Arc<Idp>>) -> Response {
    axum::Json(idp.discovery.clone()).into_response()
}

async fn idp_jwks(State(idp): State<Arc<Idp>>) -> Response {
    idp.jwks_reads.fetch_add(1, Ordering::SeqCst);
    match idp.keys {
        Keys::Failing => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Keys::Huge => {
            let filler = "x".repeat(256 * 1024);
            (
                [("content-type", "application/json")],
                format!(r#"{{"keys":[],"filler":"{filler}"}}"#),
            )
                .into_response()
        }
        Keys::Malformed => ([("content-type", "application/json")], "{\"keys\": [").into_response(),
    }
}

/// Starts a hand-rolled identity service at `/identity` whose discovery document is
/// `document(base)` and whose JWKS answers as `keys` says.
async fn idp(keys: Keys, document: impl FnOnce(&str) -> serde_json::Value) -> Arc<Idp> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/identity", listener.local_addr().unwrap());
    let idp = Arc::new(Idp {
        discovery: document(&base),
        base,
        keys,
        jwks_reads: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route(
            "/identity/.well-known/openid-configuration",
            get(idp_discovery),
        )
        .route(
            "/identity/.well-known/openid-configuration/jwks",
            get(idp_jwks),
        )
        .with_state(idp.clone());
    serve(listener, app);
    idp
}

/// An app against `idp`, back-channel logout on; its URL and the endpoint's.
async fn app_against(
    idp: &Idp,
    configure: impl FnOnce(hcss_auth::HcssConfigBuilder) -> hcss_auth::HcssConfigBuilder,
) -> (String, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = configure(
        HcssConfig::builder()
            .client_id("adv21-app")
            .client_secret("adv21-secret")
            .identity_url(&idp.base)
            .redirect_uri(format!("{url}/hcss/callback"))
            .allow_insecure_http_on_loopback(true)
            .scopes(OIDC_SCOPES)
            .backchannel_logout(true),
    )
    .build()
    .unwrap();
    let auth = HcssAuth::new(config);
    serve(listener, router(auth, idp.base.clone()));
    let endpoint = format!("{url}/hcss/backchannel-logout");
    (url, endpoint)
}

fn standard_document(base: &str) -> serde_json::Value {
    json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/connect/authorize"),
        "token_endpoint": format!("{base}/connect/token"),
        "end_session_endpoint": format!("{base}/connect/endsession"),
        "jwks_uri": format!("{base}/.well-known/openid-configuration/jwks"),
    })
}

/// While the identity service's JWKS cannot be read (an error, a body over the cap, a
/// body that is not JSON), anyone posting logout tokens must not make the app read it
/// again at every request: each post was a request to HCSS (a storm the unknown-kid
/// limit was meant to prevent), serialised behind the keys' lock.
#[tokio::test]
async fn an_unreadable_jwks_is_not_read_again_at_every_request() {
    for keys in [Keys::Failing, Keys::Huge, Keys::Malformed] {
        let idp = idp(keys, standard_document).await;
        let (_url, endpoint) = app_against(&idp, |b| b).await;
        let claims = json!({
            "iss": idp.base, "aud": "adv21-app", "iat": 1, "jti": "j", "sub": "u",
            "events": { LOGOUT_EVENT: {} },
        });
        let token = genuine(&claims);
        for _ in 0..20 {
            let (status, body) = post_token(&endpoint, &token).await;
            assert_eq!(status, 400, "{keys:?}: {body}");
        }
        let reads = idp.jwks_reads.load(Ordering::SeqCst);
        assert!(
            reads <= 2,
            "{keys:?}: the unreadable JWKS was read {reads} times for 20 posts"
        );
    }
}

/// A discovery document whose endpoints use another scheme than the issuer (an
/// identity service behind a TLS proxy naming `http` under an `https` issuer; here the
/// reverse) or that is far larger than any document: HCSS's layout is used for them,
/// the browser is never sent to the named host.
#[tokio::test]
async fn discovery_endpoints_of_another_scheme_are_not_used() {
    let idp = idp(Keys::Failing, |base| {
        let mut document = standard_document(base);
        document["authorization_endpoint"] = json!("https://evil.example/connect/authorize");
        document
    })
    .await;
    let (url, _endpoint) = app_against(&idp, |b| b).await;
    let seen = Browser::new().get(&format!("{url}/hcss/login")).await;
    assert_eq!(seen.status, 303, "{}", seen.body);
    assert!(
        seen.location()
            .starts_with(&format!("{}/connect/authorize?", idp.base)),
        "{}",
        seen.location()
    );
}

/// A discovery document that names its `jwks_uri` with another scheme than the issuer
/// (IdentityServer behind a TLS-terminating proxy publishes `http://` URLs under an
/// `https` issuer) must not turn signature verification off: a forged ID token was
/// accepted, as if the service published no keys.
#[tokio::test]
async fn a_jwks_uri_of_another_scheme_does_not_turn_signatures_off() {
    let mock = MockHcssIdentity::start().await;
    mock.set_discovery_fault(Some(DiscoveryFault::JwksUriOtherScheme));
    let app = start_app(&mock, |b| b.scopes(OIDC_SCOPES)).await;
    mock.set_token_fault(Some(TokenFault::BadIdToken("signature")));
    let browser = Browser::new();
    let callback = browser.start_login(&app, None).await;
    let seen = browser.get(&callback).await;
    assert_eq!(
        seen.status, 400,
        "a forged ID token signed in: {}",
        seen.body
    );
    assert!(browser.cookie("hcss-session").is_none(), "no session");
    mock.set_token_fault(None);
    Browser::new().login(&app).await;
}

// ---------------------------------------------------------------------------------
// Back-channel logout: replay, whose sessions, bodies.
// ---------------------------------------------------------------------------------

/// The same logout token posted to two instances sharing a store at the same moment
/// is taken by exactly one of them, every time.
async fn concurrent_replay_is_taken_once<S>(store: S)
where
    S: StateStore + TokenStore + Clone,
{
    let mock = mock().await;
    let (_a, _auth_a, endpoint_a) = backchannel_app(&mock, store.clone()).await;
    let (_b, _auth_b, endpoint_b) = backchannel_app(&mock, store).await;
    for round in 0..8 {
        let token = genuine(&logout_claims(&mock, None));
        let (a, b) = tokio::join!(
            post_token(&endpoint_a, &token),
            post_token(&endpoint_b, &token)
        );
        let mut statuses = [a.0, b.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 400], "round {round}: {a:?} {b:?}");
    }
}

#[tokio::test]
async fn a_logout_token_posted_to_two_instances_at_once_is_taken_once() {
    concurrent_replay_is_taken_once(hcss_auth::MemoryStore::new()).await;
}

#[tokio::test]
async fn a_logout_token_posted_to_two_instances_sharing_redis_at_once_is_taken_once() {
    use common::redis_help::{prefix, redis_url, Cleanup};
    let Some(redis) =
        redis_url("a_logout_token_posted_to_two_instances_sharing_redis_at_once_is_taken_once")
    else {
        return;
    };
    let prefix = prefix();
    let _cleanup = Cleanup::new(&redis, &prefix);
    let store = hcss_auth::store::RedisStore::connect(&redis)
        .await
        .unwrap()
        .with_prefix(&prefix);
    concurrent_replay_is_taken_once(store).await;
}

/// A valid logout token for another user (by `sub`, or by a `sid` that is not this
/// user's) ends none of this user's sessions.
#[tokio::test]
async fn a_logout_token_for_another_user_ends_nothing_of_this_one() {
    let mock = mock().await;
    let (url, auth, endpoint) = backchannel_app(&mock, hcss_auth::MemoryStore::new()).await;
    let browser = Browser::new();
    browser.login_at(&url).await;
    let session = session_of(&browser);
    for (sub, sid) in [
        ("someone-else", None),
        ("someone-else", Some("a-sid-of-someone-else")),
        (SUBJECT, Some("a-sid-of-another-session")),
    ] {
        let mut claims = logout_claims(&mock, sid);
        claims["sub"] = json!(sub);
        let (status, body) = post_token(&endpoint, &genuine(&claims)).await;
        assert_eq!(status, 200, "{sub} {sid:?}: {body}");
        assert!(
            session_exists(&auth, &session).await.unwrap(),
            "{sub} {sid:?} ended this user's session"
        );
    }
}

/// A body over 16 KiB, a body that is not a form (JSON, even with a valid token in it),
/// `logout_token` twice: 400, nothing ended.
#[tokio::test]
async fn hostile_back_channel_bodies_are_refused() {
    let mock = mock().await;
    let (url, auth, endpoint) = backchannel_app(&mock, hcss_auth::MemoryStore::new()).await;
    let browser = Browser::new();
    browser.login_at(&url).await;
    let session = session_of(&browser);
    let client = reqwest::Client::new();
    let token = genuine(&logout_claims(&mock, None));

    let huge = format!("logout_token={token}&pad={}", "a".repeat(64 * 1024));
    let json_body = json!({ "logout_token": token }).to_string();
    let twice = format!("logout_token={token}&logout_token={token}");
    let form_as_text = format!("logout_token={token}");
    let cases: [(&str, &str, String); 4] = [
        ("huge", "application/x-www-form-urlencoded", huge),
        ("json", "application/json", json_body),
        ("twice", "application/x-www-form-urlencoded", twice),
        ("text/plain form", "text/plain", form_as_text),
    ];
    for (what, content_type, body) in cases {
        let answer = client
            .post(&endpoint)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap();
        assert_eq!(status, 400, "{what}: {text}");
        assert!(
            session_exists(&auth, &session).await.unwrap(),
            "{what} ended the session"
        );
    }
    // The token itself was good and unused.
    assert_eq!(post_token(&endpoint, &token).await.0, 200);
    assert!(!session_exists(&auth, &session).await.unwrap());
}

// ---------------------------------------------------------------------------------
// RP-initiated logout.
// ---------------------------------------------------------------------------------

/// Parameters smuggled into the logout or its return never choose where the browser
/// goes: the end-session URL carries the configured post-logout redirect URI once, and
/// the return goes to `post_logout_path` whatever its query says. A cross-site logout
/// (CSRF) is refused and the session stands.
#[tokio::test]
async fn rp_logout_redirects_are_not_chosen_by_the_request() {
    let mock = MockHcssIdentity::start().await;
    let app = signing_out_at_hcss(&mock).await;
    let browser = Browser::new();
    browser.login(&app).await;

    let cross = browser
        .request(
            "POST",
            &format!("{}/hcss/logout", app.url),
            &[
                ("origin", "https://evil.example"),
                ("sec-fetch-site", "cross-site"),
            ],
        )
        .await;
    assert_eq!(cross.status, 403, "{}", cross.body);
    assert!(
        browser.cookie("hcss-session").is_some(),
        "CSRF signed the user out"
    );

    let out = browser
        .request(
            "POST",
            &format!(
                "{}/hcss/logout?post_logout_redirect_uri=https%3A%2F%2Fevil.example&state=mine&return_to=https%3A%2F%2Fevil.example",
                app.url
            ),
            &[],
        )
        .await;
    assert_eq!(out.status, 303, "{}", out.body);
    let end_session = out.location().to_owned();
    assert!(!end_session.contains("evil.example"), "{end_session}");
    let pairs: Vec<(String, String)> = url::Url::parse(&end_session)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    for name in ["post_logout_redirect_uri", "state", "id_token_hint"] {
        assert_eq!(
            pairs.iter().filter(|(n, _)| n == name).count(),
            1,
            "{name} once: {end_session}"
        );
    }
    let back = browser.get(&end_session).await;
    let returned = with_param(back.location(), "post_logout_path", "https://evil.example");
    let returned = with_param(&returned, "return_to", "//evil.example");
    let home = browser.get(&returned).await;
    assert_eq!(home.status, 303, "{}", home.body);
    assert_eq!(home.location(), "/");
}

// ---------------------------------------------------------------------------------
// prompt, login_hint, max_age.
// ---------------------------------------------------------------------------------

/// `&`, `=`, `#` and encoded CRLF in `login_hint` stay inside its value (nothing is
/// added to the authorize URL); control characters, a `prompt` with CRLF or outside
/// the allow-list, duplicates, a `max_age` that is not a plain number are refused.
#[tokio::test]
async fn authorize_parameters_cannot_be_smuggled() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b.scopes(OIDC_SCOPES)).await;
    let hint = "u@example.com&prompt=none&max_age=99999&redirect_uri=https://evil.example#x";
    let encoded: String = url::form_urlencoded::byte_serialize(hint.as_bytes()).collect();
    let seen = Browser::new()
        .get(&format!("{}/hcss/login?login_hint={encoded}", app.url))
        .await;
    assert_eq!(seen.status, 303, "{}", seen.body);
    let authorize = url::Url::parse(seen.location()).unwrap();
    let pairs: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
    let named = |name: &str| pairs.iter().filter(|(n, _)| n == name).count();
    assert_eq!(named("login_hint"), 1);
    assert_eq!(named("prompt"), 0, "{authorize}");
    assert_eq!(named("max_age"), 0, "{authorize}");
    assert_eq!(named("redirect_uri"), 1, "{authorize}");
    assert_eq!(
        query_param(authorize.as_str(), "login_hint").as_deref(),
        Some(hint)
    );
    assert!(authorize.fragment().is_none());

    for query in [
        "login_hint=a%0D%0ASet-Cookie:%20x=1",
        "login_hint=a%00b",
        "prompt=login%0D%0Ax",
        "prompt=login&prompt=none",
        "prompt=login%26max_age%3D1",
        "prompt=Login",
        "max_age=-1",
        "max_age=1e3",
        "max_age=%205",
        "max_age=99999999999",
    ] {
        let seen = Browser::new()
            .get(&format!("{}/hcss/login?{query}", app.url))
            .await;
        assert_eq!(seen.status, 400, "{query}: {}", seen.body);
        assert!(!seen.body.contains("Set-Cookie"), "{query}: echoed");
        assert!(seen.set_cookies().iter().all(|c| !c.starts_with("x=")));
    }
    assert_eq!(mock.counts().authorize, 0);
}

/// An app that requires recent credentials (`max_age` in its configuration) cannot be
/// talked out of it by the login URL: `/hcss/login?max_age=<huge>` let a browser whose
/// identity-service session is older than the app allows sign in (on a shared computer,
/// anyone could open the URL and be signed in as the last user).
#[tokio::test]
async fn the_login_query_cannot_loosen_the_configured_max_age() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| {
        b.scopes(OIDC_SCOPES).max_age(Duration::from_secs(60))
    })
    .await;
    let browser = Browser::new();
    browser.login(&app).await;
    browser.forget("hcss-session");
    mock.clock().advance(Duration::from_secs(600));
    let seen = browser
        .get(&format!("{}/hcss/login?max_age=4000000000", app.url))
        .await;
    assert_eq!(seen.status, 303, "{}", seen.body);
    assert_eq!(
        query_param(seen.location(), "max_age").as_deref(),
        Some("60"),
        "the authorize URL asks for the configured bound"
    );
    // The identity service, told 60 s, asks for credentials again rather than signing
    // the old session in (the app's own `auth_time` check is proven in `oidc`).
    let prompts = mock.counts().credential_prompts;
    let callback = browser.get(seen.location()).await;
    let signed_in = browser.get(callback.location()).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(
        mock.counts().credential_prompts,
        prompts + 1,
        "an old session signed in without credentials"
    );

    // A tighter one than the configuration's is taken.
    let seen = browser
        .get(&format!("{}/hcss/login?max_age=30", app.url))
        .await;
    assert_eq!(
        query_param(seen.location(), "max_age").as_deref(),
        Some("30")
    );
}

// ---------------------------------------------------------------------------------
// Secrets.
// ---------------------------------------------------------------------------------

/// Through an OpenID sign-in, a sign-out at HCSS and back-channel logouts (refused and
/// accepted), no log line (at TRACE) carries the ID token, the logout token, the
/// session id or the tokens; the ID token leaves only in the end-session URL.
/// Current-thread runtime: the app logs to this thread's subscriber.
#[tokio::test]
async fn oidc_secrets_never_reach_the_logs() {
    let (capture, _guard) = crate::common::Capture::on_this_thread();

    let mock = MockHcssIdentity::builder().subject(SUBJECT).start().await;
    let app = start_app(&mock, |b| {
        let redirect = b.build().unwrap().redirect_uri().to_owned();
        let back = redirect.replace("/hcss/callback", "/hcss/logout/return");
        mock.config_builder(&redirect)
            .scopes(OIDC_SCOPES)
            .post_logout_redirect_uri(back)
            .backchannel_logout(true)
    })
    .await;
    let endpoint = format!("{}/hcss/backchannel-logout", app.url);
    let browser = Browser::new();
    browser.login(&app).await;
    let session_id = browser.cookie("hcss-session").unwrap();
    let tokens = app
        .store
        .load(session_key(&session_id))
        .await
        .unwrap()
        .unwrap();
    let id_token = tokens
        .id_token
        .as_ref()
        .expect("an ID token kept")
        .expose_secret()
        .to_owned();
    let mut secrets = vec![session_id.clone(), id_token.clone()];
    secrets.extend(crate::common::token_secrets(&tokens));
    assert!(
        !format!("{tokens:?}").contains(&id_token),
        "Debug shows the ID token"
    );

    let refused = mock.logout_token(
        SUBJECT,
        Some(hcss_auth::testing::LogoutTokenFault::WithNonce),
    );
    assert_eq!(post_token(&endpoint, &refused).await.0, 400);
    secrets.push(refused);

    let out = browser
        .request("POST", &format!("{}/hcss/logout", app.url), &[])
        .await;
    assert_eq!(
        query_param(out.location(), "id_token_hint").as_deref(),
        Some(id_token.as_str())
    );
    let back = browser.get(out.location()).await;
    assert!(
        !back.location().contains(&id_token),
        "the return URL carries the ID token"
    );
    let home = browser.get(back.location()).await;
    assert!(!home.location().contains(&id_token));

    browser.login(&app).await;
    let accepted = mock.logout_token(SUBJECT, None);
    assert_eq!(post_token(&endpoint, &accepted).await.0, 200);
    secrets.push(accepted);

    let logs = capture.take();
    // Which lines reach this thread's subscriber depends on the callsites' interest,
    // which tests on other threads share: some do, not always the same ones (the whole
    // flow's lines are checked with a process-wide subscriber in `tests/secrets.rs`).
    assert!(logs.contains("hcss."), "no log line was captured");
    for secret in &secrets {
        // The JWTs' signatures alone would be enough to spot them.
        let tail = secret.rsplit('.').next().unwrap();
        assert!(!logs.contains(secret.as_str()), "a secret in the logs");
        assert!(
            tail.len() < 16 || !logs.contains(tail),
            "a token's signature in the logs"
        );
    }
}
