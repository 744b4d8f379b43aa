//! Test utilities (feature `test-util`): [`MockHcssIdentity`], session seeding, and the
//! store conformance suite every [`StateStore`] + [`TokenStore`] should pass.

use std::sync::Arc;
use std::time::Duration;

use crate::error::StoreError;
use crate::layer::HcssAuth;
use crate::secret::{SecretString, SessionId, StoreKey};
use crate::store::{LoginTransaction, SessionOwner, StateStore, TokenStore};
use crate::token::TokenSet;

mod faulty;
mod mock;

pub use crate::clock::TestClock;
pub use faulty::FaultyStore;
pub use mock::{MockCounts, MockHcssIdentity, MockHcssIdentityBuilder, TokenFault};

/// A session created directly in a layer's store, skipping the login pages.
pub struct SeededSession {
    id: SecretString,
    cookie_name: &'static str,
}

impl std::fmt::Debug for SeededSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeededSession").finish_non_exhaustive()
    }
}

impl SeededSession {
    /// The `Cookie` header value that sends this session: `name=id`.
    pub fn cookie_header(&self) -> String {
        format!("{}={}", self.cookie_name, self.id.expose_secret())
    }
}

/// Signs a user in without the login pages: stores `tokens` under a new session of
/// `auth` and returns the cookie that names it. For tests of handlers behind the layer.
///
/// A set with a refresh token whose session end was not set (it ends with its access
/// token) gets the layer's `max_session_age`, as a sign-in would.
///
/// ```
/// use hcss_auth::{testing::seed_session, HcssAuth, HcssConfig, TokenSet};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// # let config = HcssConfig::builder().client_id("id").scopes(["heavyjob:read"])
/// #     .redirect_uri("https://app.example.com/hcss/callback").build().unwrap();
/// let auth = HcssAuth::new(config);
/// let session = seed_session(&auth, TokenSet::new("access", 3600)).await.unwrap();
/// assert!(session.cookie_header().starts_with("__Host-hcss-session="));
/// # }
/// ```
///
/// # Errors
///
/// The token store's error, if it cannot store the session.
pub async fn seed_session(
    auth: &HcssAuth,
    mut tokens: TokenSet,
) -> Result<SeededSession, StoreError> {
    let shared = &auth.shared;
    let now = shared.config.now();
    if tokens.refresh_token.is_some() && tokens.session_expires_at <= tokens.expires_at {
        tokens.session_expires_at =
            now.saturating_add(shared.config.lifetimes.max_session_age.as_secs());
    }
    let id = SessionId::generate();
    let ttl = tokens.store_ttl(now);
    shared.token_store.store(id.key(), tokens, ttl).await?;
    Ok(SeededSession {
        id: SecretString::from(id.as_str()),
        cookie_name: shared.config.session_cookie_name(),
    })
}

