//! [`HcssApi`]: calls to HCSS's APIs that stay within the company's limits and survive
//! an early 401, a 429 and a passing failure.
//!
//! A call goes through four stages, each in a file or a function of its own:
//! credentials (the user's session, a company's token or the app's own: [`Acting`]) →
//! the company's budget ([`budget`]: a slot through the store) → retry (401 once after a
//! forced refresh, 429 after `Retry-After`, 5xx and connection errors for idempotent
//! requests) → transport (the configured `reqwest` client).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use tokio::time::Instant;

use crate::company::HcssCompanyTokens;
use crate::error::{HcssApiError, SessionError};
use crate::layer::HcssAuth;
use crate::session::HcssSession;
use crate::shared::CompanySource;
use crate::token::{HcssToken, HeldToken};

mod pages;
mod response;
mod target;

pub use pages::Pages;
pub use response::HcssApiResponse;

/// Retries of a 5xx or a connection error, at most, for an idempotent request.
const MAX_RETRIES: u32 = 3;

/// How long after it began a call asks for its token again before it is sent: tokens
/// are refreshed a minute or more before they expire, so a call that waited less still
/// holds a live one; one that waited longer (its company's turn, a `Retry-After`)
/// might not.
const TOKEN_LOOKED_AT_AGAIN: Duration = Duration::from_secs(1);

/// How long a call holding its company's slot waits for its token asked for again
/// before it goes with the one it holds, if that one is live: long enough for the
/// store, not for the identity service.
const TOKEN_AGAIN_PATIENCE: Duration = Duration::from_millis(100);

/// HCSS's header telling how many calls are left in the company's window.
const REMAINING_CALLS: HeaderName = HeaderName::from_static("remaining-calls");
/// The first pause before such a retry; each next one doubles.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// Calls HCSS's APIs: made from the layer (as [`HcssCompanyTokens`] is), cheap to
/// clone, on the configured `reqwest` client and [`api_url`](crate::HcssConfigBuilder::api_url).
/// It acts [as the signed-in user](Self::as_user), [for a company](Self::for_company)
/// (HCSS's `company` grant) or [as the app's own company](Self::as_own_company)
/// (`client_credentials`), and makes each call correct by default:
///
/// - **401**: the token is refreshed once (the user's session through its single
///   flight, so that 20 calls refused at once make one refresh; a company's token asked
///   for again once), and the call made again. A second 401 is
///   [`HcssApiError::Unauthorized`]: sign in again. The session is not ended.
/// - **429**: the call waits HCSS's `Retry-After` (seconds or an HTTP date) and goes
///   again, within [`api_max_wait`](crate::HcssConfigBuilder::api_max_wait); past it,
///   [`HcssApiError::Busy`] with `retry_after`.
/// - **5xx, connection errors, timeouts**: retried with backoff (up to 3 times, within
///   the same maximum wait) only for idempotent methods (GET, HEAD, OPTIONS, PUT,
///   DELETE), and for any method when the connection was never made: a request whose
///   body may have been processed is never sent twice.
/// - **403**: [`HcssApiError::Forbidden`], naming the token's scopes.
/// - **The company's budget** (HCSS allows 100 calls a minute and 20 at once per company,
///   across all its clients): every call takes a slot first, through the layer's store, so
///   all instances sharing a `RedisStore` stay within it together; calls beyond it wait
///   their turn (first come, first served in each process) up to the maximum wait. A slot
///   is a lease: a cancelled call gives it back at once, a dead instance's comes back
///   when it ends. `Remaining-Calls` and 429s show other integrations using the budget;
///   the next calls leave them their share.
///
/// ```no_run
/// use axum::{extract::State, http::StatusCode};
/// use hcss_auth::{HcssApi, HcssApiError, HcssSession};
///
/// // A handler: the client from the router's state (it is no extractor), the session from
/// // the layer; the error answers as a response (401, 403, or 503 with Retry-After), and
/// // a status the client leaves to the app (a 404, a 400) is passed on.
/// async fn business_units(
///     State(api): State<HcssApi>,
///     session: HcssSession,
/// ) -> Result<(StatusCode, String), HcssApiError> {
///     let response = api
///         .as_user(&session)
///         .get("/heavyjob/api/v1/businessUnits")
///         .send()
///         .await?;
///     Ok((response.status(), response.text()))
/// }
/// ```
#[derive(Clone)]
pub struct HcssApi {
    companies: HcssCompanyTokens,
}

