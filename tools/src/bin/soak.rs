//! A bounded soak test of session fault tolerance. It signs sessions in for real through
//! `MockHcssIdentity`, whose access tokens live 4 s (so every session refreshes every
//! 2 s), then sends `GET /whoami` for every session from paced request loops (two per
//! session, about one request in ten abandoned by its client after 50 ms) while a
//! controller switches faults on and off: 2 s healthy, then one fault window, in turn. At
//! the end it asks every session once more on every instance, prints its figures, and
//! exits with 1 if a session was lost (it no longer answers 200) or the mock saw a refresh
//! token reused, 0 otherwise, 2 if it could not run (or could not cause a fault).
//!
//! # Modes
//!
//! - By default, one app instance with a `MemoryStore`.
//! - `--redis URL`: two app instances share a `RedisStore` on a Redis of yours, under a
//!   unique key prefix deleted at the end. Only the windows that touch nothing but the
//!   soak run there: the Redis windows below would disturb everyone else on that server.
//! - `--own-redis`: the soak starts its own `redis-server` (found on `PATH`) on a free
//!   port of 127.0.0.1 with persistence on (`--appendonly yes --appendfsync always`, data
//!   in a temporary folder), two app instances share it, and the Redis windows run too.
//!   The server is stopped and its folder deleted at the end, also on an error or a panic
//!   (Ctrl-C stops the server too, which gets the terminal's SIGINT, but leaves the folder).
//!
//! Sessions sign in on the first instance; each session's two loops then use the
//! instances in turn. The loops are paced to `--rate` requests a second in all (each loop
//! pauses loops ÷ rate between requests), so a thousand sessions load the machine no more
//! than sixty do; refreshes (one per session every 2 s) grow with the sessions.
//!
//! # Fault windows
//!
//! | window | what happens |
//! |---|---|
//! | token 500 | the token endpoint answers 500 `server_error` |
//! | token 503 | 503 `temporarily_unavailable`, `Retry-After: 1` |
//! | token 429 | 429 `slow_down`, `Retry-After: 1` |
//! | token slow | answers after 2 s, past the app's 500 ms HTTP timeout |
//! | token late after rotating | rotates the refresh token, answers 1 s later (after the waiting requests gave up, within the refresh's patience) |
//! | store refuses writes | `FaultyStore` on every instance refuses writes (locks are still taken) for 5 s: the refresh lock's lease, plus the 2 s between two refreshes of a session (sessions signed in together refresh together, so some refresh early in the window), plus 0.5 s |
//! | redis writes paused | own Redis only: `CLIENT PAUSE 2600 WRITE`, past `RedisStore`'s 2 s reply timeout, so a write whose writer gave up is applied afterwards |
//! | redis connections cut | own Redis only: `CLIENT KILL TYPE normal` and `TYPE pubsub` every 250 ms for 2 s (the near cache's tracking connection included), from a connection of the soak's own |
//! | redis outage | own Redis only: the server stopped (`SIGSTOP`) for the refresh lock's lease plus 1 s, then `SIGCONT` |
//! | redis restart | own Redis only: `kill -9` with requests in flight, started again on the same port from the same append-only file (sessions survive a crash of the process with `appendonly yes`; `appendfsync always` is for a crash of the machine, which the soak cannot cause) |
//!
//! The refresh lock's lease is `http_timeout × (REFRESH_PATIENCE + 2)`, 4 s with the
//! soak's 500 ms HTTP timeout (src/refresh/lease.rs).
//!
//! A window that began before the deadline runs to its end; the last one may outlast the
//! load by a few seconds. One cycle takes 45.5 s with `--own-redis` (every window once), 27 s
//! without.
//!
//! # HCSS API calls
//!
//! Beside the sessions' loops, `API_LOOPS` loops call the mock's HCSS API through each
//! instance's `HcssApi` as the signed-in user (`GET /api` of a session, in turn), the
//! mock's API limited as HCSS limits it (100 calls a minute, 20 at once, per company: all
//! the sessions' users are of one company), each call waiting for the budget 2 s at most.
//! Every fault window applies to them too. A call the client answers 401 for a session
//! still signed in at the end is a call lost to a 401 that a refresh could fix: the soak
//! fails if there is one. The figures: calls, 200s, Busy (503), 401s, the mock's 429s
//! and the most calls it saw in flight.
//!
//! The figures: requests by answer, the mock's refreshes and detected reuse, sessions
//! lost, counts by kind of window, the windows with 401s or reuse, how late the runtime
//! woke a timer (a saturated CPU shows there first), and where the lost sessions first
//! answered 401.
//!
//! # Commands
//!
//! ```text
//! cargo run --release -p hcss-auth-tools --bin soak -- [--seconds N] [--sessions N] [--rate N] [--redis URL | --own-redis]
//! cargo run --release -p hcss-auth-tools --bin soak -- --seconds 60 --sessions 100 --own-redis
//! cargo run --release -p hcss-auth-tools --bin soak -- --seconds 600 --sessions 1000 --own-redis
//! ```
//!
//! Defaults: 20 seconds, 60 sessions, 2000 requests a second. `RUST_LOG=hcss_auth=debug`
//! shows the layer's own logs on stderr. `SOAK_ONLY=paused,500` keeps the fault windows
//! whose names hold one of the words, to chase one interplay of faults.

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use hcss_auth::testing::{FaultyStore, MockApiLimits, MockHcssIdentity, TokenFault};
use hcss_auth::{
    HcssApi, HcssAuth, HcssConfig, HcssSession, HcssToken, MemoryStore, StateStore, TokenStore,
};
use reqwest::header::{COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use reqwest::StatusCode;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use own_redis::OwnRedis;

// ---------------------------------------------------------------------------------------
// Timing
// ---------------------------------------------------------------------------------------

/// How long the mock's access tokens live; a session refreshes when half is left.
const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(4);
/// The app's HTTP timeout towards the identity service.
const HTTP_TIMEOUT: Duration = Duration::from_millis(500);
/// How many HTTP timeouts a refresh waits for its token call (`REFRESH_PATIENCE` in
/// src/protocol/token_request.rs).
const REFRESH_PATIENCE: u32 = 6;
/// The refresh lock's lease, as src/refresh/lease.rs computes it from the HTTP timeout.
const REFRESH_LEASE: Duration = HTTP_TIMEOUT.saturating_mul(REFRESH_PATIENCE + 2);
/// How long `RedisStore` waits for a reply (`TIMEOUT` in src/store/redis.rs).
const REDIS_REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// Redis writes stall this long: past the reply timeout.
const WRITE_PAUSE: Duration = REDIS_REPLY_TIMEOUT.saturating_add(Duration::from_millis(600));
/// The store is down this long: past the refresh lock's lease.
const OUTAGE: Duration = REFRESH_LEASE.saturating_add(Duration::from_secs(1));
/// The store refuses writes this long: the locks of the refreshes made in its first
/// refresh period (half an access token's lifetime) expire before it ends.
const REFUSAL: Duration = REFRESH_LEASE
    .saturating_add(Duration::from_secs(ACCESS_TOKEN_LIFETIME.as_secs() / 2))
    .saturating_add(Duration::from_millis(500));
/// The healthy window between two faults, and the length of most fault windows.
const HEALTHY: Duration = Duration::from_secs(2);
const FAULT: Duration = Duration::from_secs(2);
/// How often the connections are cut during their window.
const CUT_EVERY: Duration = Duration::from_millis(250);

// ---------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------

/// Concurrent request loops per session.
const TASKS_PER_SESSION: usize = 2;
/// Requests a second across every loop, unless `--rate` says otherwise.
const DEFAULT_RATE: u64 = 2000;
/// The shortest pause between two requests of one loop.
const MIN_PAUSE: Duration = Duration::from_millis(5);
/// The client timeout of an abandoned request.
const ABANDON_AFTER: Duration = Duration::from_millis(50);
/// The client timeout of every other request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the final check waits for a session that answers 503.
const FINAL_PATIENCE: Duration = Duration::from_secs(5);
/// Sign-ins and final checks at once.
const CONCURRENCY: usize = 64;
/// The lag monitor's tick, and the lateness it counts as a stall.
const LAG_TICK: Duration = Duration::from_millis(100);
const LAG_STALL: Duration = Duration::from_millis(100);
/// The lines of a list (windows with 401s or reuse, groups of lost sessions) printed at
/// most, the first ones.
const SHOWN_LINES: usize = 30;
/// Loops calling the HCSS API through the app (`GET /api`), and the pause between two
/// calls of one loop: 8 calls a second in all, past the budget of 100 a minute, so that
/// the budget's waits and refusals are exercised too.
const API_LOOPS: usize = 4;
const API_PAUSE: Duration = Duration::from_millis(500);
/// How long an API call waits for the company's budget at most.
const API_MAX_WAIT: Duration = Duration::from_secs(2);
/// The `CompanyId` of the mock's users (its default).
const MOCK_COMPANY: &str = "a1c3e5f7-0000-4000-8000-00000000c0de";
/// The session cookie of an app served over plain http on loopback.
const SESSION_COOKIE: &str = "hcss-session";

// ---------------------------------------------------------------------------------------
// The fault windows
// ---------------------------------------------------------------------------------------

/// A kind of window: healthy, or one fault (see the table above).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Healthy,
    Token500,
    Token503,
    Token429,
    TokenSlow,
    TokenLateAfterRotating,
    StoreRefusesWrites,
    RedisWritesPaused,
    RedisConnectionsCut,
    RedisOutage,
    RedisRestart,
}

