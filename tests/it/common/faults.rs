//! Fault cases of the refresh machinery, each run against any store: `tests/it/faults.rs`
//! runs them with `MemoryStore`, `tests/it/redis.rs` with `RedisStore`. Each returns the
//! store key of the session it used, for store-specific checks afterwards.

use std::time::Duration;

use hcss_auth::store::StoreKey;
pub use hcss_auth::testing::FaultyStore;
use hcss_auth::testing::{MockHcssIdentity, TestClock, TokenFault};
use hcss_auth::{StateStore, TokenSet, TokenStore};

use super::{session_key, start_app_with_store, Browser};

pub const SESSION: &str = "hcss-session";

/// A signed-in browser on a fresh app over `store`; the session's access token expired.
pub async fn expired_session<S>(
    mock: &MockHcssIdentity,
    store: S,
    configure: impl FnOnce(hcss_auth::HcssConfigBuilder) -> hcss_auth::HcssConfigBuilder,
) -> (String, Browser, StoreKey, S)
where
    S: StateStore + TokenStore + Clone,
{
    let (url, _auth) = start_app_with_store(mock, configure, store.clone()).await;
    let browser = Browser::new();
    browser.login_at(&url).await;
    let key = session_key(&browser.cookie(SESSION).unwrap());
    age(&store, key).await;
    (url, browser, key, store)
}

/// Makes a session's access token look expired, as time passing would.
pub async fn age<S: TokenStore>(store: &S, key: StoreKey) -> TokenSet {
    let mut tokens = store.load(key).await.unwrap().expect("session stored");
    tokens.expires_at = 1;
    store
        .store(key, tokens.clone(), Duration::from_secs(3600))
        .await
        .unwrap();
    tokens
}

/// Fault 1: a 500 or 503 with an OAuth error body is an outage, not a verdict: 503 with
/// the identity service's own `Retry-After`, the session kept, and it works afterwards.
pub async fn outage_with_oauth_error_bodies_keeps_the_session<S>(store: S) -> StoreKey
where
    S: StateStore + TokenStore + Clone,
{
    let mock = MockHcssIdentity::start().await;
    let (url, browser, key, store) =
        expired_session(&mock, store, |b| b.retry_after(Duration::ZERO)).await;
    let whoami = format!("{url}/whoami");
    for (status, error, retry_after, told) in [
        (500, "server_error", None, "1"),
        (503, "temporarily_unavailable", Some(3), "3"),
    ] {
        mock.set_token_fault(Some(TokenFault::Error {
            status,
            error,
            retry_after,
        }));
        let seen = browser.get(&whoami).await;
        assert_eq!(seen.status, 503, "{status} {error}: {}", seen.body);
        assert_eq!(seen.headers["retry-after"], told, "{status} {error}");
        assert!(
            store.load(key).await.unwrap().is_some(),
            "{status} {error}: the session is kept"
        );
        let page = browser.open(&whoami).await;
        assert_eq!(page.status, 503, "a page load is not sent to log in");
    }
    mock.set_token_fault(None);
    // The 503 said 3 s: that failure stands until then for this session's requests.
    let before = mock.counts().refreshes;
    let remembered = browser.get(&whoami).await;
    assert_eq!(remembered.status, 503);
    assert_eq!(
        mock.counts().refreshes,
        before,
        "a remembered failure makes no call"
    );
    assert!(store.load(key).await.unwrap().is_some());
    key
}

/// Fault 2: `invalid_client` (a rotated client secret) keeps the session, which works
/// again once the identity service accepts the app again.
pub async fn invalid_client_keeps_the_session<S>(store: S) -> StoreKey
where
    S: StateStore + TokenStore + Clone,
{
    let mock = MockHcssIdentity::start().await;
    let (url, browser, key, store) =
        expired_session(&mock, store, |b| b.retry_after(Duration::ZERO)).await;
    let whoami = format!("{url}/whoami");
    for error in ["invalid_client", "unauthorized_client", "invalid_scope"] {
        mock.set_token_fault(Some(TokenFault::Error {
            status: if error == "invalid_client" { 401 } else { 400 },
            error,
            retry_after: None,
        }));
        let seen = browser.get(&whoami).await;
        assert!(seen.status >= 500, "{error}: {} {}", seen.status, seen.body);
        assert!(
            store.load(key).await.unwrap().is_some(),
            "{error}: the session is kept"
        );
    }
    mock.set_token_fault(None);
    let seen = browser.get(&whoami).await;
    assert_eq!(seen.status, 200, "works once the configuration is fixed");
    assert_eq!(mock.counts().reuse_detected, 0);
    key
}

