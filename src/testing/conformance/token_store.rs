//! The [`TokenStore`] conformance suite: token sets stored, replaced, taken, written
//! over their version, cached in process, indexed by owner, expired.

use std::sync::Arc;
use std::time::Duration;

use super::{coordination_conformance, fresh_key, random_label};
use crate::store::{KeyKind, SessionOwner, StoreError, StoreKey, TokenSet, TokenStore};

/// The [`TokenStore`] part of [`store_conformance`](super::store_conformance), for a store
/// that keeps sessions only (`HcssAuth::with_store`): every rule the layer relies on,
/// `cached` and the owner index included, then its [`Coordination`](crate::store::Coordination)
/// ([`coordination_conformance`]), panicking at the first broken one.
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
    storage_checks(store.as_ref()).await;
    coordination_conformance(store).await;
}

async fn storage_checks<S: TokenStore>(store: &S) {
    let session_key = || fresh_key(KeyKind::Session);
    let minute = Duration::from_secs(60);

    // Tokens: round trip of every field, replace, remove.
    let key = session_key();
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
    let key = session_key();
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
    let key = session_key();
    let v1 = tokens.clone().with_version(1);
    let v2 = tokens.clone().with_version(2);
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
    let key = session_key();
    let v3 = tokens.clone().with_version(3);
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
    let jwt_of = |payload: &serde_json::Value| {
        use base64::Engine as _;
        format!(
            "e30.{}.sig",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string())
        )
    };
    let owned = |sub: &str, company: &str| {
        let jwt = jwt_of(&serde_json::json!({ "sub": sub, "CompanyId": company }));
        let mut set = TokenSet::new(jwt.as_str(), 3600);
        set.claims = crate::claims::Claims::of_access_token(&jwt);
        set
    };
    let (sub, company) = (random_label(), random_label());
    let (a, b, c) = (session_key(), session_key(), session_key());
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
            // A session whose ID token names an identity-service session (`sid`) is filed
            // under it too.
            let sid = random_label();
            let mut with_sid = owned(&sub, &random_label());
            with_sid.id_token = Some(jwt_of(&serde_json::json!({ "sub": sub, "sid": sid })).into());
            let d = session_key();
            store.store(d, with_sid, minute).await.expect("store");
            assert_eq!(
                store
                    .sessions_of(SessionOwner::IdentitySession(sid.clone()))
                    .await
                    .expect("sessions_of"),
                vec![d],
                "sessions_of must find the sessions of an identity-service session (sid)"
            );
            store.remove(d).await.expect("remove");
            assert_eq!(
                store
                    .sessions_of(SessionOwner::IdentitySession(sid))
                    .await
                    .expect("sessions_of"),
                Vec::new(),
                "sessions_of must not return a removed session"
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
            let company_token = fresh_key(KeyKind::CompanyToken);
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
    let company_token = fresh_key(KeyKind::CompanyToken);
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
    let tok_key = session_key();
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
}
