//! A bounded soak test of session fault tolerance: signs sessions in for real through
//! `MockHcssIdentity` (access tokens live 4 s, so they refresh every 2 s), then hammers
//! `GET /whoami` with every session while the token endpoint and the store are switched
//! through faults (HTTP 500, 503 and 429 with `Retry-After`, answers slower than the HTTP
//! timeout, a refresh token rotated but answered late: after the requests waiting on it
//! gave up, within the refresh's own patience of three HTTP timeouts, and a store that refuses
//! writes), with about one request in ten abandoned by its client after 50 ms. At the end
//! it checks that every session is still signed in and that the mock never saw a refresh
//! token reused; it prints its figures and exits with 1 if either failed, 0 otherwise.
//!
//! `cargo run --example soak --features test-util,redis -- [--seconds N] [--sessions N] [--redis URL]`
//!
//! Defaults: 20 seconds, 60 sessions, one app instance with a `MemoryStore`. With
//! `--redis URL`, two app instances share a `RedisStore` (under a unique key prefix,
//! deleted at the end); sessions sign in on the first and are then used on both in turn.
//! `RUST_LOG=hcss_auth=debug` shows the layer's own logs on stderr.

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use hcss_auth::testing::{FaultyStore, MockHcssIdentity, TokenFault};
use hcss_auth::{HcssAuth, HcssConfig, HcssToken, MemoryStore, StateStore, StoreError, TokenStore};
use reqwest::header::{COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use reqwest::StatusCode;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Concurrent request loops per session.
const TASKS_PER_SESSION: usize = 2;
/// Each fault cycle: this long healthy, then this long with one fault.
const PHASE: Duration = Duration::from_secs(2);
/// The client timeout of an abandoned request.
const ABANDON_AFTER: Duration = Duration::from_millis(50);
/// The client timeout of every other request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// A pause between two requests of one loop, so the loops measure the layer, not a
/// saturated CPU.
const PAUSE: Duration = Duration::from_millis(5);
/// How long the final check waits for a session that answers 503.
const FINAL_PATIENCE: Duration = Duration::from_secs(5);
/// The session cookie of an app served over plain http on loopback.
const SESSION_COOKIE: &str = "hcss-session";

/// The windows of the fault cycle: index 0 is healthy, the others are faults in turn.
const PHASES: [&str; 7] = [
    "healthy",
    "token 500 server_error",
    "token 503 temporarily_unavailable (Retry-After 1)",
    "token 429 slow_down (Retry-After 1)",
    "token slow 2 s (> 500 ms http timeout)",
    "token 1 s late after rotating",
    "store refuses writes",
];
const REFUSED_WRITES: usize = 6;

fn token_fault(phase: usize) -> Option<TokenFault> {
    match phase {
        1 => Some(TokenFault::Error {
            status: 500,
            error: "server_error",
            retry_after: None,
        }),
        2 => Some(TokenFault::Error {
            status: 503,
            error: "temporarily_unavailable",
            retry_after: Some(1),
        }),
        3 => Some(TokenFault::Error {
            status: 429,
            error: "slow_down",
            retry_after: Some(1),
        }),
        4 => Some(TokenFault::Slow(Duration::from_secs(2))),
        5 => Some(TokenFault::SlowAfterRotating(Duration::from_secs(1))),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------

struct Args {
    seconds: u64,
    sessions: usize,
    redis: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seconds: 20,
        sessions: 60,
        redis: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => {
                args.seconds = value()?
                    .parse()
                    .map_err(|_| "--seconds takes a whole number".to_owned())?;
            }
            "--sessions" => {
                args.sessions = value()?
                    .parse()
                    .map_err(|_| "--sessions takes a whole number".to_owned())?;
            }
            "--redis" => args.redis = Some(value()?),
            "-h" | "--help" => {
                return Err(
                    "usage: soak [--seconds N] [--sessions N] [--redis redis://HOST:PORT]".into(),
                )
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.seconds == 0 || args.seconds > 3600 {
        return Err("--seconds must be between 1 and 3600".into());
    }
    if args.sessions == 0 || args.sessions > 10_000 {
        return Err("--sessions must be between 1 and 10000".into());
    }
    Ok(args)
}

// ---------------------------------------------------------------------------------------
// The store wrapper: delegates everything, refuses writes on demand
// ---------------------------------------------------------------------------------------

/// Turns the store's refused writes on and off, on every instance.
type Switch = Arc<dyn Fn(bool) + Send + Sync>;

// ---------------------------------------------------------------------------------------
// The app
// ---------------------------------------------------------------------------------------

async fn whoami(_token: HcssToken) -> &'static str {
    "ok"
}

fn app_config(mock: &MockHcssIdentity, url: &str) -> Result<HcssConfig, hcss_auth::ConfigError> {
    mock.config_builder(&format!("{url}/hcss/callback"))
        .scopes(["heavyjob:read", "offline_access"])
        .http_timeout(Duration::from_millis(500))
        .retry_after(Duration::from_secs(1))
        .build()
}

/// Serves an app instance with `store` on a free loopback port; returns its base URL.
async fn start_app<S>(mock: &MockHcssIdentity, store: S) -> Result<String, Box<dyn Error>>
where
    S: StateStore + TokenStore,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let auth = HcssAuth::with_store(app_config(mock, &url)?, store);
    let app = Router::new().route("/whoami", get(whoami)).layer(auth);
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            eprintln!("soak: an app instance stopped: {err}");
        }
    });
    Ok(url)
}

