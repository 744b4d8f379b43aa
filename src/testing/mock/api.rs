//! The mock's HeavyJob-like API, with HCSS's per-company limits: calls in flight and
//! calls per rolling window, answered past them with 429, `Retry-After` and
//! `Remaining-Calls`, as HCSS does.

use std::collections::VecDeque;

use axum::extract::Path;
use axum::http::HeaderValue;

use super::*;

/// The limits the mock's API applies to each company, counted over every token of the
/// company: HCSS's are 100 calls a minute and 20 at once; tests use smaller ones (and a
/// shorter window, with the client's [`api_rate_window`](crate::HcssConfigBuilder::api_rate_window)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MockApiLimits {
    /// Calls a company may start per `window`.
    pub per_window: u32,
    /// The rolling window.
    pub window: Duration,
    /// Calls a company may have in flight at once.
    pub in_flight: u32,
}

impl MockApiLimits {
    /// `per_window` calls per rolling `window`, `in_flight` at once.
    pub fn new(per_window: u32, window: Duration, in_flight: u32) -> Self {
        Self {
            per_window,
            window,
            in_flight,
        }
    }

    /// HCSS's published limits: 100 calls a minute, 20 at once.
    pub fn hcss() -> Self {
        Self::new(100, Duration::from_secs(60), 20)
    }
}

/// What the mock's API saw of one company's calls ([`MockHcssIdentity::api_usage`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MockApiUsage {
    /// Calls with a live token of the company, answered in any way.
    pub calls: usize,
    /// Calls answered with 429 (past a limit).
    pub throttled: usize,
    /// The most calls of the company in flight at one moment.
    pub max_in_flight: usize,
    /// The most calls of the company (other integrations' included) in one window.
    pub max_in_window: usize,
}

#[derive(Default)]
pub(super) struct ApiState {
    pub(super) limits: Option<MockApiLimits>,
    pub(super) delay: Duration,
    /// The next calls answered with this status, and how many are left.
    pub(super) failing: Option<(u16, usize)>,
    pub(super) companies: HashMap<String, CompanyUse>,
}

#[derive(Default)]
pub(super) struct CompanyUse {
    usage: MockApiUsage,
    in_flight: usize,
    arrivals: VecDeque<Instant>,
    /// Calls another integration makes per window.
    others: u32,
}

/// A company's place in flight, given back when the answer is made.
struct InFlight {
    state: Arc<MockState>,
    company: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(company) = lock(&self.state.api).companies.get_mut(&self.company) {
            company.in_flight = company.in_flight.saturating_sub(1);
        }
    }
}

impl MockHcssIdentity {
    /// Applies `limits` to each company's API calls from now on (`None`, the default:
    /// no limits).
    pub fn set_api_limits(&self, limits: Option<MockApiLimits>) {
        lock(&self.state.api).limits = limits;
    }

    /// Makes every API call take this long to answer (default none), so that calls
    /// overlap as they do at HCSS.
    pub fn set_api_delay(&self, delay: Duration) {
        lock(&self.state.api).delay = delay;
    }

    /// Answers the next `count` API calls with `status` (a 500, a 503...), after they were
    /// received: a call with a body may have been processed.
    pub fn fail_api_calls(&self, status: u16, count: usize) {
        lock(&self.state.api).failing = Some((status, count));
    }

    /// Another integration of `company` (another vendor's app) uses `calls` of its budget
    /// in every window, as HCSS counts every client of a company together.
    pub fn set_other_integration(&self, company: &str, calls: u32) {
        lock(&self.state.api)
            .companies
            .entry(company.to_owned())
            .or_default()
            .others = calls;
    }

    /// What the API saw of `company`'s calls.
    pub fn api_usage(&self, company: &str) -> MockApiUsage {
        lock(&self.state.api)
            .companies
            .get(company)
            .map(|c| c.usage)
            .unwrap_or_default()
    }
}

/// The bearer token of a request.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
    )
        .into_response()
}

/// Admits a call as HCSS does: a live token (else 401), the scope `needs` (else 403),
/// within the company's limits (else 429). On success, the company's place in flight and
/// the `Remaining-Calls` to answer with.
async fn admit(
    state: &Arc<MockState>,
    headers: &HeaderMap,
    needs: &str,
) -> Result<(InFlight, Option<u32>), Response> {
    let (place, remaining, delay) = admit_now(state, headers, needs)?;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    Ok((place, remaining))
}

