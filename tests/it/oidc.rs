//! OpenID Connect: ID token signatures verified against the identity service's JWKS
//! (key rotation, forged signatures, unknown key ids, `alg: none`), and its discovery
//! document (another issuer refused, HCSS's layout when absent).

use crate::common;

use common::*;
use hcss_auth::testing::{DiscoveryFault, MockHcssIdentity, TokenFault};
use hcss_auth::TokenStore;

async fn oidc_app(mock: &MockHcssIdentity) -> TestApp {
    start_app(mock, |b| b.scopes(OIDC_SCOPES)).await
}

/// Signs in while the mock's token endpoint has `fault`, and checks that the sign-in is
/// refused with a page of `status`, no session is created and the grant's refresh token
/// is revoked.
async fn refused_sign_in(mock: &MockHcssIdentity, app: &TestApp, fault: TokenFault, status: u16) {
    let revocations = mock.counts().revocations;
    mock.set_token_fault(Some(fault.clone()));
    let browser = Browser::new();
    let callback = browser.start_login(app, None).await;
    let refused = browser.get(&callback).await;
    mock.set_token_fault(None);
    assert_eq!(refused.status, status, "{fault:?}: {}", refused.body);
    assert!(
        refused.body.contains("Sign-in failed"),
        "{fault:?}: a page says so: {}",
        refused.body
    );
    assert!(
        browser.cookie("hcss-session").is_none(),
        "{fault:?}: no session"
    );
    assert_eq!(
        mock.counts().revocations,
        revocations + 1,
        "{fault:?}: the refresh token was revoked"
    );
}

#[tokio::test]
async fn an_id_token_with_a_forged_signature_is_refused() {
    let mock = MockHcssIdentity::start().await;
    let app = oidc_app(&mock).await;
    refused_sign_in(&mock, &app, TokenFault::BadIdToken("signature"), 400).await;
    // The same app signs in with a genuine token.
    Browser::new().login(&app).await;
}

#[tokio::test]
async fn an_unsigned_id_token_alg_none_is_refused() {
    let mock = MockHcssIdentity::start().await;
    let app = oidc_app(&mock).await;
    refused_sign_in(&mock, &app, TokenFault::BadIdToken("alg"), 400).await;
}

/// An unknown key id reads the keys again (the service may have rotated them); when that
/// does not help, the sign-in is refused, and the same key id does not read them again.
#[tokio::test]
async fn an_unknown_key_id_whose_refetch_does_not_help_is_refused() {
    let mock = MockHcssIdentity::start().await;
    let app = oidc_app(&mock).await;
    Browser::new().login(&app).await;
    assert_eq!(
        mock.counts().jwks,
        1,
        "the keys are read at the first sign-in"
    );
    refused_sign_in(&mock, &app, TokenFault::BadIdToken("kid"), 400).await;
    assert_eq!(mock.counts().jwks, 2, "an unknown kid reads the keys again");
    refused_sign_in(&mock, &app, TokenFault::BadIdToken("kid"), 400).await;
    assert_eq!(
        mock.counts().jwks,
        2,
        "a kid that a fresh read did not have reads them no more (rate limit)"
    );
}

#[tokio::test]
async fn with_openid_a_missing_id_token_is_refused() {
    let mock = MockHcssIdentity::start().await;
    let app = oidc_app(&mock).await;
    refused_sign_in(&mock, &app, TokenFault::NoIdToken, 502).await;
}

/// The identity service rotates its signing key between two sign-ins: the second one's
/// unknown key id reads the keys again, and both sign-ins work.
#[tokio::test]
async fn key_rotation_between_two_sign_ins_both_work() {
    let mock = MockHcssIdentity::start().await;
    let app = oidc_app(&mock).await;
    let first = Browser::new();
    first.login(&app).await;
    mock.rotate_signing_key();
    let second = Browser::new();
    second.login(&app).await;
    assert!(first.cookie("hcss-session").is_some());
    assert!(second.cookie("hcss-session").is_some());
    assert_eq!(mock.counts().jwks, 2, "the rotated keys were read again");
    for browser in [&first, &second] {
        let seen = browser.get(&format!("{}/whoami", app.url)).await;
        assert_eq!(seen.status, 200, "{}", seen.body);
    }
}