#[cfg(feature = "redis")]
async fn redis_store(url: &str, prefix: &str) -> Result<hcss_auth::store::RedisStore, StoreError> {
    Ok(hcss_auth::store::RedisStore::connect(url)
        .await?
        .with_prefix(prefix))
}

/// Deletes every key under `prefix`; returns how many.
#[cfg(feature = "redis")]
async fn redis_cleanup(url: &str, prefix: &str) -> Result<usize, redis::RedisError> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let pattern = format!("{prefix}*");
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    // SCAN ends when the cursor comes back to 0; the cap only guards against a server
    // that never says so.
    for _ in 0..100_000 {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(500)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            let n: usize = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await?;
            deleted += n;
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    Ok(deleted)
}

// ---------------------------------------------------------------------------------------
// Signing in through the mock, with a cookie jar kept by hand
// ---------------------------------------------------------------------------------------

/// The `name=value` pairs of a response's `Set-Cookie` headers.
fn set_cookies(response: &reqwest::Response) -> Vec<(String, String)> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn location(response: &reqwest::Response, step: &str) -> Result<String, String> {
    if response.status() != StatusCode::SEE_OTHER && response.status() != StatusCode::FOUND {
        return Err(format!("{step}: status {}", response.status()));
    }
    response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| format!("{step}: no Location"))
}

/// Signs one session in on `app`; returns its `Cookie` header value.
async fn sign_in(client: &reqwest::Client, app: &str) -> Result<String, String> {
    let send_err =
        |step: &'static str| move |e: reqwest::Error| format!("{step}: {}", e.without_url());
    let login = client
        .get(format!("{app}/hcss/login"))
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(send_err("login"))?;
    let authorize = location(&login, "login")?;
    let binding = set_cookies(&login)
        .into_iter()
        .find(|(name, _)| name.starts_with("hcss-login-"))
        .ok_or("login: no hcss-login-* binding cookie")?;

    let consent = client
        .get(&authorize)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(send_err("authorize"))?;
    let callback = location(&consent, "authorize")?;
    if !callback.starts_with(&format!("{app}/hcss/callback?")) {
        return Err("authorize: not sent back to this app's callback".into());
    }

    let done = client
        .get(&callback)
        .header(COOKIE, format!("{}={}", binding.0, binding.1))
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await
        .map_err(send_err("callback"))?;
    location(&done, "callback")?;
    let session = set_cookies(&done)
        .into_iter()
        .find(|(name, value)| name == SESSION_COOKIE && !value.is_empty())
        .ok_or("callback: no session cookie")?;
    if session.1.len() != 43 {
        return Err(format!(
            "callback: session id of {} characters, not 43",
            session.1.len()
        ));
    }
    Ok(format!("{SESSION_COOKIE}={}", session.1))
}

