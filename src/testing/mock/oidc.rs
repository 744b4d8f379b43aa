//! The mock's OpenID Connect side: its signing keys (fixed test keys, rotated on
//! demand), its JWKS, its discovery document, and signed ID tokens.

use std::sync::atomic::Ordering;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

use super::*;

/// The mock's signing keys: fixed RSA test keys, committed for tests only. Never use
/// them for anything else.
const SIGNING_KEYS: [&str; 2] = [
    include_str!("keys/signing-1.pem"),
    include_str!("keys/signing-2.pem"),
];

/// What the mock's discovery document can be switched to, to test how an app copes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryFault {
    /// No document: `/.well-known/openid-configuration` answers 404.
    Absent,
    /// A document whose `issuer` is another identity service's.
    OtherIssuer,
    /// A document that names no `jwks_uri`, and no JWKS at IdentityServer's path: the
    /// service publishes no keys.
    NoKeys,
    /// A document whose `jwks_uri` uses another scheme than the issuer (`https` under
    /// the mock's `http`), as IdentityServer behind a TLS-terminating proxy names
    /// `http://` URLs under an `https` issuer. The JWKS is still served at
    /// IdentityServer's path.
    JwksUriOtherScheme,
    /// The document as usual, but its JWKS answers 503: the keys cannot be read for now.
    KeysUnavailable,
}

/// The key id of key number `index` (counting rotations).
fn key_id(index: usize) -> String {
    format!("mock-signing-key-{}", index + 1)
}

fn encoding_key(index: usize) -> EncodingKey {
    EncodingKey::from_rsa_pem(SIGNING_KEYS[index % SIGNING_KEYS.len()].as_bytes())
        .expect("the mock's signing key is a PEM RSA key")
}

/// The public half of the current signing key, as a JWK.
fn current_jwk(state: &MockState) -> Jwk {
    let index = state.signing_key.load(Ordering::SeqCst);
    let mut jwk = Jwk::from_encoding_key(&encoding_key(index), Algorithm::RS256)
        .expect("a JWK of the mock's signing key");
    jwk.common.key_id = Some(key_id(index));
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk.common.key_algorithm = Some(KeyAlgorithm::RS256);
    jwk
}

/// Signs `claims` as an ID token with the current key (RS256), or gets it wrong as
/// `fault` says: `"signature"` (signed with another key, under the current key's id),
/// `"kid"` (a key id the JWKS never has), `"alg"` (`alg: none`, no signature).
pub(super) fn sign(state: &MockState, claims: &serde_json::Value, fault: Option<&str>) -> String {
    if fault == Some("alg") {
        return format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
    }
    let index = state.signing_key.load(Ordering::SeqCst);
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(key_id(index));
    let key = match fault {
        Some("signature") => encoding_key(index + 1),
        Some("kid") => {
            header.kid = Some("a-key-id-never-published".into());
            encoding_key(index)
        }
        _ => encoding_key(index),
    };
    let provider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("a JSON header")),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signer = (provider.signer_factory)(&Algorithm::RS256, &key).expect("an RS256 signer");
    let signature = signer
        .try_sign(message.as_bytes())
        .expect("the mock signs its ID token");
    format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature))
}

pub(super) async fn discovery(State(state): State<Arc<MockState>>) -> Response {
    bump(&state, |c| &c.discovery);
    let fault = lock(&state.discovery_fault).clone();
    let base = &state.issuer;
    let mut document = json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/connect/authorize"),
        "token_endpoint": format!("{base}/connect/token"),
        "revocation_endpoint": format!("{base}/connect/revocation"),
        "end_session_endpoint": format!("{base}/connect/endsession"),
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "jwks_uri": format!("{base}/.well-known/openid-configuration/jwks"),
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": state.options.emit_iss,
    });
    match fault {
        Some(DiscoveryFault::Absent) => return StatusCode::NOT_FOUND.into_response(),
        Some(DiscoveryFault::OtherIssuer) => {
            document["issuer"] = json!("https://elsewhere.example/identity")
        }
        Some(DiscoveryFault::KeysUnavailable) => {}
        Some(DiscoveryFault::NoKeys) => {
            document
                .as_object_mut()
                .expect("an object")
                .remove("jwks_uri");
        }
        Some(DiscoveryFault::JwksUriOtherScheme) => {
            let https = base.replacen("http://", "https://", 1);
            document["jwks_uri"] = json!(format!("{https}/.well-known/openid-configuration/jwks"));
        }
        None => {}
    }
    Json(document).into_response()
}

pub(super) async fn jwks(State(state): State<Arc<MockState>>) -> Response {
    bump(&state, |c| &c.jwks);
    if lock(&state.discovery_fault).as_ref() == Some(&DiscoveryFault::NoKeys) {
        return StatusCode::NOT_FOUND.into_response();
    }
    if lock(&state.discovery_fault).as_ref() == Some(&DiscoveryFault::KeysUnavailable) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    Json(json!({ "keys": [current_jwk(&state)] })).into_response()
}

