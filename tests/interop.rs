//! Interop with a certified OpenID provider: node `oidc-provider`, laid out like HCSS's
//! identity service (`tests/interop/provider.mjs`), PKCE required, refresh tokens rotated
//! with reuse detection, JWT access tokens carrying `CompanyId`, `client_credentials` and
//! HCSS's custom `company` grant; OpenID Connect as IdentityServer publishes it: its
//! discovery document, ID tokens verified against its JWKS, RP-initiated logout, and
//! back-channel logout to two instances of the app sharing Redis (that case needs
//! `HCSS_TEST_REDIS_URL` and the `redis` feature, and says it was skipped otherwise).
//!
//! Needs Node.js and npm; the harness installs `oidc-provider` into `tests/interop/`
//! (git ignores its `node_modules`). Without `node` every case says it was skipped.

#[path = "it/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use hcss_auth::{
    ClientAuth, CompanyTokenError, HcssAuth, HcssCompanyTokens, MemoryStore, TokenStore,
};

const SESSION: &str = "hcss-session";
/// The company of the provider's user `interop-user` (its `CompanyId` claim).
const USER_COMPANY: &str = "6d1b4a5e-2c1f-4b7e-9a3d-0c5e8f7a1b2c";
/// Another company that has connected the app at the provider.
const OTHER_COMPANY: &str = "0b9e7c4d-8a6f-4e2b-b1c3-5d7f9a2e4c6b";

fn skipped(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "{test}: skipped ({why})");
}

/// The provider process; killed when dropped.
struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn interop_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Installs `oidc-provider` once per machine (a lock file keeps parallel tests from
/// installing twice) and starts it; `None` when Node.js is not there.
fn start_provider(test: &str, redirect_uri: &str) -> Option<Provider> {
    start_provider_with(test, redirect_uri, &[])
}

/// [`start_provider`] with more of `provider.mjs`'s environment (its post-logout and
/// back-channel logout URIs).
fn start_provider_with(test: &str, redirect_uri: &str, env: &[(&str, &str)]) -> Option<Provider> {
    if Command::new("node").arg("--version").output().is_err() {
        skipped(test, "node is not installed");
        return None;
    }
    let dir = interop_dir();
    {
        static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _once = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
        if !dir.join("node_modules/oidc-provider/package.json").exists() {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--silent"])
                .current_dir(&dir)
                .status()
                .expect("npm runs");
            assert!(status.success(), "npm ci in tests/interop failed");
        }
    }
    let mut child = Command::new("node")
        .arg("provider.mjs")
        .current_dir(&dir)
        .env("PORT", "0")
        .env("REDIRECT_URIS", redirect_uri)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node starts");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let issuer = line
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("provider did not start: {line:?}"))
        .to_owned();
    Some(Provider { child, issuer })
}

impl Provider {
    fn base(&self) -> &str {
        self.issuer.trim_end_matches("/identity")
    }

    async fn counts(&self) -> serde_json::Value {
        reqwest::get(format!("{}/test/counts", self.base()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Makes the provider refuse (`disconnect`) or accept again (`reconnect`) a company.
    async fn control_company(&self, what: &str, company: &str) {
        let answer = reqwest::get(format!("{}/test/{what}?company={company}", self.base()))
            .await
            .unwrap();
        assert!(answer.status().is_success());
    }

    /// A refresh grant sent straight to the provider: does it still accept this token?
    async fn refresh_accepted(&self, client_id: &str, secret: &str, refresh_token: &str) -> bool {
        let request = reqwest::Client::new().post(format!("{}/connect/token", self.issuer));
        let request = if client_id == "secret-basic" {
            request.basic_auth(client_id, Some(secret)).form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
        } else {
            request.form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", client_id),
                ("client_secret", secret),
            ])
        };
        request.send().await.unwrap().status().is_success()
    }
}

/// An app configured for one of the provider's clients. The listener is bound first so
/// that the provider can be told the redirect URI.
struct Interop {
    provider: Provider,
    app: TestApp,
}

async fn interop(
    test: &str,
    client_id: &str,
    secret: Option<&str>,
    auth: ClientAuth,
) -> Option<Interop> {
    interop_with_scopes(test, client_id, secret, auth, &SCOPES).await
}

async fn interop_with_scopes(
    test: &str,
    client_id: &str,
    secret: Option<&str>,
    auth: ClientAuth,
    scopes: &[&str],
) -> Option<Interop> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let callback = format!("{url}/hcss/callback");
    let provider = start_provider(test, &callback)?;
    let mut builder = hcss_auth::HcssConfig::builder()
        .client_id(client_id)
        .scopes(scopes.iter().copied())
        .redirect_uri(&callback)
        .identity_url(&provider.issuer)
        .client_auth(auth)
        .allow_insecure_http_on_loopback(true);
    if let Some(secret) = secret {
        builder = builder.client_secret(secret);
    }
    let store = MemoryStore::new();
    let auth = HcssAuth::with_store(builder.build().unwrap(), store.clone());
    serve(listener, router(auth.clone(), provider.base().to_owned()));
    Some(Interop {
        provider,
        app: TestApp { url, auth, store },
    })
}