impl Fault {
    /// Every kind of window, in the order of the figures.
    const ALL: [Fault; 11] = [
        Fault::Healthy,
        Fault::Token500,
        Fault::Token503,
        Fault::Token429,
        Fault::TokenSlow,
        Fault::TokenLateAfterRotating,
        Fault::StoreRefusesWrites,
        Fault::RedisWritesPaused,
        Fault::RedisConnectionsCut,
        Fault::RedisOutage,
        Fault::RedisRestart,
    ];

    /// The faults of one cycle, the Redis ones between the others so that a short run
    /// meets them all; each follows a healthy window.
    fn cycle(own_redis: bool) -> Vec<Fault> {
        [
            Fault::Token500,
            Fault::RedisWritesPaused,
            Fault::Token503,
            Fault::RedisConnectionsCut,
            Fault::Token429,
            Fault::RedisOutage,
            Fault::TokenSlow,
            Fault::RedisRestart,
            Fault::TokenLateAfterRotating,
            Fault::StoreRefusesWrites,
        ]
        .into_iter()
        .filter(|fault| own_redis || !fault.needs_own_redis())
        .filter(|fault| {
            // `SOAK_ONLY=paused,500` keeps the faults whose names hold one of the words,
            // to chase one interplay of faults.
            std::env::var("SOAK_ONLY").map_or(true, |only| {
                only.split(',')
                    .any(|word| !word.is_empty() && fault.name().contains(word.trim()))
            })
        })
        .collect()
    }

    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> String {
        match self {
            Fault::Healthy => "healthy".into(),
            Fault::Token500 => "token 500 server_error".into(),
            Fault::Token503 => "token 503 temporarily_unavailable (Retry-After 1)".into(),
            Fault::Token429 => "token 429 slow_down (Retry-After 1)".into(),
            Fault::TokenSlow => format!(
                "token slow 2 s (> {} ms http timeout)",
                millis(HTTP_TIMEOUT)
            ),
            Fault::TokenLateAfterRotating => "token 1 s late after rotating".into(),
            Fault::StoreRefusesWrites => format!(
                "store refuses writes {} ms (> {} ms lock lease)",
                millis(REFUSAL),
                millis(REFRESH_LEASE)
            ),
            Fault::RedisWritesPaused => format!(
                "redis writes paused {} ms (> {} ms reply timeout)",
                millis(WRITE_PAUSE),
                millis(REDIS_REPLY_TIMEOUT)
            ),
            Fault::RedisConnectionsCut => {
                format!("redis connections cut every {} ms", millis(CUT_EVERY))
            }
            Fault::RedisOutage => format!(
                "redis stopped {} ms (> {} ms lock lease)",
                millis(OUTAGE),
                millis(REFRESH_LEASE)
            ),
            Fault::RedisRestart => "redis kill -9 and restart (AOF)".into(),
        }
    }