impl std::fmt::Debug for HcssApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HcssApi")
            .field("api_url", &self.companies.shared().config.api.url)
            .finish_non_exhaustive()
    }
}

/// Whom a call acts for.
#[derive(Clone, Debug)]
enum Acting {
    User(HcssSession),
    /// A customer company or the app's own.
    Company(CompanySource),
}

/// The token a call goes with: a company's as held in process (its `Authorization`
/// header built once), or the user's.
enum Credential {
    Held(Arc<HeldToken>),
    User(HcssToken),
}

impl Credential {
    fn token(&self) -> &HcssToken {
        match self {
            Credential::Held(held) => &held.token,
            Credential::User(token) => token,
        }
    }

    /// `request` with the token's `Authorization` header.
    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Credential::Held(held) => match &held.bearer {
                Some(bearer) => request.header(http::header::AUTHORIZATION, bearer.clone()),
                None => request.bearer_auth(held.token.secret()),
            },
            Credential::User(token) => request.bearer_auth(token.secret()),
        }
    }
}

impl HcssApi {
    /// A client with the configuration, the token store and the company tokens of `auth`.
    pub fn new(auth: &HcssAuth) -> Self {
        Self {
            companies: HcssCompanyTokens::new(auth),
        }
    }

    /// A client that gets company tokens through `companies` (to keep its
    /// [`on_disconnected`](HcssCompanyTokens::on_disconnected) hook).
    pub fn with_company_tokens(companies: HcssCompanyTokens) -> Self {
        Self { companies }
    }

    /// Calls as the signed-in user of `session` (the request's [`HcssSession`]), counted
    /// against the user's `CompanyId` (whatever its case). The calls of users whose
    /// tokens carry no `CompanyId` share one budget between them.
    pub fn as_user(&self, session: &HcssSession) -> HcssCaller {
        self.caller(Acting::User(session.clone()))
    }

    /// Calls for the customer company `company_id`, with its token from HCSS's `company`
    /// grant. Its calls count against the company's budget whatever the case of the id
    /// (HCSS's company ids are GUIDs), with the calls of its users. An empty
    /// `company_id` is [`CompanyTokenError::NoCompanyId`](crate::CompanyTokenError),
    /// without asking HCSS.
    pub fn for_company(&self, company_id: &str) -> HcssCaller {
        self.caller(Acting::Company(CompanySource::Company(company_id.into())))
    }

    /// Calls as the app's own company, with its `client_credentials` token.
    pub fn as_own_company(&self) -> HcssCaller {
        self.caller(Acting::Company(CompanySource::Own))
    }

    fn caller(&self, acting: Acting) -> HcssCaller {
        HcssCaller {
            api: self.clone(),
            acting,
        }
    }
}

/// An [`HcssApi`] acting for someone: makes requests with their token.
#[derive(Clone, Debug)]
pub struct HcssCaller {
    api: HcssApi,
    acting: Acting,
}

impl HcssCaller {
    /// A request of `method` to `path` under the API URL (`/heavyjob/api/v1/jobs`).
    pub fn request(&self, method: Method, path: &str) -> HcssApiRequest {
        HcssApiRequest {
            caller: self.clone(),
            method,
            path: path.to_owned(),
            query: Vec::new(),
            headers: HeaderMap::new(),
            body: None,
            invalid: None,
        }
    }

