//! Attacks on `HcssApi` (the HCSS API client): what a hostile or failing HCSS API, a
//! cancelled call or a second integration of the company can make it do. Each finding's
//! test failed on the code before its fix (its doc comment says what it saw); the others
//! are attacks the client withstood from the start.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hcss_auth::testing::{MockApiLimits, MockHcssIdentity};
use hcss_auth::{HcssApi, HcssApiError, HcssAuth, HcssConfigBuilder};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::common::redis_help::{prefix, redis_url, server_addr, through, Cleanup};

const COMPANY: &str = "adversary-co-20";
const UNITS: &str = "/heavyjob/api/v1/businessUnits";

fn config(
    mock: &MockHcssIdentity,
    api_url: &str,
    f: impl FnOnce(HcssConfigBuilder) -> HcssConfigBuilder,
) -> hcss_auth::HcssConfig {
    f(mock
        .config_builder("http://127.0.0.1:9/hcss/callback")
        .scopes(["heavyjob:read", "heavyjob:write", "offline_access"])
        .api_url(api_url))
    .build()
    .unwrap()
}

/// Reads a request's head (up to its blank line) from `stream`; false when the
/// connection ends first.
async fn read_head(stream: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// An HTTP server standing in for HCSS's API: every request, whatever its path, is
/// counted and answered by `answer` (given the request's method, headers and the count,
/// from 1). Returns its base URL and the count.
async fn hostile_api<F>(answer: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(Method, HeaderMap, usize) -> Response + Clone + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    let app = Router::new().fallback(move |method: Method, headers: HeaderMap| {
        let (answer, counted) = (answer.clone(), counted.clone());
        async move {
            let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
            answer(method, headers, n)
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, count)
}

/// Finding 1 (medium): a list endpoint whose `nextCursor` repeats is followed page after
/// page until the company's whole budget of the window is spent. `Pages::all` asks for
/// the same cursor again and again; it stops only when the budget runs out (100 calls,
/// then `Busy`), so one bad page burns every call the company's users and its other
/// integrations had for the minute, and keeps every page's items in memory. Seen on
/// today's code: `the repeated cursor was followed: 100 calls, ended with
/// Err(Busy { retry_after: 59.525295133s })` (the window's first call leaving it).
#[tokio::test]
async fn a_cursor_that_repeats_is_not_followed_again() {
    let mock = MockHcssIdentity::start().await;
    let (url, calls) = hostile_api(|_, _, _| {
        axum::Json(serde_json::json!({
            "results": [{ "id": "job-1" }],
            "metadata": { "nextCursor": "again" }
        }))
        .into_response()
    })
    .await;
    let auth = HcssAuth::new(config(&mock, &url, |b| b));
    let all = HcssApi::new(&auth)
        .for_company(COMPANY)
        .get("/heavyjob/api/v1/jobs")
        .pages()
        .all::<serde_json::Value>()
        .await;
    let made = calls.load(Ordering::SeqCst);
    assert!(
        made <= 2 && all.is_err(),
        "the repeated cursor was followed: {made} calls, ended with {:?}",
        all.map(|items| items.len())
    );
}

/// Finding 2 (medium): an API response's body is read whole into memory, with no cap,
/// while the identity service's answers are capped at `max_response_bytes`. A broken
/// proxy or endpoint streaming without end makes each call buffer all of it (until the
/// HTTP timeout), and `Pages::all` does so for every page: one call can take the
/// process's memory. Seen on the code before its fix: `a 100 MiB body was read whole:
/// Ok("104857600 bytes")`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_body_is_not_read_whole() {
    const CHUNK: usize = 64 * 1024;
    const TOTAL: usize = 100 * 1024 * 1024;
    let mock = MockHcssIdentity::start().await;
    // A raw HTTP/1.1 server: a chunked body of TOTAL bytes, made as it is sent.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if !read_head(&mut stream).await {
                    return;
                }
                let start = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if stream.write_all(start.as_bytes()).await.is_err() {
                    return;
                }
                let mut chunk = format!("{CHUNK:x}\r\n").into_bytes();
                chunk.extend_from_slice(&[b' '; CHUNK]);
                chunk.extend_from_slice(b"\r\n");
                for _ in 0..TOTAL / CHUNK {
                    if stream.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                let _ = stream.write_all(b"0\r\n\r\n").await;
            });
        }
    });
    let auth = HcssAuth::new(config(&mock, &url, |b| b));
    let answer = HcssApi::new(&auth)
        .for_company(COMPANY)
        .get(UNITS)
        .send()
        .await;
    assert!(
        answer.is_err(),
        "a 100 MiB body was read whole: {:?}",
        answer.map(|r| format!("{} bytes", r.bytes().len()))
    );
}

/// Finding 3 (medium): one 429 HCSS answers because the company's calls *in flight* are
/// at its limit (another integration's call, `Retry-After: 1`) makes the client believe
/// the company's whole *window* is spent: the pressure read from the 429 leaves this
/// process as many calls per window as it had made (here one, the refused call itself),
/// so the retry after HCSS's second finds the window "full" for a minute, past the
/// maximum wait, and fails at once with `Busy` of a minute, though HCSS said one second
/// and would have served it two seconds later. Every call of the company in this
/// process then fails the same way for the rest of the window. Seen on the code before its fix:
/// `HCSS said to retry in 1 s; the call failed: Err(Busy { retry_after: 58.996555744s })`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_for_calls_in_flight_is_retried_after_its_retry_after() {
    let mock = MockHcssIdentity::start().await;
    // HCSS: one call of the company in flight at once; the window is nowhere near spent.
    mock.set_api_limits(Some(MockApiLimits::new(100, Duration::from_secs(60), 1)));
    let api_url = mock.api_url();
    let ours = HcssApi::new(&HcssAuth::new(config(&mock, &api_url, |b| {
        b.api_max_wait(Duration::from_secs(10))
    })));
    // Another integration of the company: an app with a budget of its own.
    let theirs = HcssApi::new(&HcssAuth::new(config(&mock, &api_url, |b| b)));
    // Tokens first, so that the calls below are the only ones.
    ours.for_company(COMPANY).get(UNITS).send().await.unwrap();
    theirs.for_company(COMPANY).get(UNITS).send().await.unwrap();
    mock.set_api_delay(Duration::from_secs(2));
    let before = mock.counts().api_calls;
    let other = tokio::spawn(async move { theirs.for_company(COMPANY).get(UNITS).send().await });
    mock.wait_for(|c| c.api_calls > before).await;
    let answer = ours.for_company(COMPANY).get(UNITS).send().await;
    assert_eq!(other.await.unwrap().unwrap().status(), 200);
    assert!(
        matches!(&answer, Ok(r) if r.status() == 200),
        "HCSS said to retry in 1 s; the call failed: {answer:?}"
    );
}

