//! `RedisStore`: logins and sessions shared by every instance of an app.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;

use super::near_cache::{self, NearCache};
use super::{
    owners_of, CallAdmission, CallLimits, Coordination, KeyKind, LoginTransaction, SessionOwner,
    StateStore, StoreError, StoreFuture, StoreKey, TokenSet, TokenStore,
};

/// Gives back the slots of the calls that ended (`ARGV[6..]`), then takes a slot in a
/// company's call budget (`KEYS[1]`: the leases in flight, a sorted set scored by when
/// each ends; `KEYS[2]`: the calls of the window, scored by when each started or ended),
/// on Redis's clock in milliseconds. `ARGV`: call id, in flight at most, per window at
/// most, window ms, lease ms, then the calls released. Answers `{0, in_window}` granted,
/// `{1, ms}` window full, `{2, ms}` in flight full.
static ACQUIRE_CALL: Script = Script::new(
    r"local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[4])
local lease = tonumber(ARGV[5])
if #ARGV > 5 then
  for i = 6, #ARGV do
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('ZADD', KEYS[2], 'XX', now, ARGV[i])
  end
  redis.call('PEXPIRE', KEYS[2], math.max(window, lease) + 1000)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. (now - window))
local in_window = redis.call('ZCARD', KEYS[2])
if in_window >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {1, tonumber(oldest[2]) + window + 1 - now}
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {2, tonumber(first[2]) - now}
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('ZADD', KEYS[2], now, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease + 1000)
redis.call('PEXPIRE', KEYS[2], math.max(window, lease) + 1000)
return {0, in_window + 1}",
);

/// Gives back calls' slots and counts each in the window from now. `ARGV`: the window's
/// key TTL in ms, then the call ids.
static RELEASE_CALLS: Script = Script::new(
    r"local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local changed = 0
for i = 2, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
  changed = changed + redis.call('ZADD', KEYS[2], 'XX', 'CH', now, ARGV[i])
end
if changed > 0 then
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
return 1",
);

/// A Lua script run by its SHA-1 (`EVALSHA`: the script's text crosses the network once
/// per server, not with every call), the digest asked of Redis (`SCRIPT LOAD`) the first
/// time, the text sent again (`EVAL`, which loads it) where Redis does not know it.
struct Script {
    source: &'static str,
    sha: std::sync::OnceLock<String>,
}

impl Script {
    const fn new(source: &'static str) -> Self {
        Self {
            source,
            sha: std::sync::OnceLock::new(),
        }
    }
}

/// Releases a lock only for the owner that took it.
const UNLOCK: &str = r"if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
else
  return 0
end";

/// Extends a lock only for the owner that holds it: KEYS[1] the lock; ARGV[1] the owner,
/// ARGV[2] the new TTL in ms.
const RENEW: &str = r"if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
else
  return 0
end";

/// Replaces a token set only over the version it was refreshed from: KEYS[1] the token
/// key; ARGV[1] the expected version, ARGV[2] the new value, ARGV[3] its TTL in ms.
const REPLACE_IF_VERSION: &str = r"local current = redis.call('get', KEYS[1])
if not current then
  return 0
end
local ok, decoded = pcall(cjson.decode, current)
if not ok or type(decoded) ~= 'table' then
  return 0
end
local version = decoded['version'] or 0
if tostring(version) ~= ARGV[1] then
  return 0
end
redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1";