    /// A `GET` of `path`.
    pub fn get(&self, path: &str) -> HcssApiRequest {
        self.request(Method::GET, path)
    }

    /// A `POST` to `path`.
    pub fn post(&self, path: &str) -> HcssApiRequest {
        self.request(Method::POST, path)
    }

    /// A `PUT` to `path`.
    pub fn put(&self, path: &str) -> HcssApiRequest {
        self.request(Method::PUT, path)
    }

    /// A `DELETE` of `path`.
    pub fn delete(&self, path: &str) -> HcssApiRequest {
        self.request(Method::DELETE, path)
    }

    /// A live token for whom this caller acts.
    async fn token(&self) -> Result<Credential, HcssApiError> {
        match &self.acting {
            Acting::User(session) => session
                .token()
                .await
                .map(Credential::User)
                .map_err(session_error),
            Acting::Company(source) => Ok(Credential::Held(
                self.api.companies.held_token(source).await?,
            )),
        }
    }

    /// A new token after HCSS refused `rejected` with 401.
    async fn renewed(&self, rejected: &HcssToken) -> Result<Credential, HcssApiError> {
        match &self.acting {
            Acting::User(session) => session
                .refresh(rejected)
                .await
                .map(Credential::User)
                .map_err(session_error),
            Acting::Company(source) => Ok(Credential::Held(
                self.api.companies.after_rejection(source, rejected).await?,
            )),
        }
    }

    /// The company whose budget the call counts against, its id in lower case: HCSS's
    /// company ids are GUIDs, which it reads in either case, so that `A1B2...` and
    /// `a1b2...` are one company and one budget.
    fn company(&self, token: &HcssToken) -> std::borrow::Cow<'_, str> {
        let id: std::borrow::Cow<'_, str> = match &self.acting {
            Acting::Company(CompanySource::Company(id)) => (**id).into(),
            Acting::User(_) => token
                .claims()
                .company_id()
                .unwrap_or_default()
                .to_owned()
                .into(),
            Acting::Company(CompanySource::Own) => token
                .claims()
                .company_id()
                .unwrap_or("\0own")
                .to_owned()
                .into(),
        };
        if id.bytes().any(|b| b.is_ascii_uppercase()) {
            return id.to_ascii_lowercase().into();
        }
        id
    }
}

fn session_error(err: SessionError) -> HcssApiError {
    match err {
        SessionError::Unavailable {
            reason,
            retry_after,
        } => HcssApiError::Unavailable {
            reason,
            retry_after,
        },
        _ => HcssApiError::NotSignedIn,
    }
}

/// A request to an HCSS API, built then [sent](Self::send).
#[derive(Debug)]
#[must_use = "a request does nothing until it is sent"]
pub struct HcssApiRequest {
    caller: HcssCaller,
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Option<Bytes>,
    invalid: Option<String>,
}