    /// How long the window lasts from its start (a restart's own time included).
    fn length(self) -> Duration {
        match self {
            Fault::Healthy => HEALTHY,
            Fault::RedisWritesPaused => WRITE_PAUSE.saturating_add(Duration::from_millis(400)),
            Fault::StoreRefusesWrites => REFUSAL,
            Fault::RedisOutage => OUTAGE,
            _ => FAULT,
        }
    }

    fn token_fault(self) -> Option<TokenFault> {
        match self {
            Fault::Token500 => Some(TokenFault::Error {
                status: 500,
                error: "server_error",
                retry_after: None,
            }),
            Fault::Token503 => Some(TokenFault::Error {
                status: 503,
                error: "temporarily_unavailable",
                retry_after: Some(1),
            }),
            Fault::Token429 => Some(TokenFault::Error {
                status: 429,
                error: "slow_down",
                retry_after: Some(1),
            }),
            Fault::TokenSlow => Some(TokenFault::Slow(Duration::from_secs(2))),
            Fault::TokenLateAfterRotating => {
                Some(TokenFault::SlowAfterRotating(Duration::from_secs(1)))
            }
            _ => None,
        }
    }

    /// Whether the window disturbs the Redis server itself (run on the soak's own only).
    fn needs_own_redis(self) -> bool {
        matches!(
            self,
            Fault::RedisWritesPaused
                | Fault::RedisConnectionsCut
                | Fault::RedisOutage
                | Fault::RedisRestart
        )
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Turns the store's refused writes on and off, on every instance.
type Switch = Arc<dyn Fn(bool) + Send + Sync>;

/// What the controller switches: the mock's token endpoint, the stores' refused writes,
/// and the soak's own Redis server.
struct Faults {
    mock: Arc<MockHcssIdentity>,
    refuse_writes: Switch,
    redis: Option<Arc<OwnRedis>>,
}

impl Faults {
    /// Turns `fault` on. A Redis fault is done here: cuts repeat until `until`, a restart
    /// returns once the server answers again.
    async fn begin(&self, fault: Fault, until: Instant) -> Result<(), String> {
        self.mock.set_token_fault(fault.token_fault());
        (self.refuse_writes)(fault == Fault::StoreRefusesWrites);
        match &self.redis {
            Some(redis) if fault.needs_own_redis() => redis.begin(fault, until).await,
            _ => Ok(()),
        }
    }

    /// Turns `fault` off.
    async fn end(&self, fault: Fault) -> Result<(), String> {
        self.mock.set_token_fault(None);
        (self.refuse_writes)(false);
        match &self.redis {
            Some(redis) if fault.needs_own_redis() => redis.end(fault).await,
            _ => Ok(()),
        }
    }
}

/// One window of the fault cycle, as it happened: counts between its start and end.
struct Window {
    from: f64,
    to: f64,
    fault: Fault,
    counts: Counts,
}

/// The counts a window reports: the soak's (requests answered) and the mock's.
#[derive(Clone, Copy, Default)]
struct Counts {
    requests: u64,
    ok: u64,
    unavailable: u64,
    unauthorized: u64,
    timeouts: u64,
    refreshes: u64,
    reuse: u64,
}

impl Counts {
    fn now(load: &Load, mock: &MockHcssIdentity) -> Counts {
        let (t, m) = (&load.total, mock.counts());
        Counts {
            requests: read(&t.requests),
            ok: read(&t.ok),
            unavailable: read(&t.unavailable),
            unauthorized: read(&t.unauthorized),
            timeouts: read(&t.timeouts),
            refreshes: m.refreshes as u64,
            reuse: m.reuse_detected as u64,
        }
    }

    fn since(self, before: Counts) -> Counts {
        Counts {
            requests: self.requests - before.requests,
            ok: self.ok - before.ok,
            unavailable: self.unavailable - before.unavailable,
            unauthorized: self.unauthorized - before.unauthorized,
            timeouts: self.timeouts - before.timeouts,
            refreshes: self.refreshes - before.refreshes,
            reuse: self.reuse - before.reuse,
        }
    }

    fn add(&mut self, other: Counts) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.unavailable += other.unavailable;
        self.unauthorized += other.unauthorized;
        self.timeouts += other.timeouts;
        self.refreshes += other.refreshes;
        self.reuse += other.reuse;
    }
}

/// Runs the windows, a healthy one before each fault, until the deadline.
async fn controller(load: Arc<Load>, faults: Faults) -> Result<Vec<Window>, String> {
    let cycle = Fault::cycle(faults.redis.is_some());
    let mut windows = Vec::new();
    for fault in cycle
        .iter()
        .cycle()
        .flat_map(|&fault| [Fault::Healthy, fault])
    {
        if Instant::now() >= load.deadline {
            break;
        }
        match window(&load, &faults, fault).await {
            Ok(window) => windows.push(window),
            Err(err) => {
                // The soak cannot do what it says: the load stops too.
                load.stopped.store(true, Ordering::SeqCst);
                return Err(err);
            }
        }
    }
    Ok(windows)
}

/// One window: `fault` on for its length, then off.
async fn window(load: &Load, faults: &Faults, fault: Fault) -> Result<Window, String> {
    let start = Instant::now();
    let before = Counts::now(load, &faults.mock);
    load.fault.store(fault.index(), Ordering::SeqCst);
    let begun = faults.begin(fault, start + fault.length()).await;
    if begun.is_ok() {
        tokio::time::sleep_until(start + fault.length()).await;
    }
    let ended = faults.end(fault).await;
    load.fault.store(Fault::Healthy.index(), Ordering::SeqCst);
    begun
        .and(ended)
        .map_err(|err| format!("{}: {err}", fault.name()))?;
    Ok(Window {
        from: start.duration_since(load.started).as_secs_f64(),
        to: load.started.elapsed().as_secs_f64(),
        fault,
        counts: Counts::now(load, &faults.mock).since(before),
    })
}

// ---------------------------------------------------------------------------------------
// The soak's own Redis server
// ---------------------------------------------------------------------------------------

#[cfg(feature = "redis")]
mod own_redis {
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, MutexGuard};
    use std::time::Duration;

    use tokio::time::Instant;

    use super::{millis, Fault, CUT_EVERY, WRITE_PAUSE};