/// Finding 4 (low/medium, against the issue's words): a `PUT` with a body that HCSS
/// answered with a 5xx is sent again. The issue asks that "no request with a body is
/// sent twice after a 5xx" and that "a request whose body may have been processed is
/// never sent twice"; the client counts PUT (and DELETE) as idempotent and resends
/// them, body included, up to three times. HCSS's PUT endpoints are not all safe to
/// replay. Seen on the code before its fix: `the PUT with a body was sent 2 times`.
#[tokio::test]
async fn a_put_with_a_body_is_not_sent_twice_after_a_5xx() {
    let mock = MockHcssIdentity::start().await;
    let (url, calls) = hostile_api(|_, _, n| {
        if n == 1 {
            (StatusCode::INTERNAL_SERVER_ERROR, "processed, then failed").into_response()
        } else {
            StatusCode::NO_CONTENT.into_response()
        }
    })
    .await;
    let auth = HcssAuth::new(config(&mock, &url, |b| b));
    let put = HcssApi::new(&auth)
        .for_company(COMPANY)
        .put("/heavyjob/api/v1/jobs/job-1")
        .json(&serde_json::json!({ "description": "moved" }))
        .send()
        .await;
    let sent = calls.load(Ordering::SeqCst);
    assert_eq!(
        sent, 1,
        "the PUT with a body was sent {sent} times (answer: {put:?})"
    );
}

/// A TCP relay in front of Redis that can hold Redis's replies from the next script on
/// (the commands still reach Redis and run): a slow link, or a reply still on its way
/// when the caller gives up.
struct HoldingRelay {
    addr: String,
    open: watch::Sender<bool>,
    armed: Arc<std::sync::atomic::AtomicBool>,
}

impl HoldingRelay {
    async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (open, _) = watch::channel(true);
        let gate = open.clone();
        let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let armed_ = armed.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(&upstream).await else {
                    continue;
                };
                let (mut from_client, mut to_client) = inbound.into_split();
                let (mut from_redis, mut to_redis) = outbound.into_split();
                let (closer, armed) = (gate.clone(), armed_.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match from_client.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let script = buf[..n].windows(6).any(|w| w == b"\r\nEVAL");
                        if script && armed.swap(false, Ordering::SeqCst) {
                            closer.send_replace(false);
                        }
                        if to_redis.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                let mut gate = gate.subscribe();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match from_redis.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if gate.wait_for(|open| *open).await.is_err() {
                            return;
                        }
                        if to_client.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { addr, open, armed }
    }

    /// Holds every reply from that of the next script (`EVAL`) on.
    fn hold_from_next_script(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    fn release(&self) {
        self.open.send_replace(true);
    }
}

/// The calls in flight the budget keys under `prefix` hold (every company's).
async fn leases_in_flight(redis: &str, prefix: &str) -> usize {
    let client = redis::Client::open(redis).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}budget:*:fly"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut total = 0;
    for key in keys {
        let n: usize = redis::cmd("ZCARD")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        total += n;
    }
    total
}

/// Finding 5 (medium): a call cancelled while its acquire script is on its way to or
/// from Redis leaks its slot for the whole lease (twice the HTTP timeout plus a second:
/// 21 s by default). The script ran and leased a slot under a call id only the dropped
/// future knew; no `Slot` exists to give it back. The same happens when the script's
/// reply times out (the store's 2 s) or the connection drops after it ran: the call
/// fails with `Unavailable` and the slot stays taken. With the company's 20 slots, a
/// burst of client disconnects while Redis is slow starves every instance of the
/// company for 21 s. Here (one slot, 5 s HTTP timeout: an 11 s lease) the next call,
/// on another instance, waits its 2 s and fails. Seen on the code before its fix: `the cancelled
/// acquire kept its slot: Err(Busy { retry_after: 1s })`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_acquire_on_redis_gives_its_slot_back() {
    let Some(redis) = redis_url("a_cancelled_acquire_on_redis_gives_its_slot_back") else {
        return;
    };
    let prefix = prefix();
    let _cleanup = Cleanup::new(&redis, &prefix);
    let relay = HoldingRelay::start(server_addr(&redis)).await;
    let mock = MockHcssIdentity::start().await;
    let api_url = mock.api_url();
    let layer = |redis_url: String, max_wait: Duration| {
        let config = config(&mock, &api_url, |b| {
            b.api_concurrency(1)
                .http_timeout(Duration::from_secs(5))
                .api_max_wait(max_wait)
        });
        let prefix = prefix.clone();
        async move {
            let store = hcss_auth::store::RedisStore::connect(&redis_url)
                .await
                .unwrap()
                .with_prefix(prefix);
            HcssApi::new(&HcssAuth::with_store(config, store))
        }
    };
    let slow = layer(through(&redis, &relay.addr), Duration::from_secs(30)).await;
    let other = layer(redis.clone(), Duration::from_secs(2)).await;
    // Tokens first (and both instances' first calls), so that below only the budget
    // goes to Redis.
    slow.for_company(COMPANY).get(UNITS).send().await.unwrap();
    other.for_company(COMPANY).get(UNITS).send().await.unwrap();
    // Their slots given back (a task of its own does it).
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while leases_in_flight(&redis, &prefix).await != 0 {
        assert!(
            tokio::time::Instant::now() < until,
            "a slot never given back"
        );
        tokio::task::yield_now().await;
    }

    relay.hold_from_next_script();
    let call = tokio::spawn(async move { slow.for_company(COMPANY).get(UNITS).send().await });
    // The acquire script ran on Redis; its reply is held.
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while leases_in_flight(&redis, &prefix).await == 0 {
        assert!(
            tokio::time::Instant::now() < until,
            "the acquire never reached Redis"
        );
        tokio::task::yield_now().await;
    }
    // The request it served goes away (its client disconnected).
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    relay.release();

    let answer = other.for_company(COMPANY).get(UNITS).send().await;
    assert!(
        matches!(&answer, Ok(r) if r.status() == 200),
        "the cancelled acquire kept its slot: {answer:?}"
    );
}