/// A discovery document that names another issuer: no sign-in starts.
#[tokio::test]
async fn a_discovery_document_of_another_issuer_is_refused() {
    let mock = MockHcssIdentity::start().await;
    mock.set_discovery_fault(Some(DiscoveryFault::OtherIssuer));
    let app = oidc_app(&mock).await;
    let seen = Browser::new().get(&format!("{}/hcss/login", app.url)).await;
    assert_eq!(seen.status, 502, "{}", seen.body);
    assert!(seen.body.contains("not set up correctly"), "{}", seen.body);
    assert_eq!(mock.counts().discovery, 1);
    assert_eq!(mock.counts().authorize, 0, "no browser was sent to sign in");
}

/// No discovery document: HCSS's layout is used (its JWKS too, where IdentityServer
/// publishes it), and the document is read once, not at every sign-in.
#[tokio::test]
async fn without_a_discovery_document_hcss_layout_is_used() {
    let mock = MockHcssIdentity::start().await;
    mock.set_discovery_fault(Some(DiscoveryFault::Absent));
    let app = oidc_app(&mock).await;
    assert_eq!(mock.counts().discovery, 0, "nothing is read at start-up");
    Browser::new().login(&app).await;
    Browser::new().login(&app).await;
    let counts = mock.counts();
    assert_eq!(counts.discovery, 1, "read once, then cached");
    assert_eq!(counts.code_exchanges, 2);
    assert_eq!(counts.jwks, 1, "the keys at IdentityServer's path");
    // The layout's JWKS verifies signatures as the discovered one does.
    refused_sign_in(&mock, &app, TokenFault::BadIdToken("signature"), 400).await;
}

/// A service that publishes no keys: the claims are still checked, the signature cannot
/// be (as before signatures were verified).
#[tokio::test]
async fn without_published_keys_the_claims_are_still_checked() {
    let mock = MockHcssIdentity::start().await;
    mock.set_discovery_fault(Some(DiscoveryFault::NoKeys));
    let app = oidc_app(&mock).await;
    Browser::new().login(&app).await;
    refused_sign_in(&mock, &app, TokenFault::BadIdToken("nonce"), 400).await;
    assert_eq!(mock.counts().jwks, 0, "no JWKS is named, none is read");
}

/// A logout with sign-out at HCSS on: the session ends here, the browser is sent to the
/// end-session endpoint with the ID token as hint, the identity service's own session
/// ends, and the browser comes back with the state to `post_logout_path`. The next login
/// asks for credentials again (a login before the logout did not).
#[tokio::test]
async fn sign_out_at_hcss_ends_the_identity_service_session() {
    let mock = MockHcssIdentity::start().await;
    let app = signing_out_at_hcss(&mock).await;
    let browser = Browser::new();
    browser.login(&app).await;
    browser.forget("hcss-session");
    browser.login(&app).await;
    assert_eq!(
        mock.counts().credential_prompts,
        1,
        "the identity service's session signs the same browser in again"
    );
    assert_eq!(mock.signed_in_browsers(), 1);

    let out = browser
        .request("POST", &format!("{}/hcss/logout", app.url), &[])
        .await;
    assert_eq!(out.status, 303, "{}", out.body);
    let end_session = out.location().to_owned();
    assert!(
        end_session.starts_with(&format!("{}/connect/endsession?", mock.identity_url())),
        "sent to sign out at HCSS: {end_session}"
    );
    assert!(query_param(&end_session, "id_token_hint").is_some());
    assert!(browser.cookie("hcss-session").is_none(), "signed out here");
    let back = browser.get(&end_session).await;
    assert_eq!(back.status, 303, "{}", back.body);
    assert!(
        back.location()
            .starts_with(&format!("{}/hcss/logout/return?", app.url)),
        "{}",
        back.location()
    );
    assert_eq!(mock.signed_in_browsers(), 0, "the HCSS session is gone");
    let home = browser.get(back.location()).await;
    assert_eq!(home.status, 303, "{}", home.body);
    assert_eq!(home.location(), "/");
    assert!(
        browser.cookie("hcss-logout").is_none(),
        "the state is used up"
    );

    browser.login(&app).await;
    assert_eq!(
        mock.counts().credential_prompts,
        2,
        "the next login asks for credentials again"
    );
}