    /// How long a start or restart may take until the server answers with its data.
    const START_PATIENCE: Duration = Duration::from_secs(20);
    /// How long one command of the soak's own may take.
    const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

    /// A `redis-server` of the soak's own, with an append-only file fsynced on every
    /// write, in a folder of its own. Dropping it kills the server and deletes the folder.
    pub(crate) struct OwnRedis {
        binary: PathBuf,
        dir: PathBuf,
        port: u16,
        server: Mutex<Option<Child>>,
        /// Client connections cut, and restarts, for the figures.
        cut: AtomicU64,
        restarts: AtomicU64,
    }

    impl OwnRedis {
        /// Starts a server on a free port of 127.0.0.1; returns once it answers.
        pub(crate) async fn start() -> Result<Self, String> {
            let binary = on_path("redis-server").ok_or("--own-redis needs redis-server on PATH")?;
            let dir = std::env::temp_dir().join(format!(
                "hcss-soak-redis-{}-{}",
                std::process::id(),
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ));
            std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let mut own = OwnRedis {
                binary,
                dir,
                port: 0,
                server: Mutex::new(None),
                cut: AtomicU64::new(0),
                restarts: AtomicU64::new(0),
            };
            let mut last = String::new();
            // Another process may take the free port before the server binds it.
            for _ in 0..5 {
                own.port = free_port()?;
                own.spawn()?;
                match own.wait_until_ready().await {
                    Ok(()) => return Ok(own),
                    Err(err) => {
                        own.kill();
                        last = err;
                    }
                }
            }
            Err(format!("redis-server did not start: {last}"))
        }

        pub(crate) fn url(&self) -> String {
            format!("redis://127.0.0.1:{}", self.port)
        }

        pub(crate) fn describe(&self) -> String {
            format!(
                "own redis-server on 127.0.0.1:{}, appendonly yes, appendfsync always",
                self.port
            )
        }

        /// Connections cut and restarts so far.
        pub(crate) fn disturbances(&self) -> (u64, u64) {
            (
                self.cut.load(Ordering::Relaxed),
                self.restarts.load(Ordering::Relaxed),
            )
        }

        pub(crate) async fn begin(&self, fault: Fault, until: Instant) -> Result<(), String> {
            match fault {
                Fault::RedisWritesPaused => {
                    self.admin(
                        redis::cmd("CLIENT")
                            .arg("PAUSE")
                            .arg(millis(WRITE_PAUSE))
                            .arg("WRITE"),
                    )
                    .await
                }
                Fault::RedisConnectionsCut => self.cut_connections(until).await,
                Fault::RedisOutage => self.signal("STOP"),
                Fault::RedisRestart => self.restart().await,
                _ => Ok(()),
            }
        }

        pub(crate) async fn end(&self, fault: Fault) -> Result<(), String> {
            match fault {
                // The pause has run out by now; this only makes sure.
                Fault::RedisWritesPaused => self.admin(redis::cmd("CLIENT").arg("UNPAUSE")).await,
                Fault::RedisOutage => self.signal("CONT"),
                _ => Ok(()),
            }
        }

        /// Cuts every client connection (the soak's own excepted: `SKIPME yes`) every
        /// `CUT_EVERY` until `until`.
        async fn cut_connections(&self, until: Instant) -> Result<(), String> {
            loop {
                for kind in ["normal", "pubsub"] {
                    let cut: u64 = self
                        .admin(redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg(kind))
                        .await?;
                    self.cut.fetch_add(cut, Ordering::Relaxed);
                }
                if Instant::now() + CUT_EVERY >= until {
                    return Ok(());
                }
                tokio::time::sleep(CUT_EVERY).await;
            }
        }

        /// `kill -9`, then the server again on the same port from the same folder.
        async fn restart(&self) -> Result<(), String> {
            self.kill();
            self.spawn()?;
            self.restarts.fetch_add(1, Ordering::Relaxed);
            self.wait_until_ready().await
        }

