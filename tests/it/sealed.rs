//! Logins sealed in the browser: a flood of `/hcss/login` costs the server nothing and
//! stops no real user; the sealed cookie opens only unaltered, for its own login, with
//! this app's key (or the previous one during a rotation), before its login timeout,
//! and once.

use crate::common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hcss_auth::store::{Coordination, LoginTransaction, StoreFuture, StoreKey};
use hcss_auth::testing::{MockHcssIdentity, TestClock};
use hcss_auth::{
    HcssAuth, HcssConfigBuilder, MemoryStore, StateStore, StoreError, TokenSet, TokenStore,
};

const KEY_A: &str = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=";
const KEY_B: &str = "QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=";

/// An app on its own port whose redirect URI is `callback` (shared by instances behind
/// one public address), with tokens in a `MemoryStore` of `capacity` logins.
async fn instance(
    mock: &MockHcssIdentity,
    callback: Option<&str>,
    configure: impl FnOnce(HcssConfigBuilder) -> HcssConfigBuilder,
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let redirect = callback.map_or_else(|| format!("{url}/hcss/callback"), str::to_owned);
    let config = configure(mock.config_builder(&redirect).scopes(SCOPES))
        .build()
        .unwrap();
    // A small store: a flood would evict logins kept in it within a thousand requests.
    let store = MemoryStore::with_capacity(1_000, 1_000);
    let auth = HcssAuth::with_store(config, store.clone());
    serve(listener, router(auth.clone(), mock.api_url()));
    TestApp { url, auth, store }
}

/// `url` with its scheme, host and port replaced by those of `base`.
fn on(base: &str, url: &str) -> String {
    let path = url.splitn(4, '/').nth(3).unwrap_or("");
    format!("{base}/{path}")
}

/// Sends `count` logins from a task of their own, on a few connections at once.
async fn flood(url: &str, count: usize) -> usize {
    let sent = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (client, sent, login) = (client.clone(), sent.clone(), format!("{url}/hcss/login"));
            tokio::spawn(async move {
                while sent.fetch_add(1, Ordering::SeqCst) < count {
                    let status = client.get(&login).send().await.unwrap().status();
                    assert_eq!(status, 303);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.unwrap();
    }
    count
}

/// A login waits at HCSS's consent page while a flood of logins comes in, for a second
/// or for 30 seconds (of a test clock); it completes, and the flood left nothing on the
/// server. Before, each flooded login took a slot of the store, and the waiting login
/// was evicted ("This sign-in has expired").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_does_not_stop_a_waiting_login() {
    let mock = MockHcssIdentity::start().await;
    for consent in [Duration::from_secs(1), Duration::from_secs(30)] {
        let clock = TestClock::new();
        let app = instance(&mock, None, |b| b.test_clock(clock.clone())).await;
        let browser = Browser::new();
        let callback = browser.start_login(&app, Some("/jobs")).await;
        flood(&app.url, 3_000).await;
        clock.advance(consent);
        assert_eq!(
            app.store.transaction_count(),
            0,
            "no login kept on the server"
        );
        let done = browser.get(&callback).await;
        assert_eq!(done.status, 303, "{consent:?}: {}", done.body);
        assert_eq!(done.location(), "/jobs");
        assert_eq!(
            browser.get(&format!("{}/whoami", app.url)).await.status,
            200
        );
    }
}

/// Two instances with the same cookie key: a login started on one finishes on the other.
#[tokio::test]
async fn a_login_started_on_one_instance_finishes_on_another_with_the_same_key() {
    let mock = MockHcssIdentity::start().await;
    let a = instance(&mock, None, |b| b.cookie_key(KEY_A)).await;
    let callback_of_a = format!("{}/hcss/callback", a.url);
    let b = instance(&mock, Some(&callback_of_a), |b| b.cookie_key(KEY_A)).await;
    let browser = Browser::new();
    let callback = browser.start_login(&a, None).await;
    let done = browser.get(&on(&b.url, &callback)).await;
    assert_eq!(done.status, 303, "{}", done.body);
}

/// A key rotation: the instance with the new key still opens logins sealed with the
/// previous one; without it configured, they are refused.
#[tokio::test]
async fn the_previous_key_is_accepted_during_a_rotation() {
    let mock = MockHcssIdentity::start().await;
    let old = instance(&mock, None, |b| b.cookie_key(KEY_A)).await;
    let callback_of_old = format!("{}/hcss/callback", old.url);
    let rotated = instance(&mock, Some(&callback_of_old), |b| {
        b.cookie_key(KEY_B).previous_cookie_key(KEY_A)
    })
    .await;
    let other = instance(&mock, Some(&callback_of_old), |b| b.cookie_key(KEY_B)).await;

    let browser = Browser::new();
    let callback = browser.start_login(&old, None).await;
    let refused = browser.get(&on(&other.url, &callback)).await;
    assert_eq!(refused.status, 400, "another key: {}", refused.body);
    assert!(
        refused.body.contains("could not be verified"),
        "{}",
        refused.body
    );

    let browser = Browser::new();
    let callback = browser.start_login(&old, None).await;
    let done = browser.get(&on(&rotated.url, &callback)).await;
    assert_eq!(done.status, 303, "the previous key opens it: {}", done.body);
}

/// Several instances without a key (each makes its own) and no store that shares one:
/// a login that crosses instances is refused with a page that says so, and no token call.
#[tokio::test]
async fn instances_without_a_shared_key_refuse_each_others_logins_clearly() {
    let mock = MockHcssIdentity::start().await;
    let a = instance(&mock, None, |b| b).await;
    let callback_of_a = format!("{}/hcss/callback", a.url);
    let b = instance(&mock, Some(&callback_of_a), |b| b).await;
    let browser = Browser::new();
    let callback = browser.start_login(&a, None).await;
    let refused = browser.get(&on(&b.url, &callback)).await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.body.contains("another server"),
        "the page says why: {}",
        refused.body
    );
    assert_eq!(mock.counts().token, 0);
}

