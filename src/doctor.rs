//! The configuration doctor: [`HcssAuth::check`](crate::HcssAuth::check) asks the
//! identity service, with no user, whether this configuration can work, and says what
//! to do about each item that cannot.

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use crate::protocol::{self, ErrorClass, Grant, TokenError};
use crate::shared::Shared;

/// How far this machine's clock may be from the identity service's `Date` (whole
/// seconds both) before the doctor calls it wrong.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5);

/// How one check of [`CheckReport`] came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckStatus {
    /// As it should be.
    Pass,
    /// Works, but not as production should run (development settings, a fallback).
    Warn,
    /// Will not work: sign-ins or refreshes fail until it is fixed.
    Fail,
}

/// One item of a [`CheckReport`]: what was checked, how it came out, what was seen, and
/// what to do when it is not a pass.
#[derive(Clone, Debug)]
pub struct CheckItem {
    name: &'static str,
    status: CheckStatus,
    detail: String,
    fix: Option<String>,
}

impl CheckItem {
    /// A passed check.
    pub fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: CheckStatus::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    /// A check that works but should not stay so, and what to do.
    pub fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            status: CheckStatus::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// A failed check, and what to do.
    pub fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            status: CheckStatus::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// What was checked: `discovery`, `clock`, `token endpoint`, `client credentials`,
    /// `redirect URI`, `offline_access`, `cookie key`, and a shared store's own (`redis`,
    /// `client tracking`).
    pub fn name(&self) -> &str {
        self.name
    }

    /// How it came out.
    pub fn status(&self) -> CheckStatus {
        self.status
    }

    /// What was seen.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// What to do, when it is not a pass.
    pub fn fix(&self) -> Option<&str> {
        self.fix.as_deref()
    }
}

/// What [`HcssAuth::check`](crate::HcssAuth::check) found: one [`CheckItem`] per check.
/// Its `Display` is a checklist, one line per item and its fix below it.
#[derive(Clone, Debug)]
pub struct CheckReport {
    items: Vec<CheckItem>,
}

impl CheckReport {
    /// Every item, in the order checked.
    pub fn items(&self) -> &[CheckItem] {
        &self.items
    }

    /// The item named `name`, if it was checked.
    pub fn item(&self, name: &str) -> Option<&CheckItem> {
        self.items.iter().find(|item| item.name == name)
    }

    /// Whether any item failed: the configuration will not work as it is.
    pub fn has_failures(&self) -> bool {
        self.items.iter().any(|i| i.status == CheckStatus::Fail)
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |s| self.items.iter().filter(|i| i.status == s).count();
        let warnings = count(CheckStatus::Warn);
        writeln!(
            f,
            "hcss-auth configuration check: {} passed, {warnings} {}, {} failed",
            count(CheckStatus::Pass),
            if warnings == 1 { "warning" } else { "warnings" },
            count(CheckStatus::Fail)
        )?;
        for item in &self.items {
            let mark = match item.status {
                CheckStatus::Pass => "[ok]  ",
                CheckStatus::Warn => "[warn]",
                CheckStatus::Fail => "[FAIL]",
            };
            writeln!(f, "{mark} {}: {}", item.name, item.detail)?;
            if let Some(fix) = &item.fix {
                writeln!(f, "       -> {fix}")?;
            }
        }
        Ok(())
    }
}