/// A store in Redis, for apps that run several instances behind a load balancer: a login
/// may start on one instance and finish on another, and a session is refreshed once
/// between all of them (a per-session lock, `SET NX PX` with a random owner, released by
/// a compare-and-delete script, expiring by itself if its holder dies).
///
/// Keys, each with a TTL, say what they hold ([`KeyKind`]): `{prefix}tx:{hash}` (logins
/// in progress), `{prefix}tok:{hash}` (sessions' token sets), `{prefix}co:{hash}` (cached
/// company tokens, apart from sessions), `{prefix}own:{hash}` (the sets of session keys
/// of a user or a company, for ending them all; a session leaves them when it ends, and
/// company tokens are never in them), and the locks ([`Coordination`]), named after what
/// they lock: `{prefix}lock:tok:{hash}` (a session's refresh), `{prefix}lock:co:{hash}` (a
/// company token's request) and `{prefix}lock:claim:{hash}` (a sealed login's state,
/// claimed by its callback); and `{prefix}secret:cookie-key`, the key that seals login
/// cookies when the configuration gives none, shared by every instance (created once
/// with `SET NX`, kept without TTL). Values are JSON. Logins and ended sessions are taken
/// with `GETDEL` (Redis 6.2 or later).
/// The connection reconnects by itself after an outage; while Redis is down the flow
/// endpoints and the extractor answer 503. A Redis Cluster works too
/// ([`connect_cluster`](Self::connect_cluster)): every operation touches one key.
///
/// # The near cache
///
/// A store made by [`connect`](Self::connect) or [`connect_lazy`](Self::connect_lazy) keeps the token
/// sets it reads in process, so that a signed-in request costs no Redis round trip, and
/// lets Redis keep that copy true (Redis 6 or later, server-assisted client-side caching:
/// one extra RESP3 connection per store with `CLIENT TRACKING ON BCAST` on the token
/// keys). A logout, a refresh or an ended session on any instance is pushed by Redis to
/// every other instance as it happens, and the copy is dropped before the next request
/// can use it. It holds sessions only: company tokens are always read from Redis. While that connection is down (Redis restarting, a network cut, a Redis
/// without client tracking) nothing is served from the cache, which is emptied at once;
/// a heartbeat `PING` each second finds a silent loss within about two seconds, and no
/// copy is served past its key's TTL or longer than its maximum age (30 s by default)
/// after it was read, whatever happens. Only the hot path reads it: the
/// refresh and logout machinery always asks Redis. Tune it with
/// [`with_near_cache`](Self::with_near_cache), turn it off with
/// [`without_near_cache`](Self::without_near_cache); a cluster store has none.
///
/// ```no_run
/// use hcss_auth::{HcssAuth, HcssConfig, store::RedisStore};
///
/// # async fn run(config: HcssConfig) -> Result<(), Box<dyn std::error::Error>> {
/// let store = RedisStore::connect("redis://127.0.0.1:6379").await?.with_prefix("myapp:hcss:");
/// let layer = HcssAuth::with_store(config, store);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    conn: Connection,
    prefix: Arc<str>,
    /// The near cache; its tracking task starts at first use, once the prefix is final
    /// and a runtime is at hand.
    near: Option<Arc<NearCache>>,
    /// The client of a single server, which the near cache connects with (none for a
    /// cluster).
    client: Option<redis::Client>,
}

/// Token sets a near cache holds at most.
const NEAR_CACHE_CAPACITY: usize = 100_000;
/// How long a near cache trusts a copy at most, by default.
const NEAR_CACHE_MAX_AGE: Duration = Duration::from_secs(30);

/// One Redis server (or a primary behind a proxy), or a cluster.
#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Connection {
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        self.query_redis(cmd).await.map_err(unavailable)
    }

    /// A query, with redis's own error.
    async fn query_redis<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, redis::RedisError> {
        match self {
            Connection::Single(conn) => cmd.query_async(&mut conn.clone()).await,
            Connection::Cluster(conn) => cmd.query_async(&mut conn.clone()).await,
        }
    }

    /// Runs `script` with `keys` and `args`: `EVALSHA`, or `EVAL` where Redis does not
    /// hold the script (a restart, `SCRIPT FLUSH`, another node of a cluster).
    async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        with: impl Fn(&mut redis::Cmd),
    ) -> Result<T, StoreError> {
        let sha = match script.sha.get() {
            Some(sha) => sha.clone(),
            None => {
                let sha: String = self
                    .query(redis::cmd("SCRIPT").arg("LOAD").arg(script.source))
                    .await?;
                script.sha.get_or_init(|| sha).clone()
            }
        };
        let mut by_sha = redis::cmd("EVALSHA");
        by_sha.arg(&sha);
        with(&mut by_sha);
        match self.query_redis(&by_sha).await {
            Err(err)
                if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                let mut by_text = redis::cmd("EVAL");
                by_text.arg(script.source);
                with(&mut by_text);
                self.query(&by_text).await
            }
            answer => answer.map_err(unavailable),
        }
    }

    async fn query_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        match self {
            Connection::Single(conn) => pipe.query_async(&mut conn.clone()).await,
            Connection::Cluster(conn) => pipe.query_async(&mut conn.clone()).await,
        }
        .map_err(unavailable)
    }
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("near_cache", &self.near.as_deref())
            .finish_non_exhaustive()
    }
}

