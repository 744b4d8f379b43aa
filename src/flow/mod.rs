//! The flow endpoints, each a plain async fn from request parts to a response (one file
//! each), and the small pieces they share: query parsing, cookies, pages, the response.

pub(crate) mod backchannel;
pub(crate) mod callback;
pub(crate) mod login;
pub(crate) mod logout;
pub(crate) mod misplaced;
pub(crate) mod sealed;
pub(crate) mod user;

mod cookies;
mod pages;
mod query;
mod response;

pub(crate) use cookies::{
    cookie_names_with_prefix, cookie_value, has_cookie, sealed_cookie_value, session_cookie,
    set_cookie,
};
pub(crate) use pages::{page, sign_out_form, unavailable};
pub(crate) use query::{query_params, state_or_code};
pub(crate) use response::{see_other, FlowResponse};