/// The provider's client that sends its secret in the body, as HCSS documents.
async fn body_client(test: &str) -> Option<Interop> {
    interop(
        test,
        "secret-body",
        Some("body-secret"),
        ClientAuth::RequestBody,
    )
    .await
}

/// Follows the provider's redirects (interaction, resume) until it sends the browser
/// back to the app; returns that callback URL.
async fn authorize(browser: &Browser, app: &TestApp) -> String {
    let login = browser.get(&format!("{}/hcss/login", app.url)).await;
    assert_eq!(login.status, 303);
    let mut next = login.location().to_owned();
    for _ in 0..10 {
        if next.starts_with(&app.url) {
            return next;
        }
        let seen = browser.get(&next).await;
        assert!(
            matches!(seen.status, 302 | 303),
            "{}: {}",
            seen.status,
            seen.body
        );
        // The provider's redirects may be relative to where it answered.
        next = url::Url::parse(&next)
            .unwrap()
            .join(seen.location())
            .unwrap()
            .into();
    }
    panic!("the provider did not send the browser back: {next}");
}

async fn login(browser: &Browser, env: &Interop) -> String {
    let callback = authorize(browser, &env.app).await;
    let done = browser.get(&callback).await;
    assert_eq!(done.status, 303, "callback: {}", done.body);
    callback
}

async fn code_flow(test: &str, client_id: &str, secret: Option<&str>, auth: ClientAuth) {
    let Some(env) = interop(test, client_id, secret, auth).await else {
        return;
    };
    let browser = Browser::new();
    login(&browser, &env).await;
    let whoami = browser.get(&format!("{}/whoami", env.app.url)).await;
    assert_eq!(whoami.status, 200, "{}", whoami.body);
    let json: serde_json::Value = serde_json::from_str(&whoami.body).unwrap();
    assert_eq!(json["token_type"], "Bearer");
    assert!(json["scopes"]
        .as_array()
        .unwrap()
        .contains(&"heavyjob:read".into()));
    assert_eq!(env.provider.counts().await["token"], 1);
}

#[tokio::test]
async fn code_flow_with_the_secret_in_the_body() {
    code_flow(
        "code_flow_with_the_secret_in_the_body",
        "secret-body",
        Some("body-secret"),
        ClientAuth::RequestBody,
    )
    .await;
}

#[tokio::test]
async fn code_flow_with_http_basic() {
    code_flow(
        "code_flow_with_http_basic",
        "secret-basic",
        Some("basic-secret"),
        ClientAuth::BasicAuth,
    )
    .await;
}

#[tokio::test]
async fn code_flow_as_a_public_client() {
    code_flow(
        "code_flow_as_a_public_client",
        "public",
        None,
        ClientAuth::RequestBody,
    )
    .await;
}

#[tokio::test]
async fn the_iss_parameter_is_sent_and_checked() {
    let test = "the_iss_parameter_is_sent_and_checked";
    let Some(env) = body_client(test).await else {
        return;
    };
    let browser = Browser::new();
    let callback = authorize(&browser, &env.app).await;
    assert_eq!(
        query_param(&callback, "iss").as_deref(),
        Some(env.provider.issuer.as_str())
    );
    let forged = with_param(&callback, "iss", "http://127.0.0.1:1/identity");
    assert_eq!(browser.get(&forged).await.status, 400);
    assert_eq!(
        env.provider.counts().await["token"],
        0,
        "no token call after a forged iss"
    );
    // The genuine callback was spent by the refused one (its state is single-use).
    login(&browser, &env).await;
    assert_eq!(
        browser.get(&format!("{}/whoami", env.app.url)).await.status,
        200
    );
}