fn unavailable(err: redis::RedisError) -> StoreError {
    StoreError::Unavailable(described(&err))
}

/// What Redis (or the connection to it) said, in its own words ("DB index is out of
/// range", "failed to lookup address information: Name or service not known"), after
/// what went wrong for a network error. Never the URL, which may carry a password:
/// redis's messages do not hold it.
fn described(err: &redis::RedisError) -> String {
    let what = if err.is_connection_refusal() {
        "connection refused: "
    } else if err.is_timeout() {
        "timed out: "
    } else if err.is_connection_dropped() {
        "connection dropped: "
    } else {
        ""
    };
    format!("redis: {what}{err}")
}

/// An error met while connecting: one that no retry mends (the URL, the database index,
/// credentials or permissions refused) is [`StoreError::Misconfigured`]; a network
/// failure or a busy server is [`StoreError::Unavailable`].
fn connect_error(err: redis::RedisError) -> StoreError {
    use redis::{ErrorKind, ServerErrorKind};
    match err.kind() {
        ErrorKind::InvalidClientConfig
        | ErrorKind::AuthenticationFailed
        | ErrorKind::Server(ServerErrorKind::ResponseError | ServerErrorKind::NoPerm) => {
            StoreError::Misconfigured(described(&err))
        }
        _ => unavailable(err),
    }
}