        fn spawn(&self) -> Result<(), String> {
            let server = Command::new(&self.binary)
                .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
                .args([
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    "always",
                    "--save",
                    "",
                ])
                .arg("--dir")
                .arg(&self.dir)
                .arg("--logfile")
                .arg(self.dir.join("redis.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("redis-server: {e}"))?;
            *self.server() = Some(server);
            Ok(())
        }

        /// Polls a process starting (not an event): until this server answers with its
        /// data loaded.
        async fn wait_until_ready(&self) -> Result<(), String> {
            let deadline = Instant::now() + START_PATIENCE;
            let pid = format!("process_id:{}", self.pid()?);
            loop {
                if self.exited() {
                    return Err(format!("it exited (port {} taken?)", self.port));
                }
                if let Ok(info) = self.admin::<String>(&redis::cmd("INFO")).await {
                    let line = |want: &str| info.lines().any(|l| l.trim() == want);
                    if !line(&pid) {
                        return Err(format!("another server answers on port {}", self.port));
                    }
                    if line("loading:0") {
                        return Ok(());
                    }
                }
                if Instant::now() >= deadline {
                    return Err(format!("no answer within {} s", START_PATIENCE.as_secs()));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        /// One command on a fresh connection of the soak's own.
        async fn admin<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
            let client = redis::Client::open(self.url()).map_err(|e| e.to_string())?;
            let reply = tokio::time::timeout(ADMIN_TIMEOUT, async {
                let mut conn = client.get_multiplexed_async_connection().await?;
                cmd.query_async(&mut conn).await
            })
            .await;
            match reply {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(err)) => Err(err.to_string()),
                Err(_) => Err(format!("no answer within {} s", ADMIN_TIMEOUT.as_secs())),
            }
        }

        fn signal(&self, signal: &str) -> Result<(), String> {
            let status = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(self.pid()?.to_string())
                .status()
                .map_err(|e| format!("kill -{signal}: {e}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("kill -{signal}: {status}"))
            }
        }

        fn server(&self) -> MutexGuard<'_, Option<Child>> {
            self.server.lock().unwrap_or_else(|e| e.into_inner())
        }

        fn pid(&self) -> Result<u32, String> {
            self.server()
                .as_ref()
                .map(Child::id)
                .ok_or_else(|| "redis-server is not running".to_owned())
        }

        fn exited(&self) -> bool {
            self.server()
                .as_mut()
                .is_none_or(|child| matches!(child.try_wait(), Ok(Some(_))))
        }

        /// SIGKILL (which ends a stopped server too), and the exit reaped.
        fn kill(&self) {
            if let Some(mut server) = self.server().take() {
                let _ = server.kill();
                let _ = server.wait();
            }
        }
    }

    impl Drop for OwnRedis {
        fn drop(&mut self) {
            self.kill();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn on_path(name: &str) -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    }

    fn free_port() -> Result<u16, String> {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|addr| addr.port())
            .map_err(|e| format!("no free port: {e}"))
    }
}

/// Without the `redis` feature there is no Redis to start (`main` refuses `--own-redis`).
#[cfg(not(feature = "redis"))]
mod own_redis {
    use super::{Fault, Instant};

    pub(crate) enum OwnRedis {}

    impl OwnRedis {
        pub(crate) async fn start() -> Result<Self, String> {
            Err("--own-redis needs the `redis` feature".into())
        }
        pub(crate) fn url(&self) -> String {
            match *self {}
        }
        pub(crate) fn describe(&self) -> String {
            match *self {}
        }
        pub(crate) fn disturbances(&self) -> (u64, u64) {
            match *self {}
        }
        pub(crate) async fn begin(&self, _: Fault, _: Instant) -> Result<(), String> {
            match *self {}
        }
        pub(crate) async fn end(&self, _: Fault) -> Result<(), String> {
            match *self {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------

struct Args {
    seconds: u64,
    sessions: usize,
    rate: u64,
    redis: Option<String>,
    own_redis: bool,
}

const USAGE: &str =
    "usage: soak [--seconds N] [--sessions N] [--rate N] [--redis redis://HOST:PORT | --own-redis]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seconds: 20,
        sessions: 60,
        rate: DEFAULT_RATE,
        redis: None,
        own_redis: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag} takes a whole number"))
        };
        match flag.as_str() {
            "--seconds" => args.seconds = number(value()?)?,
            "--sessions" => args.sessions = number(value()?)? as usize,
            "--rate" => args.rate = number(value()?)?,
            "--redis" => args.redis = Some(value()?),
            "--own-redis" => args.own_redis = true,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    if args.seconds == 0 || args.seconds > 3600 {
        return Err("--seconds must be between 1 and 3600".into());
    }
    if args.sessions == 0 || args.sessions > 10_000 {
        return Err("--sessions must be between 1 and 10000".into());
    }
    if args.rate == 0 || args.rate > 100_000 {
        return Err("--rate must be between 1 and 100000".into());
    }
    if args.redis.is_some() && args.own_redis {
        return Err("--redis and --own-redis exclude each other".into());
    }
    if cfg!(not(feature = "redis")) && (args.redis.is_some() || args.own_redis) {
        return Err("--redis and --own-redis need the `redis` feature: \
                    cargo run -p hcss-auth-tools --bin soak -- ..."
            .into());
    }
    Ok(args)
}

// ---------------------------------------------------------------------------------------
// The app
// ---------------------------------------------------------------------------------------

async fn whoami(_token: HcssToken) -> &'static str {
    "ok"
}

/// `GET /api`: the business units as the signed-in user through `HcssApi`: 200, or the
/// client's error as it maps it (503 `Busy`/`Unavailable`, 401 `login_required`).
async fn api_call(
    axum::extract::State(api): axum::extract::State<HcssApi>,
    session: HcssSession,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match api
        .as_user(&session)
        .get("/heavyjob/api/v1/businessUnits")
        .send()
        .await
    {
        Ok(response) => response.status().into_response(),
        Err(err) => err.into_response(),
    }
}

fn app_config(mock: &MockHcssIdentity, url: &str) -> Result<HcssConfig, hcss_auth::ConfigError> {
    mock.config_builder(&format!("{url}/hcss/callback"))
        .scopes(["heavyjob:read", "offline_access"])
        .http_timeout(HTTP_TIMEOUT)
        .retry_after(Duration::from_secs(1))
        .api_url(mock.api_url())
        .api_max_wait(API_MAX_WAIT)
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
    let app = Router::new()
        .route("/whoami", get(whoami))
        .route("/api", get(api_call))
        .with_state(HcssApi::new(&auth))
        .layer(auth);
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            eprintln!("soak: an app instance stopped: {err}");
        }
    });
    Ok(url)
}

/// The app instances, what they run on, and how their store's writes are refused.
struct Apps {
    urls: Vec<String>,
    mode: String,
    refuse_writes: Switch,
}

/// One instance on a `MemoryStore`, or two sharing a `RedisStore` at `redis_url`.
async fn start_apps(
    mock: &MockHcssIdentity,
    redis_url: Option<&str>,
    prefix: &str,
) -> Result<Apps, Box<dyn Error>> {
    let Some(url) = redis_url else {
        let store = FaultyStore::new(MemoryStore::new());
        let switch = store.clone();
        return Ok(Apps {
            urls: vec![start_app(mock, store).await?],
            mode: "memory (1 instance)".into(),
            refuse_writes: Arc::new(move |on| switch.refuse_writes(on)),
        });
    };
    #[cfg(feature = "redis")]
    {
        let (mut urls, mut stores) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            let store = FaultyStore::new(
                hcss_auth::store::RedisStore::connect(url)
                    .await?
                    .with_prefix(prefix),
            );
            stores.push(store.clone());
            urls.push(start_app(mock, store).await?);
        }
        Ok(Apps {
            urls,
            mode: format!("redis (2 instances, prefix {prefix})"),
            refuse_writes: Arc::new(move |on| stores.iter().for_each(|s| s.refuse_writes(on))),
        })
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = (url, prefix);
        Err("the redis modes need the `redis` feature".into())
    }
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

/// Signs `sessions` sessions in on `app`, `CONCURRENCY` at a time; returns their cookies.
async fn sign_in_all(
    client: &reqwest::Client,
    app: &str,
    sessions: usize,
) -> Result<Vec<String>, Box<dyn Error>> {
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let mut logins = JoinSet::new();
    for i in 0..sessions {
        let (client, app, limit) = (client.clone(), app.to_owned(), limit.clone());
        logins.spawn(async move {
            let _turn = limit.acquire().await;
            (i, sign_in(&client, &app).await)
        });
    }
    let mut cookies = vec![String::new(); sessions];
    while let Some(joined) = logins.join_next().await {
        let (i, signed_in) = joined?;
        cookies[i] = signed_in.map_err(|e| format!("session {i} could not sign in: {e}"))?;
    }
    Ok(cookies)
}

// ---------------------------------------------------------------------------------------
// The load
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
    fault: Fault,
    instance: usize,
}

