//! The flow's HTML pages: a small page with escaped text and a link to sign in again,
//! and the 503 page of a store that cannot be reached.

use bytes::Bytes;
use http::header;
use http::{Response, StatusCode};

use super::response::FlowResponse;
use crate::config::HcssConfig;
use crate::http_rules::{no_store, retry_after};

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A small HTML page with escaped text and a link to start again.
pub(crate) fn page(
    config: &HcssConfig,
    status: StatusCode,
    title: &str,
    message: &str,
) -> FlowResponse {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}</title></head>\n<body><h1>{title}</h1>\n<p>{message}</p>\n\
         <p><a href=\"{login}\">Sign in with HCSS again</a></p></body></html>\n",
        title = escape_html(title),
        message = escape_html(message),
        login = escape_html(&config.routes.login_path),
    );
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header("x-content-type-options", "nosniff")
        .body(Bytes::from(body))
        .expect("a static response is valid");
    no_store(response.headers_mut());
    response
}

/// The answer to `GET` on the logout path (a plain link): a sign-out is a form `POST`
/// from this site, so the page explains that and holds the form. Never framed by another
/// site, which could otherwise dress its button up as something else.
pub(crate) fn sign_out_form(config: &HcssConfig) -> FlowResponse {
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Sign out</title></head>\n<body><h1>Sign out</h1>\n\
         <p>Signing out is a form submission from this site, so that no other site can \
         sign you out with a link.</p>\n\
         <form method=\"post\" action=\"{logout}\"><button type=\"submit\">Sign out\
         </button></form></body></html>\n",
        logout = escape_html(&config.routes.logout_path),
    );
    let mut response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .header("x-content-type-options", "nosniff")
        .header("content-security-policy", "frame-ancestors 'none'")
        .body(Bytes::from(body))
        .expect("a static response is valid");
    no_store(response.headers_mut());
    response
}

/// A 503 page for a store that cannot be reached.
pub(crate) fn unavailable(config: &HcssConfig, what: &str) -> FlowResponse {
    let mut response = page(
        config,
        StatusCode::SERVICE_UNAVAILABLE,
        "Sign-in is unavailable",
        &format!("{what} Please try again in a moment."),
    );
    retry_after(response.headers_mut(), config.identity.retry_after);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_their_text() {
        let config = HcssConfig::builder()
            .client_id("id")
            .scopes(["s"])
            .redirect_uri("https://app.example.com/cb")
            .build()
            .unwrap();
        let r = page(
            &config,
            StatusCode::FORBIDDEN,
            "No",
            "<script>alert('x')</script>",
        );
        let body = std::str::from_utf8(r.body()).unwrap();
        assert!(!body.contains("<script>"), "{body}");
        assert!(body.contains("&lt;script&gt;alert(&#39;x&#39;)"), "{body}");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    }
}