#[tokio::test]
async fn refresh_rotates_and_reuse_is_detected() {
    let test = "refresh_rotates_and_reuse_is_detected";
    let Some(env) = body_client(test).await else {
        return;
    };
    let browser = Browser::new();
    login(&browser, &env).await;
    let id = browser.cookie(SESSION).unwrap();
    let old = expire_session(&env.app.store, &id).await;
    assert_eq!(
        browser.get(&format!("{}/whoami", env.app.url)).await.status,
        200
    );
    let new = env.app.store.load(session_key(&id)).await.unwrap().unwrap();
    assert_ne!(
        new.refresh_token, old.refresh_token,
        "oidc-provider rotated the refresh token"
    );
    assert_eq!(env.provider.counts().await["refresh"], 1);

    // The spent refresh token comes back (a stale copy): the provider detects the reuse,
    // the session ends, and the grant is revoked, rotated token included.
    env.app
        .store
        .store(session_key(&id), old, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        browser.get(&format!("{}/whoami", env.app.url)).await.status,
        401
    );
    assert!(env
        .app
        .store
        .load(session_key(&id))
        .await
        .unwrap()
        .is_none());
    let rotated = new.refresh_token.unwrap();
    assert!(
        !env.provider
            .refresh_accepted("secret-body", "body-secret", rotated.expose_secret())
            .await,
        "reuse detection revoked the whole grant"
    );
}

#[tokio::test]
async fn logout_revokes_the_refresh_token() {
    let test = "logout_revokes_the_refresh_token";
    let Some(env) = interop(
        test,
        "secret-basic",
        Some("basic-secret"),
        ClientAuth::BasicAuth,
    )
    .await
    else {
        return;
    };
    let browser = Browser::new();
    login(&browser, &env).await;
    let id = browser.cookie(SESSION).unwrap();
    let tokens = env.app.store.load(session_key(&id)).await.unwrap().unwrap();
    let refresh = tokens.refresh_token.unwrap();
    let seen = browser
        .request(
            "POST",
            &format!("{}/hcss/logout", env.app.url),
            &[("origin", &env.app.url)],
        )
        .await;
    assert_eq!(seen.status, 303);
    assert_eq!(env.provider.counts().await["revocation"], 1);
    assert!(
        !env.provider
            .refresh_accepted("secret-basic", "basic-secret", refresh.expose_secret())
            .await,
        "the refresh token is revoked"
    );
    assert_eq!(
        browser.get(&format!("{}/whoami", env.app.url)).await.status,
        401
    );
}

#[tokio::test]
async fn access_denied_is_a_readable_page() {
    let test = "access_denied_is_a_readable_page";
    let Some(env) = body_client(test).await else {
        return;
    };
    reqwest::get(format!("{}/test/deny-next", env.provider.base()))
        .await
        .unwrap();
    let browser = Browser::new();
    let callback = authorize(&browser, &env.app).await;
    assert_eq!(
        query_param(&callback, "error").as_deref(),
        Some("access_denied")
    );
    let page = browser.get(&callback).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("not granted"));
    assert_eq!(env.provider.counts().await["token"], 0);
}

#[tokio::test]
async fn a_wrong_client_secret_is_invalid_client_and_a_502() {
    let test = "a_wrong_client_secret_is_invalid_client_and_a_502";
    let Some(env) = interop(
        test,
        "secret-body",
        Some("not-the-secret"),
        ClientAuth::RequestBody,
    )
    .await
    else {
        return;
    };
    let browser = Browser::new();
    let callback = authorize(&browser, &env.app).await;
    let seen = browser.get(&callback).await;
    assert_eq!(seen.status, 502, "{}", seen.body);
    assert!(browser.cookie(SESSION).is_none());
    assert_eq!(env.provider.counts().await["token"], 1);
}

/// What the test app's `/whoami` says for the signed-in user.
async fn whoami(browser: &Browser, env: &Interop) -> serde_json::Value {
    let seen = browser.get(&format!("{}/whoami", env.app.url)).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    serde_json::from_str(&seen.body).unwrap()
}

