//! The service [`HcssAuth`] makes: [`HcssAuthService`] answers the flow paths and passes
//! everything else on; [`ResponseFuture`] and [`HcssBody`] are its future and body.
//!
//! [`HcssAuth`]: crate::HcssAuth

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower_service::Service;
use tracing::Instrument as _;

use crate::flow::{self, session_cookie, FlowResponse};
use crate::layer::HcssAuth;
use crate::session::HcssSession;
use crate::shared::Shared;

/// The service made by [`HcssAuth`]: it answers the flow endpoints itself and calls the
/// inner service for every other request, with an [`HcssSession`] in the request's
/// extensions. It never fails on its own: every flow failure is an HTTP response.
///
/// It works with any Tower service, Axum or not:
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use hcss_auth::{HcssAuth, HcssConfig, HcssSession};
/// use tower_layer::Layer;
///
/// # fn main() -> Result<(), hcss_auth::ConfigError> {
/// # let config = HcssConfig::builder().client_id("id").scopes(["heavyjob:read"])
/// #     .redirect_uri("https://app.example.com/hcss/callback").build()?;
/// let inner = tower::service_fn(|req: Request<String>| async move {
///     let signed_in = match req.extensions().get::<HcssSession>() {
///         Some(session) => session.token().await.is_ok(),
///         None => false,
///     };
///     Ok::<_, Infallible>(Response::new(format!("signed in: {signed_in}")))
/// });
/// let service = HcssAuth::new(config).layer(inner);
/// # let _ = service; Ok(()) }
/// ```
#[derive(Clone)]
pub struct HcssAuthService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> HcssAuthService<S> {
    pub(crate) fn new(inner: S, auth: HcssAuth) -> Self {
        Self {
            inner,
            shared: auth.shared,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the layer's service, returning the inner one.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for HcssAuthService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HcssAuthService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

enum Endpoint {
    Login,
    Callback,
    Logout,
    User,
    LogoutReturn,
    BackchannelLogout,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HcssAuthService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body + Send + 'static,
    ReqBody::Data: Send,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<HcssBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let config = &self.shared.config;
        let path = req.uri().path();
        let endpoint = if path == config.routes.login_path {
            Some((Endpoint::Login, Method::GET))
        } else if path == config.routes.callback_path {
            Some((Endpoint::Callback, Method::GET))
        } else if path == config.routes.logout_path {
            Some((Endpoint::Logout, Method::POST))
        } else if config.routes.user_path.as_deref() == Some(path) {
            Some((Endpoint::User, Method::GET))
        } else if config.routes.logout_return_path.as_deref() == Some(path) {
            Some((Endpoint::LogoutReturn, Method::GET))
        } else if config.routes.backchannel_logout_path.as_deref() == Some(path) {
            Some((Endpoint::BackchannelLogout, Method::POST))
        } else {
            None
        };
        let Some((endpoint, method)) = endpoint else {
            let id = session_cookie(req.headers(), config.session_cookie_name());
            let page_load = crate::http_rules::is_page_load(req.method(), req.headers());
            let return_to = match req.extensions().get::<HcssSession>() {
                // A layer outside this one saw the request before a nested router stripped
                // its prefix: where to come back to is what it saw.
                Some(outer) => outer.return_to_uri().cloned(),
                // Kept for a page load only, the one request sent back here after a login.
                None if page_load => req.uri().path_and_query().cloned(),
                None => None,
            };
            // Until a flow request reaches the layer, browsers sent to log in (page loads
            // and form posts) are marked, and one that comes back proves it misplaced.
            let placement = &self.shared.placement;
            let unproven = (placement.unproven() && (page_load || req.method() == Method::POST))
                .then(|| {
                    if page_load {
                        flow::misplaced::came_back(placement, config, req.headers());
                    }
                    self.shared.clone()
                });
            req.extensions_mut()
                .insert(HcssSession::new(self.shared.clone(), id, return_to));
            return ResponseFuture::inner(self.inner.call(req), unproven);
        };
        self.shared
            .placement
            .flow_seen
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if req.method() != method {
            let answer = match endpoint {
                // A plain link to the logout path: a page with the sign-out form.
                Endpoint::Logout if matches!(*req.method(), Method::GET | Method::HEAD) => {
                    flow::sign_out_form(config)
                }
                Endpoint::Logout => method_not_allowed("GET, HEAD, POST"),
                _ => method_not_allowed(method.as_str()),
            };
            return ResponseFuture::flow(Box::pin(std::future::ready(answer)));
        }
        let shared = self.shared.clone();
        // Only a back-channel logout reads the request's body (bounded); every other
        // endpoint leaves it unread.
        let (parts, body) = req.into_parts();
        let clear_mark = match endpoint {
            Endpoint::Login => flow::misplaced::clear(config, &parts.headers),
            _ => None,
        };
        let span = match endpoint {
            Endpoint::Login => tracing::info_span!("hcss.login"),
            Endpoint::Callback => tracing::info_span!("hcss.callback"),
            Endpoint::Logout => tracing::info_span!("hcss.logout"),
            Endpoint::User => tracing::debug_span!("hcss.user"),
            Endpoint::LogoutReturn => tracing::info_span!("hcss.logout_return"),
            Endpoint::BackchannelLogout => tracing::info_span!("hcss.backchannel_logout"),
        };
        let future = async move {
            let mut response = match endpoint {
                Endpoint::Login => flow::login::login(&shared, &parts).await,
                Endpoint::Callback => flow::callback::callback(&shared, &parts).await,
                Endpoint::Logout => flow::logout::logout(&shared, &parts).await,
                Endpoint::User => flow::user::user(&shared, &parts).await,
                Endpoint::LogoutReturn => flow::logout::logout_return(&shared, &parts).await,
                Endpoint::BackchannelLogout => {
                    flow::backchannel::backchannel_logout(&shared, &parts, body).await
                }
            };
            if let Some(clear) = clear_mark {
                response.headers_mut().append(header::SET_COOKIE, clear);
            }
            response
        };
        ResponseFuture::flow(Box::pin(future.instrument(span)))
    }
}

fn method_not_allowed(allow: &str) -> FlowResponse {
    let mut response = Response::new(Bytes::from_static(b"Method Not Allowed\n"));
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    let allow = HeaderValue::from_str(allow).unwrap_or(HeaderValue::from_static("GET"));
    response.headers_mut().insert(header::ALLOW, allow);
    crate::http_rules::no_store(response.headers_mut());
    response
}

type FlowFuture = Pin<Box<dyn Future<Output = FlowResponse> + Send>>;

pin_project! {
    /// The response future of [`HcssAuthService`]: the inner service's, or a flow
    /// endpoint's.
    pub struct ResponseFuture<F> {
        #[pin]
        kind: FutureKind<F>,
    }
}

pin_project! {
    #[project = FutureKindProj]
    enum FutureKind<F> {
        // `unproven`: the layer's state while no flow request has reached it, to mark a
        // response that sends a browser to log in (see `flow::misplaced`); else `None`.
        Inner { #[pin] future: F, unproven: Option<Arc<Shared>> },
        Flow { future: FlowFuture },
    }
}

impl<F> ResponseFuture<F> {
    fn inner(future: F, unproven: Option<Arc<Shared>>) -> Self {
        Self {
            kind: FutureKind::Inner { future, unproven },
        }
    }

    fn flow(future: FlowFuture) -> Self {
        Self {
            kind: FutureKind::Flow { future },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<HcssBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            FutureKindProj::Inner { future, unproven } => future.poll(cx).map(|r| {
                r.map(|mut res| {
                    if let Some(shared) = unproven {
                        flow::misplaced::mark(&shared.placement, &shared.config, &mut res);
                    }
                    res.map(HcssBody::inner)
                })
            }),
            FutureKindProj::Flow { future } => future
                .as_mut()
                .poll(cx)
                .map(|res| Ok(res.map(HcssBody::full))),
        }
    }
}

pin_project! {
    /// The response body of [`HcssAuthService`]: the inner service's body, or a flow
    /// page held in full.
    pub struct HcssBody<B> {
        #[pin]
        kind: BodyKind<B>,
    }
}

pin_project! {
    #[project = BodyKindProj]
    enum BodyKind<B> {
        Inner { #[pin] body: B },
        Full { data: Option<Bytes> },
    }
}

impl<B> HcssBody<B> {
    fn inner(body: B) -> Self {
        Self {
            kind: BodyKind::Inner { body },
        }
    }

    fn full(data: Bytes) -> Self {
        Self {
            kind: BodyKind::Full { data: Some(data) },
        }
    }
}

impl<B> Body for HcssBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            BodyKindProj::Inner { body } => body.poll_frame(cx),
            BodyKindProj::Full { data } => Poll::Ready(
                data.take()
                    .filter(|d| !d.is_empty())
                    .map(|d| Ok(Frame::data(d))),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Inner { body } => body.is_end_stream(),
            BodyKind::Full { data } => data.as_ref().is_none_or(Bytes::is_empty),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Inner { body } => body.size_hint(),
            BodyKind::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