// ---------------------------------------------------------------------------------------
// Counting
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    ok: AtomicU64,
    unavailable: AtomicU64,
    unauthorized: AtomicU64,
    other: AtomicU64,
    timeouts: AtomicU64,
    transport: AtomicU64,
    abandoned: AtomicU64,
    abandoned_timeouts: AtomicU64,
}

fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

enum Answer {
    Status(StatusCode),
    Timeout,
    Transport,
}

impl Tally {
    fn record(&self, abandoned: bool, answer: &Answer) {
        bump(&self.requests);
        if abandoned {
            bump(&self.abandoned);
        }
        match answer {
            Answer::Status(StatusCode::OK) => bump(&self.ok),
            Answer::Status(StatusCode::SERVICE_UNAVAILABLE) => bump(&self.unavailable),
            Answer::Status(StatusCode::UNAUTHORIZED) => bump(&self.unauthorized),
            Answer::Status(_) => bump(&self.other),
            Answer::Timeout => {
                bump(&self.timeouts);
                if abandoned {
                    bump(&self.abandoned_timeouts);
                }
            }
            Answer::Transport => bump(&self.transport),
        }
    }
}

/// When and where a session first answered 401.
#[derive(Clone, Copy)]
struct Loss {
    at: f64,
    phase: usize,
    instance: usize,
}

struct Load {
    client: reqwest::Client,
    apps: Vec<String>,
    cookies: Vec<String>,
    started: Instant,
    deadline: Instant,
    phase: AtomicUsize,
    total: Tally,
    by_phase: Vec<Tally>,
    first_401: Mutex<Vec<Option<Loss>>>,
}

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// One request loop of one session, until the deadline. In Redis mode it uses the app
/// instances in turn.
async fn worker(load: Arc<Load>, session: usize, task: usize) {
    let mut rng =
        ((session * TASKS_PER_SESSION + task + 1) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut turn = task;
    while Instant::now() < load.deadline {
        let instance = turn % load.apps.len();
        turn += 1;
        let abandoned = xorshift(&mut rng).is_multiple_of(10);
        let timeout = if abandoned {
            ABANDON_AFTER
        } else {
            REQUEST_TIMEOUT
        };
        let phase = load.phase.load(Ordering::SeqCst);
        let sent = load
            .client
            .get(format!("{}/whoami", load.apps[instance]))
            .header(COOKIE, &load.cookies[session])
            .timeout(timeout)
            .send()
            .await;
        let answer = match sent {
            Ok(response) => {
                let status = response.status();
                match response.bytes().await {
                    Err(e) if e.is_timeout() => Answer::Timeout,
                    _ => Answer::Status(status),
                }
            }
            Err(e) if e.is_timeout() => Answer::Timeout,
            Err(_) => Answer::Transport,
        };
        load.total.record(abandoned, &answer);
        load.by_phase[phase].record(abandoned, &answer);
        let mut pause = PAUSE;
        if let Answer::Status(StatusCode::UNAUTHORIZED) = answer {
            let mut losses = load.first_401.lock().unwrap_or_else(|e| e.into_inner());
            losses[session].get_or_insert(Loss {
                at: load.started.elapsed().as_secs_f64(),
                phase,
                instance,
            });
            pause = Duration::from_millis(100);
        }
        tokio::time::sleep(pause).await;
    }
}

/// One window of the fault cycle, as it happened.
struct Window {
    from: f64,
    to: f64,
    phase: usize,
    refreshes: usize,
    reuse: usize,
    unauthorized: u64,
    unavailable: u64,
}

fn apply(mock: &MockHcssIdentity, refuse_writes: &Switch, phase: usize) {
    refuse_writes(phase == REFUSED_WRITES);
    mock.set_token_fault(token_fault(phase));
}

/// Switches the faults: every 4 s, 2 s healthy then 2 s of the next fault; all off at the
/// deadline.
async fn controller(
    load: Arc<Load>,
    mock: Arc<MockHcssIdentity>,
    refuse_writes: Switch,
) -> Vec<Window> {
    let mut windows = Vec::new();
    let mut cycle = 0usize;
    let mut start = load.started;
    'cycles: loop {
        let fault = 1 + cycle % (PHASES.len() - 1);
        for (phase, until) in [(0, start + PHASE), (fault, start + PHASE * 2)] {
            let now = Instant::now();
            if now >= load.deadline {
                break 'cycles;
            }
            apply(&mock, &refuse_writes, phase);
            load.phase.store(phase, Ordering::SeqCst);
            let before = mock.counts();
            let (u401, u503) = (
                read(&load.total.unauthorized),
                read(&load.total.unavailable),
            );
            tokio::time::sleep_until(until.min(load.deadline)).await;
            let after = mock.counts();
            windows.push(Window {
                from: now.duration_since(load.started).as_secs_f64(),
                to: load.started.elapsed().as_secs_f64(),
                phase,
                refreshes: after.refreshes - before.refreshes,
                reuse: after.reuse_detected - before.reuse_detected,
                unauthorized: read(&load.total.unauthorized) - u401,
                unavailable: read(&load.total.unavailable) - u503,
            });
        }
        cycle += 1;
        start += PHASE * 2;
    }
    apply(&mock, &refuse_writes, 0);
    load.phase.store(0, Ordering::SeqCst);
    windows
}

