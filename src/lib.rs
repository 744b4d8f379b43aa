//! Sign users in with **HCSS** (HeavyJob, HeavyBid, Equipment360, Telematics, Safety...) from
//! any Axum or Tower/Hyper service, through the OAuth 2.0 Authorization Code flow with PKCE,
//! and call HCSS APIs on their behalf. One layer, [`HcssAuth`], mounts the flow
//! (`/hcss/login`, `/hcss/callback`, `/hcss/logout`); one extractor, [`HcssToken`], hands a
//! handler a live access token. State, PKCE, cookies, refresh (once per session, even across
//! instances) and token storage are done.
//!
//! ```no_run
//! use axum::{http::StatusCode, routing::get, Router};
//! use hcss_auth::{HcssAuth, HcssConfig, HcssToken};
//!
//! /// Calls HeavyJob as the signed-in user, with a live token: refreshed before it
//! /// expires, never handed out expired.
//! async fn business_units(token: HcssToken) -> Result<String, (StatusCode, String)> {
//!     let failed = |e: reqwest::Error| (StatusCode::BAD_GATEWAY, e.without_url().to_string());
//!     reqwest::Client::new()
//!         .get("https://api.hcssapps.com/heavyjob/api/v1/businessUnits")
//!         .bearer_auth(token.secret())
//!         .send()
//!         .await
//!         .map_err(failed)?
//!         .text()
//!         .await
//!         .map_err(failed)
//! }
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // HCSS_CLIENT_ID, HCSS_CLIENT_SECRET, HCSS_SCOPES, HCSS_REDIRECT_URI (see Configuration)
//!     let config = HcssConfig::from_env()?;
//!     let app = Router::new()
//!         .route("/business-units", get(business_units))
//!         .layer(HcssAuth::new(config)); // last, on the outermost router
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
//!
//! This handler calls HCSS with the token by hand, to show the token: no budget, no
//! second try after a 401 or a 429, and HCSS's status lost. For real calls take
//! [`HcssApi`] ([Calling HCSS APIs](#calling-hcss-apis)), which does all three.
//!
//! The guide, in the order a new app meets it:
//!
//! - [Quick start](#quick-start): register the app, add the layer, take the token.
//! - [Where the layer goes](#where-the-layer-goes), and [who signed in](#who-signed-in)
//!   (claims, [guarding a group of routes](#guarding-a-group-of-routes), hooks at sign-in
//!   and sign-out, ending sessions).
//! - [Acting for a company](#acting-for-a-company-partner-apps) with no user present, and
//!   [your own company's data](#your-own-companys-data-client-credentials).
//! - [Calling HCSS APIs](#calling-hcss-apis): within HCSS's limits, through 401s and 429s.
//! - [The flow](#the-flow), step by step, and its [configuration](#configuration).
//! - [Stores](#stores) (the [`store`] module: choosing one, Redis, writing your own) and
//!   [testing your app](#testing-your-app) (the [`testing`] module: a mock HCSS).
//! - [When things go wrong](#when-things-go-wrong), [security](#security),
//!   [deployment notes](#deployment-notes), [performance](#performance) and
//!   [features](#features).
//!
//! # Quick start
//!
//! Register the app at HCSS (Partner Portal). HCSS names things its own way: its
//! "Redirect URL" is the app's entry page, your `/hcss/login`, and its "Post Login
//! Callback URL" is what OAuth calls the redirect URI, your `/hcss/callback` (the
//! `redirect_uri` setting below). Then depend on the crate (not on crates.io yet: until it
//! is, use a path or git dependency in place of the version):
//!
//! ```toml
//! [dependencies]
//! hcss-auth = "0.1"          # features = ["redis"] for RedisStore (several instances)
//! axum = "0.8"
//! tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
//! reqwest = "0.13"           # to call HCSS APIs with the token, as above
//! serde_json = "1"           # the JSON answers of the examples below
//!
//! [dev-dependencies]
//! hcss-auth = { version = "0.1", features = ["test-util"] }  # the mock HCSS, sign_in, TestClock
//! tower = { version = "0.5", features = ["util"] }           # ServiceExt::oneshot in tests
//! ```
//!
//! Set the four variables of [Configuration](#configuration) and run the example above. A
//! browser that opens `/business-units` signed out is sent to `/hcss/login`, through HCSS's
//! sign-in page, and back; a script gets `401 {"error":"login_required",...}`. The rule: a
//! **page load** (`GET` or `HEAD` whose `Accept` includes `text/html`, as browsers send) and
//! an HTML form's POST go to log in; everything else, `curl` and `fetch` and a test request
//! without `Accept` among them, gets the 401 (see [`HcssRejection`]).
//!
//! - `Option<HcssToken>` serves pages that work both ways: `None` when signed out.
//! - [`HcssSession`] (an extractor too, and in every request's extensions) gives plain Tower
//!   services the same ([`HcssSession::token`]), a refresh after an HCSS API refused a token
//!   with 401 ([`HcssSession::refresh`]), and a sign-out decided by the app
//!   ([`HcssSession::end`]). For services without Axum, see [`service::HcssAuthService`].
//! - [`HcssToken::secret`] is the access token for `Authorization: Bearer`;
//!   [`HcssToken::claims`], [`HcssToken::scopes`] and [`HcssToken::expires_at`] say whose it
//!   is, what it may do and until when. Keep the secret out of logs, URLs and responses.
//!
//! To try the flow with no HCSS account, the repository's example server runs against the
//! crate's mock identity service, and `examples/mock_hcss.rs` serves that mock alone on a
//! fixed port for your own app, printing the settings to export (its README has the
//! commands).
//!
//! # Where the layer goes
//!
//! Last, on the outermost router: it must see every request, `/hcss/*` included, before any
//! router strips a prefix.
//!
//! ```
//! use axum::{routing::get, Router};
//! use hcss_auth::{HcssAuth, HcssConfig, HcssToken};
//!
//! async fn jobs(_token: HcssToken) -> &'static str {
//!     "jobs"
//! }
//!
//! # fn main() -> Result<(), hcss_auth::ConfigError> {
//! # let config = HcssConfig::builder().client_id("id").scopes(["heavyjob:read"])
//! #     .redirect_uri("https://app.example.com/hcss/callback").build()?;
//! let api = Router::new().route("/jobs", get(jobs));
//! let app: Router = Router::new()
//!     .nest("/api", api)            // nested routers inside...
//!     .layer(HcssAuth::new(config)); // ...the layer outside, last
//! # Ok(()) }
//! ```
//!
//! Not with `route_layer` (it wraps matched routes only, so `/hcss/login` is a 404), and not
//! on a nested router (it never sees `/hcss/login` either). A misplaced layer says so in a
//! WARN log line ("the layer is misplaced") as soon as a browser it sent to log in comes
//! back from that 404: until a request to one of its paths reaches it, the responses that
//! send browsers to log in carry a small cookie (`hcss-sent-to-login`, cleared by the
//! login), and a page load that brings it back is the proof. For clients that keep no
//! cookies it says so after 50 were sent to log in with none of its paths reached. A
//! missing layer makes `HcssToken` answer 500 with a log line that says where to add it.
//! A layer on a nested router as well as on the outermost one does no harm: the path to
//! return to after a login is the one the outermost layer saw, prefix included. Add your
//! state with `.with_state(...)` before the layer; other layers (tracing, timeouts) may
//! go on either side of it.
//!
//! # Who signed in
//!
//! HCSS's access tokens are JWTs. The crate reads their claims once, when it receives a
//! token from HCSS's token endpoint (at sign-in and at each refresh), and keeps them with
//! the session; a handler reads them with no decoding ([`Claims`]):
//!
//! ```
//! use axum::Json;
//! use hcss_auth::HcssToken;
//!
//! async fn me(token: HcssToken) -> Json<serde_json::Value> {
//!     let claims = token.claims();
//!     Json(serde_json::json!({
//!         "subject": claims.subject(),        // `sub`: the user, stable at HCSS
//!         "company_id": claims.company_id(),  // `CompanyId`: store it against your user
//!         "name": claims.name(),
//!         "email": claims.email(),
//!         "client_id": claims.client_id(),
//!         "scope": claims.get("scope"),       // any other claim, as JSON
//!     }))
//! }
//! ```
//!
//! The access token's signature is not checked: it came straight from the token endpoint over a
//! verified TLS connection, which is how OpenID Connect trusts an ID token from the same
//! place. Never read claims from a token a client sends you. A token that is not a JWT has
//! no claims, and everything else works as before. With `openid` among the scopes, each
//! login sends a `nonce`, and the ID token that comes back must name this issuer (`iss`)
//! and client (`aud`), be unexpired and carry the nonce, or the sign-in is refused; its
//! identity claims (`sub`, name, email...) are then preferred over the access token's.
//!
//! ## OpenID Connect: what is verified, and when
//!
//! The crate reads the identity service's discovery document
//! (`{identity_url}/.well-known/openid-configuration`) at the first login or token call,
//! never at start-up, and keeps it for a day. Its `issuer` must be the configured identity
//! URL, byte for byte: a document that names another issuer stops sign-ins (a 502 page,
//! and an error in the log that says to check `HCSS_IDENTITY_URL`). Its authorize, token
//! and revocation endpoints are used when it names them. When there is no document (a
//! 404, unreachable, not JSON), HCSS's known layout (`/connect/authorize`,
//! `/connect/token`, `/connect/revocation`, the keys at
//! `/.well-known/openid-configuration/jwks`) is used, one log line says so, and the
//! document is tried again five minutes later.
//!
//! | scopes | the identity service publishes keys (a JWKS) | what a sign-in verifies |
//! |---|---|---|
//! | without `openid` | either way | nothing signed: the access token's claims are read, as above |
//! | with `openid` | yes (IdentityServer does) | the ID token's **signature** against the JWKS, then `iss`, `aud`, `azp`, `exp`, `nonce` |
//! | with `openid` | no (no `jwks_uri`, or a 404 there) | `iss`, `aud`, `azp`, `exp`, `nonce`; the signature cannot be checked, and one log line says so |
//!
//! The signature must be made with RS256 (IdentityServer's default), RS384, RS512,
//! PS256, PS384, PS512, ES256 or ES384, by a key of the JWKS of that kind (by `kid`):
//! `alg: none`, HMAC (`HS256`... with a public key as the secret) and critical header
//! extensions are refused. When the service rotates its keys, an ID token naming a `kid`
//! the cached keys lack reads the JWKS again (at most ten times a minute, and not again
//! for a `kid` a fresh read did not have); the keys are otherwise read again after an
//! hour. A JWKS that cannot be read (a timeout, a 5xx) refuses the sign-in rather than
//! skip the check. Any refusal is a page, no session, and the refresh token that came
//! with the ID token revoked.
//!
//! An ID token that a refresh brings is checked as a sign-in's (OpenID Connect Core
//! §12.2): its signature against the JWKS, its `iss`, `aud`, `azp` and `exp`, and the
//! same `sub` as the session's. One that fails (a forged signature, `alg: none`, an
//! unknown `kid` that a fresh read of the keys does not have, another user...) is not
//! signed in with: the session ends as after `invalid_grant` (the user signs in again)
//! and the refresh token that came with it is revoked. Keys that cannot be read (a
//! timeout, a 5xx) say nothing about the token, and the refresh token it came with is
//! already spent: the session goes on with the refreshed tokens but keeps its identity
//! (the claims and the ID token verified before), and a warning is logged.
//!
//! ## Signing out at HCSS too
//!
//! By default, `POST /hcss/logout` ends the session here (its refresh token revoked) and
//! leaves the user's HCSS session as it is: the next "sign in" goes through without a
//! password. To end that too (OpenID Connect RP-initiated logout), set
//! [`post_logout_redirect_uri`](HcssConfigBuilder::post_logout_redirect_uri)
//! (`HCSS_POST_LOGOUT_REDIRECT_URI`), e.g. `https://app.example.com/hcss/logout/return`,
//! and register that URI at HCSS as the client's post-logout redirect URI. It must be on
//! the redirect URI's origin (https, or http on loopback in development); the layer
//! serves its path. The logout then sends the browser to HCSS's end-session endpoint
//! (the discovery document's `end_session_endpoint`, else `{identity_url}/connect/endsession`)
//! with the session's ID token as `id_token_hint` (kept with the session when `openid`
//! is among the scopes; `client_id` otherwise), the post-logout redirect URI and a random
//! `state`, which the browser keeps in a cookie. Back at that URI, the `state` must be
//! the cookie's, or a page refuses it; then the browser goes to `post_logout_path`.
//!
//! ## Back-channel logout: HCSS tells the app
//!
//! When a user signs out at HCSS (in another app, or an administrator ends their HCSS
//! session), HCSS can tell the app at once (OpenID Connect Back-Channel Logout). Turn it
//! on with [`backchannel_logout(true)`](HcssConfigBuilder::backchannel_logout)
//! (`HCSS_BACKCHANNEL_LOGOUT=1`) and register `{your origin}/hcss/backchannel-logout`
//! (or your [`backchannel_logout_path`](HcssConfigBuilder::backchannel_logout_path)) at
//! HCSS as the client's back-channel logout URI, with `openid` among the scopes. The
//! layer then serves `POST` there: it reads the `logout_token` form field (at most
//! 16 KiB of body), verifies its signature against HCSS's published keys (a service
//! that publishes none gets every logout token refused), its `iss`, `aud`, `iat` (within
//! five minutes of now), its back-channel `events` claim, that it has no `nonce`, a `sub`
//! or a `sid`, and a `jti` not seen before on any instance sharing the token store; then
//! it ends the sessions of that HCSS session (`sid`, kept from each session's ID token in
//! the store's owner index), and those of that user (`sub`) whose HCSS session is
//! unknown (or all of the user's when the token names no `sid`), as a logout does
//! (`on_sign_out` called, refresh token revoked), on every instance sharing the store,
//! before answering 200. Anything wrong is a 400 `{"error":"invalid_request",...}`.
//!
//! ## `prompt`, `login_hint`, `max_age`
//!
//! `/hcss/login?prompt=login` asks HCSS to sign in again (as someone else),
//! `prompt=consent` to consent again (after the app's scopes changed), and
//! `select_account` and `none` pass too; any other value is refused with a 400 page.
//! `login_hint` (the user's email) and `max_age` (seconds) pass through as well. The
//! config's [`prompt`](HcssConfigBuilder::prompt) and [`max_age`](HcssConfigBuilder::max_age)
//! are the defaults. With `max_age` and `openid`, the ID token's `auth_time` must be at
//! most that old (a minute of clock skew allowed), or the sign-in is refused.
//!
//! ## Guarding a group of routes
//!
//! A handler that takes [`HcssToken`] is guarded by it. To guard a group of routes whose
//! handlers do not take it, put the extractor in front of them with Axum's
//! `middleware::from_extractor::<HcssToken>()`, and to admit only some users, check their
//! claims in a `middleware::from_fn` that takes the token. Either goes on the group with
//! `route_layer` (its routes only, so an unknown path stays a 404), inside the
//! [`HcssAuth`] layer, which stays the outermost router's last `.layer(...)`:
//!
//! ```
//! use axum::extract::Request;
//! use axum::http::StatusCode;
//! use axum::middleware::{self, Next};
//! use axum::response::{IntoResponse, Response};
//! use axum::{routing::get, Router};
//! use hcss_auth::{HcssAuth, HcssConfig, HcssToken};
//!
//! /// Admits the users of one HCSS company; others get 403. Signed out: sent to log in
//! /// (a page load) or 401 (an API call), as `HcssToken` does everywhere.
//! async fn our_company_only(token: HcssToken, request: Request, next: Next) -> Response {
//!     match token.claims().company_id() {
//!         Some("the-company-id") => next.run(request).await,
//!         _ => (StatusCode::FORBIDDEN, "This app is for one company's users.").into_response(),
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), hcss_auth::ConfigError> {
//! # let config = HcssConfig::builder().client_id("id").scopes(["heavyjob:read"])
//! #     .redirect_uri("https://app.example.com/hcss/callback").build()?;
//! let reports = Router::new()
//!     .route("/reports", get(|| async { "reports" }))
//!     .route("/reports/{id}", get(|| async { "a report" }))
//!     .route_layer(middleware::from_extractor::<HcssToken>()); // signed in
//! let admin = Router::new()
//!     .route("/admin", get(|| async { "admin" }))
//!     .route_layer(middleware::from_fn(our_company_only)); // signed in, of the company
//! let app: Router = Router::new()
//!     .route("/", get(|| async { "open to all" }))
//!     .merge(reports)
//!     .merge(admin)
//!     .layer(HcssAuth::new(config)); // outermost, last
//!
//! // Signed out, as an API call: the open route answers, the guarded ones say 401.
//! use tower::ServiceExt as _;
//! for (uri, status) in [("/", 200), ("/reports/7", 401), ("/admin", 401)] {
//!     let request = axum::http::Request::get(uri).body(axum::body::Body::empty()).unwrap();
//!     assert_eq!(app.clone().oneshot(request).await.unwrap().status(), status, "{uri}");
//! }
//! # Ok(()) }
//! ```
//!
//! ## Hooks: sign-in and sign-out
//!
//! The app decides at sign-in and hears of sign-outs through hooks given to
//! [`HcssAuth::builder`] ([`HcssAuthBuilder::on_sign_in`], [`HcssAuthBuilder::on_sign_out`]),
//! before the layer is built and shared:
//!
//! ```
//! use hcss_auth::{HcssAuth, HcssConfig, SignIn, SignInRefused, SignOut};
//!
//! # fn main() -> Result<(), hcss_auth::ConfigError> {
//! # let config = HcssConfig::builder().client_id("id").scopes(["heavyjob:read"])
//! #     .redirect_uri("https://app.example.com/hcss/callback").build()?;
//! let layer = HcssAuth::builder(config)
//!     .on_sign_in(|sign_in: SignIn| async move {
//!         // Look the company up in your records.
//!         match sign_in.claims().company_id() {
//!             Some(_company) => Ok(()),
//!             None => Err(SignInRefused::new("Your company has not connected this app.")),
//!         }
//!     })
//!     .on_sign_out(|sign_out: SignOut| async move {
//!         let _who = sign_out.claims().subject();
//!     })
//!     .build();
//! # let _ = layer; Ok(()) }
//! ```
//!
//! [`SignIn`] and [`SignOut`] also carry the key the session is stored under, the one
//! [`HcssSession::store_key`] gives a handler, for the app's own records. A refused sign-in
//! shows the app's page (escaped, 403 unless [`SignInRefused::with_status`] says otherwise),
//! starts no session and revokes the refresh token; a hook that panics is a 500 page, and
//! the server serves on. `on_sign_out` hears of every session that ends: a logout,
//! [`HcssSession::end`], a new sign-in in the same browser, and the endings below.
//!
//! ## Who is signed in, for a single-page app
//!
//! A single-page app asks the opt-in `GET /hcss/user` ([`HcssConfigBuilder::user_path`]):
//! `{subject, company_id, name, email, client_id, scopes, token_expires_at,
//! session_expires_at, logout_path}`, 401 with the login path when signed out, never cached.
//!
//! ## Ending sessions for a user or a company
//!
//! [`HcssAuth::end_sessions_for_subject`] and [`HcssAuth::end_sessions_for_company`] end
//! every session of a user (an administrator's "log out everywhere") or of a company (a
//! customer who removed the app in the HCSS Marketplace), each as a logout would: tokens
//! taken, refresh token revoked, `on_sign_out` called (a company token cached by
//! [`HcssCompanyTokens`] is no session: never counted, revoked or ended). [`MemoryStore`]
//! and [`RedisStore`](store::RedisStore) keep the index this needs, and a session leaves
//! it when it ends; a store of your own may ([`TokenStore::sessions_of`], in the
//! conformance suite) or answer [`StoreError::Unsupported`].
//!
//! # Acting for a company (partner apps)
//!
//! After a user signs in, their `CompanyId` says which customer company they belong to;
//! store it against your user. For work with no user present, or to read the company's
//! data with the app's rights rather than the user's, ask HCSS's `company` grant for a
//! token for that company with [`HcssCompanyTokens`]:
//!
//! ```no_run
//! use hcss_auth::{CompanyTokenError, HcssAuth, HcssCompanyTokens, HcssConfig};
//!
//! # async fn run(config: HcssConfig) -> Result<(), Box<dyn std::error::Error>> {
//! let auth = HcssAuth::new(config);                 // the layer you mount
//! let companies = HcssCompanyTokens::new(&auth);    // cheap to clone; keep it in your state
//! match companies.token("the-users-CompanyId").await {
//!     Ok(token) => {
//!         let _units = reqwest::Client::new()
//!             .get("https://api.hcssapps.com/heavyjob/api/v1/businessUnits")
//!             .bearer_auth(token.secret())
//!             .send()
//!             .await?;
//!     }
//!     // The customer removed the app in the HCSS Marketplace (or changed its scopes):
//!     // ask them to connect it again. The next call asks HCSS afresh.
//!     Err(CompanyTokenError::Disconnected { .. }) => {}
//!     // HCSS is down or slow: try again after `retry_after`.
//!     Err(CompanyTokenError::Unavailable { retry_after, .. }) => { let _ = retry_after; }
//!     Err(other) => return Err(other.into()),
//! }
//! # Ok(()) }
//! ```
//!
//! To call an HCSS API with it, [`HcssApi::for_company`] does the above and makes the
//! call within the company's budget, with a new token after a 401 and a wait after a 429
//! ([Calling HCSS APIs](#calling-hcss-apis)); the token by hand, as here, has none of it.
//!
//! The request carries `grant_type=company`, `CompanyId`, the configured scopes without
//! `offline_access` or the OpenID identity scopes (`openid`, `profile`, `email`...), and
//! the client's credentials as configured. Each company's token is cached in the token
//! store (so instances sharing `RedisStore` share it), asked for again within the refresh
//! skew of its end, and asked for once however many calls want it at the same moment,
//! across instances too; the asking runs as a task of its own, so a cancelled call never
//! leaves the company's lock held. It is no session: `end_sessions_for_company` neither
//! counts nor revokes it. HCSS's answers are read as refreshes read them: only
//! `invalid_grant` is [`Disconnected`](CompanyTokenError::Disconnected), and
//! [`HcssCompanyTokens::on_disconnected`] hears of each company so refused (to mark it, or
//! to `end_sessions_for_company`); `invalid_client`, `unauthorized_client`,
//! `unsupported_grant_type` and `invalid_scope` are
//! [`Misconfigured`](CompanyTokenError::Misconfigured), anything else
//! [`Unavailable`](CompanyTokenError::Unavailable). An empty company id is
//! [`NoCompanyId`](CompanyTokenError::NoCompanyId), without asking HCSS.
//!
//! ## Your own company's data (client credentials)
//!
//! ```no_run
//! # async fn run(companies: hcss_auth::HcssCompanyTokens) -> Result<(), hcss_auth::CompanyTokenError> {
//! let token = companies.own_token().await?; // grant_type=client_credentials, cached the same way
//! let _ = token.secret();
//! # Ok(()) }
//! ```
//!
//! # Calling HCSS APIs
//!
//! [`HcssApi`], made from the layer, makes the call the token exists for, and makes it
//! right by default. HCSS limits each company to **100 calls a minute and 20 at once**,
//! counted across every client of the company (other vendors' integrations too); past
//! either it answers 429 with `Retry-After` and `Remaining-Calls`. The client:
//!
//! - takes a slot in the company's budget before each call, through the layer's store:
//!   instances sharing a `RedisStore` keep the limits together (one Lua script, one round
//!   trip, per call; leases that come back when a call is cancelled or an instance dies);
//!   calls beyond it wait their turn, first come first served in each process, up to
//!   [`api_max_wait`](HcssConfigBuilder::api_max_wait) (default 30 s);
//! - slows down when `Remaining-Calls` or a 429 show other integrations using the budget;
//! - on **401** refreshes once (a user's session through its single flight: 20 refused
//!   calls make one refresh; a company's token asked for again) and calls again; a
//!   second 401 is [`HcssApiError::Unauthorized`]: sign in again;
//! - on **429** waits `Retry-After` (seconds or an HTTP date) within the maximum wait,
//!   else [`HcssApiError::Busy`] with `retry_after` (as a response: 503 + `Retry-After`);
//! - on **5xx** and connection errors retries with backoff only idempotent requests: a
//!   request whose body may have been processed is never sent twice;
//! - on **403** answers [`HcssApiError::Forbidden`], naming the token's scopes.
//!
//! The three ways to act:
//!
//! ```no_run
//! use hcss_auth::{HcssApi, HcssApiError, HcssSession};
//!
//! async fn calls(api: HcssApi, session: HcssSession) -> Result<(), HcssApiError> {
//!     const UNITS: &str = "/heavyjob/api/v1/businessUnits";
//!     // As the signed-in user (counted against the user's CompanyId):
//!     // (`send` is Ok for any status it leaves to the app, a 404 or a 400: `success_json`
//!     // checks for a 2xx, where `json` would read a refusal's body as the answer.)
//!     let mine: serde_json::Value = api.as_user(&session).get(UNITS).send().await?.success_json()?;
//!     // For a customer company (HCSS's `company` grant):
//!     let theirs = api.for_company("4f2d9c7a-0002-4000-8000-0000000000c0").get(UNITS).send().await?;
//!     // As the app's own company (`client_credentials`):
//!     let own = api.as_own_company().get(UNITS).send().await?;
//!     let _ = (mine, theirs.status(), own.status());
//!     Ok(())
//! }
//! ```
//!
//! Make it once, `HcssApi::new(&auth)`, and keep it in the app's state (it is cheap to
//! clone): it is no extractor, so a handler takes it as `State<HcssApi>`, beside the
//! request's [`HcssSession`]. An [`HcssApiError`] is a response (401 `login_required`;
//! 403 `insufficient_scope` or `company_disconnected`; 503 with `Retry-After`; 502 for an
//! answer that did not decode; 500 for a company grant refused as misconfigured), so a
//! handler may return it as it is (for a company's call, answer
//! [`Unauthorized`](HcssApiError::Unauthorized) yourself: its 401 `login_required` sends
//! the user to sign in, which gives the company no new token). A status the client
//! leaves to the app (a 404, a 400) is an `Ok` response: pass it on, or read it with
//! [`success_json`](HcssApiResponse::success_json):
//!
//! ```
//! use axum::{extract::State, http::StatusCode, routing::get, Router};
//! use hcss_auth::{HcssApi, HcssApiError, HcssAuth, HcssSession};
//!
//! async fn units(
//!     State(api): State<HcssApi>,
//!     session: HcssSession,
//! ) -> Result<(StatusCode, String), HcssApiError> {
//!     let units = api.as_user(&session).get("/heavyjob/api/v1/businessUnits");
//!     let response = units.send().await?;
//!     Ok((response.status(), response.text())) // HCSS's own status, a 404 too
//! }
//!
//! fn app(auth: HcssAuth) -> Router {
//!     Router::new()
//!         .route("/units", get(units))
//!         .with_state(HcssApi::new(&auth))
//!         .layer(auth)
//! }
//! # let _ = app;
//! ```
//!
//! [`HcssApiRequest::pages`] reads list endpoints that page with a cursor. The
//! settings: [`api_url`](HcssConfigBuilder::api_url) (`HCSS_API_URL`),
//! [`api_rate_per_minute`](HcssConfigBuilder::api_rate_per_minute)
//! (`HCSS_API_RATE_PER_MINUTE`, default 100),
//! [`api_concurrency`](HcssConfigBuilder::api_concurrency) (`HCSS_API_CONCURRENCY`,
//! default 20) and the maximum wait (`HCSS_API_MAX_WAIT_SECS`).
//!
//! Its shape: plain async methods with the stages inside (credentials, budget, retry,
//! transport), not a `tower::Service` stack nor `reqwest-middleware`. Each stage needs
//! what the one before decided (the budget needs the token's company; the retry must
//! give the slot back and take a new one, and ask the session, not a header, for a new
//! token), so as layers they would share state through request extensions; the crate
//! would take `tower`'s retry and buffer machinery and a boxed service on every call, or
//! a second HTTP middleware ecosystem, for no behaviour the methods lack. The
//! `reqwest` client under it is the app's own (configured with
//! [`http_client`](HcssConfigBuilder::http_client)).
//!
//! # The flow
//!
//! ```text
//! browser                     app (HcssAuth layer)                  HCSS identity
//!    | GET /hcss/login?return_to=/jobs |                                    |
//!    |-------------------------------->| state, PKCE verifier; the login    |
//!    |                                 | sealed (AES-256-GCM) in its cookie |
//!    |<-- 303 {identity}/connect/authorize?client_id&scope&response_type=code
//!    |        &redirect_uri&state&code_challenge&code_challenge_method=S256 |
//!    |---------------------------------------------------------------------->| user consents
//!    |<-- 303 /hcss/callback?code&state&iss ---------------------------------|
//!    |-------------------------------->| open the login's cookie, check its
//!    |                                 | state, age, iss; claim it once     |
//!    |                                 |-- POST /connect/token (code, verifier)->|
//!    |                                 |<------------- access + refresh token --|
//!    |                                 | new session id; tokens -> TokenStore
//!    |<-- 303 /jobs, Set-Cookie session (HttpOnly; Secure; SameSite=Lax) ---|
//!    | GET /jobs (cookie)              |                                    |
//!    |-------------------------------->| HcssToken: load; refresh once if it
//!    |                                 | expires within 60 s                |
//! ```
//!
//! - A login in progress costs the server nothing: its PKCE verifier, validated return
//!   path, start time and `state` travel in a cookie of its own (`__Host-hcss-login-` and 8
//!   characters of the state; `HttpOnly; Secure; SameSite=Lax; Path=/`, 10 minutes),
//!   sealed with AES-256-GCM under the app's cookie key and bound to the cookie's name. At
//!   the callback the cookie must open with the key, hold the callback's `state` (compared
//!   in constant time), be younger than the login timeout, and not have been claimed
//!   before; `iss`, when present, must equal the configured issuer. Otherwise: a 400 page
//!   and **no** call to the token endpoint. The callback's answer clears the cookie,
//!   whatever the outcome (a session, a refusal, a failure at HCSS), except a 503 that asks
//!   to retry the same login before its code was sent. A claim whose exchange HCSS refused
//!   or that failed is given back to the store (no key is left by a forged callback; the
//!   process still refuses the state); a successful one stays until the login would expire,
//!   so its replay is refused on every instance before any token call. At most
//!   `max_code_exchanges` code exchanges run at once per process; past them, a 503.
//! - With `openid`, the token response must carry an ID token, and it must name this issuer
//!   and this client (`aud`; `azp` when present, and required when `aud` lists several),
//!   be unexpired and carry the login's `nonce`; otherwise the sign-in is refused and the
//!   refresh token that came back is revoked. Its identity claims (name, email...) win over
//!   the access token's and are kept across refreshes.
//! - Several tabs may log in at once, even when they start at the same moment: each login
//!   has its own binding cookie (`__Host-hcss-login-` and 8 characters of its state),
//!   cleared by its callback's answer. A browser keeps at most 5 logins in flight; past
//!   that, the oldest binding cookies are cleared, so the `Cookie` header stays small. The
//!   session and binding cookies are read from raw bytes: a cookie the crate cannot read (a
//!   sibling subdomain's, with non-ASCII bytes) is skipped, not the whole header.
//! - Every login makes a new session id (256 bits); the store keys sessions by its SHA-256,
//!   so a dump of the store hands out no live cookie. Tokens never reach the browser.
//! - `return_to` accepts only local paths (`//host`, `/\host`, schemes, control
//!   characters and their percent-encoded forms are refused).
//! - Failures are pages, not panics: a refused callback is 400, `access_denied` is 403
//!   ("not granted"), a failing token endpoint (5xx, timeout, bad body, redirect) is 502,
//!   an unreachable store is 503 with `Retry-After`. See
//!   [When things go wrong](#when-things-go-wrong).
//! - `HcssToken`: a page load without a session gets 303 to `/hcss/login?return_to=...`; an
//!   API call gets 401 `{"error":"login_required",...}`; a refresh that HCSS cannot serve
//!   right now gets 503 with `Retry-After` (the session is kept); a missing layer is a 500
//!   whose log line says to add `HcssAuth`. `Option<HcssToken>` gives `None` when signed
//!   out.
//! - Refresh: when the access token expires within the skew (60 s; half its life for a
//!   token that lives less than twice the skew), the session is refreshed by a task of its
//!   own: every request of that session in the process waits for the same outcome, and a
//!   cancelled request never cancels it. Across instances, the store's lock makes it one
//!   refresh in all, and before a refresh token is sent to HCSS the stored set is marked as
//!   spent by that refresh (one compare-and-swap), so that no other instance, lapsed lock
//!   or retry ever sends it again. A rotated refresh token is written over the version it
//!   marked (a logout meanwhile wins; a write retried after a lost reply recognises
//!   itself), or kept in memory, its lock renewed, until the store takes it; the old one is
//!   kept when none comes back. Only `invalid_grant` ends the session. A token response
//!   without `expires_in` is treated as living 5 minutes, and one under 2 s as 2 s.
//! - `POST /hcss/logout` deletes the session, revokes the refresh token (else the access
//!   token) at `{identity}/connect/revocation` (a failure is logged, not fatal), clears the
//!   cookie and sends the user to `/` (`post_logout_path`). A cross-site POST
//!   (`Sec-Fetch-Site: cross-site`, or an `Origin` other than the redirect URI's) is
//!   refused with 403, and its log line names the origin expected. A sign-out button is
//!   a form: `<form method="post" action="/hcss/logout"><button>Sign out</button></form>`;
//!   a plain link (`GET /hcss/logout`) gets a page holding that form, and signs nobody out.
//!
//! # Configuration
//!
//! [`HcssConfig::builder`] or [`HcssConfig::from_env`]; checked when built, and a
//! [`ConfigError`] names the setting (and its variable) to fix.
//!
//! | setting ([`HcssConfigBuilder`]) | env variable | default |
//! |---|---|---|
//! | `client_id` | `HCSS_CLIENT_ID` | required |
//! | `client_secret` | `HCSS_CLIENT_SECRET` | none (public client; PKCE is always on) |
//! | `scopes` | `HCSS_SCOPES` (separated by spaces or commas) | required; add `offline_access`, or every session ends with its first access token (an hour): the layer warns when the configuration is built without it, and at the first sign-in HCSS answers without a refresh token |
//! | `redirect_uri` | `HCSS_REDIRECT_URI` | required: HCSS's "Post Login Callback URL"; its path is served as the callback |
//! | `identity_url` | `HCSS_IDENTITY_URL` | `https://api.hcssapps.com/identity` (also the expected `iss`) |
//! | `allow_insecure_http_on_loopback` | `HCSS_ALLOW_INSECURE_HTTP=1` (or `true`, `yes`, `on`; `0`, `false`, `no`, `off` for off) | off: http only on 127.0.0.1/::1/localhost, for development |
//! | `login_path` | | `/hcss/login` (HCSS's "Redirect URL") |
//! | `logout_path` | | `/hcss/logout` (POST) |
//! | `user_path` | | none: opt in to `GET /hcss/user`, who is signed in as JSON |
//! | `post_login_path` / `post_logout_path` | | `/` (after a login that gave no `return_to`; after a logout) |
//! | `transaction_ttl` | | 10 minutes: how long a started login may take to come back |
//! | `refresh_skew` | | 60 s |
//! | `max_session_age` | | 30 days |
//! | `client_auth` | `HCSS_CLIENT_AUTH` (`body` or `basic`) | [`ClientAuth::RequestBody`] (or [`ClientAuth::BasicAuth`]) |
//! | `revoke_on_logout` | | on |
//! | `http_timeout` | | 10 s per call to the identity service, and per [`HcssApi`] request (each try) |
//! | `retry_after` | | 5 s: the wait after a passing refresh failure when HCSS gives none |
//! | `cookie_key` | `HCSS_COOKIE_KEY` | base64 of ≥ 32 random bytes (`openssl rand -base64 32`), sealing login cookies. Unset: shared through `RedisStore`, else a random key per process (logged) |
//! | `previous_cookie_key` | `HCSS_COOKIE_KEY_PREVIOUS` | none: the key before a rotation, still accepted; remove it one `transaction_ttl` after the switch |
//! | `http_client` | | the crate's own: a `reqwest::ClientBuilder` of yours (the crate re-exports [`reqwest`]) for TLS backend, proxy, CA roots or user agent, used for the identity service and [`HcssApi`]'s calls; redirects are never followed and the timeout and size cap apply whatever it holds |
//! | `max_response_bytes` | | 64 KiB |
//! | `max_code_exchanges` | | 64 code exchanges in flight per process (at most 65 536); a callback past them is a 503 |
//! | `post_logout_redirect_uri` | `HCSS_POST_LOGOUT_REDIRECT_URI` | none: see [Signing out at HCSS too](#signing-out-at-hcss-too) |
//! | `backchannel_logout` | `HCSS_BACKCHANNEL_LOGOUT=1` | off: see [Back-channel logout](#back-channel-logout-hcss-tells-the-app) |
//! | `api_url` | `HCSS_API_URL` | `https://api.hcssapps.com`: where [`HcssApi`] sends its calls |
//! | `api_rate_per_minute` | `HCSS_API_RATE_PER_MINUTE` | 100 calls a company may start per `api_rate_window`, across instances (HCSS's limit) |
//! | `api_rate_window` | | one minute (tests shorten it, with the mock's limits) |
//! | `api_concurrency` | `HCSS_API_CONCURRENCY` | 20 calls a company may have in flight, across instances (HCSS's limit) |
//! | `api_max_wait` | `HCSS_API_MAX_WAIT_SECS` | 30 s: the longest an [`HcssApi`] call waits for the budget and `Retry-After`, else [`HcssApiError::Busy`] |
//! | `api_max_response_bytes` | | 16 MiB per HCSS API response |
//! | `test_clock` | | none: feature `test-util`, tests only (the flow runs on a [`TestClock`](testing::TestClock)) |
//!
//! URLs must be `https://` unless the development setting allows `http://` on loopback.
//! Cookies are `HttpOnly; Secure; SameSite=Lax; Path=/` with a `__Host-` prefix; only a plain
//! http redirect URI on loopback drops `Secure` and the prefix. The token client verifies
//! TLS, follows no redirects, times out, and caps response size. `Debug` of the config,
//! tokens and sessions prints `[redacted]` for every secret, and no log line carries one.
//! Durations are bounded when the configuration is built (`transaction_ttl` and
//! `refresh_skew` 1 day, `max_session_age` 400 days, `http_timeout` 10 minutes,
//! `retry_after` 5 minutes), so no setting can overflow a clock later.
//!
//! # Stores
//!
//! **Logins in progress** travel sealed in the browser by default: a flood of `/hcss/login`
//! requests fills neither memory nor Redis. What it takes: every instance of an app seals
//! with the same key (`HCSS_COOKIE_KEY`, or the one `RedisStore` shares).
//!
//! **Sessions** (token sets) live in a [`TokenStore`]: [`MemoryStore`] (the default) for
//! one process, expiring and bounded; [`RedisStore`](store::RedisStore) (feature `redis`)
//! for several instances behind a load balancer or sessions that survive restarts, with a
//! near cache that keeps signed-in requests at memory speed.
//!
//! ```no_run
//! # #[cfg(feature = "redis")]
//! # async fn redis(config: hcss_auth::HcssConfig) -> Result<(), Box<dyn std::error::Error>> {
//! use hcss_auth::{store::RedisStore, HcssAuth};
//!
//! let store = RedisStore::connect("redis://127.0.0.1:6379").await?.with_prefix("myapp:hcss:");
//! let layer = HcssAuth::with_store(config, store);
//! # Ok(()) }
//! ```
//!
//! The [`store`] module has the rest: how to choose, logins kept on the server
//! ([`HcssAuthBuilder::state_store`]), Redis and its near cache, and writing your own store
//! (storage apart from coordination, typed keys, the conformance suites).
//!
//! # Testing your app
//!
//! Feature `test-util` (as a dev-dependency) runs your handlers through the real flow
//! against [`MockHcssIdentity`](testing::MockHcssIdentity), an HCSS-like identity service
//! on loopback, in process: [`testing::sign_in`] gives the cookie of a signed-in session,
//! `mock.expire_access_tokens()` lets an hour pass for the mock and the app, and switches
//! make the token endpoint fail. The [`testing`] module shows a whole test, lists what
//! the mock, [`FaultyStore`](testing::FaultyStore) and the conformance suites offer, and
//! says how to run the tests on Redis too without leaving keys behind.
//!
//! # When things go wrong
//!
//! A signed-in user stays signed in until HCSS says the grant is gone. HCSS's identity
//! service rotates refresh tokens and treats a reused one as theft, so a refresh is never
//! lost, never repeated and never undone. The status of the identity service's answer
//! decides first; only a 400 or 401 carries a verdict.
//!
//! | what happens | during a refresh (`HcssToken`, `HcssSession::token`) | at the callback |
//! |---|---|---|
//! | 400/401 `invalid_grant` | the session ends: its tokens are deleted; a page load goes to log in, an API call gets 401 | 400 page: sign in again |
//! | 400/401 `invalid_client`, `unauthorized_client`, `invalid_scope`, `unsupported_grant_type` (this app's configuration) | ERROR log naming what to check; 503 with `Retry-After`; the session is kept and refreshes once the configuration is fixed | ERROR log; 502 page |
//! | another 4xx, or an answer that is not a usable token response | WARN log; 503 with `Retry-After`; the session is kept | 400 page for an OAuth refusal, 502 otherwise |
//! | 5xx (whatever its body: `server_error`, `temporarily_unavailable`...), 429, timeout, connection error | WARN log; 503 with HCSS's own `Retry-After` (clamped to 1 s–5 min) or `retry_after` (5 s); the session is kept | 502 page |
//! | requests that arrive while a refresh runs, or before its `Retry-After` after it failed | they get its outcome: one token call for all of them | — |
//! | the request that started a refresh is cancelled (client gone, `TimeoutLayer`, `timeout()`) | the refresh task runs on, stores its result and releases the lock; the next request gets the new token | — |
//! | the store refuses to write rotated tokens | retried with backoff for up to half of `http_timeout`; then kept in this process (ERROR log), its lock renewed, served from there and written as soon as the store takes writes; the old refresh token is never spent again, and the kept one is spent only once the store holds it (until then, once its access token is over, 503 with `Retry-After`) | 503 page |
//! | the store refuses writes when a refresh is due | 503 with `Retry-After`: a refresh that cannot mark the stored set as spent does not spend its token; sessions whose access token is live are served | 503 page |
//! | a write applied but its reply lost (Redis's reply timeout, a dropped connection) | the retry reads the store and finds its own write: written, nothing revoked | — |
//! | the store is gone for longer than the refresh lock's lease (8 × `http_timeout`) while rotated tokens wait in one instance | another instance finds the stored set marked as spent by that refresh and waits for its write (503 meanwhile), for `max(4 × lease, 10 s)` after the lock lapsed; should that refresh never come back (its instance died), the session ends (sign in again): the token is never spent twice | — |
//! | a logout while a refresh runs | the logout wins: the refresh's result is not written, its new refresh token is revoked | — |
//! | a logout whose store reply is lost | 503; the refresh token read just before is revoked all the same, and the retried logout signs out | — |
//! | the store is unreachable | 503 with `Retry-After`; nothing is deleted | 503 page |
//! | a stored value that no longer parses | removed, WARN log once; signed out | — |
//!
//! A passing failure is remembered per session for its `Retry-After`, so a failing HCSS
//! sees one call per session per wait, not one per request.
//! [`HcssConfigBuilder::retry_after`] sets the wait when HCSS gives none (zero remembers
//! nothing).
//!
//! A soak proves this table under load, the identity service and the store failing in turn
//! (with Redis: writes paused past the client's reply timeout, every connection cut, the
//! server stopped for longer than the refresh lock's lease, a `kill -9` and restart); CI
//! runs a short version and fails on any lost session or reused refresh token. Its figures
//! and commands are in `BENCHMARKS.md` in the repository.
//!
//! # Checking a configuration: the doctor
//!
//! [`HcssAuth::check`] asks the identity service, with no user, whether the
//! configuration works, and returns a [`CheckReport`]: one [`CheckItem`] per check, each
//! [`CheckStatus::Pass`], `Warn` (works, but not as production should run) or `Fail`,
//! with what to do. `cargo run --example doctor` reads the configuration from the
//! environment (`HcssConfig::from_env`, and `HCSS_REDIS_URL` with `--features redis`),
//! prints the checklist and exits with 1 when an item failed: run it at deploy time.
//!
//! | item | passes when | fails (or warns) when |
//! |---|---|---|
//! | `discovery` | `{identity_url}/.well-known/openid-configuration` names the configured issuer | it names another issuer (fail: sign-ins are refused); no document (warn: HCSS's layout is used) |
//! | `token endpoint` | it answers, over TLS | it does not answer (fail); plain http on loopback (warn) |
//! | `client credentials` | a code exchange with a made-up code is refused as `invalid_grant`: the client was accepted | `invalid_client` or `unauthorized_client` (fail: check the id, secret and client authentication) |
//! | `clock` | within 5 s of the identity service's `Date` | further off (fail: synchronise the clock) |
//! | `redirect URI` | `https://`, its path served by the layer | plain http on loopback (warn: development only) |
//! | `offline_access` | among the scopes | missing (fail: every session would end with its first access token) |
//! | `API URL` | `{api_url}/heavyjob/api/v1/businessUnits` answers 401 to a call without a token, as HCSS's API does, over TLS | nothing answers (fail: every `HcssApi` call would fail); another answer (warn: not HCSS's API, e.g. the identity service); plain http on loopback (warn) |
//! | `cookie key` | set, or one instance with its own store | unset with a shared store (warn: set `HCSS_COOKIE_KEY` on every instance) |
//! | a shared store's own ([`Coordination::shared_store_checks`](store::Coordination::shared_store_checks)) | `RedisStore`: `redis` answers `PING`; `client tracking` on for the near cache | Redis unreachable (fail); tracking unavailable (warn: every request reads Redis) |
//!
//! With the mock (`cargo run --example mock_hcss`, its settings exported), a broken
//! configuration prints:
//!
//! ```text
//! hcss-auth configuration check: 2 passed, 4 warnings, 3 failed
//! [ok]   discovery: discovery document found; its issuer is http://localhost:4000/identity
//! [warn] token endpoint: http://localhost:4000/identity/connect/token answers over plain http
//!        -> for development on loopback only: production talks to HCSS over https
//! [FAIL] client credentials: HCSS refused client test-client (invalid_client)
//!        -> check HCSS_CLIENT_ID and HCSS_CLIENT_SECRET against the HCSS Partner Portal, and the client authentication it expects (HCSS_CLIENT_AUTH: body or basic)
//! [ok]   clock: within 0 s of the identity service's
//! [warn] redirect URI: http://127.0.0.1:3000/hcss/callback: plain http on loopback (its path /hcss/callback served by the layer)
//!        -> for development only: production needs an https:// redirect URI, registered exactly at HCSS
//! [FAIL] offline_access: not among the scopes (heavyjob:read)
//!        -> add offline_access to HCSS_SCOPES (and to the client at HCSS): without it HCSS gives no refresh token and every session ends when its first access token does (about an hour)
//! [warn] API URL: http://localhost:4000 answers as HCSS's API, over plain http
//!        -> for development on loopback only: production calls HCSS's API over https
//! [warn] cookie key: not set: instances agree on one through the shared store
//!        -> set HCSS_COOKIE_KEY (the same on every instance) so that logins in progress survive the store losing its keys
//! [FAIL] redis: not reachable: the session store is unavailable: redis: connection refused: Connection refused (os error 111)
//!        -> check HCSS_REDIS_URL (host, port, database, user and password) and that this machine reaches Redis
//! ```
//!
//! # Metrics
//!
//! With the feature `metrics`, the crate counts through the [`metrics`](https://docs.rs/metrics)
//! facade: the app installs the exporter it wants (Prometheus, StatsD, OpenTelemetry
//! through a bridge) and sees every metric below; without an exporter, or without the
//! feature, counting costs nothing. No label carries a token, a code, a session id, a user
//! or a company: labels are the fixed words listed here. The example server
//! (`cargo run --example server --features metrics`) serves them at `/metrics` in
//! Prometheus's text format, rendered from a `metrics-exporter-prometheus` handle.
//!
//! | metric | type | labels | counts |
//! |---|---|---|---|
//! | `hcss_auth_sign_ins_total` | counter | — | sessions started at the callback |
//! | `hcss_auth_sign_ins_refused_total` | counter | `reason`: `bad_request`, `state` (unknown, replayed, other browser, unreadable login cookie), `expired`, `issuer`, `denied` (the user or HCSS said no), `busy` (code exchanges at their bound), `code_exchange`, `id_token`, `hook` (`on_sign_in` refused), `unavailable` (a store or the cookie key out of reach: 503) | callbacks that started no session |
//! | `hcss_auth_logins_refused_total` | counter | `reason`: `bad_request`, `return_to`, `identity_service` (discovery names another issuer), `cross_site` (a logout from another site), `unavailable` (503) | `/hcss/login` and `/hcss/logout` requests refused |
//! | `hcss_auth_refreshes_total` | counter | `outcome`: `ok`, `invalid_grant` (session ended), `transient` (HCSS down, slow, 429, 5xx), `configuration` (`invalid_client` and kin), `failed` (any other refusal), `id_token` (its ID token did not check out: session ended) | refresh tokens spent at HCSS |
//! | `hcss_auth_token_endpoint_seconds` | histogram | `grant`: `authorization_code`, `refresh_token`, `company`, `client_credentials` | time to the token endpoint's answer (or failure) |
//! | `hcss_auth_refresh_waiters_total` | counter | — | requests that joined a refresh already in flight (or its remembered failure) instead of calling HCSS |
//! | `hcss_auth_refresh_lock_waits_total` | counter | — | refreshes that waited for another instance holding the session's refresh lock |
//! | `hcss_auth_kept_token_sets` | gauge | — | refreshed token sets kept in memory because the store refused them (should be 0) |
//! | `hcss_auth_near_cache_total` | counter | `event`: `hit`, `miss`, `invalidation` | `RedisStore`'s near cache: sessions served without Redis, reads that went to Redis, invalidation messages from Redis |
//! | `hcss_auth_near_cache_tracking` | gauge | — | 1 while the near cache's client tracking is live, 0 once it is lost |
//! | `hcss_auth_company_tokens_total` | counter | `event`: `fetched`, `disconnected` | company and own-company tokens fetched from HCSS; companies found disconnected |
//! | `hcss_auth_sessions_ended_total` | counter | `by`: `logout`, `app` (`HcssSession::end`), `admin` (`end_sessions_for_subject`/`_company`), `back_channel` (a logout token at `/hcss/backchannel-logout`) | sessions ended |
//! | `hcss_auth_api_calls_total` | counter | — | requests `HcssApi` sent to HCSS's APIs |
//! | `hcss_auth_api_401_refreshes_total` | counter | — | API 401s answered by one forced refresh |
//! | `hcss_auth_api_429_total` | counter | — | API 429s |
//! | `hcss_auth_api_budget_waits_total` | counter | `limit`: `minute`, `in_flight` | waits for the company's budget of API calls |
//!
//! With `metrics-exporter-prometheus` (default features off: no listener, no push):
//!
//! ```no_run
//! use axum::{routing::get, Router};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let handle = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
//! let app: Router = Router::new().route(
//!     "/metrics",
//!     get(move || {
//!         let handle = handle.clone();
//!         async move {
//!             handle.run_upkeep();
//!             handle.render()
//!         }
//!     }),
//! );
//! # let _ = app; Ok(()) }
//! ```
//!
//! # Security
//!
//! `SECURITY.md` in the repository holds the threat model, each item of the security bar
//! with the tests that hold it, and the failure table. In short: PKCE S256 on every login;
//! the login sealed (AES-256-GCM) in an `HttpOnly; Secure; SameSite=Lax` `__Host-` cookie
//! bound to its `state`, claimed once, 10 minutes at most; `iss` checked; a new 256-bit
//! session id on every login, stored under its SHA-256; tokens never reach the browser, a
//! URL or a log line; the token client verifies TLS, follows no redirects, times out and
//! caps responses; only `invalid_grant` ends a session.
//!
//! # Deployment notes
//!
//! - Terminate TLS before the app and register an `https://` redirect URI: cookies are
//!   `Secure`, and the redirect URI, its origin (for the logout check) and the issuer come
//!   from configuration, never from the `Host` header.
//! - Several instances need a shared token store (`RedisStore`) and one cookie key: the one
//!   `RedisStore` shares, or the same `HCSS_COOKIE_KEY` on each. To rotate the key, set the
//!   new one as `HCSS_COOKIE_KEY` and the old as `HCSS_COOKIE_KEY_PREVIOUS` on every
//!   instance, then drop the old one after one `transaction_ttl` (10 minutes by default).
//! - Sessions that must survive a Redis restart need Redis's append-only file
//!   (`appendonly yes`): Redis writes each command to the file before it answers, so a
//!   crash or `kill -9` of the Redis process loses no rotated refresh token (the soak's
//!   restart window proves it: no session lost with AOF, all of them without). To survive a
//!   crash of the whole machine too (power, kernel), add `appendfsync always`, which syncs
//!   the file before each answer: with `everysec` the last second of writes can be lost with
//!   the machine, and a rotated token lost that way is spent again at the next refresh,
//!   which HCSS ends as a reuse. RDB snapshots alone lose every session changed since the
//!   last snapshot, and a Redis without persistence signs everybody out when it restarts.
//! - Expiry uses the app's clock against HCSS's `expires_in`; keep clocks in sync (NTP).
//!   With several instances, the refresh skew (60 s) absorbs small differences.
//!
//! # Performance
//!
//! A signed-in request costs the layer about 0.4 µs over a bare Axum route (no store
//! round trip with `MemoryStore` or with `RedisStore`'s near cache), and a flood of logins
//! that never come back holds nothing. `BENCHMARKS.md` in the repository has the dated
//! figures, profiles and their commands.
//!
//! # Features
//!
//! | feature | gives |
//! |---|---|
//! | `redis` | [`store::RedisStore`]: sessions shared by several instances, one refresh between them |
//! | `metrics` | counters, gauges and histograms through the `metrics` facade ([Metrics](#metrics)) |
//! | `test-util` | the [`testing`] module: `MockHcssIdentity` (an HCSS-like identity service and API on loopback), `sign_in`, `seed_session`, `TestClock`, `FaultyStore`, and the conformance suites (`store_conformance`, `token_store_conformance`, `state_store_conformance`, `coordination_conformance`); `HcssConfigBuilder::test_clock` |
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(unreachable_pub)]
#![deny(missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]
// The guide links to items of the `redis` and `test-util` features, as docs.rs (all
// features) shows them; docs built without those features leave the links as text.
#![cfg_attr(
    not(all(feature = "redis", feature = "test-util")),
    allow(rustdoc::broken_intra_doc_links)
)]

