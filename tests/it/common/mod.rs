//! Shared pieces of the integration tests: a test app served on loopback, and a small
//! "browser" that keeps cookies and follows nothing by itself.
#![allow(dead_code)]

pub mod faults;
#[cfg(feature = "redis")]
pub mod redis_help;

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use hcss_auth::store::StoreKey;
use hcss_auth::testing::MockHcssIdentity;
use hcss_auth::{
    HcssAuth, HcssConfigBuilder, HcssSession, HcssToken, MemoryStore, StateStore, TokenSet,
    TokenStore,
};
use reqwest::header::{HeaderMap, HeaderValue, COOKIE, LOCATION, SET_COOKIE};

pub const SCOPES: [&str; 2] = ["heavyjob:read", "offline_access"];

/// A running app: its URL, its layer and its store.
pub struct TestApp {
    pub url: String,
    pub auth: HcssAuth,
    pub store: MemoryStore,
}

#[derive(Clone)]
struct AppState {
    api_url: String,
}

async fn home(token: Option<HcssToken>) -> String {
    match token {
        Some(_) => "signed in".into(),
        None => "signed out".into(),
    }
}

async fn whoami(token: HcssToken) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "subject": token.claims().subject(),
        "company_id": token.claims().company_id(),
        "name": token.claims().name(),
        "email": token.claims().email(),
        "token_type": token.token_type(),
        "scopes": token.scopes().collect::<Vec<_>>(),
        "expires_in": token.expires_in().as_secs(),
    }))
}

async fn business_units(State(state): State<AppState>, token: HcssToken) -> impl IntoResponse {
    let response = reqwest::Client::new()
        .get(format!("{}/heavyjob/api/v1/businessUnits", state.api_url))
        .bearer_auth(token.secret())
        .send()
        .await
        .expect("mock API reachable");
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.text().await.unwrap_or_default())
}

/// A handler that gives up on its token after 200 ms, as a `timeout()` around `token()`
/// or a `TimeoutLayer` does: the request is cancelled mid-refresh.
async fn hurried(session: HcssSession) -> StatusCode {
    match tokio::time::timeout(std::time::Duration::from_millis(200), session.token()).await {
        Ok(Ok(_)) => StatusCode::OK,
        Ok(Err(_)) => StatusCode::SERVICE_UNAVAILABLE,
        Err(_) => StatusCode::GATEWAY_TIMEOUT,
    }
}

/// Calls the mock API; when it answers 401 (HCSS refused the token), refreshes the
/// session through `HcssSession::refresh` and tries once more.
async fn business_units_retrying(
    State(state): State<AppState>,
    session: HcssSession,
    token: HcssToken,
) -> impl IntoResponse {
    let call = |token: HcssToken| {
        let url = format!("{}/heavyjob/api/v1/businessUnits", state.api_url);
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token.secret())
                .send()
                .await
                .expect("mock API reachable")
        }
    };
    let mut response = call(token.clone()).await;
    if response.status() == reqwest::StatusCode::UNAUTHORIZED {
        match session.refresh(&token).await {
            Ok(fresh) => response = call(fresh).await,
            Err(err) => return (StatusCode::UNAUTHORIZED, err.to_string()),
        }
    }
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    (status, response.text().await.unwrap_or_default())
}

