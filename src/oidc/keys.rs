//! The identity service's signing keys (its JWKS), cached, read again when stale or when
//! a token names a key id they lack (rate limited), and the signature check itself,
//! done by `jsonwebtoken` with aws-lc-rs (the crypto library that already verifies the
//! identity service's TLS certificates).

use std::collections::VecDeque;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::{Signature, SignatureError};
use crate::config::IdentityClient;
use crate::protocol::get;

/// How long a JWKS is used before it is read again.
const KEYS_TTL: Duration = Duration::from_secs(60 * 60);
/// Reads of the keys caused by unknown key ids, at most, per [`REFETCH_WINDOW`].
const MAX_REFETCHES: usize = 10;
const REFETCH_WINDOW: Duration = Duration::from_secs(60);
/// How long a key id that a fresh read did not find is refused without reading again.
const MISS_TTL: Duration = Duration::from_secs(5 * 60);
/// Key ids remembered as missing, at most.
const MAX_MISSES: usize = 32;
/// How long after a failed read of the keys they are not read again: until then every
/// token is refused without a request to the identity service (anyone can post logout
/// tokens, and each would be a read while the keys cannot be read).
const RETRY_FAILED_READ: Duration = Duration::from_secs(10);

/// The algorithms an ID token or a logout token may be signed with: IdentityServer's
/// RS256 by default, and the other RSA and EC ones it can be set to. Never `none` (not even parsed), never
/// HMAC (a public key used as an HMAC secret would let anyone sign).
const ACCEPTED: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// The keys as last read, and the rate limit of reads.
#[derive(Default)]
pub(super) struct KeyCache {
    /// When the keys were read, and what was found (`None`: no JWKS is published).
    read: Option<(Instant, Option<Vec<Jwk>>)>,
    /// Key ids a fresh read did not have, and when.
    missed: VecDeque<(String, Instant)>,
    /// When the keys were read again because of an unknown key id.
    refetches: VecDeque<Instant>,
    /// When a read of the keys last failed (answered neither 200 with a JWKS nor 404).
    failed_at: Option<Instant>,
}

/// Verifies the signature of `token` (an ID token or a logout token) with the keys at
/// `url`.
pub(super) async fn verify(
    cache: &Mutex<KeyCache>,
    client: &IdentityClient,
    url: &Url,
    token: &str,
) -> Result<Signature, SignatureError> {
    let refused = SignatureError::refused;
    // The header first: a token this crate would never accept costs no read of the keys.
    let header = jsonwebtoken::decode_header(token)
        .map_err(|_| refused("the token is not a JWS, or its header names no accepted algorithm (alg none is refused)"))?;
    if !ACCEPTED.contains(&header.alg) {
        return Err(refused(
            "the algorithm is not accepted (HMAC and none are refused)",
        ));
    }
    if header.crit.is_some() {
        return Err(refused("the header has critical extensions"));
    }
    let (message, signature) = token
        .rsplit_once('.')
        .ok_or(refused("the token is not a JWS"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| refused("the signature is not base64url"))?;

    let mut cache = cache.lock().await;
    let now = Instant::now();
    let mut fresh = false;
    if cache
        .read
        .as_ref()
        .is_none_or(|(at, _)| now.saturating_duration_since(*at) >= KEYS_TTL)
    {
        let keys = cache.read_keys(client, url, now).await?;
        cache.read = Some((now, keys));
        fresh = true;
    }
    loop {
        let Some((_, Some(keys))) = &cache.read else {
            return Ok(Signature::NoKeysPublished);
        };
        let fitting: Vec<&Jwk> = keys
            .iter()
            .filter(|key| fits(key, header.alg, header.kid.as_deref()))
            .collect();
        if !fitting.is_empty() {
            let verified = fitting.iter().any(|key| {
                DecodingKey::from_jwk(key).is_ok_and(|key| {
                    let provider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
                    (provider.verifier_factory)(&header.alg, &key)
                        .is_ok_and(|v| v.verify(message.as_bytes(), &signature).is_ok())
                })
            });
            return if verified {
                Ok(Signature::Verified)
            } else {
                Err(refused("the signature does not verify"))
            };
        }
        // No key fits: the service may have rotated its keys since they were read.
        let kid = header.kid.clone().unwrap_or_default();
        if !cache.may_read_again_for(&kid, fresh, now) {
            return Err(refused(
                "no key of the identity service fits the token (unknown kid)",
            ));
        }
        tracing::info!(
            "a token names a key not among the identity service's; reading its keys again"
        );
        cache.refetches.push_back(now);
        let keys = cache.read_keys(client, url, now).await?;
        cache.read = Some((now, keys));
        fresh = true;
    }
}

impl KeyCache {
    /// Reads the keys, unless a read failed less than [`RETRY_FAILED_READ`] ago: then
    /// the error comes without a request.
    async fn read_keys(
        &mut self,
        client: &IdentityClient,
        url: &Url,
        now: Instant,
    ) -> Result<Option<Vec<Jwk>>, SignatureError> {
        if self
            .failed_at
            .is_some_and(|at| now.saturating_duration_since(at) < RETRY_FAILED_READ)
        {
            return Err(UNREADABLE);
        }
        let read = read(client, url).await;
        self.failed_at = read.is_err().then_some(now);
        read
    }

    /// Whether the keys may be read again for a token whose key id `kid` no key fits:
    /// not when they were just read (`fresh`; the key id is then remembered as missing),
    /// nor past the rate limit (the key id is not remembered then: no read lacked it, and
    /// a key the service rotated to is read once the limit allows).
    fn may_read_again_for(&mut self, kid: &str, fresh: bool, now: Instant) -> bool {
        if fresh {
            self.missed(kid.to_owned(), now);
            return false;
        }
        self.may_refetch(kid, now)
    }

    /// Whether the keys may be read again for `kid`: it has not been missed lately, and
    /// the reads of the last minute leave room.
    fn may_refetch(&mut self, kid: &str, now: Instant) -> bool {
        self.missed
            .retain(|(_, at)| now.saturating_duration_since(*at) < MISS_TTL);
        self.refetches
            .retain(|at| now.saturating_duration_since(*at) < REFETCH_WINDOW);
        !self.missed.iter().any(|(missed, _)| missed == kid) && self.refetches.len() < MAX_REFETCHES
    }

    fn missed(&mut self, kid: String, now: Instant) {
        if self.missed.len() >= MAX_MISSES {
            self.missed.pop_front();
        }
        self.missed.push_back((kid, now));
    }
}

/// Whether `key` can verify a signature made with `alg` by the key named `kid`: the
/// same key id (when the token names one), a key of the algorithm's family (RSA for RS
/// and PS, EC for ES; never a symmetric key), for signatures, of that algorithm when the
/// key names one.
fn fits(key: &Jwk, alg: Algorithm, kid: Option<&str>) -> bool {
    if kid.is_some() && key.common.key_id.as_deref() != kid {
        return false;
    }
    let family = match &key.algorithm {
        AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
        AlgorithmParameters::EllipticCurve(_) => AlgorithmFamily::Ec,
        _ => return false,
    };
    if family != alg.family() {
        return false;
    }
    if key
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return false;
    }
    key.common
        .key_algorithm
        .is_none_or(|named| named == KeyAlgorithm::from(alg))
}