/// What a logout token from [`MockHcssIdentity::logout_token`] gets wrong, to test that
/// an app refuses it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogoutTokenFault {
    /// Its `aud` names another client.
    WrongAudience,
    /// It carries a `nonce` (a logout token must not).
    WithNonce,
    /// Signed with another key than the one its key id names.
    BadSignature,
    /// Its `events` lack the back-channel logout event.
    NoLogoutEvent,
    /// Issued ten minutes ago (on the mock's clock).
    Stale,
}

impl MockHcssIdentity {
    /// Where [`back_channel_logout`](Self::back_channel_logout) posts logout tokens: the
    /// app's back-channel logout URI, e.g. `http://127.0.0.1:3000/hcss/backchannel-logout`.
    pub fn set_backchannel_logout_uri(&self, uri: impl Into<String>) {
        *lock(&self.state.backchannel_logout_uri) = Some(uri.into());
    }

    /// The user `subject` signs out at the mock: its own sessions of that user end, and
    /// a logout token (RS256 with the current key, `sub`, and the `sid` of each of the
    /// user's sessions here, one token per session; `sub` alone when there is none) is
    /// posted to the app's back-channel logout URI. Returns the app's status: 200 when
    /// every token was accepted, else the first other status.
    ///
    /// # Panics
    ///
    /// If no back-channel logout URI is set, or the app cannot be reached.
    pub async fn back_channel_logout(&self, subject: &str) -> u16 {
        let sids: Vec<String> = if subject == self.state.options.subject {
            lock(&self.state.grants)
                .sessions
                .drain()
                .map(|(sid, _)| sid)
                .collect()
        } else {
            Vec::new()
        };
        let tokens: Vec<String> = if sids.is_empty() {
            vec![self.logout_token_for(subject, None, None)]
        } else {
            sids.iter()
                .map(|sid| self.logout_token_for(subject, Some(sid), None))
                .collect()
        };
        let mut status = 200;
        for token in tokens {
            let answer = self.post_logout_token(&token).await;
            if status == 200 {
                status = answer;
            }
        }
        status
    }

    /// A logout token for `subject` (with the `sid` of one of its sessions here, if
    /// any), signed as [`back_channel_logout`](Self::back_channel_logout) signs them, or
    /// wrong as `fault` says; the test posts it itself (with
    /// [`post_logout_token`](Self::post_logout_token), or twice to replay it).
    pub fn logout_token(&self, subject: &str, fault: Option<LogoutTokenFault>) -> String {
        let sid = (subject == self.state.options.subject)
            .then(|| lock(&self.state.grants).sessions.keys().next().cloned())
            .flatten();
        self.logout_token_for(subject, sid.as_deref(), fault)
    }

    /// Posts `logout_token` to the app's back-channel logout URI, as a form; returns
    /// the app's status.
    ///
    /// # Panics
    ///
    /// If no back-channel logout URI is set, or the app cannot be reached.
    pub async fn post_logout_token(&self, logout_token: &str) -> u16 {
        let uri = lock(&self.state.backchannel_logout_uri)
            .clone()
            .expect("set the app's back-channel logout URI first");
        reqwest::Client::new()
            .post(uri)
            .form(&[("logout_token", logout_token)])
            .send()
            .await
            .expect("the app answers the back-channel logout")
            .status()
            .as_u16()
    }

    fn logout_token_for(
        &self,
        subject: &str,
        sid: Option<&str>,
        fault: Option<LogoutTokenFault>,
    ) -> String {
        let state = &self.state;
        let now = state.clock.now();
        let jti = state.next_jti.fetch_add(1, Ordering::SeqCst);
        let mut claims = json!({
            "iss": state.issuer,
            "aud": state.options.client_id,
            "iat": now,
            "exp": now + 120,
            "jti": format!("mock-logout-{jti}-{}", crate::secret::random_token(8)),
            "sub": subject,
            "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
        });
        if let Some(sid) = sid {
            claims["sid"] = json!(sid);
        }
        let mut signing_fault = None;
        match fault {
            Some(LogoutTokenFault::WrongAudience) => claims["aud"] = json!("another-client"),
            Some(LogoutTokenFault::WithNonce) => claims["nonce"] = json!("a-nonce"),
            Some(LogoutTokenFault::BadSignature) => signing_fault = Some("signature"),
            Some(LogoutTokenFault::NoLogoutEvent) => claims["events"] = json!({}),
            Some(LogoutTokenFault::Stale) => {
                claims["iat"] = json!(now.saturating_sub(600));
                claims["exp"] = json!(now + 120);
            }
            None => {}
        }
        sign(state, &claims, signing_fault)
    }
}