/// Fault 4: a request cancelled while its refresh waits for HCSS (which has already
/// rotated the refresh token) does not cancel the refresh: the next request gets the
/// rotated tokens, and no refresh token is spent twice.
pub async fn a_cancelled_request_does_not_lose_the_rotated_token<S>(store: S) -> StoreKey
where
    S: StateStore + TokenStore + Clone,
{
    let mock = MockHcssIdentity::start().await;
    let (url, browser, key, store) = expired_session(&mock, store, |b| b).await;
    let old = store.load(key).await.unwrap().unwrap();
    mock.set_token_fault(Some(TokenFault::SlowAfterRotating(Duration::from_secs(1))));
    let hurried = browser.get(&format!("{url}/hurried")).await;
    assert_eq!(hurried.status, 504, "the handler gave up on its token");
    assert_eq!(mock.counts().refreshes, 1);
    mock.set_token_fault(None);
    let seen = browser.get(&format!("{url}/business-units")).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    let counts = mock.counts();
    assert_eq!(
        counts.reuse_detected, 0,
        "the spent refresh token was not reused"
    );
    assert_eq!(
        counts.refreshes, 1,
        "the cancelled refresh completed; no second one"
    );
    let now = store.load(key).await.unwrap().unwrap();
    assert_ne!(
        now.refresh_token, old.refresh_token,
        "the rotated token is stored"
    );
    key
}

/// Fault 5: a logout while a refresh is in flight wins: the refresh's result is not
/// written, its new refresh token is revoked, and the old cookie stays signed out.
pub async fn logout_during_a_refresh_wins<S>(store: S) -> StoreKey
where
    S: StateStore + TokenStore + Clone,
{
    let mock = MockHcssIdentity::start().await;
    let (url, browser, key, store) = expired_session(&mock, store, |b| b).await;
    let id = browser.cookie(SESSION).unwrap();
    mock.set_token_fault(Some(TokenFault::SlowAfterRotating(Duration::from_secs(2))));
    let refreshing = {
        let (browser, url) = (browser.clone(), url.clone());
        tokio::spawn(async move { browser.get(&format!("{url}/whoami")).await.status })
    };
    mock.wait_for(|c| c.refreshes == 1).await;
    let logout = browser
        .request("POST", &format!("{url}/hcss/logout"), &[])
        .await;
    assert_eq!(logout.status, 303);
    assert_eq!(
        mock.counts().revocations,
        1,
        "logout revoked what it removed"
    );
    assert_eq!(
        refreshing.await.unwrap(),
        401,
        "the request that refreshed is signed out"
    );
    assert_eq!(
        mock.counts().revocations,
        2,
        "the refresh's new refresh token was revoked"
    );
    assert!(store.load(key).await.unwrap().is_none(), "not written back");
    browser.set_cookie(SESSION, &id);
    assert_eq!(browser.get(&format!("{url}/whoami")).await.status, 401);
    key
}

/// Fault 6: eight requests waiting on a refresh that times out make one call between
/// them, and all get a 503.
pub async fn waiters_share_a_failed_refresh<S>(store: S) -> StoreKey
where
    S: StateStore + TokenStore + Clone,
{
    let mock = MockHcssIdentity::start().await;
    let (url, browser, key, _store) =
        expired_session(&mock, store, |b| b.http_timeout(Duration::from_millis(300))).await;
    mock.set_token_fault(Some(TokenFault::Slow(Duration::from_secs(3))));
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            let (browser, url) = (browser.clone(), url.clone());
            tokio::spawn(async move { browser.get(&format!("{url}/whoami")).await.status })
        })
        .collect();
    for waiter in waiters {
        assert_eq!(waiter.await.unwrap(), 503);
    }
    assert_eq!(
        mock.counts().refreshes,
        1,
        "one token call for eight waiters"
    );
    key
}

