//! Tokens for a company with no user present: HCSS's `company` grant and
//! `client_credentials`, cached, asked for once under concurrency, again before expiry,
//! `Disconnected` when HCSS refuses the company, retryable on passing failures.

use crate::common;

use std::time::Duration;

use common::*;
use hcss_auth::testing::{MockHcssIdentity, TokenFault};
use hcss_auth::{CompanyTokenError, HcssCompanyTokens};

const COMPANY: &str = "customer-co-1";

#[tokio::test]
async fn a_company_token_carries_the_company_and_is_cached() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let companies = HcssCompanyTokens::new(&app.auth);
    let token = companies.token(COMPANY).await.unwrap();
    assert_eq!(token.claims().company_id(), Some(COMPANY));
    assert_eq!(
        token.scopes().collect::<Vec<_>>(),
        ["heavyjob:read"],
        "no offline_access"
    );
    let again = companies.token(COMPANY).await.unwrap();
    assert_eq!(again.secret(), token.secret(), "cached");
    assert_eq!(mock.counts().company_grants, 1);
    // Another company is another token.
    let other = companies.token("customer-co-2").await.unwrap();
    assert_eq!(other.claims().company_id(), Some("customer-co-2"));
    assert_eq!(mock.counts().company_grants, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_make_one_token_call() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let companies = HcssCompanyTokens::new(&app.auth);
    let calls: Vec<_> = (0..50)
        .map(|_| {
            let companies = companies.clone();
            tokio::spawn(async move { companies.token(COMPANY).await.unwrap() })
        })
        .collect();
    for call in calls {
        call.await.unwrap();
    }
    assert_eq!(mock.counts().company_grants, 1);
}

#[tokio::test]
async fn a_company_token_is_asked_for_again_before_it_expires() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let companies = HcssCompanyTokens::new(&app.auth);
    let first = companies.token(COMPANY).await.unwrap();
    // Within the refresh skew of its end: a new one.
    mock.clock().advance(Duration::from_secs(3600 - 30));
    let second = companies.token(COMPANY).await.unwrap();
    assert_ne!(second.secret(), first.secret());
    assert_eq!(mock.counts().company_grants, 2);
}

#[tokio::test]
async fn a_disconnected_company_is_said_so_and_a_reconnected_one_works_at_once() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let companies = HcssCompanyTokens::new(&app.auth);
    companies.token(COMPANY).await.unwrap();
    mock.disconnect_company(COMPANY);
    mock.clock().advance(Duration::from_secs(3600)); // the cached token ran out
    match companies.token(COMPANY).await {
        Err(CompanyTokenError::Disconnected { company_id }) => assert_eq!(company_id, COMPANY),
        other => panic!("{other:?}"),
    }
    mock.reconnect_company(COMPANY);
    assert!(
        companies.token(COMPANY).await.is_ok(),
        "asked again at once"
    );
}

#[tokio::test]
async fn passing_failures_are_retryable_with_the_identity_services_wait() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let companies = HcssCompanyTokens::new(&app.auth);
    mock.set_token_fault(Some(TokenFault::Error {
        status: 503,
        error: "temporarily_unavailable",
        retry_after: Some(3),
    }));
    match companies.token(COMPANY).await {
        Err(CompanyTokenError::Unavailable { retry_after, .. }) => {
            assert_eq!(retry_after, Duration::from_secs(3))
        }
        other => panic!("{other:?}"),
    }
    mock.set_token_fault(Some(TokenFault::Error {
        status: 401,
        error: "invalid_client",
        retry_after: None,
    }));
    assert!(matches!(
        companies.token(COMPANY).await,
        Err(CompanyTokenError::Misconfigured { .. })
    ));
    mock.set_token_fault(None);
    assert!(companies.token(COMPANY).await.is_ok());
}

#[tokio::test]
async fn client_credentials_serve_the_apps_own_company() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let companies = HcssCompanyTokens::new(&app.auth);
    let own = companies.own_token().await.unwrap();
    assert_eq!(
        own.claims().company_id(),
        Some(MockHcssIdentity::OWN_COMPANY)
    );
    companies.own_token().await.unwrap();
    let counts = mock.counts();
    assert_eq!((counts.client_credentials, counts.company_grants), (1, 0));
}

/// The `on_disconnected` hook hears of a company HCSS refused, once per refusal.
#[tokio::test]
async fn the_disconnected_hook_hears_of_the_company() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let (heard, mut hearing) = tokio::sync::mpsc::unbounded_channel();
    let companies = HcssCompanyTokens::new(&app.auth).on_disconnected(move |company| {
        let _ = heard.send(company);
        async {}
    });
    mock.disconnect_company(COMPANY);
    assert!(companies.token(COMPANY).await.is_err());
    assert!(companies.token("still-connected").await.is_ok());
    // The hook runs in a task of its own.
    assert_eq!(hearing.recv().await.as_deref(), Some(COMPANY));
    drop(companies);
    assert_eq!(hearing.recv().await, None, "heard once");
}