impl RedisStore {
    /// Connects to Redis at `url` (`redis://[user:password@]host:port/db`) and checks it
    /// answers.
    ///
    /// # Errors
    ///
    /// [`StoreError::Misconfigured`] when the URL is invalid or Redis refuses it for good
    /// (a database index out of range, credentials or permissions refused);
    /// [`StoreError::Unavailable`] when Redis cannot be reached or does not answer. Either
    /// says what Redis said, never the password.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let store = Self::connect_lazy(url)?;
        store.ping().await?;
        Ok(store)
    }

    /// Connects to a Redis Cluster through any of its nodes (`redis://host:port` each).
    ///
    /// # Errors
    ///
    /// [`StoreError::Misconfigured`] when a URL is invalid or refused for good,
    /// [`StoreError::Unavailable`] when the cluster does not answer.
    pub async fn connect_cluster(nodes: &[&str]) -> Result<Self, StoreError> {
        let client = ClusterClientBuilder::new(nodes.iter().copied())
            .connection_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            .build()
            .map_err(connect_error)?;
        let conn = client.get_async_connection().await.map_err(connect_error)?;
        let store = Self {
            conn: Connection::Cluster(conn),
            prefix: Arc::from("hcss:"),
            near: None,
            client: None,
        };
        store.ping().await?;
        Ok(store)
    }

    /// The first `PING`, whose failure says whether the configuration is at fault.
    async fn ping(&self) -> Result<(), StoreError> {
        let pong = self.conn.query_redis::<String>(&redis::cmd("PING")).await;
        pong.map(drop).map_err(connect_error)
    }

    /// A store that connects on first use, so an app can start while Redis is down.
    ///
    /// # Errors
    ///
    /// [`StoreError::Misconfigured`] when the URL is invalid, or when called outside a
    /// Tokio runtime (the connection's tasks need one).
    pub fn connect_lazy(url: &str) -> Result<Self, StoreError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(StoreError::Misconfigured(
                "RedisStore::connect_lazy must be called within a Tokio runtime".into(),
            ));
        }
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Misconfigured(format!("invalid redis URL: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let near = NearCache::new(NEAR_CACHE_MAX_AGE, NEAR_CACHE_CAPACITY);
        let conn =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(unavailable)?;
        Ok(Self {
            conn: Connection::Single(conn),
            prefix: Arc::from("hcss:"),
            near: Some(Arc::new(near)),
            client: Some(client),
        })
    }

    /// Sets the key prefix (default `hcss:`), so several apps or test runs can share a
    /// Redis.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = Arc::from(prefix.into());
        self.near = self
            .near
            .map(|near| Arc::new(NearCache::new(near.max_age(), NEAR_CACHE_CAPACITY)));
        self
    }

    /// Keeps the near cache (on by default, see [above](Self#the-near-cache)), each copy
    /// served for `max_age` at most after it was read, a bound should an invalidation
    /// ever be lost. A `max_age` longer than a day is taken as a day (up to
    /// `Duration::MAX`, which before panicked at the first read of a key without a TTL).
    /// Turns it back on after [`without_near_cache`](Self::without_near_cache); no effect
    /// on a cluster store.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), hcss_auth::StoreError> {
    /// use std::time::Duration;
    /// use hcss_auth::store::RedisStore;
    ///
    /// let store = RedisStore::connect("redis://127.0.0.1:6379")
    ///     .await?
    ///     .with_near_cache(Duration::from_secs(10));
    /// # Ok(()) }
    /// ```
    pub fn with_near_cache(mut self, max_age: Duration) -> Self {
        if self.client.is_some() {
            self.near = Some(Arc::new(NearCache::new(max_age, NEAR_CACHE_CAPACITY)));
        }
        self
    }

    /// Turns the near cache off: every signed-in request reads Redis.
    pub fn without_near_cache(mut self) -> Self {
        self.near = None;
        self
    }

    /// Waits until the near cache tracks invalidations over a connection numbered above
    /// `after`: its number and its Redis `CLIENT ID`, for tests that cut it. `None`
    /// without a near cache.
    #[cfg(feature = "test-util")]
    #[doc(hidden)]
    pub async fn near_cache_tracking(&self, after: u64) -> Option<(u64, i64)> {
        Some(self.near()?.tracking(after).await)
    }

    /// Whether the near cache would serve the session under `key` now, without Redis.
    #[cfg(feature = "test-util")]
    #[doc(hidden)]
    pub fn near_cache_holds(&self, key: StoreKey) -> bool {
        self.near().is_some_and(|near| near.holds(key))
    }

    /// The prefix of the sessions' token sets, which the near cache tracks.
    fn token_prefix(&self) -> String {
        format!("{}{}:", self.prefix, kind_prefix(KeyKind::Session))
    }

    /// The near cache, its tracking task started if none runs (not yet, or it ended
    /// with the runtime it ran on).
    fn near(&self) -> Option<&NearCache> {
        let near = self.near.as_ref()?;
        if near.stopped() {
            if let (Ok(runtime), Some(client)) =
                (tokio::runtime::Handle::try_current(), &self.client)
            {
                if near.start() {
                    runtime.spawn(near_cache::track(
                        Arc::downgrade(near),
                        client.clone(),
                        Arc::from(self.token_prefix()),
                    ));
                }
            }
        }
        Some(near)
    }

    /// Drops the near cache's copy of `key` (which holds sessions only).
    fn forget(&self, key: StoreKey) {
        if key.kind() != KeyKind::Session {
            return;
        }
        if let Some(near) = self.near() {
            near.forget(key);
        }
    }

    /// Where what `key` names lives: `{prefix}{kind}:{hash}`.
    fn key(&self, key: StoreKey) -> String {
        self.key_in("", key)
    }

    /// Where the lock on `key` lives: `{prefix}lock:{kind}:{hash}`, so that it says what
    /// it locks.
    fn lock_key(&self, key: StoreKey) -> String {
        self.key_in("lock:", key)
    }

    /// Where a company's call budget lives: its leases in flight and its window, under
    /// one hash tag (`{prefix}budget:{{hash}}:fly` and `:win`), so that a Redis Cluster
    /// keeps both on one node for the script that reads them together.
    fn budget_keys(&self, key: StoreKey) -> (String, String) {
        let base = format!("{}budget:{{{}}}", self.prefix, key.as_str());
        (format!("{base}:fly"), format!("{base}:win"))
    }

    fn key_in(&self, space: &str, key: StoreKey) -> String {
        let kind = kind_prefix(key.kind());
        format!("{}{space}{kind}:{}", self.prefix, key.as_str())
    }

    /// Files a session under the owners its tokens name (`SADD`), the index living as
    /// long as its longest session. Best effort: a failure is logged, and the session is
    /// stored all the same.
    async fn index(&self, key: StoreKey, owners: Vec<SessionOwner>, ttl: Duration) {
        for owner in owners {
            let index = self.key(owner.index_key());
            let filed = async {
                self.conn
                    .query::<i64>(redis::cmd("SADD").arg(&index).arg(key.as_str()))
                    .await?;
                let mut expire = redis::cmd("PEXPIRE");
                expire.arg(&index).arg(millis(ttl));
                // NX gives a new index its TTL, GT extends it (a key without a TTL counts
                // as infinite for GT); before Redis 7, a plain PEXPIRE.
                let nx = self.conn.query::<i64>(expire.clone().arg("NX")).await;
                let gt = self.conn.query::<i64>(expire.clone().arg("GT")).await;
                if nx.is_err() || gt.is_err() {
                    self.conn.query::<i64>(&expire).await?;
                }
                Ok::<_, StoreError>(())
            };
            if let Err(err) = filed.await {
                tracing::warn!(error = %err, "a session was not indexed by its owner");
            }
        }
    }

    /// Takes an ended session out of the indexes of the owners its tokens named (`SREM`).
    /// Best effort: a failure is logged, and the index drops the key when next read.
    async fn unindex(&self, key: StoreKey, ended: Option<&TokenSet>) {
        for owner in ended.map(|t| owners_of(key, t)).unwrap_or_default() {
            let index = self.key(owner.index_key());
            let removed = self
                .conn
                .query::<i64>(redis::cmd("SREM").arg(&index).arg(key.as_str()))
                .await;
            if let Err(err) = removed {
                tracing::debug!(error = %err, "an ended session stays in its owner's index until it is next read");
            }
        }
    }

    /// `SET key value PX ttl`.
    async fn set_px(&self, key: &str, value: String, ttl: Duration) -> Result<(), StoreError> {
        let mut set = redis::cmd("SET");
        set.arg(key).arg(value).arg("PX").arg(millis(ttl));
        self.conn.query(&set).await
    }
}