/// Fault 3: the store refuses writes right after HCSS rotated the refresh token. The new
/// set is kept in memory and served; once the store takes writes again it is stored,
/// and the next refresh spends the new token, never the old one.
pub async fn refused_writes_keep_the_rotated_token<S>(
    store: S,
    refuse_writes: impl AsyncFn(bool),
) -> StoreKey
where
    S: StateStore + TokenStore + Clone,
{
    let mock = MockHcssIdentity::start().await;
    let (url, browser, key, store) =
        expired_session(&mock, store, |b| b.http_timeout(Duration::from_millis(300))).await;
    let old = store.load(key).await.unwrap().unwrap();
    let units = format!("{url}/business-units");
    // The store starts refusing writes once HCSS has rotated the token.
    mock.set_token_fault(Some(TokenFault::SlowAfterRotating(Duration::from_millis(
        100,
    ))));
    let request = {
        let (browser, units) = (browser.clone(), units.clone());
        tokio::spawn(async move { browser.get(&units).await })
    };
    mock.wait_for(|c| c.refreshes == 1).await;
    refuse_writes(true).await;
    mock.set_token_fault(None);
    let seen = request.await.unwrap();
    assert_eq!(
        seen.status, 200,
        "served with the refreshed token: {}",
        seen.body
    );
    // Still refusing: served from memory, no second refresh.
    assert_eq!(browser.get(&units).await.status, 200);
    assert_eq!(mock.counts().refreshes, 1);
    refuse_writes(false).await;
    assert_eq!(browser.get(&units).await.status, 200);
    let stored = store.load(key).await.unwrap().unwrap();
    assert_ne!(
        stored.refresh_token, old.refresh_token,
        "the rotated token reached the store"
    );
    age(&store, key).await;
    assert_eq!(browser.get(&units).await.status, 200);
    let counts = mock.counts();
    assert_eq!(counts.refreshes, 2);
    assert_eq!(counts.reuse_detected, 0, "no refresh token was spent twice");
    key
}

/// A stored value that no longer parses is "signed out": the value is removed and the
/// next login works.
pub async fn an_unreadable_value_is_signed_out<S>(
    store: S,
    corrupt: impl AsyncFn(StoreKey),
) -> StoreKey
where
    S: StateStore + TokenStore + Clone,
{
    let mock = MockHcssIdentity::start().await;
    let (url, _auth) = start_app_with_store(&mock, |b| b, store.clone()).await;
    let browser = Browser::new();
    browser.login_at(&url).await;
    let key = session_key(&browser.cookie(SESSION).unwrap());
    corrupt(key).await;
    let whoami = format!("{url}/whoami");
    assert_eq!(
        browser.get(&whoami).await.status,
        401,
        "signed out, not 503"
    );
    let page = browser.open(&whoami).await;
    assert_eq!(page.status, 303, "a page load is sent to log in");
    browser.login_at(&url).await;
    assert_eq!(browser.get(&whoami).await.status, 200);
    key
}