/// A sealed cookie altered in any byte, or moved to another login's name, opens for
/// nobody: 400 and no token call.
#[tokio::test]
async fn tampered_or_swapped_cookies_are_refused() {
    let mock = MockHcssIdentity::start().await;
    let app = instance(&mock, None, |b| b).await;
    let browser = Browser::new();
    let first = browser.start_login(&app, None).await;
    let second = browser.start_login(&app, None).await;
    let names = browser.login_cookies();
    assert_eq!(names.len(), 2);
    let (one, two) = (
        browser.cookie(&names[0]).unwrap(),
        browser.cookie(&names[1]).unwrap(),
    );

    // Another login's sealed value under this login's name.
    browser.set_cookie(&names[0], &two);
    let swapped = browser.get(&first).await;
    assert_eq!(swapped.status, 400, "{}", swapped.body);

    // One character changed, anywhere.
    for at in [0, one.len() / 2, one.len() - 1] {
        let mut bytes = one.clone().into_bytes();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        browser.set_cookie(&names[0], std::str::from_utf8(&bytes).unwrap());
        let tampered = browser.get(&first).await;
        assert_eq!(tampered.status, 400, "byte {at}: {}", tampered.body);
    }
    assert_eq!(
        mock.counts().token,
        0,
        "no token call for a refused callback"
    );

    // The untouched login still works.
    assert_eq!(browser.get(&second).await.status, 303);
}

/// A callback replayed while the browser still holds the login cookie (a double click,
/// or a captured URL and cookie): refused before any token call.
#[tokio::test]
async fn a_replayed_callback_with_its_cookie_is_refused() {
    let mock = MockHcssIdentity::start().await;
    let app = instance(&mock, None, |b| b).await;
    let browser = Browser::new();
    let callback = browser.start_login(&app, None).await;
    let name = browser.login_cookies().remove(0);
    let sealed = browser.cookie(&name).unwrap();
    assert_eq!(browser.get(&callback).await.status, 303);
    assert_eq!(mock.counts().token, 1);
    browser.set_cookie(&name, &sealed);
    let replay = browser.get(&callback).await;
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert!(replay.body.contains("already used"), "{}", replay.body);
    assert_eq!(mock.counts().token, 1, "a replay makes no token call");
}

/// The login cookie: `HttpOnly`, `SameSite=Lax`, `Path=/`, lives the login timeout, is
/// cleared at the callback, and fits a browser's 4 KiB cookie limit with the longest
/// return path accepted.
#[tokio::test]
async fn the_login_cookie_is_small_short_lived_and_cleared() {
    let mock = MockHcssIdentity::start().await;
    let app = instance(&mock, None, |b| b).await;
    let browser = Browser::new();
    let long = format!("/{}", "a".repeat(2000));
    let login = browser
        .get(&format!("{}/hcss/login?return_to={long}", app.url))
        .await;
    assert_eq!(login.status, 303);
    let cookie = &login.set_cookies()[0];
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=600"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie:.80}");
    }
    assert!(cookie.len() < 4096, "{} bytes", cookie.len());
    let callback = browser.get(login.location()).await;
    let done = browser.get(callback.location()).await;
    assert_eq!(done.status, 303);
    assert_eq!(done.location(), long);
    assert!(
        browser.login_cookies().is_empty(),
        "cleared at the callback"
    );
}

#[derive(Clone, Default)]
struct LockFails {
    inner: MemoryStore,
    fail: Arc<AtomicBool>,
}