/// Holds: hostile `Retry-After` values on a 429 (beyond u64, `u64::MAX` seconds, a
/// negative number, garbage, HTTP dates in the past and far future) neither panic nor
/// make a call wait past the maximum wait; a wait past it is `Busy` of at most 5 min.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_retry_after_values_are_bounded() {
    let mock = MockHcssIdentity::start().await;
    for value in [
        "99999999999999999999999",
        "18446744073709551615",
        "-5",
        "soon",
        "Wed, 21 Oct 2015 07:28:00 GMT",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "",
    ] {
        let (url, calls) = hostile_api(move |_, _, _| {
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", value), ("remaining-calls", "-1")],
                "slow down",
            )
                .into_response()
        })
        .await;
        let auth = HcssAuth::new(config(&mock, &url, |b| {
            b.api_max_wait(Duration::from_secs(2))
        }));
        let started = tokio::time::Instant::now();
        let answer = HcssApi::new(&auth)
            .for_company(COMPANY)
            .get(UNITS)
            .send()
            .await;
        let took = started.elapsed();
        match answer {
            Err(HcssApiError::Busy { retry_after }) => assert!(
                retry_after <= Duration::from_secs(300),
                "{value:?}: {retry_after:?}"
            ),
            other => panic!("{value:?}: expected Busy, got {other:?}"),
        }
        assert!(took < Duration::from_secs(4), "{value:?}: waited {took:?}");
        assert!(calls.load(Ordering::SeqCst) <= 3, "{value:?}: hammered");
    }
}

/// An HTTP server standing in for HCSS's API that answers 200 and records the path and
/// query of every request it gets. Returns its base URL and what it saw.
async fn recording_api() -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = seen.clone();
    let app = Router::new().fallback(move |uri: axum::http::Uri| {
        let recorded = recorded.clone();
        async move {
            let target = uri.path_and_query().map_or("", |p| p.as_str()).to_owned();
            recorded.lock().unwrap().push(target);
            axum::Json(serde_json::json!({})).into_response()
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// Finding 6 (low): an `api_url` whose path ends in an empty segment the parse keeps
/// (`/api//.`), or in a backslash or a space (`/api\`, `/api/ `), sent calls to another
/// path than the whole parse of the base and the call's path written one after the other
/// (as calls were made before the base was parsed once): the prefix taken from the parsed
/// base lost its trailing empty segments, and the text's trailing backslash or space. The
/// host never changed. Seen on the code before its fix: `http://127.0.0.1:…/api//. +
/// "/x?a=1": left: "/api/x?a=1", right: "/api//x?a=1"`.
#[tokio::test]
async fn a_calls_url_under_an_unusual_base_path_is_the_whole_parses() {
    let mock = MockHcssIdentity::start().await;
    let (url, seen) = recording_api().await;
    for suffix in [
        "/api//.", "//.", "/api\\", "\\", "/api/ ", "/a/b//..", "/api/%2e",
    ] {
        let api_url = format!("{url}{suffix}");
        let auth = HcssAuth::new(config(&mock, &api_url, |b| b));
        for path in ["/x?a=1", "/../y", "//z", "/"] {
            let answer = HcssApi::new(&auth)
                .for_company(COMPANY)
                .get(path)
                .send()
                .await;
            assert!(answer.is_ok(), "{api_url} + {path:?}: {answer:?}");
            let expected = url::Url::parse(&format!("{api_url}{path}")).unwrap();
            let expected = match expected.query() {
                Some(query) => format!("{}?{query}", expected.path()),
                None => expected.path().to_owned(),
            };
            let got = seen.lock().unwrap().pop().unwrap();
            assert_eq!(got, expected, "{api_url} + {path:?}");
        }
    }
}

/// Twenty calls for one company whose held token HCSS revoked early: each gets a 401
/// with it, then goes again with the one new token (its own `Authorization` header, not
/// the rejected one's) and succeeds; HCSS's `company` grant is asked once more.
async fn twenty_401s_for_a_company_make_one_fetch(auth: HcssAuth, mock: &MockHcssIdentity) {
    let api = HcssApi::new(&auth);
    let company = api.for_company(COMPANY);
    assert_eq!(company.get(UNITS).send().await.unwrap().status(), 200);
    assert_eq!(mock.counts().company_grants, 1);
    mock.revoke_access_tokens();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let company = company.clone();
            tokio::spawn(async move { company.get(UNITS).send().await })
        })
        .collect();
    for call in calls {
        let answer = call.await.unwrap();
        assert!(
            matches!(&answer, Ok(r) if r.status() == 200),
            "a call after the 401s: {answer:?}"
        );
    }
    assert_eq!(mock.counts().company_grants, 2, "one fetch after the 401s");
    // And the next call goes with the new token as held.
    assert_eq!(company.get(UNITS).send().await.unwrap().status(), 200);
    assert_eq!(mock.counts().company_grants, 2);
}

/// Holds: concurrent 401s for one company's held token make one fetch, and no call goes
/// again with the rejected token's header (in process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_401s_for_a_company_make_one_fetch() {
    let mock = MockHcssIdentity::start().await;
    let api_url = mock.api_url();
    let auth = HcssAuth::new(config(&mock, &api_url, |b| b));
    twenty_401s_for_a_company_make_one_fetch(auth, &mock).await;
}