/// Ends the session from a handler.
async fn end_session(session: HcssSession) -> StatusCode {
    match session.end().await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The app's routes behind `auth`.
pub fn router(auth: HcssAuth, api_url: String) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/hurried", get(hurried))
        .route("/business-units-retrying", get(business_units_retrying))
        .route("/end-session", axum::routing::post(end_session))
        .route(
            "/submit",
            axum::routing::post(|_token: HcssToken| async { "submitted" }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/whoami", get(whoami))
        .route("/business-units", get(business_units))
        .with_state(AppState { api_url })
        .layer(auth)
}

/// Binds a loopback port and serves the test app on it, configured against `mock`.
pub async fn start_app(
    mock: &MockHcssIdentity,
    configure: impl FnOnce(HcssConfigBuilder) -> HcssConfigBuilder,
) -> TestApp {
    start_app_as(mock, configure, |config, store| {
        HcssAuth::with_store(config, store.clone())
    })
    .await
}

/// The test app with logins in progress kept in its `MemoryStore` (the server-side
/// option) instead of sealed cookies.
pub async fn start_app_stored(
    mock: &MockHcssIdentity,
    configure: impl FnOnce(HcssConfigBuilder) -> HcssConfigBuilder,
) -> TestApp {
    start_app_built(mock, configure, |auth, store| {
        auth.state_store(store.clone())
    })
    .await
}

/// The test app over a new `MemoryStore` (its token store), its layer configured by
/// `build` (hooks, a state store) before it is built.
pub async fn start_app_built(
    mock: &MockHcssIdentity,
    configure: impl FnOnce(HcssConfigBuilder) -> HcssConfigBuilder,
    build: impl FnOnce(hcss_auth::HcssAuthBuilder, &MemoryStore) -> hcss_auth::HcssAuthBuilder,
) -> TestApp {
    start_app_as(mock, configure, |config, store| {
        build(HcssAuth::builder(config).token_store(store.clone()), store).build()
    })
    .await
}

/// The test app over a new `MemoryStore`, its layer made by `layer`.
async fn start_app_as(
    mock: &MockHcssIdentity,
    configure: impl FnOnce(HcssConfigBuilder) -> HcssConfigBuilder,
    layer: impl FnOnce(hcss_auth::HcssConfig, &MemoryStore) -> HcssAuth,
) -> TestApp {
    let store = MemoryStore::new();
    let (url, auth) = serve_app(mock, configure, |config| layer(config, &store)).await;
    TestApp { url, auth, store }
}

/// Serves the test app on a loopback port with `store`, configured against `mock`;
/// returns its URL and layer.
pub async fn start_app_with_store<S>(
    mock: &MockHcssIdentity,
    configure: impl FnOnce(HcssConfigBuilder) -> HcssConfigBuilder,
    store: S,
) -> (String, HcssAuth)
where
    S: StateStore + TokenStore,
{
    serve_app(mock, configure, |config| {
        HcssAuth::with_store(config, store)
    })
    .await
}

/// Binds a loopback port, builds the config for it against `mock`, and serves the test
/// app behind the layer `layer` makes; returns its URL and layer.
pub async fn serve_app(
    mock: &MockHcssIdentity,
    configure: impl FnOnce(HcssConfigBuilder) -> HcssConfigBuilder,
    layer: impl FnOnce(hcss_auth::HcssConfig) -> HcssAuth,
) -> (String, HcssAuth) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = configure(
        mock.config_builder(&format!("{url}/hcss/callback"))
            .scopes(SCOPES),
    )
    .build()
    .unwrap();
    let auth = layer(config);
    serve(listener, router(auth.clone(), mock.api_url()));
    (url, auth)
}

pub fn serve(listener: tokio::net::TcpListener, app: Router) {
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
}

/// The access and refresh token of a set, as text (to look for them where they must
/// not be).
pub fn token_secrets(tokens: &TokenSet) -> [String; 2] {
    [
        tokens.access_token.expose_secret().to_owned(),
        tokens
            .refresh_token
            .as_ref()
            .unwrap()
            .expose_secret()
            .to_owned(),
    ]
}

/// The store key of a session cookie's value (as the crate derives it).
pub fn session_key(id: &str) -> StoreKey {
    StoreKey::of_session_cookie(id)
}

/// The store key of a login in progress, from its `state` (as the crate derives it).
pub fn login_key(state: &str) -> StoreKey {
    StoreKey::of_login_state(state)
}

/// Makes a session's access token look expired to the app, as time passing would.
pub async fn expire_session<S: TokenStore>(store: &S, session_id: &str) -> TokenSet {
    let key = session_key(session_id);
    let mut tokens = store.load(key).await.unwrap().expect("session stored");
    tokens.expires_at = 1;
    store
        .store(key, tokens.clone(), std::time::Duration::from_secs(3600))
        .await
        .unwrap();
    tokens
}

/// A response as the test browser saw it.
#[derive(Debug)]
pub struct Seen {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Seen {
    pub fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }
}

/// A minimal browser: one cookie jar, no automatic redirects. Cookies are sent in the
/// order they were first set, as browsers order cookies of one path.
#[derive(Clone, Default)]
pub struct Browser {
    jar: Arc<Mutex<Jar>>,
}

/// Cookies in creation order; replacing one keeps its place.
#[derive(Clone, Default)]
struct Jar(Vec<(String, String)>);

impl Jar {
    fn get(&self, name: &str) -> Option<&String> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    fn insert(&mut self, name: String, value: String) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| n != name);
    }

    fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(n, _)| n)
    }

    fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(n, v)| (n, v))
    }
}