/// Signs a browser in through the whole flow and returns the `Cookie` header value that
/// carries its session: `GET /hcss/login` on `app`, consent at the [`MockHcssIdentity`]
/// the app is configured against (which consents at once, as it does by default), and
/// the callback on `app`. No server is needed: `app` is called in process.
///
/// ```
/// use axum::{routing::get, Router};
/// use hcss_auth::testing::{sign_in, MockHcssIdentity};
/// use hcss_auth::{HcssAuth, HcssToken};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let mock = MockHcssIdentity::start().await;
/// let config = mock
///     .config_builder("http://127.0.0.1:3000/hcss/callback")
///     .scopes(["heavyjob:read", "offline_access"])
///     .build()
///     .unwrap();
/// let app = Router::new()
///     .route("/me", get(|token: HcssToken| async move { token.scopes().count().to_string() }))
///     .layer(HcssAuth::new(config));
///
/// let cookie = sign_in(&app).await;
/// let request = http::Request::get("/me")
///     .header("cookie", &cookie)
///     .body(axum::body::Body::empty())
///     .unwrap();
/// let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
/// assert_eq!(response.status(), 200);
/// # }
/// ```
///
/// # Panics
///
/// When a step of the flow does not answer as it should, naming the step: the layer is
/// missing or misplaced, the app is not configured against a mock that consents at once,
/// or the callback was refused.
pub async fn sign_in(app: &axum::Router) -> String {
    use http::header::{COOKIE, LOCATION, SET_COOKIE};
    async fn call(
        app: &axum::Router,
        request: http::Request<axum::body::Body>,
    ) -> http::Response<axum::body::Body> {
        let mut service = app.clone();
        std::future::poll_fn(|cx| {
            <axum::Router as tower_service::Service<http::Request<axum::body::Body>>>::poll_ready(
                &mut service,
                cx,
            )
        })
        .await
        .unwrap_or_else(|never| match never {});
        tower_service::Service::call(&mut service, request)
            .await
            .unwrap_or_else(|never| match never {})
    }
    let get = |uri: &str, cookie: Option<&str>| {
        let mut request = http::Request::get(uri);
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        request
            .body(axum::body::Body::empty())
            .expect("a valid request")
    };
    let cookie_of = |response: &http::Response<axum::body::Body>| {
        response
            .headers()
            .get(SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(str::to_owned)
    };
    let location = |response: &http::Response<axum::body::Body>| {
        response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };

    let login = call(app, get("/hcss/login", None)).await;
    assert_eq!(
        login.status(),
        http::StatusCode::SEE_OTHER,
        "sign_in: GET /hcss/login did not redirect: is the HcssAuth layer on the outermost router?"
    );
    let (authorize, login_cookie) = (
        location(&login).expect("sign_in: the login redirect has a Location"),
        cookie_of(&login).expect("sign_in: the login sets its cookie"),
    );
    let consent = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
        .get(&authorize)
        .send()
        .await
        .expect("sign_in: the identity service answers (is the app configured with MockHcssIdentity::config_builder?)");
    let callback = consent
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| url::Url::parse(v).ok())
        .expect(
            "sign_in: the mock consents at once (build it with auto_consent(true), the default)",
        );
    let path = match callback.query() {
        Some(query) => format!("{}?{query}", callback.path()),
        None => callback.path().to_owned(),
    };
    let done = call(app, get(&path, Some(&login_cookie))).await;
    assert_eq!(
        done.status(),
        http::StatusCode::SEE_OTHER,
        "sign_in: the callback refused the sign-in"
    );
    cookie_of(&done).expect("sign_in: the callback sets the session cookie")
}

/// Whether the session a cookie names still has tokens in the layer's store.
///
/// # Errors
///
/// The token store's error.
pub async fn session_exists(auth: &HcssAuth, session: &SeededSession) -> Result<bool, StoreError> {
    let key = StoreKey::of(session.id.expose_secret());
    Ok(auth.shared.token_store.load(key).await?.is_some())
}

fn fresh_key() -> StoreKey {
    StoreKey::random()
}

fn random_label() -> String {
    crate::secret::random_token(12)
}

/// The store conformance suite: runs every behaviour the layer relies on against `store`
/// and panics, naming the broken rule, at the first failure. For a store that serves as
/// both [`StateStore`] and [`TokenStore`] (`HcssAuthBuilder::state_store`); a token store alone
/// runs [`token_store_conformance`].
///
/// Run it from an async test of your own store. Concurrency checks issue their calls
/// together, as a busy app does. Keys are random, so it can share a backend with other
/// data; it waits about a second and a half in all for TTLs to lapse.
///
/// ```
/// use std::sync::Arc;
/// use hcss_auth::{store::MemoryStore, testing::store_conformance};
///
/// # #[tokio::main] async fn main() {
/// store_conformance(Arc::new(MemoryStore::new())).await;
/// # }
/// ```
pub async fn store_conformance<S>(store: Arc<S>)
where
    S: StateStore + TokenStore,
{
    state_store_checks(store.as_ref()).await;
    token_store_conformance(store).await;
}