impl StateStore for LockFails {
    fn put_transaction(
        &self,
        k: StoreKey,
        t: LoginTransaction,
        ttl: Duration,
    ) -> StoreFuture<'_, ()> {
        self.inner.put_transaction(k, t, ttl)
    }
    fn take_transaction(&self, k: StoreKey) -> StoreFuture<'_, Option<LoginTransaction>> {
        self.inner.take_transaction(k)
    }
}

impl TokenStore for LockFails {
    fn load(&self, k: StoreKey) -> StoreFuture<'_, Option<TokenSet>> {
        self.inner.load(k)
    }
    fn store(&self, k: StoreKey, t: TokenSet, ttl: Duration) -> StoreFuture<'_, ()> {
        self.inner.store(k, t, ttl)
    }
    fn remove(&self, k: StoreKey) -> StoreFuture<'_, ()> {
        self.inner.remove(k)
    }
}

impl Coordination for LockFails {
    fn try_lock(&self, k: StoreKey, owner: String, ttl: Duration) -> StoreFuture<'_, bool> {
        if self.fail.load(Ordering::SeqCst) {
            return Box::pin(async { Err(StoreError::Unavailable("test: lock failed".into())) });
        }
        self.inner.try_lock(k, owner, ttl)
    }
}

/// The store's claim of a sealed login fails once: the 503 says "try again", and the
/// retry is not refused as a replay (no token call was made).
#[tokio::test]
async fn a_callback_answered_503_can_be_retried() {
    let mock = MockHcssIdentity::start().await;
    let store = LockFails::default();
    let (url, auth) = start_app_with_store(&mock, |b| b, store.clone()).await;
    let app = TestApp {
        url: url.clone(),
        auth,
        store: MemoryStore::new(),
    };
    let browser = Browser::new();
    let callback = browser.start_login(&app, Some("/jobs")).await;

    store.fail.store(true, Ordering::SeqCst);
    let first = browser.get(&callback).await;
    assert_eq!(first.status, 503, "{}", first.body);
    assert!(
        first.body.contains("try again in a moment"),
        "{}",
        first.body
    );
    assert_eq!(
        mock.counts().code_exchanges,
        0,
        "the code was never sent to HCSS"
    );

    // The store is back; the user does what the page says: tries again.
    store.fail.store(false, Ordering::SeqCst);
    let retry = browser.get(&callback).await;
    assert_eq!(retry.status, 303, "retry after the 503: {}", retry.body);
    assert_eq!(retry.location(), "/jobs");
}

/// A `return_to` that would make the login cookie larger than browsers keep is refused
/// at `/hcss/login` (a 400), not discovered at the callback.
#[tokio::test]
async fn a_return_path_too_long_for_a_cookie_is_refused_at_login() {
    let mock = MockHcssIdentity::start().await;
    let app = instance(&mock, None, |b| b).await;
    let return_to = format!("/{}", "\"".repeat(1500));
    let browser = Browser::new();
    let login = browser
        .get(&format!(
            "{}/hcss/login?return_to={}",
            app.url,
            url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect::<String>()
        ))
        .await;
    assert_eq!(login.status, 400, "{}", login.body);
    assert!(login.body.contains("too long"), "{}", login.body);
    assert_eq!(mock.counts().authorize, 0);
}

/// A callback that fails after its login cookie was read (HCSS refuses the client or the
/// code, HCSS fails, the ID token does not check out, the login expired) answers with a
/// `Set-Cookie` that clears the login cookie, sealed or stored, as a successful one does.
#[tokio::test]
async fn a_failed_callback_clears_its_login_cookie() {
    use hcss_auth::testing::TokenFault;
    let mock = MockHcssIdentity::start().await;
    let sealed = instance(&mock, None, |b| b).await;
    let stored = start_app_stored(&mock, |b| b).await;
    let invalid_client = TokenFault::Error {
        status: 401,
        error: "invalid_client",
        retry_after: None,
    };
    for app in [&sealed, &stored] {
        for (fault, status) in [
            (Some(invalid_client.clone()), 502),
            (Some(TokenFault::ServerError), 502),
            (Some(TokenFault::InvalidGrant), 400),
            (None, 0),
        ] {
            let browser = Browser::new();
            let callback = browser.start_login(app, None).await;
            let name = browser.login_cookies().remove(0);
            let (callback, status) = match fault {
                Some(fault) => {
                    mock.set_token_fault(Some(fault));
                    (callback, status)
                }
                // A refused login: the callback's code is missing.
                None => (with_param(&callback, "code", ""), 400),
            };
            let failed = browser.get(&callback).await;
            mock.set_token_fault(None);
            assert_eq!(failed.status, status, "{}", failed.body);
            let cleared = failed
                .set_cookies()
                .into_iter()
                .any(|c| c.starts_with(&format!("{name}=;")) && c.contains("Max-Age=0"));
            assert!(cleared, "{status}: {:?}", failed.set_cookies());
            assert!(browser.login_cookies().is_empty());
        }
    }
}