/// HCSS (IdentityServer) refuses OpenID scopes for a token with no user: with `openid`,
/// `profile` and `email` among the app's scopes, company tokens ask for none of them.
#[tokio::test]
async fn company_tokens_ask_for_no_openid_scopes() {
    let mock = MockHcssIdentity::start().await;
    let scopes = [
        "openid",
        "profile",
        "email",
        "heavyjob:read",
        "offline_access",
    ];
    let app = start_app(&mock, |b| b.scopes(scopes)).await;
    let companies = HcssCompanyTokens::new(&app.auth);
    let token = companies.token(COMPANY).await.unwrap();
    assert_eq!(token.scopes().collect::<Vec<_>>(), ["heavyjob:read"]);
    let own = companies.own_token().await.unwrap();
    assert_eq!(own.scopes().collect::<Vec<_>>(), ["heavyjob:read"]);
}

/// Only `invalid_grant` says a company disconnected the app. The configuration errors of
/// the refresh table (`unauthorized_client`, `unsupported_grant_type`, `invalid_scope`)
/// are `Misconfigured`, a refusal the crate does not know and an unusable answer are
/// `Unavailable`; none of them calls the `on_disconnected` hook.
#[tokio::test]
async fn configuration_errors_and_unknown_refusals_are_no_disconnection() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let (heard, mut hearing) = tokio::sync::mpsc::unbounded_channel();
    let companies = HcssCompanyTokens::new(&app.auth).on_disconnected(move |company| {
        let _ = heard.send(company);
        async {}
    });
    let error = |status, error| TokenFault::Error {
        status,
        error,
        retry_after: None,
    };
    for fault in [
        error(400, "unauthorized_client"),
        error(400, "unsupported_grant_type"),
        error(400, "invalid_scope"),
        error(401, "unauthorized_client"),
    ] {
        mock.set_token_fault(Some(fault.clone()));
        match companies.token(COMPANY).await {
            Err(CompanyTokenError::Misconfigured { .. }) => {}
            other => panic!("{fault:?}: {other:?}"),
        }
    }
    for fault in [
        error(400, "an_error_no_one_documented"),
        TokenFault::MalformedBody,
    ] {
        mock.set_token_fault(Some(fault.clone()));
        match companies.token(COMPANY).await {
            Err(CompanyTokenError::Unavailable { .. }) => {}
            other => panic!("{fault:?}: {other:?}"),
        }
    }
    mock.set_token_fault(None);
    assert!(companies.token(COMPANY).await.is_ok());
    // Once every call (and the hook's holder) is gone, nothing was heard.
    drop(companies);
    assert_eq!(hearing.recv().await, None, "on_disconnected called");
}

/// A cached company token is no session: ending a company's (or the app client's)
/// sessions neither counts it, nor calls `on_sign_out`, nor revokes it, and it stays
/// cached.
#[tokio::test]
async fn cached_company_tokens_are_not_sessions() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let mock = MockHcssIdentity::start().await;
    let signed_out = Arc::new(AtomicUsize::new(0));
    let count = signed_out.clone();
    let app = start_app_built(
        &mock,
        |b| b,
        |auth, _| {
            auth.on_sign_out(move |_| {
                count.fetch_add(1, Ordering::SeqCst);
                async {}
            })
        },
    )
    .await;
    company_tokens_are_not_sessions(&mock, &app.auth).await;
    assert_eq!(signed_out.load(Ordering::SeqCst), 0, "on_sign_out called");
    assert_eq!(
        app.store.session_count(),
        0,
        "company tokens counted as sessions"
    );
}

/// An empty company id is refused at once, saying what to give, without asking HCSS
/// (which refuses it as `invalid_request`: read as `Unavailable`, "retry later", for ever).
#[tokio::test]
async fn an_empty_company_id_is_refused_without_asking_hcss() {
    let mock = MockHcssIdentity::start().await;
    let app = start_app(&mock, |b| b).await;
    let companies = HcssCompanyTokens::new(&app.auth);
    for empty in ["", " "] {
        match companies.token(empty).await {
            Err(err @ CompanyTokenError::NoCompanyId) => {
                assert!(err.to_string().contains("CompanyId"), "{err}")
            }
            other => panic!("{empty:?}: expected NoCompanyId, got {other:?}"),
        }
    }
    assert_eq!(mock.counts().company_grants, 0, "HCSS was asked");
}