/// The [`TokenStore`] half of [`store_conformance`], for a store that keeps sessions only
/// (`HcssAuth::with_store`): every rule the layer relies on, `cached` included, panicking
/// at the first broken one.
///
/// ```
/// use std::sync::Arc;
/// use hcss_auth::{store::MemoryStore, testing::token_store_conformance};
///
/// # #[tokio::main] async fn main() {
/// token_store_conformance(Arc::new(MemoryStore::new())).await;
/// # }
/// ```
pub async fn token_store_conformance<S: TokenStore>(store: Arc<S>) {
    let store = store.as_ref();
    let minute = Duration::from_secs(60);

    // Tokens: round trip of every field, replace, remove.
    let key = fresh_key();
    let mut tokens = TokenSet::new("access", 3600)
        .with_refresh_token("refresh")
        .with_scope("heavyjob:read offline_access");
    tokens.session_expires_at = 1_900_000_000;
    store
        .store(key, tokens.clone(), minute)
        .await
        .expect("store");
    assert_eq!(
        store.load(key).await.expect("load"),
        Some(tokens.clone()),
        "load must return what was stored, every field"
    );
    let replaced = TokenSet::new("access-2", 60);
    store
        .store(key, replaced.clone(), minute)
        .await
        .expect("store");
    assert_eq!(
        store.load(key).await.expect("load"),
        Some(replaced),
        "store must replace"
    );
    store.remove(key).await.expect("remove");
    assert_eq!(
        store.load(key).await.expect("load"),
        None,
        "remove must delete"
    );
    store
        .remove(key)
        .await
        .expect("removing a missing key is not an error");

    // Taking a session's tokens returns them and removes them.
    let key = fresh_key();
    store
        .store(key, tokens.clone(), minute)
        .await
        .expect("store");
    assert_eq!(
        store.take(key).await.expect("take"),
        Some(tokens.clone()),
        "take must return the stored set"
    );
    assert_eq!(
        store.load(key).await.expect("load"),
        None,
        "take must remove the set"
    );
    assert_eq!(store.take(key).await.expect("take"), None);

    // A refresh writes only over the version it refreshed: never over a removed session
    // (a logout wins) or a newer version.
    let key = fresh_key();
    let mut v1 = tokens.clone();
    v1.version = 1;
    let mut v2 = tokens.clone();
    v2.version = 2;
    assert!(
        !store
            .replace_if_version(key, 0, v1.clone(), minute)
            .await
            .expect("replace_if_version"),
        "replace_if_version must not bring back a missing session"
    );
    assert_eq!(store.load(key).await.expect("load"), None);
    store.store(key, v1.clone(), minute).await.expect("store");
    assert!(
        !store
            .replace_if_version(key, 0, v2.clone(), minute)
            .await
            .expect("replace_if_version"),
        "replace_if_version must not write over another version"
    );
    assert_eq!(store.load(key).await.expect("load"), Some(v1.clone()));
    assert!(
        store
            .replace_if_version(key, 1, v2.clone(), minute)
            .await
            .expect("replace_if_version"),
        "replace_if_version must write over the expected version"
    );
    assert_eq!(store.load(key).await.expect("load"), Some(v2.clone()));
    store.remove(key).await.expect("remove");

    // An in-process copy (`cached`, optional) is only ever what `load` gives at that
    // moment: never a replaced, removed or taken set.
    let cached_agrees = |key: StoreKey, now: Option<&TokenSet>, what: &str| {
        if let Some(copy) = store.cached(key) {
            assert_eq!(Some(&copy), now, "cached must not give {what}");
        }
    };
    let key = fresh_key();
    let mut v3 = tokens.clone();
    v3.version = 3;
    store.store(key, v1.clone(), minute).await.expect("store");
    assert_eq!(store.load(key).await.expect("load"), Some(v1.clone()));
    cached_agrees(key, Some(&v1), "another set than the one stored");
    store.store(key, v2.clone(), minute).await.expect("store");
    cached_agrees(key, Some(&v2), "a set replaced by store");
    assert_eq!(store.load(key).await.expect("load"), Some(v2.clone()));
    assert!(store
        .replace_if_version(key, 2, v3.clone(), minute)
        .await
        .expect("replace_if_version"));
    cached_agrees(key, Some(&v3), "a set replaced by replace_if_version");
    assert_eq!(store.load(key).await.expect("load"), Some(v3.clone()));
    store.remove(key).await.expect("remove");
    cached_agrees(key, None, "a removed set");
    store.store(key, v1.clone(), minute).await.expect("store");
    assert_eq!(store.load(key).await.expect("load"), Some(v1.clone()));
    assert_eq!(store.take(key).await.expect("take"), Some(v1.clone()));
    cached_agrees(key, None, "a taken set");
    assert_eq!(store.load(key).await.expect("load"), None);
    cached_agrees(key, None, "a missing set");

    // Sessions by owner: an optional index; a store that keeps one finds every session
    // of a user and of a company, and no removed one.
    let owned = |sub: &str, company: &str| {
        use base64::Engine as _;
        let payload = serde_json::json!({ "sub": sub, "CompanyId": company }).to_string();
        let jwt = format!(
            "e30.{}.sig",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload)
        );
        let mut set = TokenSet::new(jwt.as_str(), 3600);
        set.claims = crate::claims::Claims::of_access_token(&jwt);
        set
    };
    let (sub, company) = (random_label(), random_label());
    let (a, b, c) = (fresh_key(), fresh_key(), fresh_key());
    store
        .store(a, owned(&sub, &company), minute)
        .await
        .expect("store");
    store
        .store(b, owned(&sub, &random_label()), minute)
        .await
        .expect("store");
    store
        .store(c, owned(&random_label(), &company), minute)
        .await
        .expect("store");
    match store.sessions_of(SessionOwner::Subject(sub.clone())).await {
        Err(StoreError::Unsupported(_)) => {}
        Err(err) => panic!("sessions_of: {err}"),
        Ok(of_subject) => {
            let mut of_subject = of_subject;
            of_subject.sort_by_key(|k| k.to_string());
            let mut expected = vec![a, b];
            expected.sort_by_key(|k| k.to_string());
            assert_eq!(
                of_subject, expected,
                "sessions_of must find every session of a subject"
            );
            let mut of_company = store
                .sessions_of(SessionOwner::Company(company.clone()))
                .await
                .expect("sessions_of");
            of_company.sort_by_key(|k| k.to_string());
            let mut expected = vec![a, c];
            expected.sort_by_key(|k| k.to_string());
            assert_eq!(
                of_company, expected,
                "sessions_of must find every session of a company"
            );
            store.remove(a).await.expect("remove");
            assert_eq!(
                store
                    .sessions_of(SessionOwner::Subject(sub.clone()))
                    .await
                    .expect("sessions_of"),
                vec![b],
                "sessions_of must not return a removed session"
            );
            // A company token carries its company's claims, but is no session.
            let company_token = StoreKey::of_company_token(&random_label());
            store
                .store(company_token, owned(&sub, &company), minute)
                .await
                .expect("store");
            for owner in [SessionOwner::Subject(sub), SessionOwner::Company(company)] {
                assert!(
                    !store
                        .sessions_of(owner)
                        .await
                        .expect("sessions_of")
                        .contains(&company_token),
                    "sessions_of must not return a company token (KeyKind::CompanyToken)"
                );
            }
            store.remove(company_token).await.expect("remove");
        }
    }
    for key in [a, b, c] {
        store.remove(key).await.expect("remove");
    }

    // A company token round-trips as a session does.
    let company_token = StoreKey::of_company_token(&random_label());
    store
        .store(company_token, tokens.clone(), minute)
        .await
        .expect("store");
    assert_eq!(
        store.load(company_token).await.expect("load"),
        Some(tokens.clone()),
        "load must return the company token stored"
    );
    store.remove(company_token).await.expect("remove");
    assert_eq!(store.load(company_token).await.expect("load"), None);

    // TTLs lapse, for `cached` too.
    let tok_key = fresh_key();
    let short = Duration::from_millis(200);
    store
        .store(tok_key, tokens.clone(), short)
        .await
        .expect("store");
    assert_eq!(
        store.load(tok_key).await.expect("load"),
        Some(tokens.clone())
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        store.cached(tok_key),
        None,
        "cached must not give a set past its TTL"
    );
    assert_eq!(
        store.load(tok_key).await.expect("load"),
        None,
        "tokens must expire with their TTL"
    );

    // Refresh coordination: either a real lock, or the single-process default.
    let key = fresh_key();
    assert!(
        store
            .try_lock_refresh(key, "owner-a".to_owned(), minute)
            .await
            .expect("try_lock_refresh"),
        "a free refresh lock must be granted"
    );
    let second = store
        .try_lock_refresh(key, "owner-b".to_owned(), minute)
        .await
        .expect("try_lock_refresh");
    if !second {
        store
            .unlock_refresh(key, "owner-b".to_owned())
            .await
            .expect("unlock_refresh");
        assert!(
            !store
                .try_lock_refresh(key, "owner-b".to_owned(), minute)
                .await
                .expect("try_lock_refresh"),
            "only the owner may release a refresh lock"
        );
        assert!(
            store
                .renew_refresh_lock(key, "owner-a".to_owned(), minute)
                .await
                .expect("renew_refresh_lock"),
            "the owner of a refresh lock must be able to renew it"
        );
        assert!(
            !store
                .renew_refresh_lock(key, "owner-b".to_owned(), minute)
                .await
                .expect("renew_refresh_lock"),
            "only the owner may renew a refresh lock"
        );
        store
            .unlock_refresh(key, "owner-a".to_owned())
            .await
            .expect("unlock_refresh");
        assert!(
            !store
                .renew_refresh_lock(key, "owner-a".to_owned(), minute)
                .await
                .expect("renew_refresh_lock"),
            "renewing must not take a free refresh lock"
        );
        assert!(
            store
                .try_lock_refresh(key, "owner-b".to_owned(), short)
                .await
                .expect("try_lock_refresh"),
            "a released refresh lock must be granted again"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            store
                .try_lock_refresh(key, "owner-c".to_owned(), minute)
                .await
                .expect("try_lock_refresh"),
            "a refresh lock must expire with its TTL, so a crashed holder cannot wedge a session"
        );
        store
            .unlock_refresh(key, "owner-c".to_owned())
            .await
            .expect("unlock_refresh");
        // Of 50 concurrent lockers, exactly one wins.
        let key = fresh_key();
        let owners: Vec<String> = (0..50).map(|i| format!("owner-{i}")).collect();
        let winners = join_all(
            owners
                .iter()
                .map(|o| store.try_lock_refresh(key, o.clone(), minute)),
        )
        .await
        .into_iter()
        .filter(|r| *r.as_ref().expect("try_lock_refresh"))
        .count();
        assert_eq!(winners, 1, "of 50 concurrent lockers exactly one must win");
    }
}