impl HcssApiRequest {
    /// Adds query parameters (`[("businessUnitId", id)]`).
    pub fn query<K: ToString, V: ToString>(mut self, pairs: &[(K, V)]) -> Self {
        self.query
            .extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// Sends `body` as JSON.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => {
                self.body = Some(bytes.into());
                self.headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            Err(err) => self.invalid = Some(format!("the JSON body: {err}")),
        }
        self
    }

    /// Adds a header (`Authorization` is the crate's).
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        if name != http::header::AUTHORIZATION {
            self.headers.append(name, value);
        }
        self
    }

    /// Whether a request that failed may be sent again: its method is idempotent and it
    /// has no body. A body HCSS may have processed is never sent twice (not even a
    /// `PUT`'s: not every endpoint makes it safe to replay).
    fn resendable(&self) -> bool {
        self.body.is_none()
            && matches!(
                self.method,
                Method::GET
                    | Method::HEAD
                    | Method::OPTIONS
                    | Method::PUT
                    | Method::DELETE
                    | Method::TRACE
            )
    }

    /// Sends the request: through the company's budget, with a refresh on 401, waits on
    /// 429 and retries of idempotent requests, as [`HcssApi`] says. A status it does not
    /// handle (2xx, 3xx, 404, 400...) is the response; a 5xx that stays is
    /// [`HcssApiError::Unavailable`].
    ///
    /// # Errors
    ///
    /// [`HcssApiError`]: what to do is on each variant.
    pub async fn send(self) -> Result<HcssApiResponse, HcssApiError> {
        if let Some(reason) = &self.invalid {
            return Err(HcssApiError::Invalid {
                reason: reason.clone(),
            });
        }
        let shared = self.caller.api.companies.shared();
        let config = &shared.config;
        let url = self.url()?;
        let began = Instant::now();
        let deadline = began + config.api.max_wait;
        let mut credential = self.caller.token().await?;
        let company = self.caller.company(credential.token());
        let mut tries = Tries::default();
        loop {
            let mut slot = crate::shared::budgets::acquire(shared, &company, deadline).await?;
            let mut now = Instant::now();
            // A call that waited (its turn, a `Retry-After`, a backoff) asks for its token
            // again: the one it held may have expired meanwhile, and a 401 would spend its
            // one refresh and a call of the company's window.
            if now - began >= TOKEN_LOOKED_AT_AGAIN {
                if let Some(again) = self.token_again(&credential).await {
                    credential = again?;
                    now = Instant::now();
                }
            }
            let mut request = credential.authorize(
                config
                    .identity
                    .http
                    .request(self.method.clone(), url.clone()),
            );
            if !self.headers.is_empty() {
                request = request.headers(self.headers.clone());
            }
            if let Some(body) = &self.body {
                request = request.body(body.clone());
            }
            slot.sent(now);
            crate::metrics::api_call();
            let outcome = match request.send().await {
                Ok(mut response) => {
                    let status = response.status();
                    let headers = std::mem::take(response.headers_mut());
                    read_capped(response, config.api.max_response_bytes)
                        .await
                        .map(|body| (status, headers, body))
                }
                Err(err) => Err(err),
            };
            slot.finished();
            let next = match outcome {
                Ok((status, headers, Some(body))) => {
                    // A 429 says when to call again, not that the window is spent: HCSS
                    // answers it for calls in flight too. Only its `Remaining-Calls`, when it
                    // has one, tells how much of the window others use.
                    slot.observe(
                        remaining_calls(&headers),
                        status == StatusCode::TOO_MANY_REQUESTS,
                    );
                    drop(slot);
                    if !handled(status) {
                        return Ok(HcssApiResponse::new(status, headers, body));
                    }
                    self.after_status(status, &headers, credential.token(), &mut tries, deadline)
                }
                Ok((_, _, None)) => {
                    drop(slot);
                    return Err(too_large(config.api.max_response_bytes));
                }
                Err(err) => {
                    drop(slot);
                    self.after_failure(err, &mut tries, deadline)
                }
            };
            match next {
                Next::Wait(wait) => tokio::time::sleep(wait).await,
                Next::Refresh => credential = self.caller.renewed(credential.token()).await?,
                Next::Fail(err) => return Err(err),
            }
        }
    }

    /// The caller's token, asked for again after a wait, with the company's slot held:
    /// the one in process or in the store (a session ended meanwhile is seen) within
    /// [`TOKEN_AGAIN_PATIENCE`]; one that needs the identity service longer (a refresh,
    /// a company's token fetched) is waited for only if `held` will not outlive the
    /// request or HCSS refused it (`None`: `held` goes), so that the slot is not held
    /// while the identity service answers (a refresh goes on in a task of its own).
    async fn token_again(&self, held: &Credential) -> Option<Result<Credential, HcssApiError>> {
        let config = &self.caller.api.companies.shared().config;
        let mut again = std::pin::pin!(self.caller.token());
        if let Ok(token) = tokio::time::timeout(TOKEN_AGAIN_PATIENCE, again.as_mut()).await {
            return Some(token);
        }
        let left = held.token().left_at(config.now());
        // A company's token HCSS refused meanwhile (another call's 401) is not sent.
        let refused = match &self.caller.acting {
            Acting::Company(source) => self.caller.api.companies.was_refused(source, held.token()),
            Acting::User(_) => false,
        };
        if left > config.identity.http_timeout && !refused {
            return None;
        }
        Some(again.await)
    }

    /// The request's URL: its path and query under the API URL.
    fn url(&self) -> Result<url::Url, HcssApiError> {
        let shared = self.caller.api.companies.shared();
        let api = &shared.config.api;
        target::kept_call_url(
            &shared.api_urls,
            &api.url,
            &api.base,
            &self.path,
            &self.query,
        )
        .ok_or_else(|| HcssApiError::Invalid {
            reason: format!(
                "{:?} is not a path under the API URL (HCSS_API_URL): give the path alone, \
                 starting with / (\"/heavyjob/api/v1/businessUnits\")",
                self.path
            ),
        })
    }

    /// What follows a status the client handles (401, 403, 429, 5xx): the rare paths,
    /// kept out of the call's own code.
    #[cold]
    #[inline(never)]
    fn after_status(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        token: &HcssToken,
        tries: &mut Tries,
        deadline: Instant,
    ) -> Next {
        let config = &self.caller.api.companies.shared().config;
        let retry_after = crate::protocol::parse_api_retry_after(
            headers.get(http::header::RETRY_AFTER),
            std::time::SystemTime::now(),
        );
        match status {
            StatusCode::UNAUTHORIZED if !tries.refreshed => {
                tracing::info!("HCSS API refused the access token (401); refreshing it once");
                tries.refreshed = true;
                crate::metrics::api_401_refresh();
                Next::Refresh
            }
            StatusCode::UNAUTHORIZED => {
                tracing::warn!(
                    "HCSS API refused the access token after a refresh (401): sign in again"
                );
                Next::Fail(HcssApiError::Unauthorized)
            }
            StatusCode::FORBIDDEN => {
                let scopes: Vec<String> = token.scopes().map(str::to_owned).collect();
                tracing::warn!(scopes = %scopes.join(" "), "HCSS API refused the call (403): the token lacks a scope the call needs");
                Next::Fail(HcssApiError::Forbidden { scopes })
            }
            StatusCode::TOO_MANY_REQUESTS => {
                crate::metrics::api_429();
                // At least a second: a `Retry-After` of 0 or in the past would have the
                // call hammer HCSS until the maximum wait.
                let wait = retry_after
                    .unwrap_or(Duration::from_secs(1))
                    .max(Duration::from_secs(1));
                if Instant::now() + wait > deadline {
                    tracing::warn!(
                        retry_after_s = wait.as_secs(),
                        "HCSS API answered 429 past the maximum wait"
                    );
                    return Next::Fail(HcssApiError::Busy { retry_after: wait });
                }
                tracing::info!(
                    retry_after_ms = wait.as_millis() as u64,
                    "HCSS API answered 429; waiting its Retry-After"
                );
                Next::Wait(wait)
            }
            _ => {
                // HCSS's `Retry-After`, but never less than the backoff: one of 0 or in
                // the past (a clock behind ours) would have the retries come at once.
                let wait = retry_after.unwrap_or_default().max(tries.backoff());
                if self.resendable()
                    && tries.retries < MAX_RETRIES
                    && Instant::now() + wait < deadline
                {
                    tries.retries += 1;
                    tracing::info!(%status, retry = tries.retries, "HCSS API answered a server error; retrying");
                    return Next::Wait(wait);
                }
                tracing::warn!(%status, "HCSS API answered a server error");
                Next::Fail(HcssApiError::Unavailable {
                    reason: format!("HCSS answered {status}"),
                    retry_after: retry_after
                        .unwrap_or(config.identity.retry_after)
                        .max(Duration::from_secs(1)),
                })
            }
        }
    }

    /// What follows a request that failed on the way (no answer read).
    #[cold]
    #[inline(never)]
    fn after_failure(&self, err: reqwest::Error, tries: &mut Tries, deadline: Instant) -> Next {
        let config = &self.caller.api.companies.shared().config;
        // Never connected: nothing was sent, any request may go again.
        let again = self.resendable() || err.is_connect();
        // Where it called (the configured API URL, no path nor query) and why, in the
        // words of the innermost cause: a wrong or missing HCSS_API_URL shows.
        let reason = format!(
            "calling {} (HCSS_API_URL): {}",
            config.api.url,
            crate::http_rules::cause(err)
        );
        let wait = tries.backoff();
        if again && tries.retries < MAX_RETRIES && Instant::now() + wait < deadline {
            tries.retries += 1;
            tracing::info!(reason = %reason, retry = tries.retries, "HCSS API call failed; retrying");
            return Next::Wait(wait);
        }
        tracing::warn!(reason = %reason, "HCSS API call failed");
        Next::Fail(HcssApiError::Unavailable {
            reason,
            retry_after: config.identity.retry_after,
        })
    }

    /// Every item of a list endpoint that pages with a cursor, as HCSS's do: each page is
    /// a call of its own through the budget. See [`Pages`].
    pub fn pages(self) -> Pages {
        Pages::new(self)
    }

    fn clone_with_query(&self, extra: &[(String, String)]) -> Self {
        let mut query = self.query.clone();
        query.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
        query.extend_from_slice(extra);
        Self {
            caller: self.caller.clone(),
            method: self.method.clone(),
            path: self.path.clone(),
            query,
            headers: self.headers.clone(),
            body: self.body.clone(),
            invalid: self.invalid.clone(),
        }
    }
}

