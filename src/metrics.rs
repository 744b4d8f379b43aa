//! What the crate counts, through the `metrics` facade (feature `metrics`): one function
//! per event, so that each place that counts does so in one line. Without the feature
//! every function is empty and inlined away.
//!
//! Labels are small fixed sets of words chosen here (a reason, an outcome, a grant): no
//! label ever carries a token, a code, a session id, a user or a company.

use std::time::Duration;

#[cfg(feature = "metrics")]
use ::metrics::{counter, gauge, histogram};

/// Metric names, listed once (the guide's table documents each).
#[cfg(feature = "metrics")]
mod names {
    pub(crate) const SIGN_INS: &str = "hcss_auth_sign_ins_total";
    pub(crate) const SIGN_INS_REFUSED: &str = "hcss_auth_sign_ins_refused_total";
    pub(crate) const LOGINS_REFUSED: &str = "hcss_auth_logins_refused_total";
    pub(crate) const REFRESHES: &str = "hcss_auth_refreshes_total";
    pub(crate) const TOKEN_ENDPOINT: &str = "hcss_auth_token_endpoint_seconds";
    pub(crate) const REFRESH_WAITERS: &str = "hcss_auth_refresh_waiters_total";
    pub(crate) const REFRESH_LOCK_WAITS: &str = "hcss_auth_refresh_lock_waits_total";
    pub(crate) const KEPT_TOKEN_SETS: &str = "hcss_auth_kept_token_sets";
    pub(crate) const NEAR_CACHE: &str = "hcss_auth_near_cache_total";
    pub(crate) const NEAR_CACHE_TRACKING: &str = "hcss_auth_near_cache_tracking";
    pub(crate) const COMPANY_TOKENS: &str = "hcss_auth_company_tokens_total";
    pub(crate) const SESSIONS_ENDED: &str = "hcss_auth_sessions_ended_total";
    pub(crate) const API_CALLS: &str = "hcss_auth_api_calls_total";
    pub(crate) const API_REFRESHES: &str = "hcss_auth_api_401_refreshes_total";
    pub(crate) const API_THROTTLED: &str = "hcss_auth_api_429_total";
    pub(crate) const API_BUDGET_WAITS: &str = "hcss_auth_api_budget_waits_total";
}

#[cfg(feature = "metrics")]
use names::*;

/// A sign-in completed: a session started.
#[inline]
pub(crate) fn sign_in() {
    #[cfg(feature = "metrics")]
    counter!(SIGN_INS).increment(1);
}

/// A callback refused (no session started), for `reason`: `bad_request`, `state`,
/// `expired`, `issuer`, `denied`, `busy`, `code_exchange`, `id_token`, `hook`,
/// `unavailable`.
#[inline]
pub(crate) fn sign_in_refused(reason: &'static str) {
    #[cfg(feature = "metrics")]
    counter!(SIGN_INS_REFUSED, "reason" => reason).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = reason;
}

/// `/hcss/login` or `/hcss/logout` refused, for `reason`: `bad_request`, `return_to`,
/// `identity_service`, `cross_site`, `unavailable`.
#[inline]
pub(crate) fn login_refused(reason: &'static str) {
    #[cfg(feature = "metrics")]
    counter!(LOGINS_REFUSED, "reason" => reason).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = reason;
}

/// A refresh token spent at HCSS, by the class of its answer: `ok`, `invalid_grant`,
/// `transient`, `configuration`, `failed`.
#[inline]
pub(crate) fn refresh(outcome: &'static str) {
    #[cfg(feature = "metrics")]
    counter!(REFRESHES, "outcome" => outcome).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = outcome;
}

/// How long the token endpoint took to answer (or fail), by `grant`.
#[inline]
pub(crate) fn token_endpoint(grant: &'static str, elapsed: Duration) {
    #[cfg(feature = "metrics")]
    histogram!(TOKEN_ENDPOINT, "grant" => grant).record(elapsed.as_secs_f64());
    #[cfg(not(feature = "metrics"))]
    let _ = (grant, elapsed);
}

/// A request that joined a refresh already in flight (or its remembered failure).
#[inline]
pub(crate) fn refresh_waiter() {
    #[cfg(feature = "metrics")]
    counter!(REFRESH_WAITERS).increment(1);
}

/// A refresh that found the session's refresh lock held by another instance and waited.
#[inline]
pub(crate) fn refresh_lock_wait() {
    #[cfg(feature = "metrics")]
    counter!(REFRESH_LOCK_WAITS).increment(1);
}

/// One more (`1`) or one fewer (`-1`) refreshed token set kept in memory because the
/// store refused it.
#[inline]
pub(crate) fn kept_token_sets(change: i8) {
    #[cfg(feature = "metrics")]
    gauge!(KEPT_TOKEN_SETS).increment(f64::from(change));
    #[cfg(not(feature = "metrics"))]
    let _ = change;
}

/// A near-cache event: `hit`, `miss` or `invalidation`.
#[inline]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn near_cache(event: &'static str) {
    #[cfg(feature = "metrics")]
    counter!(NEAR_CACHE, "event" => event).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = event;
}

/// Whether the near cache's tracking connection is live.
#[inline]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn near_cache_tracking(live: bool) {
    #[cfg(feature = "metrics")]
    gauge!(NEAR_CACHE_TRACKING).set(if live { 1.0 } else { 0.0 });
    #[cfg(not(feature = "metrics"))]
    let _ = live;
}

/// A company token: `fetched` from HCSS, or the company found `disconnected`.
#[inline]
pub(crate) fn company_token(event: &'static str) {
    #[cfg(feature = "metrics")]
    counter!(COMPANY_TOKENS, "event" => event).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = event;
}

/// `count` sessions ended `by`: `logout`, `app` (`HcssSession::end`), `admin`
/// (`end_sessions_for_*`), `back_channel` (a logout token).
#[inline]
pub(crate) fn sessions_ended(by: &'static str, count: usize) {
    #[cfg(feature = "metrics")]
    counter!(SESSIONS_ENDED, "by" => by).increment(count as u64);
    #[cfg(not(feature = "metrics"))]
    let _ = (by, count);
}

/// An HCSS API request sent.
#[inline]
pub(crate) fn api_call() {
    #[cfg(feature = "metrics")]
    counter!(API_CALLS).increment(1);
}

/// An HCSS API 401 answered by refreshing the token once.
#[inline]
pub(crate) fn api_401_refresh() {
    #[cfg(feature = "metrics")]
    counter!(API_REFRESHES).increment(1);
}

/// An HCSS API 429.
#[inline]
pub(crate) fn api_429() {
    #[cfg(feature = "metrics")]
    counter!(API_THROTTLED).increment(1);
}

/// An HCSS API call that waited for the company's budget, on `limit`: `minute` or
/// `in_flight`.
#[inline]
pub(crate) fn api_budget_wait(limit: &'static str) {
    #[cfg(feature = "metrics")]
    counter!(API_BUDGET_WAITS, "limit" => limit).increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = limit;
}