struct Load {
    client: reqwest::Client,
    apps: Vec<String>,
    cookies: Vec<String>,
    started: Instant,
    deadline: Instant,
    /// The pause between two requests of one loop.
    pause: Duration,
    /// The current window's `Fault::index`.
    fault: AtomicUsize,
    total: Tally,
    first_401: Mutex<Vec<Option<Loss>>>,
    /// Set when a fault window failed: the loops stop before the deadline.
    stopped: AtomicBool,
    api: ApiTally,
}

/// The API calls' answers, and the 401s per session.
struct ApiTally {
    calls: AtomicU64,
    ok: AtomicU64,
    unavailable: AtomicU64,
    unauthorized: AtomicU64,
    other: AtomicU64,
    unauthorized_by_session: Vec<AtomicU64>,
}

impl ApiTally {
    fn new(sessions: usize) -> Self {
        Self {
            calls: AtomicU64::new(0),
            ok: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            unauthorized: AtomicU64::new(0),
            other: AtomicU64::new(0),
            unauthorized_by_session: (0..sessions).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// One loop of API calls until the deadline: the sessions in turn (loop `task` takes
/// every `API_LOOPS`th), the instances in turn.
async fn api_worker(load: Arc<Load>, task: usize) {
    let sessions = load.cookies.len();
    let mut turn = task;
    let mut rng = ((task + 1) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    tokio::time::sleep(jittered(API_PAUSE, &mut rng) / 2).await;
    while Instant::now() < load.deadline && !load.stopped.load(Ordering::SeqCst) {
        let (session, instance) = (turn % sessions, turn % load.apps.len());
        turn += API_LOOPS;
        let sent = load
            .client
            .get(format!("{}/api", load.apps[instance]))
            .header(COOKIE, &load.cookies[session])
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await;
        let t = &load.api;
        bump(&t.calls);
        match sent.map(|response| response.status()) {
            Ok(StatusCode::OK) => bump(&t.ok),
            Ok(StatusCode::SERVICE_UNAVAILABLE) => bump(&t.unavailable),
            Ok(StatusCode::UNAUTHORIZED) => {
                bump(&t.unauthorized);
                bump(&t.unauthorized_by_session[session]);
            }
            _ => bump(&t.other),
        }
        tokio::time::sleep(jittered(API_PAUSE, &mut rng)).await;
    }
}

fn xorshift(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// `pause` scaled by a random factor between 0.5 and 1.5, so that the loops spread out.
fn jittered(pause: Duration, rng: &mut u64) -> Duration {
    pause.mul_f64(0.5 + (xorshift(rng) % 1024) as f64 / 1024.0)
}

/// One request loop of one session, until the deadline; with two instances it uses them
/// in turn.
async fn worker(load: Arc<Load>, session: usize, task: usize) {
    let mut rng =
        ((session * TASKS_PER_SESSION + task + 1) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    tokio::time::sleep(jittered(load.pause, &mut rng) / 2).await;
    let mut turn = task;
    while Instant::now() < load.deadline && !load.stopped.load(Ordering::SeqCst) {
        let instance = turn % load.apps.len();
        turn += 1;
        let abandoned = xorshift(&mut rng).is_multiple_of(10);
        let fault = Fault::ALL[load.fault.load(Ordering::SeqCst)];
        let answer = get_whoami(&load, session, instance, abandoned).await;
        load.total.record(abandoned, &answer);
        let mut pause = jittered(load.pause, &mut rng);
        if let Answer::Status(StatusCode::UNAUTHORIZED) = answer {
            let mut losses = load.first_401.lock().unwrap_or_else(|e| e.into_inner());
            losses[session].get_or_insert(Loss {
                at: load.started.elapsed().as_secs_f64(),
                fault,
                instance,
            });
            pause = pause.max(Duration::from_millis(100));
        }
        tokio::time::sleep(pause).await;
    }
}

/// One `GET /whoami` of `session` on `instance`; an abandoned one gives up after 50 ms.
async fn get_whoami(load: &Load, session: usize, instance: usize, abandoned: bool) -> Answer {
    let timeout = if abandoned {
        ABANDON_AFTER
    } else {
        REQUEST_TIMEOUT
    };
    let sent = load
        .client
        .get(format!("{}/whoami", load.apps[instance]))
        .header(COOKIE, &load.cookies[session])
        .timeout(timeout)
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status();
            match response.bytes().await {
                Err(e) if e.is_timeout() => Answer::Timeout,
                _ => Answer::Status(status),
            }
        }
        Err(e) if e.is_timeout() => Answer::Timeout,
        Err(_) => Answer::Transport,
    }
}

/// How late the runtime woke a timer: a saturated CPU shows here first.
#[derive(Default)]
struct Lag {
    ticks: u64,
    stalls: u64,
    max: Duration,
    total: Duration,
}

/// Measures the lateness of a `LAG_TICK` timer while the load runs.
async fn lag_monitor(load: Arc<Load>) -> Lag {
    let mut lag = Lag::default();
    let mut next = Instant::now() + LAG_TICK;
    while next < load.deadline && !load.stopped.load(Ordering::SeqCst) {
        tokio::time::sleep_until(next).await;
        let late = Instant::now().saturating_duration_since(next);
        lag.ticks += 1;
        lag.total += late;
        lag.max = lag.max.max(late);
        if late >= LAG_STALL {
            lag.stalls += 1;
        }
        next = Instant::now() + LAG_TICK;
    }
    lag
}

// ---------------------------------------------------------------------------------------
// The final check
// ---------------------------------------------------------------------------------------

/// Every session once more on every instance, `CONCURRENCY` sessions at a time: each
/// session's answers, per instance.
async fn final_check(
    client: &reqwest::Client,
    apps: &[String],
    cookies: &[String],
) -> Result<Vec<Vec<String>>, Box<dyn Error>> {
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let mut checks = JoinSet::new();
    for (i, cookie) in cookies.iter().enumerate() {
        let (client, apps, cookie, limit) =
            (client.clone(), apps.to_vec(), cookie.clone(), limit.clone());
        checks.spawn(async move {
            let _turn = limit.acquire().await;
            let mut answers = Vec::new();
            for app in &apps {
                answers.push(final_answer(&client, app, &cookie).await);
            }
            (i, answers)
        });
    }
    let mut finals = vec![Vec::new(); cookies.len()];
    while let Some(joined) = checks.join_next().await {
        let (i, answers) = joined?;
        finals[i] = answers;
    }
    Ok(finals)
}

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

fn main() {
    let code = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(soak()),
        Err(err) => {
            eprintln!("soak: no runtime: {err}");
            2
        }
    };
    // The runtime is gone, and every task with it: what held the own Redis server let go,
    // so the server is stopped before the process exits (which runs no destructor).
    std::process::exit(code);
}

/// Parses the arguments, runs the soak, cleans up a shared Redis; returns the exit code.
async fn soak() -> i32 {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("soak: {message}");
            return 2;
        }
    };
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

    outcome.unwrap_or_else(|err| {
        eprintln!("soak: {err}");
        2
    })
}

/// The whole soak; returns the exit code. The own Redis server, if any, is stopped once
/// this and the tasks it started have let go of it.
async fn run(args: &Args, prefix: &str) -> Result<i32, Box<dyn Error>> {
    let mock = Arc::new(
        MockHcssIdentity::builder()
            .access_token_lifetime(ACCESS_TOKEN_LIFETIME)
            .api_limits(MockApiLimits::hcss())
            .start()
            .await,
    );
    let own_redis = match args.own_redis {
        true => Some(Arc::new(OwnRedis::start().await?)),
        false => None,
    };
    let redis_url = args.redis.clone().or(own_redis.as_ref().map(|r| r.url()));
    let mut apps = start_apps(&mock, redis_url.as_deref(), prefix).await?;
    if let Some(redis) = &own_redis {
        apps.mode = format!("{} (2 instances)", redis.describe());
    }

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    // A login completes on the instance where it started.
    let cookies = sign_in_all(&client, &apps.urls[0], args.sessions).await?;
    let at_start = mock.counts();
    let loops = args.sessions * TASKS_PER_SESSION;
    let pause = Duration::from_secs_f64(loops as f64 / args.rate as f64).max(MIN_PAUSE);
    println!(
        "signed in {} sessions ({} code exchanges); load for {} s on {}; {} loops, {} ms apart",
        args.sessions,
        at_start.code_exchanges,
        args.seconds,
        apps.mode,
        loops,
        millis(pause)
    );

    let started = Instant::now();
    let load = Arc::new(Load {
        client: client.clone(),
        apps: apps.urls.clone(),
        cookies,
        started,
        deadline: started + Duration::from_secs(args.seconds),
        pause,
        fault: AtomicUsize::new(Fault::Healthy.index()),
        total: Tally::default(),
        first_401: Mutex::new(vec![None; args.sessions]),
        stopped: AtomicBool::new(false),
        api: ApiTally::new(args.sessions),
    });
    let faults = Faults {
        mock: mock.clone(),
        refuse_writes: apps.refuse_writes.clone(),
        redis: own_redis.clone(),
    };
    let switcher = tokio::spawn(controller(load.clone(), faults));
    let lag = tokio::spawn(lag_monitor(load.clone()));
    let mut workers = JoinSet::new();
    for session in 0..args.sessions {
        for task in 0..TASKS_PER_SESSION {
            workers.spawn(worker(load.clone(), session, task));
        }
    }
    for task in 0..API_LOOPS {
        workers.spawn(api_worker(load.clone(), task));
    }
    while let Some(joined) = workers.join_next().await {
        joined?;
    }
    let windows = switcher
        .await?
        .map_err(|err| format!("a fault window failed: {err}"))?;
    let lag = lag.await?;
    let elapsed = started.elapsed();

    let finals = final_check(&client, &apps.urls, &load.cookies).await?;
    let report = Report {
        args,
        mode: &apps.mode,
        elapsed,
        pause,
        load: &load,
        lag: &lag,
        since_sign_in: mock.counts().refreshes - at_start.refreshes,
        mock: mock.counts(),
        api_usage: mock.api_usage(MOCK_COMPANY),
        redis: own_redis.as_deref(),
        windows: &windows,
        finals: &finals,
    };
    Ok(report.print())
}

// ---------------------------------------------------------------------------------------
// Figures
// ---------------------------------------------------------------------------------------

/// What the soak prints at the end.
struct Report<'a> {
    args: &'a Args,
    mode: &'a str,
    elapsed: Duration,
    pause: Duration,
    load: &'a Load,
    lag: &'a Lag,
    /// Refreshes at the mock since the sessions signed in.
    since_sign_in: usize,
    mock: hcss_auth::testing::MockCounts,
    api_usage: hcss_auth::testing::MockApiUsage,
    redis: Option<&'a OwnRedis>,
    windows: &'a [Window],
    finals: &'a [Vec<String>],
}