/// Runs every check of the layer's configuration and store.
pub(crate) async fn run(shared: &Shared) -> CheckReport {
    let config = &shared.config;
    let identity = &config.identity;
    let mut items = Vec::new();

    // The discovery document, read here apart from the layer's cache, with its `Date`.
    let discovery_url = format!("{}/.well-known/openid-configuration", identity.issuer);
    let answer = identity
        .http
        .get(&discovery_url)
        .timeout(identity.http_timeout)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await;
    let mut date = None;
    items.push(match answer {
        Err(err) => CheckItem::warn(
            "discovery",
            format!("{discovery_url} could not be read ({})", crate::http_rules::cause(err)),
            "check HCSS_IDENTITY_URL and that this machine reaches the identity service; \
             without the document, HCSS's known endpoint layout is used",
        ),
        Ok(response) => {
            date = http_date(response.headers());
            let status = response.status().as_u16();
            let issuer = response
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|doc| doc.get("issuer")?.as_str().map(str::to_owned));
            match issuer {
                Some(issuer) if issuer == identity.issuer => CheckItem::pass(
                    "discovery",
                    format!("discovery document found; its issuer is {issuer}"),
                ),
                Some(other) => CheckItem::fail(
                    "discovery",
                    format!(
                        "the discovery document names the issuer {other}, not {}",
                        identity.issuer
                    ),
                    format!("set HCSS_IDENTITY_URL (identity_url) to {other}, exactly as the document names it; sign-ins are refused until they agree"),
                ),
                None => CheckItem::warn(
                    "discovery",
                    format!("no discovery document at {discovery_url} (HTTP {status})"),
                    "check HCSS_IDENTITY_URL; HCSS's known endpoint layout is used meanwhile",
                ),
            }
        }
    });

    // A code exchange with a code that does not exist: HCSS checks the client first.
    let endpoints = shared.oidc.endpoints(identity).await.ok();
    items.extend(token_endpoint(shared, endpoints.as_deref()).await);

    items.push(clock(date, config.now()));
    items.push(redirect_uri(config));
    items.push(
        if identity.scope.split(' ').any(|s| s == "offline_access") {
            CheckItem::pass("offline_access", "asked for: sessions refresh their tokens")
        } else {
            CheckItem::fail(
                "offline_access",
                format!("not among the scopes ({})", identity.scope),
                "add offline_access to HCSS_SCOPES (and to the client at HCSS): without it \
                 HCSS gives no refresh token and every session ends when its first access \
                 token does (about an hour)",
            )
        },
    );

    items.push(api(config).await);

    let store = shared.token_store.shared_store_checks().await;
    let store_items = match store {
        Ok(found) => found,
        Err(err) => Some(vec![CheckItem::fail(
            "store",
            format!("the token store failed: {err}"),
            "check the store's address and credentials",
        )]),
    };
    items.push(match (&config.cookies.cookie_key, &store_items) {
        (Some(_), _) => CheckItem::pass("cookie key", "set: every instance seals logins alike"),
        (None, Some(_)) => CheckItem::warn(
            "cookie key",
            "not set: instances agree on one through the shared store",
            "set HCSS_COOKIE_KEY (the same on every instance) so that logins in progress \
             survive the store losing its keys",
        ),
        (None, None) => CheckItem::pass(
            "cookie key",
            "not set: this process makes its own (one instance, its store not shared)",
        ),
    });
    items.extend(store_items.unwrap_or_default());
    CheckReport { items }
}

/// The API URL's item, from a call without a token to an endpoint HCSS's API serves:
/// HCSS answers it 401, so that any other answer says the URL is not HCSS's API.
async fn api(config: &crate::HcssConfig) -> CheckItem {
    const NAME: &str = "API URL";
    let probe = format!("{}/heavyjob/api/v1/businessUnits", config.api.url);
    let answer = config
        .identity
        .http
        .get(&probe)
        .timeout(config.identity.http_timeout)
        .send()
        .await;
    let status = match answer {
        Err(err) => {
            return CheckItem::fail(
                NAME,
                format!(
                    "{} could not be reached ({})",
                    config.api.url,
                    crate::http_rules::cause(err)
                ),
                format!(
                    "check HCSS_API_URL (default {}) and that this machine reaches it: \
                     every HcssApi call fails until it does",
                    crate::config::HCSS_API_URL
                ),
            )
        }
        Ok(response) => response.status(),
    };
    if status != http::StatusCode::UNAUTHORIZED {
        return CheckItem::warn(
            NAME,
            format!(
                "{probe} answered {status} to a call without a token, where HCSS's API \
                 answers 401"
            ),
            format!(
                "check HCSS_API_URL: HCSS's API is {}, not the identity service",
                crate::config::HCSS_API_URL
            ),
        );
    }
    if config.api.base.scheme() == "http" {
        return CheckItem::warn(
            NAME,
            format!("{} answers as HCSS's API, over plain http", config.api.url),
            "for development on loopback only: production calls HCSS's API over https",
        );
    }
    CheckItem::pass(
        NAME,
        format!(
            "{} answers as HCSS's API (401 to a call without a token)",
            config.api.url
        ),
    )
}

