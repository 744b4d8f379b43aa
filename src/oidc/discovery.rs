//! `{identity_url}/.well-known/openid-configuration`: read, checked, and turned into the
//! endpoints the flow calls; HCSS's known layout when it cannot be used.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::config::IdentityClient;
use crate::protocol::get;

/// How long a discovery document is used before it is read again.
const DOCUMENT_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How long HCSS's layout (or a refused document) is used before the document is tried
/// again.
const RETRY_AFTER: Duration = Duration::from_secs(5 * 60);

/// The endpoints of the identity service.
#[derive(Debug)]
pub(crate) struct Endpoints {
    pub(crate) authorize: Url,
    pub(crate) token: Url,
    pub(crate) revocation: Url,
    /// The end-session endpoint (RP-initiated logout).
    pub(crate) end_session: Url,
    /// The JWKS, when the service publishes one (or, with HCSS's layout, where
    /// IdentityServer publishes it).
    pub(crate) jwks: Option<Url>,
}

/// What reading the discovery document gave.
pub(super) enum Discovered {
    /// A document naming the configured issuer.
    Document(Arc<Endpoints>),
    /// No usable document (absent, unreachable, not JSON): HCSS's layout.
    Layout {
        endpoints: Arc<Endpoints>,
        why: String,
    },
    /// A document naming another issuer: sign-ins are refused.
    Mismatch,
}

impl Discovered {
    /// How long this outcome is kept before the document is read again.
    pub(super) fn ttl(&self) -> Duration {
        match self {
            Discovered::Document(_) => DOCUMENT_TTL,
            Discovered::Layout { .. } | Discovered::Mismatch => RETRY_AFTER,
        }
    }
}

#[derive(Deserialize)]
struct Document {
    issuer: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
    end_session_endpoint: Option<String>,
    jwks_uri: Option<String>,
}

/// HCSS's (IdentityServer's) layout under the configured identity URL.
pub(crate) fn layout(client: &IdentityClient) -> Endpoints {
    Endpoints {
        authorize: client.authorize_url.clone(),
        token: client.token_url.clone(),
        revocation: client.revocation_url.clone(),
        end_session: client.end_session_url.clone(),
        jwks: Url::parse(&format!(
            "{}/.well-known/openid-configuration/jwks",
            client.issuer
        ))
        .ok(),
    }
}

/// Reads and checks the discovery document.
pub(super) async fn read(client: &IdentityClient) -> Discovered {
    let fallback = |why: String| Discovered::Layout {
        endpoints: Arc::new(layout(client)),
        why,
    };
    let Ok(url) = Url::parse(&format!(
        "{}/.well-known/openid-configuration",
        client.issuer
    )) else {
        return fallback("the identity URL gives no discovery URL".into());
    };
    let answer = match get(client, &url).await {
        Ok(answer) => answer,
        Err(err) => return fallback(err.to_string()),
    };
    if answer.status != 200 {
        return fallback(format!("HTTP {}", answer.status));
    }
    let document: Document = match serde_json::from_slice(&answer.body) {
        Ok(document) => document,
        Err(_) => return fallback("the document is not an OpenID discovery document".into()),
    };
    if document.issuer != client.issuer {
        return Discovered::Mismatch;
    }
    Discovered::Document(Arc::new(endpoints_of(client, &document)))
}

/// The endpoints a document names, each checked to use the issuer's scheme; HCSS's
/// layout for any it does not name or names wrongly. A document that names no
/// `jwks_uri` publishes no keys; one that names it wrongly (another scheme, not a URL)
/// does publish some, at HCSS's path then: a misnamed `jwks_uri` never turns the
/// signature check off.
fn endpoints_of(client: &IdentityClient, document: &Document) -> Endpoints {
    let known = layout(client);
    let scheme = known.token.scheme().to_owned();
    let pick = |named: &Option<String>, otherwise: Url| {
        named
            .as_deref()
            .and_then(|u| Url::parse(u).ok())
            .filter(|u| u.scheme() == scheme)
            .unwrap_or(otherwise)
    };
    Endpoints {
        authorize: pick(&document.authorization_endpoint, known.authorize),
        token: pick(&document.token_endpoint, known.token),
        revocation: pick(&document.revocation_endpoint, known.revocation),
        end_session: pick(&document.end_session_endpoint, known.end_session),
        jwks: match (&document.jwks_uri, known.jwks) {
            (None, _) => None,
            (named, Some(known)) => Some(pick(named, known)),
            (Some(named), None) => Url::parse(named).ok().filter(|u| u.scheme() == scheme),
        },
    }
}