/// Why a token was refused when the keys could not be read (it may pass).
const UNREADABLE: SignatureError =
    SignatureError::keys_unreadable("the identity service's keys could not be read");

/// Reads the JWKS at `url`: its keys (those that parse), or `None` when it is not
/// published (404). Any other failure is [`SignatureError::keys_unreadable`]: it may
/// pass.
async fn read(client: &IdentityClient, url: &Url) -> Result<Option<Vec<Jwk>>, SignatureError> {
    let answer = get(client, url).await.map_err(|err| {
        tracing::warn!(reason = %err, "the identity service's keys could not be read");
        UNREADABLE
    })?;
    if answer.status == 404 {
        return Ok(None);
    }
    if answer.status != 200 {
        tracing::warn!(
            status = answer.status,
            "the identity service's keys could not be read"
        );
        return Err(UNREADABLE);
    }
    #[derive(serde::Deserialize)]
    struct Set {
        keys: Vec<serde_json::Value>,
    }
    let set: Set = serde_json::from_slice(&answer.body).map_err(|_| {
        SignatureError::keys_unreadable("the identity service's JWKS is not a JWKS")
    })?;
    Ok(Some(
        set.keys
            .into_iter()
            .filter_map(|key| serde_json::from_value(key).ok())
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unknown key ids sent to spend the reads of a minute (anyone can post a logout
    /// token) must not keep a key the service rotated to from being read once the minute
    /// is over: only a read that did not have a key id marks it missing.
    #[test]
    fn spent_reads_do_not_mark_a_key_id_missing() {
        let mut cache = KeyCache::default();
        let start = Instant::now();
        for n in 0..MAX_REFETCHES {
            assert!(cache.may_read_again_for(&format!("junk-{n}"), false, start));
            cache.refetches.push_back(start);
        }
        assert!(!cache.may_read_again_for("rotated", false, start));
        let later = start + REFETCH_WINDOW + Duration::from_secs(1);
        assert!(
            cache.may_read_again_for("rotated", false, later),
            "the rotated key's id was marked missing though no read lacked it"
        );
        // A read that lacked it does mark it.
        assert!(!cache.may_read_again_for("gone", true, later));
        assert!(!cache.may_read_again_for("gone", false, later));
    }
}