#[tokio::test]
async fn sign_in_reads_the_subject_and_company_of_the_jwt_access_token() {
    let test = "sign_in_reads_the_subject_and_company_of_the_jwt_access_token";
    let Some(env) = body_client(test).await else {
        return;
    };
    let browser = Browser::new();
    login(&browser, &env).await;
    let me = whoami(&browser, &env).await;
    assert_eq!(me["subject"], "interop-user");
    assert_eq!(me["company_id"], USER_COMPANY);

    // The refreshed access token's claims replace the first one's, and say the same.
    let id = browser.cookie(SESSION).unwrap();
    expire_session(&env.app.store, &id).await;
    let me = whoami(&browser, &env).await;
    assert_eq!(env.provider.counts().await["refresh"], 1);
    assert_eq!(me["subject"], "interop-user");
    assert_eq!(me["company_id"], USER_COMPANY);
}

#[tokio::test]
async fn with_openid_the_id_token_is_checked_and_the_claims_kept() {
    let test = "with_openid_the_id_token_is_checked_and_the_claims_kept";
    let Some(env) = interop_with_scopes(
        test,
        "secret-basic",
        Some("basic-secret"),
        ClientAuth::BasicAuth,
        &["openid", "heavyjob:read", "offline_access"],
    )
    .await
    else {
        return;
    };
    let browser = Browser::new();
    let callback = authorize(&browser, &env.app).await;
    let done = browser.get(&callback).await;
    assert_eq!(
        done.status, 303,
        "the provider's ID token passed: {}",
        done.body
    );
    let me = whoami(&browser, &env).await;
    assert_eq!(me["subject"], "interop-user");
    assert_eq!(me["company_id"], USER_COMPANY, "from the access token");
    assert!(me["scopes"]
        .as_array()
        .unwrap()
        .contains(&"heavyjob:read".into()));
}