/// The part of a Redis key that says what it holds.
fn kind_prefix(kind: KeyKind) -> &'static str {
    match kind {
        KeyKind::Session => "tok",
        KeyKind::CompanyToken => "co",
        KeyKind::Login => "tx",
        KeyKind::StateClaim => "claim",
        KeyKind::Owner => "own",
        KeyKind::ApiBudget => "budget",
    }
}

/// How long one Redis operation may take before the request gets a 503.
pub(super) const TIMEOUT: Duration = Duration::from_secs(2);

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(
    text: Option<String>,
) -> Result<Option<T>, StoreError> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}

impl StateStore for RedisStore {
    fn put_transaction(
        &self,
        key: StoreKey,
        transaction: LoginTransaction,
        ttl: Duration,
    ) -> StoreFuture<'_, ()> {
        let key = self.key(key);
        Box::pin(async move {
            let value = to_json(&transaction)?;
            self.set_px(&key, value, ttl).await
        })
    }

    fn take_transaction(&self, key: StoreKey) -> StoreFuture<'_, Option<LoginTransaction>> {
        let key = self.key(key);
        Box::pin(async move {
            let text: Option<String> = self.conn.query(redis::cmd("GETDEL").arg(key)).await?;
            from_json(text)
        })
    }
}

impl TokenStore for RedisStore {
    fn cached(&self, key: StoreKey) -> Option<TokenSet> {
        if key.kind() != KeyKind::Session {
            return None;
        }
        let cached = self.near()?.get(key);
        crate::metrics::near_cache(if cached.is_some() { "hit" } else { "miss" });
        cached
    }

