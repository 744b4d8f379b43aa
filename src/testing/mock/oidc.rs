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
        Some(DiscoveryFault::NoKeys) => {
            document
                .as_object_mut()
                .expect("an object")
                .remove("jwks_uri");
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
    Json(json!({ "keys": [current_jwk(&state)] })).into_response()
}