/// The return from the end-session endpoint with another state, or none, or without the
/// browser's state cookie, is refused with a page.
#[tokio::test]
async fn a_tampered_sign_out_state_is_refused() {
    let mock = MockHcssIdentity::start().await;
    let app = signing_out_at_hcss(&mock).await;
    for tamper in ["other state", "no state", "no cookie"] {
        let browser = Browser::new();
        browser.login(&app).await;
        let out = browser
            .request("POST", &format!("{}/hcss/logout", app.url), &[])
            .await;
        let back = browser.get(out.location()).await;
        let mut url = back.location().to_owned();
        assert!(query_param(&url, "state").is_some(), "{url}");
        match tamper {
            "other state" => url = with_param(&url, "state", &"x".repeat(43)),
            "no state" => url = url.split('?').next().unwrap().to_owned(),
            _ => browser.forget("hcss-logout"),
        }
        let seen = browser.get(&url).await;
        assert_eq!(seen.status, 400, "{tamper}: {}", seen.body);
        assert!(seen.body.contains("Sign-out not confirmed"), "{tamper}");
    }
}

/// `/hcss/login?prompt=login` reaches the authorize URL, and the identity service asks
/// for credentials although its session is live; `login_hint` and `max_age` pass too.
#[tokio::test]
async fn prompt_login_reaches_the_authorize_url() {
    let mock = MockHcssIdentity::start().await;
    let app = oidc_app(&mock).await;
    let browser = Browser::new();
    browser.login(&app).await;
    let seen = browser
        .get(&format!(
            "{}/hcss/login?prompt=login&login_hint=u%40example.com&max_age=600",
            app.url
        ))
        .await;
    assert_eq!(seen.status, 303, "{}", seen.body);
    let authorize = seen.location().to_owned();
    assert_eq!(query_param(&authorize, "prompt").as_deref(), Some("login"));
    assert_eq!(
        query_param(&authorize, "login_hint").as_deref(),
        Some("u@example.com")
    );
    assert_eq!(query_param(&authorize, "max_age").as_deref(), Some("600"));
    let callback = browser.get(&authorize).await;
    let signed_in = browser.get(callback.location()).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(
        mock.counts().credential_prompts,
        2,
        "asked for credentials again"
    );
}

/// A `prompt` outside the allow-list, or a `max_age` that is no number, is refused with a
/// page; no browser is sent to the identity service.
#[tokio::test]
async fn an_unknown_prompt_is_refused() {
    let mock = MockHcssIdentity::start().await;
    let app = oidc_app(&mock).await;
    for query in ["prompt=admin", "prompt=none%20login", "max_age=soon"] {
        let seen = Browser::new()
            .get(&format!("{}/hcss/login?{query}", app.url))
            .await;
        assert_eq!(seen.status, 400, "{query}: {}", seen.body);
        assert!(seen.body.contains("Bad sign-in request"), "{query}");
    }
    assert_eq!(mock.counts().authorize, 0);
}

/// With `max_age`, an ID token whose `auth_time` is older than it allows (an identity
/// service that signed the browser in from an old session, not honouring `max_age`) is
/// refused.
#[tokio::test]
async fn an_auth_time_older_than_max_age_is_refused() {
    let mock = MockHcssIdentity::start().await;
    let app = oidc_app(&mock).await;
    let browser = Browser::new();
    browser.login(&app).await;
    mock.set_token_fault(Some(TokenFault::BadIdToken("auth_time")));
    let seen = browser
        .get(&format!("{}/hcss/login?max_age=60", app.url))
        .await;
    let callback = browser.get(seen.location()).await;
    let refused = browser.get(callback.location()).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("Sign-in failed"));
}

/// The mock honours `max_age`: a session of its own older than `max_age` asks for
/// credentials again and gives a fresh `auth_time` (which the app accepts); a younger one
/// signs in without.
#[tokio::test]
async fn the_mock_asks_for_credentials_again_past_max_age() {
    let mock = MockHcssIdentity::start().await;
    let app = oidc_app(&mock).await;
    let browser = Browser::new();
    browser.login(&app).await;
    assert_eq!(mock.counts().credential_prompts, 1);
    let login_with = |max_age: u64| {
        let browser = &browser;
        let url = format!("{}/hcss/login?max_age={max_age}", app.url);
        async move {
            let seen = browser.get(&url).await;
            assert_eq!(seen.status, 303, "{}", seen.body);
            let callback = browser.get(seen.location()).await;
            let signed_in = browser.get(callback.location()).await;
            assert_eq!(
                signed_in.status, 303,
                "max_age={max_age}: {}",
                signed_in.body
            );
        }
    };
    mock.clock().advance(std::time::Duration::from_secs(200));
    login_with(600).await;
    assert_eq!(
        mock.counts().credential_prompts,
        1,
        "a session younger than max_age signs in without credentials"
    );
    login_with(60).await;
    assert_eq!(
        mock.counts().credential_prompts,
        2,
        "a session older than max_age asks for credentials again"
    );
    login_with(60).await;
    assert_eq!(
        mock.counts().credential_prompts,
        2,
        "the new session's auth_time is fresh"
    );
}