    fn load(&self, key: StoreKey) -> StoreFuture<'_, Option<TokenSet>> {
        let stored = self.key(key);
        Box::pin(async move {
            // The near cache tracks `tok:` keys alone: it holds sessions only.
            let near = self.near().filter(|_| key.kind() == KeyKind::Session);
            let ticket = near.and_then(|near| near.begin(key));
            let Some((near, ticket)) = near.zip(ticket) else {
                let text: Option<String> = self.conn.query(redis::cmd("GET").arg(stored)).await?;
                return from_json::<TokenSet>(text);
            };
            // With its TTL, so that the copy is never served past it (Redis deletes an
            // expired key, and says so, only when its expiry cycle finds it).
            let mut read = redis::pipe();
            read.cmd("GET").arg(&stored).cmd("PTTL").arg(&stored);
            let read = async {
                let (text, ttl): (Option<String>, i64) = self.conn.query_pipe(&read).await?;
                let ttl = u64::try_from(ttl).ok().map(Duration::from_millis);
                Ok((from_json::<TokenSet>(text)?, ttl))
            }
            .await;
            match &read {
                Ok((tokens, ttl)) => near.finish(key, ticket, tokens.as_ref(), *ttl),
                Err(_) => near.finish(key, ticket, None, None),
            }
            read.map(|(tokens, _)| tokens)
        })
    }

    fn store(&self, key: StoreKey, tokens: TokenSet, ttl: Duration) -> StoreFuture<'_, ()> {
        let owners = owners_of(key, &tokens);
        let stored = self.key(key);
        self.forget(key);
        Box::pin(async move {
            let value = to_json(&tokens)?;
            let written = self.set_px(&stored, value, ttl).await;
            self.forget(key);
            written?;
            self.index(key, owners, ttl).await;
            Ok(())
        })
    }

    fn remove(&self, key: StoreKey) -> StoreFuture<'_, ()> {
        let stored = self.key(key);
        self.forget(key);
        Box::pin(async move {
            // GETDEL, not DEL: the claims say which owners' indexes list the session.
            let removed = self
                .conn
                .query::<Option<String>>(redis::cmd("GETDEL").arg(stored))
                .await;
            self.forget(key);
            let ended = from_json::<TokenSet>(removed?).ok().flatten();
            self.unindex(key, ended.as_ref()).await;
            Ok(())
        })
    }

    fn take(&self, key: StoreKey) -> StoreFuture<'_, Option<TokenSet>> {
        let stored = self.key(key);
        self.forget(key);
        Box::pin(async move {
            let text = self.conn.query(redis::cmd("GETDEL").arg(stored)).await;
            self.forget(key);
            let taken = from_json::<TokenSet>(text?)?;
            self.unindex(key, taken.as_ref()).await;
            Ok(taken)
        })
    }

    fn replace_if_version(
        &self,
        key: StoreKey,
        expected_version: u64,
        tokens: TokenSet,
        ttl: Duration,
    ) -> StoreFuture<'_, bool> {
        let owners = owners_of(key, &tokens);
        let stored = self.key(key);
        Box::pin(async move {
            let value = to_json(&tokens)?;
            let mut script = redis::cmd("EVAL");
            script
                .arg(REPLACE_IF_VERSION)
                .arg(1)
                .arg(stored)
                .arg(expected_version.to_string())
                .arg(value)
                .arg(millis(ttl));
            self.forget(key);
            let replaced = self.conn.query::<i64>(&script).await;
            self.forget(key);
            let replaced = replaced? == 1;
            if replaced {
                self.index(key, owners, ttl).await;
            }
            Ok(replaced)
        })
    }

    fn sessions_of(&self, owner: SessionOwner) -> StoreFuture<'_, Vec<StoreKey>> {
        let index = self.key(owner.index_key());
        Box::pin(async move {
            let members: Vec<String> = self.conn.query(redis::cmd("SMEMBERS").arg(&index)).await?;
            let mut live = Vec::new();
            for member in members {
                let Some(key) = StoreKey::from_stored(&member) else {
                    continue;
                };
                let exists: bool = self
                    .conn
                    .query(redis::cmd("EXISTS").arg(self.key(key)))
                    .await?;
                if exists {
                    live.push(key);
                } else {
                    self.conn
                        .query::<i64>(redis::cmd("SREM").arg(&index).arg(member))
                        .await?;
                }
            }
            Ok(live)
        })
    }
}