/// Holds: the same with the company's token in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_401s_for_a_company_make_one_fetch_on_redis() {
    let Some(redis) = redis_url("concurrent_401s_for_a_company_make_one_fetch_on_redis") else {
        return;
    };
    let prefix = prefix();
    let _cleanup = Cleanup::new(&redis, &prefix);
    let mock = MockHcssIdentity::start().await;
    let api_url = mock.api_url();
    let store = hcss_auth::store::RedisStore::connect(&redis)
        .await
        .unwrap()
        .with_prefix(prefix.clone());
    let auth = HcssAuth::with_store(config(&mock, &api_url, |b| b), store);
    twenty_401s_for_a_company_make_one_fetch(auth, &mock).await;
}

/// Holds: the company's turn is first come, first served, a free turn taken at once
/// (`try_lock`) passing no waiter, and a call cancelled while it waits for the turn
/// leaves neither the turn nor a slot behind. One call in flight at a time: call 0 is at
/// HCSS, calls 1 to 5 queue one after the other (call 3 is cancelled in the queue); as
/// HCSS answers one call at a time, the others reach it in the order they queued.
#[tokio::test(flavor = "current_thread")]
async fn the_companys_turn_is_first_come_first_served_and_a_cancelled_waiter_leaks_nothing() {
    let mock = MockHcssIdentity::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let arrived = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (arrivals, _) = watch::channel(0usize);
    let arrivals = Arc::new(arrivals);
    let answers = Arc::new(tokio::sync::Semaphore::new(0));
    let app = Router::new().fallback({
        let (arrived, arrivals, answers) = (arrived.clone(), arrivals.clone(), answers.clone());
        move |headers: HeaderMap| {
            let (arrived, arrivals, answers) = (arrived.clone(), arrivals.clone(), answers.clone());
            async move {
                let n = headers
                    .get("x-call")
                    .map_or("?", |v| v.to_str().unwrap())
                    .to_owned();
                arrived.lock().unwrap().push(n);
                arrivals.send_modify(|count| *count += 1);
                answers.acquire().await.unwrap().forget();
                axum::Json(serde_json::json!({})).into_response()
            }
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let auth = HcssAuth::new(config(&mock, &url, |b| {
        b.api_concurrency(1).api_max_wait(Duration::from_secs(30))
    }));
    let company = HcssApi::new(&auth).for_company(COMPANY);
    let call = |n: usize| {
        let request = company.get(UNITS).header(
            axum::http::HeaderName::from_static("x-call"),
            axum::http::HeaderValue::from_str(&n.to_string()).unwrap(),
        );
        tokio::spawn(async move { request.send().await })
    };
    // The company's token first, so that the calls below wait on nothing but the budget.
    answers.add_permits(1);
    call(99).await.unwrap().unwrap();
    let mut seen = arrivals.subscribe();
    let mut calls = vec![call(0)];
    seen.wait_for(|count| *count == 2).await.unwrap();
    for n in 1..=5 {
        calls.push(call(n));
        // On this one thread, the call runs until it waits for its turn (or a slot).
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }
    let cancelled = calls.remove(3);
    cancelled.abort();
    assert!(cancelled.await.unwrap_err().is_cancelled());
    for (i, call) in calls.into_iter().enumerate() {
        answers.add_permits(1);
        let answer = call.await.unwrap();
        assert!(
            matches!(&answer, Ok(r) if r.status() == 200),
            "call {i}: {answer:?}"
        );
    }
    assert_eq!(
        *arrived.lock().unwrap(),
        ["99", "0", "1", "2", "4", "5"],
        "the order the calls reached HCSS"
    );
}

/// Holds: a company call HCSS refuses with 401 twice is made twice, the second time
/// with the token fetched after the refusal (its own `Authorization` header, not the
/// refused token's), then fails `Unauthorized`. The token refused after the refresh is
/// kept (as before the token was held with its header): the next call goes with it
/// first, then with one fetched again.
#[tokio::test]
async fn a_401_sends_the_next_token_with_its_own_header_once() {
    let mock = MockHcssIdentity::start().await;
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let recorded = seen.clone();
    let (url, calls) = hostile_api(move |_, headers, _| {
        let bearer = headers["authorization"].to_str().unwrap().to_owned();
        recorded.lock().unwrap().push(bearer);
        StatusCode::UNAUTHORIZED.into_response()
    })
    .await;
    let auth = HcssAuth::new(config(&mock, &url, |b| b));
    let company = HcssApi::new(&auth).for_company(COMPANY);
    for round in 1..=2 {
        let answer = company.get(UNITS).send().await;
        assert!(
            matches!(answer, Err(HcssApiError::Unauthorized)),
            "round {round}: {answer:?}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2 * round);
    }
    assert_eq!(
        mock.counts().company_grants,
        3,
        "a token fetched per refresh"
    );
    let seen = seen.lock().unwrap();
    assert!(seen.iter().all(|h| h.starts_with("Bearer ")));
    assert_ne!(
        seen[1], seen[0],
        "the refused token's header sent after the refresh"
    );
    assert_eq!(seen[2], seen[1], "the next call went with the token held");
    assert_ne!(
        seen[3], seen[2],
        "the refused token's header sent after the refresh"
    );
    assert_ne!(seen[3], seen[0]);
}

/// Part of finding 6: an `api_url` no path can follow (a space after its host) was
/// accepted, and every call failed (`… is not a path under the API URL`) or, since the
/// base was parsed once, went to the host without the space; it is refused when the
/// configuration is built, naming the setting.
#[tokio::test]
async fn an_api_url_no_path_can_follow_is_refused_at_build() {
    let mock = MockHcssIdentity::start().await;
    let built = mock
        .config_builder("http://127.0.0.1:9/hcss/callback")
        .scopes(["heavyjob:read", "offline_access"])
        .api_url("http://127.0.0.1:4000 ")
        .build();
    match built {
        Err(err) => assert!(err.to_string().contains("api_url"), "{err}"),
        Ok(_) => panic!("an api_url no path can follow was accepted"),
    }
}

/// Finding 7 (low): a 5xx whose `Retry-After` is in the past (an HTTP date from a clock
/// behind ours) or 0 made a GET go again at once, three times, with no backoff: the
/// retries of a failing HCSS came within a millisecond of each other rather than 200,
/// 400 and 800 ms apart, and the call's error then said to retry after 0 s (a 429 waits
/// at least a second for the same reason). Seen on the code before its fix: `"Wed, 21
/// Oct 2015 07:28:00 GMT": retries 1 ms apart (want the backoff): [1, 1, 1]`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_with_a_retry_after_in_the_past_is_retried_with_backoff() {
    let mock = MockHcssIdentity::start().await;
    for value in ["Wed, 21 Oct 2015 07:28:00 GMT", "0"] {
        let seen = Arc::new(std::sync::Mutex::new(Vec::<std::time::Instant>::new()));
        let recorded = seen.clone();
        let (url, _) = hostile_api(move |_, _, _| {
            recorded.lock().unwrap().push(std::time::Instant::now());
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", value)],
                "down",
            )
                .into_response()
        })
        .await;
        let auth = HcssAuth::new(config(&mock, &url, |b| {
            b.api_max_wait(Duration::from_secs(10))
        }));
        let answer = HcssApi::new(&auth)
            .for_company(COMPANY)
            .get(UNITS)
            .send()
            .await;
        let seen = seen.lock().unwrap();
        let gaps: Vec<u128> = seen.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
        assert_eq!(seen.len(), 4, "{value:?}: the call and three retries");
        assert!(
            gaps.iter().all(|gap| *gap >= 150),
            "{value:?}: retries {} ms apart (want the backoff): {gaps:?}",
            gaps[0]
        );
        match answer {
            Err(HcssApiError::Unavailable { retry_after, .. }) => assert!(
                retry_after >= Duration::from_secs(1),
                "{value:?}: retry after {retry_after:?}"
            ),
            other => panic!("{value:?}: expected Unavailable, got {other:?}"),
        }
    }
}

/// Holds: a `POST` HCSS answered 201 whose body is cut off (the connection closed after
/// its first bytes) is not sent again; the call fails `Unavailable`, whose doc says that
/// such a request may have been carried out.
#[tokio::test]
async fn a_post_whose_answer_is_cut_off_is_not_sent_again() {
    let mock = MockHcssIdentity::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                if !read_head(&mut stream).await {
                    return;
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let answer = "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"id\":";
                let _ = stream.write_all(answer.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    let auth = HcssAuth::new(config(&mock, &url, |b| b));
    let answer = HcssApi::new(&auth)
        .for_company(COMPANY)
        .post(UNITS)
        .json(&serde_json::json!({ "code": "EAST" }))
        .send()
        .await;
    assert_eq!(requests.load(Ordering::SeqCst), 1, "{answer:?}");
    assert!(
        matches!(answer, Err(HcssApiError::Unavailable { .. })),
        "{answer:?}"
    );
}

/// Holds: through calls as a user and for a company that HCSS answers with 401 (then a
/// refresh), 403, 429 past the maximum wait, 500, 200 and a refused connection, no log
/// line (at TRACE), no error's `Display` or `Debug` and no `Debug` of the client, a
/// caller, a request or a response carries a token HCSS was sent, the session's refresh
/// token or its cookie. Current-thread runtime: the calls log to this thread's subscriber.
#[tokio::test]
async fn api_secrets_never_reach_logs_errors_or_debug() {
    let (capture, _guard) = crate::common::Capture::on_this_thread();

    let mock = MockHcssIdentity::start().await;
    let bearers = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let recorded = bearers.clone();
    let (url, _) = hostile_api(move |_, headers, _| {
        if let Some(bearer) = headers.get("authorization") {
            let bearer = bearer.to_str().unwrap();
            recorded
                .lock()
                .unwrap()
                .push(bearer.trim_start_matches("Bearer ").to_owned());
        }
        let answer = headers
            .get("x-answer")
            .map_or("200", |v| v.to_str().unwrap());
        let status = StatusCode::from_u16(answer.parse().unwrap()).unwrap();
        (
            status,
            [("retry-after", "120"), ("remaining-calls", "3")],
            "answer",
        )
            .into_response()
    })
    .await;
    let refused = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        url
    };
    let mut seen = String::new();
    let mut secrets = Vec::new();
    for api_url in [url, refused] {
        // No wait: a 429 is `Busy` at once, a failure is not retried.
        let auth = HcssAuth::new(config(&mock, &api_url, |b| b.api_max_wait(Duration::ZERO)));
        let tokens = mock.issue_tokens("heavyjob:read heavyjob:write offline_access");
        let session = hcss_auth::testing::seed_session(&auth, tokens.clone())
            .await
            .unwrap();
        seen.push_str(&format!("{tokens:?} {session:?}"));
        secrets.push(session.cookie_header());
        secrets.extend(crate::common::token_secrets(&tokens));
        let api = HcssApi::new(&auth);
        let app = Router::new()
            .route(
                "/call",
                axum::routing::get(
                    |axum::extract::State(api): axum::extract::State<HcssApi>,
                     session: hcss_auth::HcssSession| async move {
                        let mut seen = String::new();
                        for answer in ["401", "403", "429", "500", "200"] {
                            let caller = api.as_user(&session);
                            let request = caller.get(UNITS).header(
                                axum::http::HeaderName::from_static("x-answer"),
                                axum::http::HeaderValue::from_static(answer),
                            );
                            seen.push_str(&format!("{api:?} {caller:?} {request:?}"));
                            match request.send().await {
                                Ok(response) => seen.push_str(&format!("{response:?}")),
                                Err(err) => seen.push_str(&format!("{err} {err:?}")),
                            }
                        }
                        seen
                    },
                ),
            )
            .with_state(api.clone())
            .layer(auth.clone());
        let request = axum::http::Request::get("/call")
            .header("cookie", session.cookie_header())
            .body(axum::body::Body::empty())
            .unwrap();
        let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&body));
        for answer in ["401", "403", "429", "500", "200"] {
            let caller = api.for_company(COMPANY);
            let request = caller.get(UNITS).header(
                axum::http::HeaderName::from_static("x-answer"),
                axum::http::HeaderValue::from_static(answer),
            );
            seen.push_str(&format!("{caller:?} {request:?}"));
            let pages = caller.get(UNITS).pages();
            seen.push_str(&format!("{pages:?}"));
            match request.send().await {
                Ok(response) => seen.push_str(&format!("{response:?}")),
                Err(err) => seen.push_str(&format!("{err} {err:?}")),
            }
        }
    }
    let logs = capture.take();
    assert!(logs.contains("HCSS API"), "no API log line was captured");
    let bearers = bearers.lock().unwrap();
    assert!(
        bearers.len() >= 10,
        "{} calls reached the API",
        bearers.len()
    );
    secrets.extend(bearers.iter().cloned());
    for secret in &secrets {
        assert!(
            !seen.contains(secret.as_str()),
            "a secret in Debug or an error"
        );
        assert!(!logs.contains(secret.as_str()), "a secret in the logs");
    }
}

/// Finding 8 (medium): a slot whose giving back failed (the store's reply timed out or
/// its connection dropped before the command went: a Redis blip) stayed taken until its
/// lease ended, twice the HTTP timeout and a second (21 s by default): the slots of every
/// call that ended during a blip of a second or two, up to the company's 20, kept every
/// instance from calling for the company for 21 s after the store came back. Here (one
/// slot, a 10 s HTTP timeout: a 21 s lease) a call on another instance, a second after
/// the store is back, waited its 5 s and failed. Seen on the code before its fix: `the
/// slot whose release failed stayed taken: Err(Busy { retry_after: 1s })`.
#[tokio::test(start_paused = true)]
async fn a_slot_whose_release_failed_is_given_back_once_the_store_is_back() {
    a_slot_released_through_a_blip_is_given_back(
        Duration::from_millis(100),
        Duration::from_secs(2),
    )
    .await;
}

/// Two instances, one slot: the store refuses to take back the slot of our call for
/// `blip`, then works; `after` later, their call is made at once.
async fn a_slot_released_through_a_blip_is_given_back(blip: Duration, after: Duration) {
    let mock = MockHcssIdentity::start().await;
    let api_url = mock.api_url();
    let store = hcss_auth::testing::FaultyStore::new(hcss_auth::MemoryStore::new());
    let layer = || {
        let config = config(&mock, &api_url, |b| {
            b.api_concurrency(1)
                .api_max_wait(Duration::from_secs(5))
                .http_timeout(Duration::from_secs(10))
        });
        HcssApi::new(&HcssAuth::with_store(config, store.clone()))
    };
    let (ours, theirs) = (layer(), layer());
    // Tokens first, so that below only the budget is at stake.
    ours.for_company(COMPANY).get(UNITS).send().await.unwrap();
    theirs.for_company(COMPANY).get(UNITS).send().await.unwrap();
    // Their slot goes back on its own a moment later.
    tokio::time::sleep(Duration::from_millis(100)).await;

    store.refuse_call_releases(true);
    let answer = ours.for_company(COMPANY).get(UNITS).send().await;
    assert_eq!(answer.unwrap().status(), 200);
    // Its slot goes back on its own a moment later: the store refuses it.
    tokio::time::sleep(blip).await;
    store.refuse_call_releases(false);
    tokio::time::sleep(after).await;

    let started = tokio::time::Instant::now();
    let answer = theirs.for_company(COMPANY).get(UNITS).send().await;
    assert!(
        matches!(&answer, Ok(r) if r.status() == 200),
        "the slot whose release failed stayed taken: {answer:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

/// Holds: no path sends a call (and its token) to another host, the first time or when
/// its URL is kept: `//host`, a backslash, `..`, escapes, an `@`, an absolute URL (refused
/// as no path), a path differing from another only in case or in its escapes. Each goes
/// to the API's host, to the path a whole parse of the two gives, and the host standing
/// for another sees nothing.
#[tokio::test]
async fn no_path_sends_a_call_to_another_host() {
    let mock = MockHcssIdentity::start().await;
    let (api_url, seen) = recording_api().await;
    let (evil_url, evil) = hostile_api(|_, _, _| StatusCode::OK.into_response()).await;
    let evil_host = evil_url.trim_start_matches("http://");
    let auth = HcssAuth::new(config(&mock, &api_url, |b| b));
    let company = HcssApi::new(&auth).for_company(COMPANY);
    let paths = [
        format!("//{evil_host}/x"),
        format!("///{evil_host}/x"),
        format!("/\\{evil_host}/x"),
        format!("/\\\\{evil_host}/x"),
        format!("/../..//{evil_host}/x"),
        format!("/%2F%2F{evil_host}/x"),
        format!("/@{evil_host}/x"),
        format!("/x@{evil_host}"),
        format!("/:@{evil_host}"),
        format!("/\t/{evil_host}/x"),
        format!("/?//{evil_host}"),
        format!("/#//{evil_host}"),
        "/Jobs".to_owned(),
        "/jobs".to_owned(),
        "/%6Aobs".to_owned(),
    ];
    for round in 0..2 {
        for path in &paths {
            let answer = company.get(path).send().await;
            assert!(answer.is_ok(), "{path:?} (round {round}): {answer:?}");
            let expected = url::Url::parse(&format!("{api_url}{path}")).unwrap();
            assert_eq!(
                expected.origin(),
                url::Url::parse(&api_url).unwrap().origin()
            );
            let expected = match expected.query() {
                Some(query) => format!("{}?{query}", expected.path()),
                None => expected.path().to_owned(),
            };
            let got = seen.lock().unwrap().pop().unwrap();
            assert_eq!(got, expected, "{path:?} (round {round})");
        }
        for absolute in [
            format!("{evil_url}/x"),
            format!("http:{evil_host}/x"),
            format!("\\\\{evil_host}/x"),
        ] {
            let answer = company.get(&absolute).send().await;
            assert!(
                matches!(answer, Err(HcssApiError::Invalid { .. })),
                "{absolute:?}: {answer:?}"
            );
        }
    }
    assert_eq!(
        evil.load(Ordering::SeqCst),
        0,
        "a call reached another host"
    );
}

/// Holds: a user whose token's `CompanyId` is in upper case and calls for the company
/// written in lower case count against one budget (two calls a minute here): the third
/// call of the minute, either way, is held back without reaching HCSS.
#[tokio::test]
async fn a_users_company_id_in_upper_case_shares_the_companys_budget() {
    let company = "A1B2C3D4-0000-4000-8000-00000000ABCD";
    let mock = MockHcssIdentity::builder()
        .company_id(Some(company))
        .start()
        .await;
    let api_url = mock.api_url();
    let auth = HcssAuth::new(config(&mock, &api_url, |b| {
        b.api_rate_per_minute(2)
            .api_max_wait(Duration::from_secs(2))
    }));
    let session =
        hcss_auth::testing::seed_session(&auth, mock.issue_tokens("heavyjob:read offline_access"))
            .await
            .unwrap();
    let api = HcssApi::new(&auth);
    let app = crate::api::user_app(auth.clone());
    let as_user = || {
        let request = axum::http::Request::get("/call")
            .header("cookie", session.cookie_header())
            .body(axum::body::Body::empty())
            .unwrap();
        tower::ServiceExt::oneshot(app.clone(), request)
    };
    assert_eq!(as_user().await.unwrap().status(), StatusCode::OK);
    let lower = company.to_ascii_lowercase();
    api.for_company(&lower).get(UNITS).send().await.unwrap();
    let before = mock.counts().api_calls;
    assert_eq!(
        as_user().await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "the user's third call of the minute was made"
    );
    assert!(matches!(
        api.for_company(&lower).get(UNITS).send().await,
        Err(HcssApiError::Busy { .. })
    ));
    assert_eq!(mock.counts().api_calls, before, "HCSS was called");
}

/// Holds: 401, then 429, then 401 again: one refresh (the company's token asked for once
/// more), the 429's `Retry-After` waited, then `Unauthorized` after three requests, not a
/// second refresh. And 429, 401, then a 429 past the maximum wait: `Busy` with HCSS's
/// `Retry-After`, after one refresh and three requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_a_429_and_a_401_make_one_refresh() {
    let mock = MockHcssIdentity::start().await;
    for statuses in [[401, 429, 401], [429, 401, 429]] {
        let (url, calls) = hostile_api(move |_, _, n| {
            let status = StatusCode::from_u16(statuses[(n - 1).min(2)]).unwrap();
            let retry_after = if n < 3 { "1" } else { "120" };
            (status, [("retry-after", retry_after)], "no").into_response()
        })
        .await;
        let auth = HcssAuth::new(config(&mock, &url, |b| {
            b.api_max_wait(Duration::from_secs(10))
        }));
        let grants = mock.counts().company_grants;
        let answer = HcssApi::new(&auth)
            .for_company(COMPANY)
            .get(UNITS)
            .send()
            .await;
        match (statuses[2], &answer) {
            (401, Err(HcssApiError::Unauthorized)) => {}
            (429, Err(HcssApiError::Busy { retry_after })) => {
                assert_eq!(*retry_after, Duration::from_secs(120))
            }
            _ => panic!("{statuses:?}: {answer:?}"),
        }
        assert_eq!(calls.load(Ordering::SeqCst), 3, "{statuses:?}");
        assert_eq!(
            mock.counts().company_grants - grants,
            2,
            "{statuses:?}: the first token and one refresh"
        );
    }
}

/// A call that waited its turn and whose user's token is then due for a refresh (but
/// still live for a while) does not hold the company's slot while the identity service
/// answers: it goes with the token it holds, and the refresh goes on by itself. With one
/// call in flight per company, on the paused clock, HCSS's API answering in 2 s and the
/// identity service in 5 s, another user's call queued behind it waits for the call in
/// flight and for it: 5.8 s. Seen failing before: the slot was held through the
/// refresh, and the other user's call waited 10.8 s.
#[tokio::test(start_paused = true)]
async fn a_token_refreshed_after_the_wait_holds_no_slot_meanwhile() {
    let mock = MockHcssIdentity::start().await;
    mock.set_api_delay(Duration::from_secs(2));
    let clock = hcss_auth::testing::TestClock::new();
    let api_url = mock.api_url();
    let auth = HcssAuth::new(config(&mock, &api_url, |b| {
        b.api_concurrency(1)
            .api_max_wait(Duration::from_secs(60))
            .test_clock(clock.clone())
    }));
    let app = crate::api::user_app(auth.clone());
    let as_user = |cookie: String| {
        let request = axum::http::Request::get("/call")
            .header("cookie", cookie)
            .body(axum::body::Body::empty())
            .unwrap();
        let app = app.clone();
        async move {
            tower::ServiceExt::oneshot(app, request)
                .await
                .unwrap()
                .status()
        }
    };
    let scope = "heavyjob:read offline_access";
    let other = hcss_auth::testing::seed_session(&auth, mock.issue_tokens(scope))
        .await
        .unwrap();
    // The first user's token lives 62 s: fresh for 31 s, then due for a refresh.
    let mut due = mock.issue_tokens(scope);
    due.expires_at = due.issued_at + 62;
    let first = hcss_auth::testing::seed_session(&auth, due).await.unwrap();
    let holding = tokio::spawn(as_user(other.cookie_header()));
    // Ordered on the paused clock: the call above is in flight, then the first user's
    // call waits for its slot, then the other user's second call waits behind it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiting = tokio::spawn(as_user(first.cookie_header()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    clock.advance(Duration::from_secs(40));
    mock.set_token_fault(Some(hcss_auth::testing::TokenFault::Slow(
        Duration::from_secs(5),
    )));
    let started = tokio::time::Instant::now();
    assert_eq!(as_user(other.cookie_header()).await, StatusCode::OK);
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(7),
        "the other user's call waited for the refresh: {took:?}"
    );
    assert_eq!(holding.await.unwrap(), StatusCode::OK);
    assert_eq!(waiting.await.unwrap(), StatusCode::OK);
    // The refresh went on meanwhile, once.
    mock.wait_for(|counts| counts.refreshes >= 1).await;
    assert_eq!(mock.counts().refreshes, 1, "{:?}", mock.counts());
}

/// Holds: a user's call that waited (a 429's `Retry-After`) and is then refused with 401
/// refreshes the session once and sends the new token, not the refused one again
/// (asked for again after the wait), and not after a second refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_call_refused_after_a_wait_sends_the_refreshed_token_once() {
    let mock = MockHcssIdentity::start().await;
    let sent = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = sent.clone();
    let (url, calls) = hostile_api(move |_, headers, n| {
        let bearer = headers
            .get("authorization")
            .map_or("", |v| v.to_str().unwrap())
            .to_owned();
        seen.lock().unwrap().push(bearer);
        let status = [429, 401, 200][(n - 1).min(2)];
        let status = StatusCode::from_u16(status).unwrap();
        (status, [("retry-after", "1")], "answer").into_response()
    })
    .await;
    let auth = HcssAuth::new(config(&mock, &url, |b| {
        b.api_max_wait(Duration::from_secs(10))
    }));
    let session =
        hcss_auth::testing::seed_session(&auth, mock.issue_tokens("heavyjob:read offline_access"))
            .await
            .unwrap();
    let app = crate::api::user_app(auth.clone());
    let request = axum::http::Request::get("/call")
        .header("cookie", session.cookie_header())
        .body(axum::body::Body::empty())
        .unwrap();
    let status = tower::ServiceExt::oneshot(app, request)
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent[0], sent[1], "the token held, live, after the wait");
    assert_ne!(sent[2], sent[1], "the refused token was sent again");
    assert_eq!(mock.counts().refreshes, 1, "{:?}", mock.counts());
}