async fn state_store_checks<S: StateStore + ?Sized>(store: &S) {
    let minute = Duration::from_secs(60);

    // Transactions: put, take once.
    let key = fresh_key();
    let tx = LoginTransaction::new("verifier", "/jobs?id=1", "binding-hash", 1_700_000_000);
    store
        .put_transaction(key, tx.clone(), minute)
        .await
        .expect("put_transaction");
    let taken = store.take_transaction(key).await.expect("take_transaction");
    assert_eq!(
        taken,
        Some(tx),
        "take_transaction must return what was put, every field"
    );
    assert_eq!(
        store.take_transaction(key).await.expect("take_transaction"),
        None,
        "a transaction can be taken only once"
    );
    assert_eq!(
        store
            .take_transaction(fresh_key())
            .await
            .expect("take_transaction"),
        None,
        "taking a missing key gives None"
    );

    // A transaction lapses with its TTL.
    let tx_key = fresh_key();
    let short = Duration::from_millis(200);
    store
        .put_transaction(tx_key, LoginTransaction::new("v", "/", "b", 0), short)
        .await
        .expect("put_transaction");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        store
            .take_transaction(tx_key)
            .await
            .expect("take_transaction"),
        None,
        "a transaction must expire with its TTL"
    );

    // Take is atomic: of 50 concurrent takes, exactly one wins.
    let key = fresh_key();
    store
        .put_transaction(key, LoginTransaction::new("v", "/", "b", 0), minute)
        .await
        .expect("put_transaction");
    let takes = (0..50).map(|_| store.take_transaction(key));
    let winners = join_all(takes)
        .await
        .into_iter()
        .map(|r| r.expect("take_transaction"))
        .filter(Option::is_some)
        .count();
    assert_eq!(winners, 1, "of 50 concurrent takes exactly one must win");
}

/// Polls every future together until all are done (a small `join_all`).
async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut results: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(out) => {
                        *result = Some(out);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    results
        .into_iter()
        .map(|r| r.expect("every future finished"))
        .collect()
}