impl Browser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar.lock().unwrap().get(name).cloned()
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.jar
            .lock()
            .unwrap()
            .insert(name.to_owned(), value.to_owned());
    }

    pub fn forget(&self, name: &str) {
        self.jar.lock().unwrap().remove(name);
    }

    /// The names of the per-login binding cookies the browser holds.
    pub fn login_cookies(&self) -> Vec<String> {
        let names: Vec<String> = self
            .jar
            .lock()
            .unwrap()
            .keys()
            .filter(|name| name.starts_with("hcss-login-"))
            .cloned()
            .collect();
        names
    }

    /// Stores every cookie of `other`'s jar in this one, as a browser stores the cookies
    /// of answers in the order they arrive.
    pub fn take_cookies_of(&self, other: &Browser) {
        let theirs = other.jar.lock().unwrap().clone();
        let mut jar = self.jar.lock().unwrap();
        for (name, value) in theirs.0 {
            jar.insert(name, value);
        }
    }

    /// Drops every binding cookie, as a browser that lost them would.
    pub fn forget_logins(&self) {
        self.jar
            .lock()
            .unwrap()
            .0
            .retain(|(name, _)| !name.starts_with("hcss-login-"));
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    pub async fn request(&self, method: &str, url: &str, headers: &[(&str, &str)]) -> Seen {
        self.send(
            Self::client().request(method.parse().unwrap(), url),
            headers,
        )
        .await
    }

    /// Posts `form` (`application/x-www-form-urlencoded`) to `url`, as a page's form.
    pub async fn post_form(&self, url: &str, form: &[(&str, &str)]) -> Seen {
        self.send(Self::client().post(url).form(form), &[]).await
    }

    async fn send(&self, mut request: reqwest::RequestBuilder, headers: &[(&str, &str)]) -> Seen {
        let cookie = {
            let jar = self.jar.lock().unwrap();
            jar.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        if !cookie.is_empty() {
            request = request.header(COOKIE, HeaderValue::from_str(&cookie).unwrap());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("request failed: {}", e.without_url()));
        let seen = Seen {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: String::new(),
        };
        for set in seen.set_cookies() {
            let pair = set.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if set.contains("Max-Age=0") {
                self.forget(name);
            } else {
                self.set_cookie(name, value);
            }
        }
        Seen {
            body: response.text().await.unwrap_or_default(),
            ..seen
        }
    }

    pub async fn get(&self, url: &str) -> Seen {
        self.request("GET", url, &[]).await
    }

    /// A page load, as a browser's address bar sends it.
    pub async fn open(&self, url: &str) -> Seen {
        self.request("GET", url, &[("accept", "text/html,application/xhtml+xml")])
            .await
    }

    /// `GET /hcss/login`, then the identity service: the callback URL it sends back to.
    pub async fn start_login(&self, app: &TestApp, return_to: Option<&str>) -> String {
        let login = match return_to {
            Some(path) => format!(
                "{}/hcss/login?return_to={}",
                app.url,
                url::form_urlencoded::byte_serialize(path.as_bytes()).collect::<String>()
            ),
            None => format!("{}/hcss/login", app.url),
        };
        let seen = self.get(&login).await;
        assert_eq!(seen.status, 303, "login answers 303: {}", seen.body);
        let authorized = self.get(seen.location()).await;
        assert_eq!(
            authorized.status, 303,
            "the mock consents: {}",
            authorized.body
        );
        let callback = authorized.location().to_owned();
        assert!(callback.starts_with(&app.url), "{callback}");
        callback
    }

    /// The whole login; returns where the callback sent the browser.
    pub async fn login(&self, app: &TestApp) -> String {
        self.login_at(&app.url).await
    }

    /// The whole login against the app at `url`; returns where the callback sent the
    /// browser.
    pub async fn login_at(&self, url: &str) -> String {
        let seen = self.get(&format!("{url}/hcss/login")).await;
        assert_eq!(seen.status, 303, "login answers 303: {}", seen.body);
        let authorized = self.get(seen.location()).await;
        assert_eq!(
            authorized.status, 303,
            "the mock consents: {}",
            authorized.body
        );
        let callback = authorized.location().to_owned();
        let seen = self.get(&callback).await;
        assert_eq!(seen.status, 303, "callback answers 303: {}", seen.body);
        seen.location().to_owned()
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The query parameter `name` of `url`.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let url = url::Url::parse(url).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `url` with the query parameter `name` set to `value` (added if missing).
pub fn with_param(url: &str, name: &str, value: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    parsed
        .query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair(name, value);
    parsed.into()
}

/// Log lines captured from a `tracing` subscriber, for tests that read them.
#[derive(Clone, Default)]
pub struct Capture(pub Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    /// A subscriber that writes every log line, of every level, into this capture,
    /// plain text.
    pub fn every_line(&self) -> impl tracing::Subscriber + Send + Sync {
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(self.clone())
            .finish()
    }

    /// Captures every log line of this thread until the guard is dropped.
    pub fn on_this_thread() -> (Self, tracing::subscriber::DefaultGuard) {
        let capture = Capture::default();
        let guard = tracing::subscriber::set_default(capture.every_line());
        (capture, guard)
    }

    /// What was captured since the last call.
    pub fn take(&self) -> String {
        String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
    }
}

/// Caches a company token and the app's own token through `auth`, then ends the sessions
/// of both companies and of the app's client: none of them is a session (0 ended, no
/// revocation), and both stay cached (no new grant).
pub async fn company_tokens_are_not_sessions(mock: &MockHcssIdentity, auth: &HcssAuth) {
    let companies = hcss_auth::HcssCompanyTokens::new(auth);
    let company = "customer-co-1";
    companies.token(company).await.unwrap();
    companies.own_token().await.unwrap();
    let client = format!("client:{}", mock.client_id());
    for (what, ended) in [
        (company, auth.end_sessions_for_company(company).await),
        (
            MockHcssIdentity::OWN_COMPANY,
            auth.end_sessions_for_company(MockHcssIdentity::OWN_COMPANY)
                .await,
        ),
        (
            client.as_str(),
            auth.end_sessions_for_subject(&client).await,
        ),
    ] {
        assert_eq!(ended.unwrap(), 0, "sessions of {what} ended");
    }
    assert_eq!(mock.counts().revocations, 0, "a company token revoked");
    companies.token(company).await.unwrap();
    companies.own_token().await.unwrap();
    let counts = mock.counts();
    assert_eq!(
        (counts.company_grants, counts.client_credentials),
        (1, 1),
        "the cached company tokens were removed"
    );
}

/// The scopes of an OpenID Connect sign-in that refreshes.
pub const OIDC_SCOPES: [&str; 3] = ["openid", "heavyjob:read", "offline_access"];

/// The `Cookie` header of `browser`'s session, for a request made outside it.
pub fn session_of(browser: &Browser) -> String {
    format!(
        "hcss-session={}",
        browser.cookie("hcss-session").expect("signed in")
    )
}

/// The test app with sign-out at HCSS turned on: its post-logout redirect URI is
/// `/hcss/logout/return` on the app's origin.
pub async fn signing_out_at_hcss(mock: &MockHcssIdentity) -> TestApp {
    start_app(mock, |b| {
        let redirect = b.build().unwrap().redirect_uri().to_owned();
        let back = redirect.replace("/hcss/callback", "/hcss/logout/return");
        mock.config_builder(&redirect)
            .scopes(OIDC_SCOPES)
            .post_logout_redirect_uri(back)
    })
    .await
}