/// A user's call that waits its turn while the session ends (a logout, the user's
/// sessions ended everywhere) is not made: asked for again after the wait, the token is
/// gone, and the call is `NotSignedIn`, even when the store answers in its own time
/// (Redis, whose read is not done at once). The company's call holds the only slot for
/// 3 s. (Should the user's call not have reached its wait when the session ends, under
/// load, it is refused at its first token: the same answers; only a stall of 3 s between
/// the two calls' start and the session's end could see it served.) Seen failing with the token asked for again only if it came at once (a Redis
/// read never does), a first version of not holding the slot through a refresh: the
/// call went to HCSS with the ended session's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_call_waiting_while_the_session_ends_is_not_made_on_redis() {
    let Some(redis) = redis_url("a_users_call_waiting_while_the_session_ends_is_not_made_on_redis")
    else {
        return;
    };
    let prefix = prefix();
    let _cleanup = Cleanup::new(&redis, &prefix);
    let (subject, company) = ("ending-user-20", "ending-co-20");
    let mock = MockHcssIdentity::builder()
        .subject(subject)
        .company_id(Some(company))
        .start()
        .await;
    mock.set_api_delay(Duration::from_secs(3));
    let api_url = mock.api_url();
    let store = hcss_auth::store::RedisStore::connect(&redis)
        .await
        .unwrap()
        .with_prefix(prefix.clone());
    let auth = HcssAuth::with_store(
        config(&mock, &api_url, |b| {
            b.api_concurrency(1).api_max_wait(Duration::from_secs(10))
        }),
        store,
    );
    let tokens = mock.issue_tokens("heavyjob:read offline_access");
    let session = hcss_auth::testing::seed_session(&auth, tokens)
        .await
        .unwrap();
    let api = HcssApi::new(&auth);
    let app = crate::api::user_app(auth.clone());
    let holding = {
        let api = api.clone();
        tokio::spawn(async move { api.for_company(company).get(UNITS).send().await })
    };
    // The company's call is at HCSS (counted as it arrives).
    mock.wait_for(|counts| counts.api_calls >= 1).await;
    let request = axum::http::Request::get("/call")
        .header("cookie", session.cookie_header())
        .body(axum::body::Body::empty())
        .unwrap();
    let waiting = tokio::spawn(tower::ServiceExt::oneshot(app, request));
    // The user's call is past its first token and waits for the slot.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(auth.end_sessions_for_subject(subject).await.unwrap(), 1);
    assert_eq!(holding.await.unwrap().unwrap().status(), StatusCode::OK);
    let status = waiting.await.unwrap().unwrap().status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(mock.counts().api_calls, 1, "{:?}", mock.counts());
}

/// A slot whose giving back failed through a store blip longer than a second (a Redis
/// failover takes a few) is still given back once the store is back, not when its lease
/// ends (21 s here): the same as the test above with the store refusing for 3 s. Seen
/// failing when the release was tried again once only, a second after: `the slot whose
/// release failed stayed taken: Err(Busy { retry_after: 1s })`.
#[tokio::test(start_paused = true)]
async fn a_slot_whose_release_failed_through_a_longer_blip_is_given_back() {
    a_slot_released_through_a_blip_is_given_back(Duration::from_secs(3), Duration::from_secs(5))
        .await;
}