/// What a call does after an answer it does not hand back as it is.
enum Next {
    /// Waits, then goes again.
    Wait(Duration),
    /// Goes again with a refreshed token.
    Refresh,
    Fail(HcssApiError),
}

/// What one call has spent of its second chances.
#[derive(Default)]
struct Tries {
    /// The token was refreshed after a 401.
    refreshed: bool,
    /// 5xx and connection failures retried.
    retries: u32,
}

impl Tries {
    /// The pause before the next retry of a failure: each one doubles.
    fn backoff(&self) -> Duration {
        FIRST_BACKOFF * 2u32.pow(self.retries)
    }
}

/// Whether the client acts on `status` rather than handing the answer back.
fn handled(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS
    ) || status.is_server_error()
}

/// HCSS's `Remaining-Calls`: the calls left in the company's window.
fn remaining_calls(headers: &HeaderMap) -> Option<u32> {
    headers
        .get(REMAINING_CALLS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
}

#[cold]
fn too_large(cap: usize) -> HcssApiError {
    tracing::warn!(
        cap,
        "an HCSS API response was larger than api_max_response_bytes"
    );
    HcssApiError::Invalid {
        reason: format!("the response is larger than {cap} bytes (api_max_response_bytes)"),
    }
}

/// The body of `response`, read chunk by chunk up to `cap` bytes; `None` past it (the
/// rest is not read).
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Option<Bytes>, reqwest::Error> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Ok(None);
    }
    // A body in one chunk (most answers) is kept as it came, not copied.
    let mut first = Bytes::new();
    let mut rest = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if first.len() + rest.len() + chunk.len() > cap {
            return Ok(None);
        }
        if first.is_empty() && rest.is_empty() {
            first = chunk;
        } else {
            if rest.is_empty() {
                rest.extend_from_slice(&std::mem::take(&mut first));
            }
            rest.extend_from_slice(&chunk);
        }
    }
    Ok(Some(if rest.is_empty() {
        first
    } else {
        rest.freeze()
    }))
}