// ---------------------------------------------------------------------------------------
// The final check
// ---------------------------------------------------------------------------------------

/// One `GET /whoami`, retried while it answers 503 for up to `FINAL_PATIENCE`.
async fn final_answer(client: &reqwest::Client, app: &str, cookie: &str) -> String {
    let give_up = Instant::now() + FINAL_PATIENCE;
    loop {
        let sent = client
            .get(format!("{app}/whoami"))
            .header(COOKIE, cookie)
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) if e.is_timeout() => return "timeout".into(),
            Err(_) => return "transport error".into(),
        };
        let status = response.status();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            let wait = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1)
                .clamp(1, 2);
            let wait = Duration::from_secs(wait);
            if Instant::now() + wait <= give_up {
                tokio::time::sleep(wait).await;
                continue;
            }
        }
        return status.as_u16().to_string();
    }
}

// ---------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("soak: {message}");
            std::process::exit(2);
        }
    };
    #[cfg(not(feature = "redis"))]
    if args.redis.is_some() {
        eprintln!(
            "soak: --redis needs the `redis` feature: \
             cargo run --example soak --features test-util,redis -- --redis URL"
        );
        std::process::exit(2);
    }
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }

    let prefix = format!(
        "hcss-soak-{}-{}:",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let outcome = run(&args, &prefix).await;

    #[cfg(feature = "redis")]
    if let Some(url) = &args.redis {
        match redis_cleanup(url, &prefix).await {
            Ok(n) => println!("redis cleanup: {n} keys under {prefix} deleted"),
            Err(err) => eprintln!(
                "soak: redis cleanup failed ({:?}); keys under {prefix} remain",
                err.kind()
            ),
        }
    }

    match outcome {
        Ok(code) => std::process::exit(code),
        Err(err) => {
            eprintln!("soak: setup failed: {err}");
            std::process::exit(2);
        }
    }
}

