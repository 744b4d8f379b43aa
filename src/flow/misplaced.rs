//! The cookie that tells a misplaced layer (see `shared::Placement`): set on responses
//! that send a browser to the login path while no request to the flow's paths has
//! reached the layer, cleared by the login endpoint, and proof of a misplaced layer when
//! a page load brings it back.

use http::header::{self, HeaderMap};
use http::{Response, StatusCode};

use super::{cookie_value, has_cookie, set_cookie};
use crate::config::HcssConfig;
use crate::shared::Placement;

/// The cookie that marks a browser sent to the login path.
fn cookie_name(config: &HcssConfig) -> &'static str {
    if config.cookies.secure_cookies {
        "__Host-hcss-sent-to-login"
    } else {
        "hcss-sent-to-login"
    }
}

/// Marks `response` when it sends a browser to the login path (a 303 there), while the
/// layer has seen no flow request.
pub(crate) fn mark<B>(placement: &Placement, config: &HcssConfig, response: &mut Response<B>) {
    if response.status() != StatusCode::SEE_OTHER || !placement.unproven() {
        return;
    }
    let login = &config.routes.login_path;
    let to_login = response
        .headers()
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| l.strip_prefix(login.as_str()))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('?'));
    if to_login {
        let ttl = Some(config.lifetimes.transaction_ttl);
        let cookie = set_cookie(config, cookie_name(config), &placement.marker, ttl);
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
}

/// Says so at once when a page load (`headers`) brings back this layer's cookie while no
/// flow request has reached it: the browser was sent to the login path, and its request
/// there never reached the layer.
pub(crate) fn came_back(placement: &Placement, config: &HcssConfig, headers: &HeaderMap) {
    let ours = cookie_value(headers, cookie_name(config)).is_some_and(|v| v == placement.marker);
    if ours && placement.unproven() {
        placement.warn(
            config,
            "the layer is misplaced: a browser sent to the login path came back, and its \
             request to the login path never reached the HcssAuth layer (it got a 404 there)",
        );
    }
}

/// The header that clears the cookie, for a login request that carries it.
pub(crate) fn clear(config: &HcssConfig, headers: &HeaderMap) -> Option<http::HeaderValue> {
    let name = cookie_name(config);
    has_cookie(headers, name).then(|| set_cookie(config, name, "", None))
}