/// The partner flow: a user signs in, the app reads their `CompanyId`, and then gets a
/// token for that company with the `company` grant, with no user present.
async fn company_token_for_the_signed_in_users_company(
    test: &str,
    client_id: &str,
    secret: &str,
    auth: ClientAuth,
) {
    let Some(env) = interop(test, client_id, Some(secret), auth).await else {
        return;
    };
    let browser = Browser::new();
    login(&browser, &env).await;
    let company = whoami(&browser, &env).await["company_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let companies = HcssCompanyTokens::new(&env.app.auth);
    let token = companies.token(&company).await.unwrap();
    let claims = token.claims();
    assert_eq!(claims.company_id(), Some(USER_COMPANY));
    assert_eq!(claims.client_id(), Some(client_id));
    assert_eq!(token.scopes().collect::<Vec<_>>(), ["heavyjob:read"]);
    assert!(token.expires_in() > Duration::from_secs(3000));
    assert_eq!(env.provider.counts().await["company"], 1);

    let again = companies.token(&company).await.unwrap();
    assert_eq!(again.secret(), token.secret(), "cached");
    let other = companies.token(OTHER_COMPANY).await.unwrap();
    assert_eq!(other.claims().company_id(), Some(OTHER_COMPANY));
    assert_eq!(env.provider.counts().await["company"], 2);
}

#[tokio::test]
async fn the_company_grant_with_the_secret_in_the_body() {
    company_token_for_the_signed_in_users_company(
        "the_company_grant_with_the_secret_in_the_body",
        "secret-body",
        "body-secret",
        ClientAuth::RequestBody,
    )
    .await;
}

#[tokio::test]
async fn the_company_grant_with_http_basic() {
    company_token_for_the_signed_in_users_company(
        "the_company_grant_with_http_basic",
        "secret-basic",
        "basic-secret",
        ClientAuth::BasicAuth,
    )
    .await;
}

#[tokio::test]
async fn an_unknown_or_disconnected_company_is_disconnected() {
    let test = "an_unknown_or_disconnected_company_is_disconnected";
    let Some(env) = body_client(test).await else {
        return;
    };
    let companies = HcssCompanyTokens::new(&env.app.auth);
    match companies.token("no-such-company").await {
        Err(CompanyTokenError::Disconnected { company_id }) => {
            assert_eq!(company_id, "no-such-company")
        }
        other => panic!("{other:?}"),
    }

    env.provider
        .control_company("disconnect", OTHER_COMPANY)
        .await;
    assert!(matches!(
        companies.token(OTHER_COMPANY).await,
        Err(CompanyTokenError::Disconnected { .. })
    ));
    env.provider
        .control_company("reconnect", OTHER_COMPANY)
        .await;
    let token = companies.token(OTHER_COMPANY).await.unwrap();
    assert_eq!(token.claims().company_id(), Some(OTHER_COMPANY));
    assert_eq!(env.provider.counts().await["company"], 3);
}

#[tokio::test]
async fn a_wrong_client_secret_for_company_tokens_is_misconfigured() {
    let test = "a_wrong_client_secret_for_company_tokens_is_misconfigured";
    let Some(env) = interop(
        test,
        "secret-basic",
        Some("not-the-secret"),
        ClientAuth::BasicAuth,
    )
    .await
    else {
        return;
    };
    let companies = HcssCompanyTokens::new(&env.app.auth);
    assert!(matches!(
        companies.token(USER_COMPANY).await,
        Err(CompanyTokenError::Misconfigured { .. })
    ));
    assert!(matches!(
        companies.own_token().await,
        Err(CompanyTokenError::Misconfigured { .. })
    ));
}

#[tokio::test]
async fn client_credentials_give_the_apps_own_token() {
    let test = "client_credentials_give_the_apps_own_token";
    let Some(env) = interop(
        test,
        "secret-basic",
        Some("basic-secret"),
        ClientAuth::BasicAuth,
    )
    .await
    else {
        return;
    };
    let companies = HcssCompanyTokens::new(&env.app.auth);
    let token = companies.own_token().await.unwrap();
    let claims = token.claims();
    assert_eq!(claims.client_id(), Some("secret-basic"));
    assert_eq!(claims.company_id(), None, "no customer company");
    assert_eq!(token.scopes().collect::<Vec<_>>(), ["heavyjob:read"]);
    let again = companies.own_token().await.unwrap();
    assert_eq!(again.secret(), token.secret(), "cached");
    let counts = env.provider.counts().await;
    assert_eq!(counts["client_credentials"], 1);
    assert_eq!(counts["company"], 0);
}

/// An app with `openid` among its scopes for the provider's `secret-basic` client, its
/// configuration finished by `configure` (given the app's URL), the provider started
/// with `env` besides.
async fn openid_client(
    test: &str,
    env: &[(&str, &str)],
    configure: impl FnOnce(hcss_auth::HcssConfigBuilder, &str) -> hcss_auth::HcssConfigBuilder,
) -> Option<Interop> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let callback = format!("{url}/hcss/callback");
    let env: Vec<(&str, String)> = env
        .iter()
        .map(|(name, value)| (*name, value.replace("{app}", &url)))
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let provider = start_provider_with(test, &callback, &env)?;
    let builder = hcss_auth::HcssConfig::builder()
        .client_id("secret-basic")
        .client_secret("basic-secret")
        .client_auth(ClientAuth::BasicAuth)
        .scopes(OIDC_SCOPES)
        .redirect_uri(&callback)
        .identity_url(&provider.issuer)
        .allow_insecure_http_on_loopback(true);
    let store = MemoryStore::new();
    let auth = HcssAuth::with_store(configure(builder, &url).build().unwrap(), store.clone());
    serve(listener, router(auth.clone(), provider.base().to_owned()));
    Some(Interop {
        provider,
        app: TestApp { url, auth, store },
    })
}

/// The provider's discovery document is read (once), and the sign-in's ID token is
/// verified against the JWKS it names (read once, then cached for the refresh).
#[tokio::test]
async fn discovery_and_id_token_signatures_against_the_providers_jwks() {
    let test = "discovery_and_id_token_signatures_against_the_providers_jwks";
    let Some(env) = openid_client(test, &[], |b, _| b).await else {
        return;
    };
    let browser = Browser::new();
    login(&browser, &env).await;
    assert_eq!(whoami(&browser, &env).await["subject"], "interop-user");
    let counts = env.provider.counts().await;
    assert_eq!(counts["discovery"], 1, "the discovery document was read");
    assert_eq!(counts["jwks"], 1, "the JWKS it names was read");

    // A refresh is checked with the keys already read.
    let id = browser.cookie(SESSION).unwrap();
    expire_session(&env.app.store, &id).await;
    assert_eq!(whoami(&browser, &env).await["subject"], "interop-user");
    let counts = env.provider.counts().await;
    assert_eq!(counts["refresh"], 1);
    assert_eq!(
        (counts["discovery"].as_u64(), counts["jwks"].as_u64()),
        (Some(1), Some(1)),
        "both cached"
    );
}