async fn run(args: &Args, prefix: &str) -> Result<i32, Box<dyn Error>> {
    let mock = Arc::new(
        MockHcssIdentity::builder()
            .access_token_lifetime(Duration::from_secs(4))
            .start()
            .await,
    );
    let (apps, mode, refuse_writes): (_, _, Switch) = match &args.redis {
        None => {
            let store = FaultyStore::new(MemoryStore::new());
            let switch = store.clone();
            (
                vec![start_app(&mock, store).await?],
                "memory (1 instance)".to_owned(),
                Arc::new(move |on| switch.refuse_writes(on)),
            )
        }
        #[cfg(feature = "redis")]
        Some(url) => {
            let (mut apps, mut stores) = (Vec::new(), Vec::new());
            for _ in 0..2 {
                let store = FaultyStore::new(redis_store(url, prefix).await?);
                stores.push(store.clone());
                apps.push(start_app(&mock, store).await?);
            }
            (
                apps,
                format!("redis (2 instances, prefix {prefix})"),
                Arc::new(move |on| stores.iter().for_each(|s| s.refuse_writes(on))),
            )
        }
        #[cfg(not(feature = "redis"))]
        Some(_) => unreachable!("checked in main"),
    };
    #[cfg(not(feature = "redis"))]
    let _ = prefix;

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    // Sign every session in on the first instance (a login completes where it started).
    let mut logins = JoinSet::new();
    for i in 0..args.sessions {
        let (client, app) = (client.clone(), apps[0].clone());
        logins.spawn(async move { (i, sign_in(&client, &app).await) });
    }
    let mut cookies = vec![String::new(); args.sessions];
    while let Some(joined) = logins.join_next().await {
        let (i, signed_in) = joined?;
        cookies[i] = signed_in.map_err(|e| format!("session {i} could not sign in: {e}"))?;
    }
    let signed_in_at_start = mock.counts();
    println!(
        "signed in {} sessions ({} code exchanges); load for {} s on {}",
        args.sessions, signed_in_at_start.code_exchanges, args.seconds, mode
    );

    // The load, and the faults.
    let started = Instant::now();
    let load = Arc::new(Load {
        client: client.clone(),
        apps: apps.clone(),
        cookies,
        started,
        deadline: started + Duration::from_secs(args.seconds),
        phase: AtomicUsize::new(0),
        total: Tally::default(),
        by_phase: PHASES.iter().map(|_| Tally::default()).collect(),
        first_401: Mutex::new(vec![None; args.sessions]),
    });
    let switcher = tokio::spawn(controller(
        load.clone(),
        mock.clone(),
        refuse_writes.clone(),
    ));
    let mut workers = JoinSet::new();
    for session in 0..args.sessions {
        for task in 0..TASKS_PER_SESSION {
            workers.spawn(worker(load.clone(), session, task));
        }
    }
    while let Some(joined) = workers.join_next().await {
        joined?;
    }
    let windows = switcher.await?;
    let elapsed = started.elapsed();
    // Faults off (the controller did it too; this is the final word).
    mock.set_token_fault(None);
    refuse_writes(false);
    let at_end_of_load = mock.counts();

    // Every session once more, on every instance.
    let mut checks = JoinSet::new();
    for (i, cookie) in load.cookies.iter().enumerate() {
        let (client, apps, cookie) = (client.clone(), apps.clone(), cookie.clone());
        checks.spawn(async move {
            let mut answers = Vec::new();
            for app in &apps {
                answers.push(final_answer(&client, app, &cookie).await);
            }
            (i, answers)
        });
    }
    let mut finals: Vec<Vec<String>> = vec![Vec::new(); args.sessions];
    while let Some(joined) = checks.join_next().await {
        let (i, answers) = joined?;
        finals[i] = answers;
    }
    let signed_in = finals
        .iter()
        .filter(|answers| answers.iter().all(|a| a == "200"))
        .count();
    let counts = mock.counts();

    // Figures.
    let t = &load.total;
    println!();
    println!("soak figures");
    println!(
        "  duration                 {:.1} s (faults: {} s healthy, {} s faulty, in turn)",
        elapsed.as_secs_f64(),
        PHASE.as_secs(),
        PHASE.as_secs()
    );
    println!(
        "  sessions                 {} ({} request loops each)",
        args.sessions, TASKS_PER_SESSION
    );
    println!("  store                    {mode}");
    println!("  requests                 {}", read(&t.requests));
    println!("    200                    {}", read(&t.ok));
    println!("    503                    {}", read(&t.unavailable));
    println!("    401                    {}", read(&t.unauthorized));
    println!("    other status           {}", read(&t.other));
    println!(
        "    client timeouts        {} ({} of them abandoned on purpose)",
        read(&t.timeouts),
        read(&t.abandoned_timeouts)
    );
    println!("    transport errors       {}", read(&t.transport));
    println!("  abandoned (50 ms)        {}", read(&t.abandoned));
    println!(
        "  mock refreshes           {} ({} during the load)",
        counts.refreshes,
        at_end_of_load.refreshes - signed_in_at_start.refreshes
    );
    println!("  mock reuse_detected      {}", counts.reuse_detected);
    println!("  mock code exchanges      {}", counts.code_exchanges);
    println!("  mock revocations         {}", counts.revocations);
    println!("  signed in at the end     {signed_in} / {}", args.sessions);

    println!();
    println!(
        "  {:<50} {:>8} {:>7} {:>7} {:>7} {:>7} {:>8}",
        "requests by phase (at send)", "requests", "200", "503", "401", "other", "timeouts"
    );
    for (phase, name) in PHASES.iter().enumerate() {
        let p = &load.by_phase[phase];
        println!(
            "  {name:<50} {:>8} {:>7} {:>7} {:>7} {:>7} {:>8}",
            read(&p.requests),
            read(&p.ok),
            read(&p.unavailable),
            read(&p.unauthorized),
            read(&p.other),
            read(&p.timeouts)
        );
    }

    println!();
    println!(
        "  {:<11} {:<50} {:>9} {:>6} {:>6} {:>6}",
        "window (s)", "phase", "refreshes", "reuse", "401s", "503s"
    );
    for w in &windows {
        println!(
            "  {:>5.1}-{:<5.1} {:<50} {:>9} {:>6} {:>6} {:>6}",
            w.from, w.to, PHASES[w.phase], w.refreshes, w.reuse, w.unauthorized, w.unavailable
        );
    }

    let losses = load
        .first_401
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let lost: Vec<usize> = (0..args.sessions)
        .filter(|&i| !finals[i].iter().all(|a| a == "200"))
        .collect();
    let flapped = (0..args.sessions)
        .filter(|&i| losses[i].is_some() && !lost.contains(&i))
        .count();
    if flapped > 0 {
        println!();
        println!("  {flapped} session(s) answered 401 during the load but 200 at the end");
    }
    if !lost.is_empty() {
        report_lost(&lost, &losses, &finals, &windows);
    }

    let failed = signed_in < args.sessions || counts.reuse_detected > 0;
    println!();
    println!(
        "{}",
        if failed {
            "FAIL: sessions were lost or a refresh token was reused"
        } else {
            "PASS: every session still signed in, no refresh token reused"
        }
    );
    Ok(i32::from(failed))
}