impl Report<'_> {
    /// Prints the figures; returns the exit code: 1 if a session was lost or a refresh
    /// token reused.
    fn print(&self) -> i32 {
        let lost: Vec<usize> = (0..self.args.sessions)
            .filter(|&i| !self.finals[i].iter().all(|a| a == "200"))
            .collect();
        self.totals(lost.len());
        self.by_window();
        let losses = self
            .load
            .first_401
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let flapped = (0..self.args.sessions)
            .filter(|&i| losses[i].is_some() && !lost.contains(&i))
            .count();
        if flapped > 0 {
            println!();
            println!("  {flapped} session(s) answered 401 during the load but 200 at the end");
        }
        if !lost.is_empty() {
            report_lost(&lost, &losses, self.finals, self.windows);
        }
        // A 401 for a session still signed in at the end: a refresh could have fixed it.
        let api_lost: u64 = (0..self.args.sessions)
            .filter(|i| !lost.contains(i))
            .map(|i| read(&self.load.api.unauthorized_by_session[i]))
            .sum();
        self.api_totals(api_lost);
        let failed = !lost.is_empty() || self.mock.reuse_detected > 0 || api_lost > 0;
        println!();
        println!(
            "{}",
            if failed {
                "FAIL: sessions were lost, a refresh token was reused, or API calls were lost to a 401"
            } else {
                "PASS: every session still signed in, no refresh token reused, no API call lost to a 401"
            }
        );
        i32::from(failed)
    }

    fn api_totals(&self, lost: u64) {
        let t = &self.load.api;
        let usage = self.api_usage;
        println!();
        println!(
            "  API calls through HcssApi  {} ({API_LOOPS} loops, {} ms apart; the mock limits the company to 100 a minute, 20 at once)",
            read(&t.calls),
            millis(API_PAUSE)
        );
        println!("    200                    {}", read(&t.ok));
        println!("    503 (Busy/Unavailable) {}", read(&t.unavailable));
        println!("    401                    {}", read(&t.unauthorized));
        println!("    other                  {}", read(&t.other));
        println!("    lost to a 401 a refresh could fix: {lost}");
        println!(
            "  mock API                 {} calls, {} answered 429, at most {} in flight, at most {} in a window",
            usage.calls, usage.throttled, usage.max_in_flight, usage.max_in_window
        );
    }

    fn totals(&self, lost: usize) {
        let t = &self.load.total;
        let lag = self.lag;
        println!();
        println!("soak figures");
        println!(
            "  duration                 {:.1} s (windows: {} s healthy, then a fault, in turn)",
            self.elapsed.as_secs_f64(),
            HEALTHY.as_secs()
        );
        println!(
            "  sessions                 {} ({} request loops each, {} ms apart)",
            self.args.sessions,
            TASKS_PER_SESSION,
            millis(self.pause)
        );
        println!("  store                    {}", self.mode);
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
            "  mock refreshes           {} ({} since sign-in)",
            self.mock.refreshes, self.since_sign_in
        );
        println!("  mock reuse_detected      {}", self.mock.reuse_detected);
        println!("  mock code exchanges      {}", self.mock.code_exchanges);
        println!("  mock revocations         {}", self.mock.revocations);
        if let Some(redis) = self.redis {
            let (cut, restarts) = redis.disturbances();
            println!("  redis connections cut    {cut}; restarts {restarts}");
        }
        println!(
            "  timer lag                max {} ms, mean {:.1} ms, {} of {} ticks late by {} ms or more",
            millis(lag.max),
            lag.total.as_secs_f64() * 1000.0 / lag.ticks.max(1) as f64,
            lag.stalls,
            lag.ticks,
            millis(LAG_STALL)
        );
        println!(
            "  sessions lost            {lost} / {} (signed in at the end: {})",
            self.args.sessions,
            self.args.sessions - lost
        );
    }

    /// Counts per kind of window (requests counted when answered), and the windows in
    /// which a session answered 401 or a refresh token was reused.
    fn by_window(&self) {
        let mut kinds = [(0usize, Counts::default()); Fault::ALL.len()];
        for w in self.windows {
            kinds[w.fault.index()].0 += 1;
            kinds[w.fault.index()].1.add(w.counts);
        }
        println!();
        println!(
            "  {:<56} {:>4} {:>8} {:>8} {:>7} {:>5} {:>8} {:>9} {:>5}",
            "by window", "n", "requests", "200", "503", "401", "timeouts", "refreshes", "reuse"
        );
        for (fault, (n, c)) in Fault::ALL.iter().zip(kinds) {
            if n > 0 {
                println!(
                    "  {:<56} {n:>4} {:>8} {:>8} {:>7} {:>5} {:>8} {:>9} {:>5}",
                    fault.name(),
                    c.requests,
                    c.ok,
                    c.unavailable,
                    c.unauthorized,
                    c.timeouts,
                    c.refreshes,
                    c.reuse
                );
            }
        }
        // The first ones matter: later ones often show sessions already lost.
        let troubled: Vec<&Window> = self
            .windows
            .iter()
            .filter(|w| w.counts.unauthorized > 0 || w.counts.reuse > 0)
            .collect();
        if troubled.is_empty() {
            return;
        }
        println!();
        println!(
            "  {:<11} {:<56} {:>9} {:>5} {:>5}",
            "window (s)", "with 401s or reuse", "refreshes", "reuse", "401s"
        );
        for w in troubled.iter().take(SHOWN_LINES) {
            println!(
                "  {:>5.1}-{:<5.1} {:<56} {:>9} {:>5} {:>5}",
                w.from,
                w.to,
                w.fault.name(),
                w.counts.refreshes,
                w.counts.reuse,
                w.counts.unauthorized
            );
        }
        if troubled.len() > SHOWN_LINES {
            println!("  ... and {} more", troubled.len() - SHOWN_LINES);
        }
    }
}