/// [`admit`] but the delay, which it returns.
#[allow(clippy::result_large_err)] // a refusal is the answer itself, made once per call
fn admit_now(
    state: &Arc<MockState>,
    headers: &HeaderMap,
    needs: &str,
) -> Result<(InFlight, Option<u32>, Duration), Response> {
    bump(state, |c| &c.api_calls);
    let (company, scope) = {
        let grants = lock(&state.grants);
        let access = bearer(headers)
            .and_then(|t| grants.access.get(t))
            .filter(|at| at.expires > Instant::now() && !grants.revoked.contains(&at.grant));
        match access {
            Some(at) => (at.company.clone().unwrap_or_default(), at.scope.clone()),
            None => return Err(unauthorized()),
        }
    };
    let mut api = lock(&state.api);
    let limits = api.limits;
    let failing = api.failing.take();
    let use_ = api.companies.entry(company.clone()).or_default();
    use_.usage.calls += 1;
    if let Some((status, left)) = failing {
        if left > 1 {
            api.failing = Some((status, left - 1));
        }
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Err((status, "mock failure").into_response());
    }
    if !scope.split(' ').any(|s| s == needs) {
        return Err((StatusCode::FORBIDDEN, "insufficient scope").into_response());
    }
    let mut remaining = None;
    if let Some(limits) = limits {
        let now = Instant::now();
        while use_
            .arrivals
            .front()
            .is_some_and(|at| *at + limits.window <= now)
        {
            use_.arrivals.pop_front();
        }
        let in_window = use_.arrivals.len() + use_.others as usize;
        let per_window = limits.per_window as usize;
        let full_window = in_window >= per_window;
        if full_window || use_.in_flight >= limits.in_flight as usize {
            use_.usage.throttled += 1;
            let wait = if full_window {
                use_.arrivals
                    .front()
                    .map_or(limits.window, |at| (*at + limits.window) - now)
            } else {
                Duration::from_secs(1)
            };
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            drop(api);
            let mut response =
                (StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded").into_response();
            let h = response.headers_mut();
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            // What is left of the window (0 when it is spent; more when only the calls in
            // flight are at their limit).
            let left = per_window.saturating_sub(in_window);
            h.insert(
                "Remaining-Calls",
                HeaderValue::from(u32::try_from(left).unwrap_or(u32::MAX)),
            );
            return Err(response);
        }
        use_.arrivals.push_back(now);
        remaining = Some(u32::try_from(per_window - in_window - 1).unwrap_or(0));
        use_.usage.max_in_window = use_.usage.max_in_window.max(in_window + 1);
    }
    use_.in_flight += 1;
    use_.usage.max_in_flight = use_.usage.max_in_flight.max(use_.in_flight);
    let delay = api.delay;
    drop(api);
    let place = InFlight {
        state: state.clone(),
        company,
    };
    Ok((place, remaining, delay))
}

/// The answer, with `Remaining-Calls` when the company is limited.
fn answer(status: StatusCode, body: serde_json::Value, remaining: Option<u32>) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Some(remaining) = remaining {
        response
            .headers_mut()
            .insert("Remaining-Calls", HeaderValue::from(remaining));
    }
    response
}

pub(super) async fn business_units(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
) -> Response {
    let (_place, remaining) = match admit(&state, &headers, "heavyjob:read").await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    answer(
        StatusCode::OK,
        json!([
            { "id": "8f1c4c36-2f1e-4a57-9a55-6f0e2b1d0001", "code": "MAIN", "description": "Main Business Unit" },
            { "id": "8f1c4c36-2f1e-4a57-9a55-6f0e2b1d0002", "code": "WEST", "description": "West Region" }
        ]),
        remaining,
    )
}

/// `POST /heavyjob/api/v1/businessUnits`: needs `heavyjob:write`; answers 201 with the
/// body it was given.
pub(super) async fn create_business_unit(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Response {
    let (_place, remaining) = match admit(&state, &headers, "heavyjob:write").await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    answer(StatusCode::CREATED, body, remaining)
}

/// `GET /heavyjob/api/v1/jobs?limit=&cursor=`: the company's jobs, a page at a time, as
/// HCSS's list endpoints page: `{"results": [...], "metadata": {"nextCursor": ...}}`,
/// no `nextCursor` on the last page.
pub(super) async fn jobs(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    Query(p): Query<Params>,
) -> Response {
    let (_place, remaining) = match admit(&state, &headers, "heavyjob:read").await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    let total = state.options.api_jobs;
    let limit = p
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(100)
        .clamp(1, 1000);
    let start = match p
        .get("cursor")
        .map(|c| c.strip_prefix("after-").map(str::parse))
    {
        None => 0,
        Some(Some(Ok(after))) => after,
        Some(_) => return (StatusCode::BAD_REQUEST, "bad cursor").into_response(),
    };
    let end = (start + limit).min(total);
    let results: Vec<_> = (start..end)
        .map(|i| json!({ "id": format!("job-{i:04}"), "code": format!("J{i:04}"), "description": format!("Job {i}") }))
        .collect();
    let mut metadata = json!({});
    if end < total {
        metadata["nextCursor"] = json!(format!("after-{end}"));
    }
    answer(
        StatusCode::OK,
        json!({ "results": results, "metadata": metadata }),
        remaining,
    )
}

/// `GET /heavyjob/api/v1/jobs/{id}`, for paths with parameters.
pub(super) async fn job(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (_place, remaining) = match admit(&state, &headers, "heavyjob:read").await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    answer(StatusCode::OK, json!({ "id": id }), remaining)
}