/// Lost sessions by (phase of the first 401, instance, last fault window before it):
/// the sessions, the earliest and the latest first 401.
type LossGroups = BTreeMap<(usize, usize, Option<usize>), (Vec<usize>, f64, f64)>;

/// Groups the lost sessions by their final answers, and by where and when they first
/// answered 401 (with the last fault window that began before it).
fn report_lost(
    lost: &[usize],
    losses: &[Option<Loss>],
    finals: &[Vec<String>],
    windows: &[Window],
) {
    let mut by_answers: BTreeMap<String, usize> = BTreeMap::new();
    for &i in lost {
        *by_answers.entry(finals[i].join("/")).or_default() += 1;
    }
    let answers: Vec<String> = by_answers
        .iter()
        .map(|(answer, n)| format!("{answer} x{n}"))
        .collect();
    println!();
    println!(
        "  lost sessions            {} (final answers, per instance: {})",
        lost.len(),
        answers.join(", ")
    );
    let mut groups: LossGroups = BTreeMap::new();
    let mut silent = Vec::new();
    for &i in lost {
        let Some(loss) = losses[i] else {
            silent.push(i);
            continue;
        };
        let after = windows
            .iter()
            .rposition(|w| w.phase != 0 && w.from <= loss.at);
        let group =
            groups
                .entry((loss.phase, loss.instance, after))
                .or_insert((Vec::new(), f64::MAX, 0.0));
        group.0.push(i);
        group.1 = group.1.min(loss.at);
        group.2 = group.2.max(loss.at);
    }
    let names = |sessions: &[usize]| {
        let mut shown: Vec<String> = sessions.iter().take(10).map(usize::to_string).collect();
        if sessions.len() > 10 {
            shown.push("...".into());
        }
        shown.join(", ")
    };
    for ((phase, instance, after), (sessions, from, to)) in &groups {
        let after = match after {
            Some(w) => format!(
                "after the fault window {:.1}-{:.1} s \"{}\"",
                windows[*w].from, windows[*w].to, PHASES[windows[*w].phase]
            ),
            None => "before any fault".to_owned(),
        };
        println!(
            "    {} first answered 401 at {from:.2}-{to:.2} s on instance {instance}, during \"{}\", {after} (sessions {})",
            sessions.len(),
            PHASES[*phase],
            names(sessions)
        );
    }
    if !silent.is_empty() {
        println!(
            "    {} never answered 401 during the load (sessions {})",
            silent.len(),
            names(&silent)
        );
    }
}