/// Lost sessions by (last fault window before the first 401, the window kind when it
/// was sent, instance), so in the order they were lost: the sessions, the earliest and
/// the latest first 401.
type LossGroups = BTreeMap<(Option<usize>, usize, usize), (Vec<usize>, f64, f64)>;

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
            .rposition(|w| w.fault != Fault::Healthy && w.from <= loss.at);
        let group = groups
            .entry((after, loss.fault.index(), loss.instance))
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
    for ((after, fault, instance), (sessions, from, to)) in groups.iter().take(SHOWN_LINES) {
        let after = match after {
            Some(w) => format!(
                "after the fault window {:.1}-{:.1} s \"{}\"",
                windows[*w].from,
                windows[*w].to,
                windows[*w].fault.name()
            ),
            None => "before any fault".to_owned(),
        };
        println!(
            "    {} first answered 401 at {from:.2}-{to:.2} s on instance {instance}, during \"{}\", {after} (sessions {})",
            sessions.len(),
            Fault::ALL[*fault].name(),
            names(sessions)
        );
    }
    if groups.len() > SHOWN_LINES {
        println!("    ... and {} more groups", groups.len() - SHOWN_LINES);
    }
    if !silent.is_empty() {
        println!(
            "    {} never answered 401 during the load (sessions {})",
            silent.len(),
            names(&silent)
        );
    }
}