/// The provider's JWKS publishes another key under its signing key's id: its ID token
/// does not verify, the sign-in is refused, and its refresh token is revoked.
#[tokio::test]
async fn an_id_token_that_does_not_verify_against_the_jwks_is_refused() {
    let test = "an_id_token_that_does_not_verify_against_the_jwks_is_refused";
    let Some(env) = openid_client(test, &[], |b, _| b).await else {
        return;
    };
    reqwest::get(format!("{}/test/forge-keys", env.provider.base()))
        .await
        .unwrap();
    let browser = Browser::new();
    let callback = authorize(&browser, &env.app).await;
    let refused = browser.get(&callback).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("could not be verified"),
        "{}",
        refused.body
    );
    assert!(browser.cookie(SESSION).is_none(), "no session");
    let counts = env.provider.counts().await;
    assert_eq!(counts["jwks"], 1);
    assert_eq!(counts["revocation"], 1, "the refresh token was revoked");
}

/// The provider's logout confirmation page, as a user confirms it: posts its `xsrf` and
/// `logout=yes` to its action. Returns the provider's answer.
async fn confirm_logout(browser: &Browser, page: &str) -> Seen {
    let attribute = |name: &str| {
        let start = page
            .find(name)
            .unwrap_or_else(|| panic!("{name} in the logout page: {page}"))
            + name.len();
        page[start..].split('"').next().unwrap().to_owned()
    };
    let action = attribute("action=\"");
    let xsrf = attribute("name=\"xsrf\" value=\"");
    browser
        .post_form(&action, &[("xsrf", &xsrf), ("logout", "yes")])
        .await
}

/// Sign-out at the provider (RP-initiated logout): the app's logout sends the browser
/// to the provider's end-session endpoint, which (once the user confirms) ends its own
/// session and sends the browser back with the app's `state`; the app then lands it on
/// `post_logout_path`. The next login at the provider asks for credentials again.
#[tokio::test]
async fn rp_initiated_logout_ends_the_providers_session() {
    let test = "rp_initiated_logout_ends_the_providers_session";
    let Some(env) = openid_client(
        test,
        &[("POST_LOGOUT_REDIRECT_URIS", "{app}/hcss/logout/return")],
        |b, app| b.post_logout_redirect_uri(format!("{app}/hcss/logout/return")),
    )
    .await
    else {
        return;
    };
    let browser = Browser::new();
    login(&browser, &env).await;
    assert_eq!(env.provider.counts().await["logins"], 1);
    // While the provider's session lives, another login asks for no credentials.
    login(&browser, &env).await;
    assert_eq!(env.provider.counts().await["logins"], 1);

    let logout = browser
        .request(
            "POST",
            &format!("{}/hcss/logout", env.app.url),
            &[("origin", &env.app.url)],
        )
        .await;
    assert_eq!(logout.status, 303, "{}", logout.body);
    let end_session = logout.location().to_owned();
    assert!(
        end_session.starts_with(&format!("{}/connect/endsession?", env.provider.issuer)),
        "{end_session}"
    );
    assert!(query_param(&end_session, "id_token_hint").is_some());
    let page = browser.get(&end_session).await;
    assert_eq!(
        page.status, 200,
        "the provider's confirmation: {}",
        page.body
    );
    let back = confirm_logout(&browser, &page.body).await;
    assert_eq!(back.status, 303, "{}", back.body);
    let back = back.location().to_owned();
    assert!(
        back.starts_with(&format!("{}/hcss/logout/return?", env.app.url)),
        "{back}"
    );
    let landed = browser.get(&back).await;
    assert_eq!(landed.status, 303, "the state checks out: {}", landed.body);
    assert_eq!(landed.location(), "/");
    assert_eq!(
        browser.get(&format!("{}/whoami", env.app.url)).await.status,
        401
    );

    login(&browser, &env).await;
    assert_eq!(
        env.provider.counts().await["logins"],
        2,
        "the provider's session is gone: it asked for credentials again"
    );
}