/// A session whose refreshed set the store refused, due for a refresh again while the
/// store still refuses: its refresh token is not spent from memory (a spend the store
/// never recorded could be repeated elsewhere); the session answers 503 until the store
/// takes the kept set, then refreshes once from it. Nothing is revoked, nothing reused.
pub async fn refreshing_a_kept_set_keeps_the_session<S>(store: FaultyStore<S>) -> StoreKey
where
    S: StateStore + TokenStore + Clone,
{
    let mock = MockHcssIdentity::start().await;
    let clock = TestClock::new();
    let (url, browser, key, store) = expired_session(&mock, store, |b| {
        b.http_timeout(Duration::from_millis(300))
            .retry_after(Duration::ZERO)
            .test_clock(clock.clone())
    })
    .await;
    let whoami = format!("{url}/whoami");
    // The store starts refusing once HCSS has rotated the token (a refresh that cannot
    // record that it spends the token does not spend it).
    let status =
        answered_after_rotating(&mock, &browser, &whoami, 1, || store.refuse_writes(true)).await;
    assert_eq!(status, 200);
    assert_eq!(mock.counts().refreshes, 1);
    // An hour later the set kept in memory is over; the store still refuses.
    clock.advance(Duration::from_secs(3600));
    let seen = browser.get(&whoami).await;
    assert_eq!(seen.status, 503, "{}", seen.body);
    assert_eq!(
        mock.counts().refreshes,
        1,
        "the kept set was refreshed from memory"
    );
    store.refuse_writes(false);
    // The first request that finds the store back writes the kept set unless its
    // writer task is at it (then the next one finds it written).
    let mut status = 503;
    for _ in 0..50 {
        status = browser.get(&whoami).await.status;
        if status != 503 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(status, 200);
    let counts = mock.counts();
    assert_eq!(counts.refreshes, 2);
    assert_eq!(counts.revocations, 0, "the live refresh token was revoked");
    assert_eq!(counts.reuse_detected, 0);
    // The store holds the newest set: refreshing from it spends a live token.
    age(&store, key).await;
    assert_eq!(browser.get(&whoami).await.status, 200);
    let counts = mock.counts();
    assert_eq!(counts.refreshes, 3);
    assert_eq!(counts.reuse_detected, 0, "the store held a spent set");
    key
}

/// Logging out of a session whose stored value no longer parses signs out (before: 503,
/// and the cookie was kept).
pub async fn logout_of_an_unreadable_session_signs_out<S>(store: FaultyStore<S>) -> StoreKey
where
    S: StateStore + TokenStore + Clone,
{
    let mock = MockHcssIdentity::start().await;
    let (url, _auth) = start_app_with_store(&mock, |b| b, store.clone()).await;
    let browser = Browser::new();
    browser.login_at(&url).await;
    let key = session_key(&browser.cookie(SESSION).unwrap());
    store.make_unreadable(key);
    let logout = browser
        .request("POST", &format!("{url}/hcss/logout"), &[])
        .await;
    assert_eq!(logout.status, 303, "{}", logout.body);
    assert!(browser.cookie(SESSION).is_none(), "the cookie is cleared");
    key
}

/// Ending sessions by user and by company: two users of one company and one of another,
/// each signed in through their own mock (one identity service per user here); ending by
/// subject ends that user's sessions only, ending by company all of the company's; each
/// refresh token is revoked; the others stay signed in.
pub async fn sessions_end_by_subject_and_by_company<S>(store: S)
where
    S: StateStore + TokenStore + Clone,
{
    let users = [("ann", "co-1"), ("bob", "co-1"), ("cat", "co-2")];
    let mut signed_in = Vec::new();
    for (subject, company) in users {
        let mock = MockHcssIdentity::builder()
            .subject(subject)
            .company_id(Some(company))
            .start()
            .await;
        let (url, auth) = start_app_with_store(&mock, |b| b, store.clone()).await;
        let browser = Browser::new();
        browser.login_at(&url).await;
        signed_in.push((mock, url, auth, browser));
    }
    let whoami = |i: usize| {
        let (_, url, _, browser) = &signed_in[i];
        let (url, browser) = (url.clone(), browser.clone());
        async move { browser.get(&format!("{url}/whoami")).await.status }
    };
    let auth = signed_in[0].2.clone();
    assert_eq!(auth.end_sessions_for_subject("ann").await.unwrap(), 1);
    assert_eq!(whoami(0).await, 401, "ann is signed out");
    assert_eq!(whoami(1).await, 200, "bob is not");
    assert_eq!(signed_in[0].0.counts().revocations, 1);
    assert_eq!(auth.end_sessions_for_company("co-1").await.unwrap(), 1);
    assert_eq!(whoami(1).await, 401, "bob's company ended");
    // The layer that ended them revokes at its own identity service (the first mock).
    assert_eq!(signed_in[0].0.counts().revocations, 2);
    assert_eq!(
        whoami(2).await,
        200,
        "another company's user is not touched"
    );
    assert_eq!(auth.end_sessions_for_company("co-1").await.unwrap(), 0);
}

/// A refreshed set whose write was applied but whose reply was lost (a Redis reply
/// timeout, a dropped connection): the retry finds its own write and takes it as written,
/// not as a session that moved on. Nothing is revoked, and the next refresh spends the
/// rotated token (before: the retry's `false` revoked the refresh token just stored).
pub async fn a_lost_reply_to_the_refresh_write_keeps_the_session<S>(
    store: FaultyStore<S>,
) -> StoreKey
where
    S: StateStore + TokenStore + Clone,
{
    let mock = MockHcssIdentity::start().await;
    let (url, browser, key, store) =
        expired_session(&mock, store, |b| b.http_timeout(Duration::from_secs(2))).await;
    let whoami = format!("{url}/whoami");
    mock.set_token_fault(Some(TokenFault::SlowAfterRotating(Duration::from_millis(
        100,
    ))));
    let request = {
        let (browser, whoami) = (browser.clone(), whoami.clone());
        tokio::spawn(async move { browser.get(&whoami).await.status })
    };
    mock.wait_for(|c| c.refreshes == 1).await;
    // HCSS has rotated the token; the write of the new set loses its reply.
    store.lose_next_replies(1);
    mock.set_token_fault(None);
    assert_eq!(request.await.unwrap(), 200);
    assert_eq!(
        mock.counts().revocations,
        0,
        "its own write was taken for a supersession and the live token revoked"
    );
    age(&store, key).await;
    assert_eq!(browser.get(&whoami).await.status, 200);
    let counts = mock.counts();
    assert_eq!(counts.refreshes, 2);
    assert_eq!(counts.reuse_detected, 0);
    key
}

/// A refreshed set kept in memory (the store refused its write) whose lease lapsed: the
/// other instance, which finds the lock free, must not refresh from the spent set the
/// store still holds (a reuse: HCSS ends the session). It waits for the kept set, which
/// is written once the store takes writes, and both instances go on with it.
pub async fn a_kept_set_is_not_spent_again_after_its_lease_lapsed<S>(
    store: FaultyStore<S>,
    lapse_lease: impl AsyncFn(StoreKey),
) -> StoreKey
where
    S: StateStore + TokenStore + Clone,
{
    let mock = MockHcssIdentity::start().await;
    let configure = two_instances_config;
    let (a, browser, key, store) = expired_session(&mock, store, configure).await;
    let (b, _auth) = start_app_with_store(&mock, configure, store.clone()).await;
    let status = answered_after_rotating(&mock, &browser, &format!("{a}/whoami"), 1, || {
        store.refuse_writes(true)
    })
    .await;
    assert_eq!(status, 200, "A serves the set it keeps");
    lapse_lease(key).await;
    // B finds the lock free and the spent set in the store.
    let seen = browser.get(&format!("{b}/whoami")).await;
    assert_eq!(
        mock.counts().reuse_detected,
        0,
        "B spent the refresh token A had spent (B answered {})",
        seen.status
    );
    assert_eq!(mock.counts().refreshes, 1);
    store.refuse_writes(false);
    // B waits (503s), it does not sign out, until A writes on its own schedule.
    let seen = past_503s(&browser, &format!("{b}/whoami")).await;
    assert_eq!(seen.status, 200, "B never got A's set: {}", seen.body);
    assert_eq!(browser.get(&format!("{a}/whoami")).await.status, 200);
    let counts = mock.counts();
    assert_eq!(counts.reuse_detected, 0);
    assert_eq!(counts.refreshes, 1, "A's refresh served both instances");
    key
}

/// Two instances' configuration for the kept-set cases: a token call gives up after
/// 300 ms, and a failed refresh is not remembered (each request tries again).
fn two_instances_config(b: hcss_auth::HcssConfigBuilder) -> hcss_auth::HcssConfigBuilder {
    b.http_timeout(Duration::from_millis(300))
        .retry_after(Duration::ZERO)
}

/// The first answer to `url` that is not a 503, asked again every 100 ms for 20 s at
/// most: for a refresh that goes on in a task of its own after the request that started
/// it gave up waiting (one HTTP timeout). Polled: the task signals nothing.
pub async fn past_503s(browser: &Browser, url: &str) -> super::Seen {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let seen = browser.get(url).await;
        if seen.status != 503 || tokio::time::Instant::now() >= deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A refreshed set whose write was applied but answered with an error, the instance
/// then cut off from the store (its writes refused, its reads too): A keeps the set in
/// memory though the store holds it. B, which reaches the store, finds the set due and
/// refreshes it. When A reaches the store again it finds the session past its kept set
/// without holding it: before, it took the set for an orphan and revoked its refresh
/// token, the one B had just rotated (the long soak lost sessions this way when Redis
/// applied a write after its writer's reply timeout). The kept set is dropped, nothing
/// is revoked, and the session goes on on both instances.
pub async fn a_kept_set_stored_after_all_is_not_revoked<S>(store: FaultyStore<S>) -> StoreKey
where
    S: StateStore + TokenStore + Clone,
{
    let mock = MockHcssIdentity::start().await;
    let configure = two_instances_config;
    let (a, browser, key, store_a) = expired_session(&mock, store, configure).await;
    let store_b = FaultyStore::new(store_a.inner().clone());
    let (b, _auth) = start_app_with_store(&mock, configure, store_b).await;
    let (on_a, on_b) = (format!("{a}/whoami"), format!("{b}/whoami"));
    let status = answered_after_rotating(&mock, &browser, &on_a, 1, || {
        store_a.lose_next_replies(1);
        store_a.refuse_writes(true);
        store_a.refuse_reads(true);
    })
    .await;
    assert_eq!(status, 200, "A serves the set it keeps");
    // The store holds A's set (its write was applied); B refreshes it once it is due.
    // (B's refresh waits for A's lock to lapse; its first requests may answer 503.)
    mock.expire_access_tokens();
    let seen = past_503s(&browser, &on_b).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(mock.counts().refreshes, 2);
    // A reaches the store again.
    store_a.refuse_reads(false);
    store_a.refuse_writes(false);
    assert_eq!(past_503s(&browser, &on_a).await.status, 200);
    let counts = mock.counts();
    assert_eq!(
        (counts.revocations, counts.reuse_detected),
        (0, 0),
        "(revocations, reuse detected): A revoked the refresh token B had rotated"
    );
    // The session goes on refreshing, on either instance.
    mock.expire_access_tokens();
    assert_eq!(past_503s(&browser, &on_a).await.status, 200);
    assert_eq!(past_503s(&browser, &on_b).await.status, 200);
    let counts = mock.counts();
    assert_eq!((counts.refreshes, counts.reuse_detected), (3, 0));
    key
}

/// A logout whose take was applied but whose reply was lost answers 503; the refresh
/// token it removed is revoked all the same (before: the retried logout found nothing to
/// take, and the live refresh token was never revoked).
pub async fn a_logout_whose_reply_is_lost_still_revokes<S>(store: FaultyStore<S>) -> StoreKey
where
    S: StateStore + TokenStore + Clone,
{
    let mock = MockHcssIdentity::start().await;
    let (url, _auth) = start_app_with_store(&mock, |b| b, store.clone()).await;
    let browser = Browser::new();
    browser.login_at(&url).await;
    let key = session_key(&browser.cookie(SESSION).unwrap());
    let refresh = store
        .load(key)
        .await
        .unwrap()
        .unwrap()
        .refresh_token
        .unwrap();
    store.lose_next_replies(1);
    let logout = browser
        .request("POST", &format!("{url}/hcss/logout"), &[])
        .await;
    assert_eq!(logout.status, 503, "the store's answer was lost");
    let retried = browser
        .request("POST", &format!("{url}/hcss/logout"), &[])
        .await;
    assert_eq!(retried.status, 303);
    assert!(
        mock.is_revoked(refresh.expose_secret()),
        "the refresh token the logout removed was never revoked"
    );
    assert!(store.load(key).await.unwrap().is_none());
    key
}

/// Gets `url` while HCSS rotates the refresh token and answers a little late; once HCSS
/// has rotated it (its refresh count reaches `refreshes`), runs `meanwhile` (the fault
/// to switch on while the answer is on its way), lets HCSS answer, and returns the
/// request's status.
pub async fn answered_after_rotating(
    mock: &MockHcssIdentity,
    browser: &Browser,
    url: &str,
    refreshes: usize,
    meanwhile: impl FnOnce(),
) -> u16 {
    mock.set_token_fault(Some(TokenFault::SlowAfterRotating(Duration::from_millis(
        100,
    ))));
    let request = {
        let (browser, url) = (browser.clone(), url.to_owned());
        tokio::spawn(async move { browser.get(&url).await.status })
    };
    mock.wait_for(|c| c.refreshes == refreshes).await;
    meanwhile();
    mock.set_token_fault(None);
    request.await.unwrap()
}