impl Coordination for RedisStore {
    fn shared_store_checks(&self) -> StoreFuture<'_, Option<Vec<crate::CheckItem>>> {
        use crate::CheckItem;
        Box::pin(async move {
            if let Err(err) = self.ping().await {
                let fix = "check HCSS_REDIS_URL (host, port, database, user and password) \
                           and that this machine reaches Redis";
                let item = CheckItem::fail("redis", format!("not reachable: {err}"), fix);
                return Ok(Some(vec![item]));
            }
            let mut items = vec![CheckItem::pass("redis", "reachable (PING answered)")];
            items.push(match self.near() {
                None => CheckItem::pass(
                    "client tracking",
                    "not used: the near cache is off, every signed-in request reads Redis",
                ),
                Some(near) => match tokio::time::timeout(TIMEOUT, near.tracking(0)).await {
                    Ok(_) => CheckItem::pass(
                        "client tracking",
                        "on: the near cache serves sessions without a Redis read",
                    ),
                    Err(_) => CheckItem::warn(
                        "client tracking",
                        format!(
                            "not on within {} s: every signed-in request reads Redis",
                            TIMEOUT.as_secs()
                        ),
                        "use Redis 6 or later, with an ACL that allows CLIENT TRACKING and \
                         CLIENT ID to this user (or turn the near cache off)",
                    ),
                },
            });
            Ok(Some(items))
        })
    }

    fn try_lock(&self, key: StoreKey, owner: String, ttl: Duration) -> StoreFuture<'_, bool> {
        let lock = self.lock_key(key);
        Box::pin(async move {
            let set: Option<String> = self
                .conn
                .query(
                    redis::cmd("SET")
                        .arg(lock)
                        .arg(owner)
                        .arg("NX")
                        .arg("PX")
                        .arg(millis(ttl)),
                )
                .await?;
            // Whoever refreshes reads the session from Redis, never from a copy.
            self.forget(key);
            Ok(set.is_some())
        })
    }

    fn renew_lock(&self, key: StoreKey, owner: String, ttl: Duration) -> StoreFuture<'_, bool> {
        let key = self.lock_key(key);
        Box::pin(async move {
            let mut renew = redis::cmd("EVAL");
            renew.arg(RENEW).arg(1).arg(key).arg(owner).arg(millis(ttl));
            Ok(self.conn.query::<i64>(&renew).await? == 1)
        })
    }

    fn unlock(&self, key: StoreKey, owner: String) -> StoreFuture<'_, ()> {
        let key = self.lock_key(key);
        Box::pin(async move {
            let mut unlock = redis::cmd("EVAL");
            unlock.arg(UNLOCK).arg(1).arg(key).arg(owner);
            self.conn.query::<i64>(&unlock).await.map(drop)
        })
    }

    fn acquire_call<'a>(
        &'a self,
        budget: StoreKey,
        call: &'a str,
        released: &'a [String],
        limits: CallLimits,
    ) -> StoreFuture<'a, CallAdmission> {
        let (flying, window) = self.budget_keys(budget);
        Box::pin(async move {
            let (in_flight, per_window) = (limits.in_flight, limits.per_window);
            let (window_ms, lease_ms) = (millis(limits.window), millis(limits.lease));
            let (verdict, value): (i64, i64) = self
                .conn
                .eval(&ACQUIRE_CALL, |cmd| {
                    cmd.arg(2).arg(&flying).arg(&window);
                    cmd.arg(call).arg(in_flight).arg(per_window);
                    cmd.arg(window_ms).arg(lease_ms).arg(released);
                })
                .await?;
            let ms = Duration::from_millis(u64::try_from(value).unwrap_or(0));
            Ok(match verdict {
                0 => CallAdmission::Granted {
                    in_window: u32::try_from(value).unwrap_or(u32::MAX),
                },
                1 => CallAdmission::WindowFull { retry_in: ms },
                _ => CallAdmission::InFlightFull { retry_in: ms },
            })
        })
    }

    fn release_calls(
        &self,
        budget: StoreKey,
        calls: Vec<String>,
        limits: CallLimits,
    ) -> StoreFuture<'_, ()> {
        let (flying, window) = self.budget_keys(budget);
        let ttl = millis(limits.window.max(limits.lease)) + 1000;
        Box::pin(async move {
            if calls.is_empty() {
                return Ok(());
            }
            self.conn
                .eval::<i64>(&RELEASE_CALLS, |cmd| {
                    cmd.arg(2).arg(&flying).arg(&window).arg(ttl).arg(&calls);
                })
                .await
                .map(drop)
        })
    }

    fn shared_secret(
        &self,
        name: &'static str,
        proposal: Vec<u8>,
    ) -> StoreFuture<'_, Option<Vec<u8>>> {
        use base64::engine::general_purpose::STANDARD;
        use base64::Engine as _;
        let key = format!("{}secret:{name}", self.prefix);
        let proposal = STANDARD.encode(proposal);
        Box::pin(async move {
            let mut set = redis::cmd("SET");
            set.arg(&key).arg(proposal).arg("NX");
            self.conn.query::<Option<String>>(&set).await?;
            let value: Option<String> = self.conn.query(redis::cmd("GET").arg(&key)).await?;
            let value = value.ok_or_else(|| {
                StoreError::Unavailable("redis: the shared secret vanished after SET NX".into())
            })?;
            STANDARD
                .decode(value)
                .map(Some)
                .map_err(|_| StoreError::Corrupt(format!("the shared secret {name} is not base64")))
        })
    }
}