/// Signs `browser` in at the app at `url`, following the provider's redirects.
async fn signed_in_at(browser: &Browser, url: &str) {
    let login = browser.get(&format!("{url}/hcss/login")).await;
    let mut next = login.location().to_owned();
    for _ in 0..10 {
        if next.starts_with(url) {
            break;
        }
        let seen = browser.get(&next).await;
        assert!(matches!(seen.status, 302 | 303), "{}", seen.body);
        next = url::Url::parse(&next)
            .unwrap()
            .join(seen.location())
            .unwrap()
            .into();
    }
    let done = browser.get(&next).await;
    assert_eq!(done.status, 303, "callback: {}", done.body);
}

/// The status of `/whoami` at the app at `url` for `browser`.
async fn status_at(browser: &Browser, url: &str) -> u16 {
    browser.get(&format!("{url}/whoami")).await.status
}

/// Back-channel logout with two instances of the app sharing Redis: one user signed in
/// on both (one provider session), signs out at the provider; the provider posts its
/// logout token to the first instance, and the sessions on both instances end within
/// that request.
#[cfg(feature = "redis")]
#[tokio::test]
async fn backchannel_logout_ends_the_sessions_on_both_instances() {
    use common::redis_help::{prefix, redis_url, Cleanup};
    let test = "backchannel_logout_ends_the_sessions_on_both_instances";
    let Some(redis) = redis_url(test) else {
        return;
    };
    let prefix = prefix();
    let _cleanup = Cleanup::new(&redis, &prefix);
    let listeners = [
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
    ];
    let urls: Vec<String> = listeners
        .iter()
        .map(|l| format!("http://{}", l.local_addr().unwrap()))
        .collect();
    let callbacks: Vec<String> = urls.iter().map(|u| format!("{u}/hcss/callback")).collect();
    let backchannel = format!("{}/hcss/backchannel-logout", urls[0]);
    let Some(provider) = start_provider_with(
        test,
        &callbacks.join(" "),
        &[("BACKCHANNEL_LOGOUT_URI", &backchannel)],
    ) else {
        return;
    };
    let mut instances = Vec::new();
    for (listener, (url, callback)) in listeners.into_iter().zip(urls.iter().zip(&callbacks)) {
        let config = hcss_auth::HcssConfig::builder()
            .client_id("secret-basic")
            .client_secret("basic-secret")
            .client_auth(ClientAuth::BasicAuth)
            .scopes(OIDC_SCOPES)
            .redirect_uri(callback)
            .identity_url(&provider.issuer)
            .backchannel_logout(true)
            .allow_insecure_http_on_loopback(true)
            .build()
            .unwrap();
        let store = hcss_auth::store::RedisStore::connect(&redis)
            .await
            .unwrap()
            .with_prefix(&prefix);
        let auth = HcssAuth::with_store(config, store);
        serve(listener, router(auth, provider.base().to_owned()));
        instances.push(url.clone());
    }
    let first = Browser::new();
    signed_in_at(&first, &instances[0]).await;
    // The same user in another tab of the same browser (the provider's session cookie),
    // on the other instance.
    let second = Browser::new();
    second.take_cookies_of(&first);
    second.forget(SESSION);
    signed_in_at(&second, &instances[1]).await;
    assert_eq!(provider.counts().await["logins"], 1, "one provider session");
    assert_eq!(status_at(&first, &instances[0]).await, 200);
    assert_eq!(status_at(&second, &instances[1]).await, 200);

    // The user signs out at the provider itself.
    let page = second
        .get(&format!(
            "{}/connect/endsession?client_id=secret-basic",
            provider.issuer
        ))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let done = confirm_logout(&second, &page.body).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let counts = provider.counts().await;
    assert_eq!(
        (
            counts["backchannel"].as_u64(),
            counts["backchannel_errors"].as_u64()
        ),
        (Some(1), Some(0)),
        "the logout token was accepted"
    );
    assert_eq!(
        status_at(&first, &instances[0]).await,
        401,
        "ended on the first"
    );
    assert_eq!(
        status_at(&second, &instances[1]).await,
        401,
        "and on the second"
    );
}