mod api;
mod claims;
mod clock;
mod company;
mod config;
mod doctor;
mod error;
mod extract;
mod flow;
mod hooks;
mod http_rules;
mod layer;
mod metrics;
mod oidc;
mod protocol;
mod refresh;
mod return_path;
mod seal;
mod secret;
pub mod service;
mod session;
mod shared;
pub mod store;
mod token;

#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod testing;

pub use api::{HcssApi, HcssApiRequest, HcssApiResponse, HcssCaller, Pages};
pub use claims::Claims;
pub use company::HcssCompanyTokens;
pub use config::{ClientAuth, HcssConfig, HcssConfigBuilder, HCSS_API_URL, HCSS_IDENTITY_URL};
pub use doctor::{CheckItem, CheckReport, CheckStatus};
pub use error::{CompanyTokenError, ConfigError, HcssApiError, SessionError, StoreError};
pub use extract::HcssRejection;
pub use hooks::{SignIn, SignInRefused, SignOut};
pub use layer::{HcssAuth, HcssAuthBuilder};
pub use secret::SecretString;
pub use session::HcssSession;
pub use store::{MemoryStore, StateStore, TokenStore};
pub use token::{HcssToken, TokenSet};

/// The HTTP client crate of [`HcssConfigBuilder::http_client`], re-exported so that its
/// version always matches the one this crate uses.
pub use reqwest;

/// The README's example, compiled as a doctest (the guide's examples are in the crate docs).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// Entry points for the fuzz targets in `fuzz/` (built only with `--cfg fuzzing`).
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    /// `return_to` validation.
    pub fn return_path(input: &str) -> Option<&str> {
        crate::return_path::valid_return_path(input)
    }

    /// Callback query parsing; `true` when accepted.
    pub fn callback_query(query: &str) -> bool {
        crate::flow::query_params(
            Some(query),
            ["state", "code", "error", "error_description", "iss"],
        )
        .is_ok()
    }

    /// Session cookie parsing from one `Cookie` header.
    pub fn session_cookie(header: &http::HeaderValue) -> Option<String> {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::COOKIE, header.clone());
        crate::flow::cookie_value(&headers, "hcss-session").map(str::to_owned)
    }
}