/// The token endpoint's item and the client's, from a code exchange with a made-up
/// code at `endpoints.token`.
async fn token_endpoint(
    shared: &Shared,
    endpoints: Option<&crate::oidc::Endpoints>,
) -> [CheckItem; 2] {
    let Some(endpoints) = endpoints else {
        let why = "not tried: the discovery document names another issuer";
        return [
            CheckItem::fail("token endpoint", why, "fix the discovery item first"),
            CheckItem::fail("client credentials", why, "fix the discovery item first"),
        ];
    };
    let config = &shared.config;
    let identity = &config.identity;
    let token_url = &endpoints.token;
    let code = format!("hcss-auth-check-{}", crate::secret::random_token(16));
    let verifier = crate::secret::random_token(32);
    let grant = Grant::AuthorizationCode {
        code: &code,
        verifier: &verifier,
    };
    let exchange = protocol::request_tokens(config, token_url, grant).await;
    let endpoint = match &exchange {
        Err(err @ TokenError::Transient { .. }) => CheckItem::fail(
            "token endpoint",
            format!("{token_url} failed: {err}"),
            "check HCSS_IDENTITY_URL, this machine's network path (proxy, firewall, DNS) to \
             the identity service, and its TLS certificates; a 5xx or 429 is the identity \
             service's own trouble: try again later",
        ),
        Err(TokenError::InvalidResponse(why)) => CheckItem::fail(
            "token endpoint",
            format!("{token_url} answered, but not as an OAuth token endpoint ({why})"),
            "check HCSS_IDENTITY_URL: the identity service's base URL (HCSS's is \
             https://api.hcssapps.com/identity)",
        ),
        _ if token_url.scheme() == "https" => {
            CheckItem::pass("token endpoint", format!("{token_url} answers over TLS"))
        }
        _ => CheckItem::warn(
            "token endpoint",
            format!("{token_url} answers over plain http"),
            "for development on loopback only: production talks to HCSS over https",
        ),
    };
    let client = &identity.client_id;
    let credentials = match &exchange {
        Err(TokenError::Rejected { error, .. }) if error == "invalid_grant" => CheckItem::pass(
            "client credentials",
            format!("client {client} accepted (a made-up code was refused as invalid_grant)"),
        ),
        Err(err @ TokenError::Rejected { error, .. })
            if err.class() == ErrorClass::Configuration =>
        {
            CheckItem::fail(
                "client credentials",
                format!("HCSS refused client {client} ({error})"),
                "check HCSS_CLIENT_ID and HCSS_CLIENT_SECRET against the HCSS Partner Portal, \
                 and the client authentication it expects (HCSS_CLIENT_AUTH: body or basic)",
            )
        }
        Err(TokenError::Rejected { error, .. }) => CheckItem::warn(
            "client credentials",
            format!("HCSS answered {error} to a made-up code, not invalid_grant"),
            "compare the client's settings in the HCSS Partner Portal with this configuration",
        ),
        Err(_) => CheckItem::fail(
            "client credentials",
            "not checked: the token endpoint gave no verdict",
            "fix the token endpoint first",
        ),
        Ok(_) => CheckItem::fail(
            "client credentials",
            "the token endpoint issued tokens for a made-up code",
            "HCSS_IDENTITY_URL does not point at a real OAuth server",
        ),
    };
    [endpoint, credentials]
}

/// The `Date` of an answer, in Unix seconds.
fn http_date(headers: &http::HeaderMap) -> Option<u64> {
    let date = headers.get(http::header::DATE)?.to_str().ok()?;
    let date = httpdate::parse_http_date(date).ok()?;
    Some(date.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

fn clock(date: Option<u64>, now: u64) -> CheckItem {
    let Some(date) = date else {
        return CheckItem::warn(
            "clock",
            "the identity service sent no Date to compare with",
            "make sure this machine's clock is synchronised (NTP)",
        );
    };
    let skew = now.abs_diff(date);
    if skew <= MAX_CLOCK_SKEW.as_secs() {
        return CheckItem::pass(
            "clock",
            format!("within {skew} s of the identity service's"),
        );
    }
    let way = if now > date { "ahead of" } else { "behind" };
    CheckItem::fail(
        "clock",
        format!("{skew} s {way} the identity service's"),
        "synchronise this machine's clock (NTP): token lifetimes and ID tokens are judged \
         by it, and sessions refresh too late or too often",
    )
}

fn redirect_uri(config: &crate::HcssConfig) -> CheckItem {
    let uri = &config.identity.redirect_uri;
    let path = &config.routes.callback_path;
    if uri.starts_with("https://") {
        CheckItem::pass(
            "redirect URI",
            format!(
                "{uri}: https, its path {path} served by the layer; register it exactly as \
                 the Post Login Callback URL at HCSS"
            ),
        )
    } else {
        CheckItem::warn(
            "redirect URI",
            format!("{uri}: plain http on loopback (its path {path} served by the layer)"),
            "for development only: production needs an https:// redirect URI, registered \
             exactly at HCSS",
        )
    }
}