/// A refresh whose ID token fails the checks of a sign-in (OpenID Connect Core §12.2):
/// the refresh is not used, the session ends (as after `invalid_grant`), and the refresh
/// token it brought is revoked.
async fn refresh_with_a_bad_id_token_ends_the_session(claim: &'static str) {
    let mock = MockHcssIdentity::start().await;
    let app = oidc_app(&mock).await;
    let browser = Browser::new();
    browser.login(&app).await;
    let id = browser.cookie("hcss-session").unwrap();
    let whoami = format!("{}/whoami", app.url);
    // A refresh with a genuine ID token is used.
    expire_session(&app.store, &id).await;
    let seen = browser.get(&whoami).await;
    assert_eq!(seen.status, 200, "{claim}: {}", seen.body);
    assert_eq!(mock.counts().refreshes, 1);

    let revocations = mock.counts().revocations;
    mock.set_token_fault(Some(TokenFault::BadIdToken(claim)));
    expire_session(&app.store, &id).await;
    let seen = browser.get(&whoami).await;
    mock.set_token_fault(None);
    assert_eq!(mock.counts().refreshes, 2, "{claim}");
    assert_eq!(seen.status, 401, "{claim}: signed out: {}", seen.body);
    assert!(
        app.store.load(session_key(&id)).await.unwrap().is_none(),
        "{claim}: the session is gone"
    );
    assert_eq!(
        mock.counts().revocations,
        revocations + 1,
        "{claim}: the refresh token the refresh brought was revoked"
    );
}

#[tokio::test]
async fn a_refresh_whose_id_token_has_a_forged_signature_ends_the_session() {
    refresh_with_a_bad_id_token_ends_the_session("signature").await;
}

#[tokio::test]
async fn a_refresh_whose_id_token_is_unsigned_or_for_another_user_ends_the_session() {
    for claim in ["alg", "sub", "iss"] {
        refresh_with_a_bad_id_token_ends_the_session(claim).await;
    }
}

/// The identity service's keys cannot be read when a refresh brings an ID token under a
/// new key id: nothing is known about that token, so the session is not lost to the
/// outage (the refreshed tokens are used), but its ID token is not taken either (the
/// session keeps the one verified before). Once the keys can be read, the next refresh's
/// ID token is verified and taken: here by another instance on the same store, since the
/// instance whose read failed waits ten seconds before it reads the keys again.
#[tokio::test]
async fn a_refresh_whose_id_token_cannot_be_verified_for_now_keeps_the_session() {
    let mock = MockHcssIdentity::start().await;
    let app = oidc_app(&mock).await;
    let browser = Browser::new();
    browser.login(&app).await;
    let id = browser.cookie("hcss-session").unwrap();
    let whoami = format!("{}/whoami", app.url);
    let signed_in_with = expire_session(&app.store, &id).await.id_token.unwrap();

    mock.rotate_signing_key();
    mock.set_discovery_fault(Some(DiscoveryFault::KeysUnavailable));
    let revocations = mock.counts().revocations;
    let seen = browser.get(&whoami).await;
    assert_eq!(seen.status, 200, "the session goes on: {}", seen.body);
    assert_eq!(mock.counts().refreshes, 1);
    assert_eq!(mock.counts().revocations, revocations, "nothing revoked");
    let kept = app.store.load(session_key(&id)).await.unwrap().unwrap();
    assert!(
        kept.id_token.as_ref().map(|t| t.expose_secret()) == Some(signed_in_with.expose_secret()),
        "the unverified ID token was not taken"
    );

    mock.set_discovery_fault(None);
    expire_session(&app.store, &id).await;
    let (other, _auth) =
        start_app_with_store(&mock, |b| b.scopes(OIDC_SCOPES), app.store.clone()).await;
    let seen = browser.get(&format!("{other}/whoami")).await;
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(mock.counts().refreshes, 2);
    let refreshed = app.store.load(session_key(&id)).await.unwrap().unwrap();
    assert!(
        refreshed.id_token.as_ref().map(|t| t.expose_secret())
            != Some(signed_in_with.expose_secret()),
        "a verified ID token of a refresh is taken"
    );
}
