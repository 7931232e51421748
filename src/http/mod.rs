//! The HTTP layer: the router, request extractors, and the rules every response follows.

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::handler::HandlerWithoutStateExt;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::{DeadlineBody, RequestBodyDeadlineLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Config;
use crate::store::{Backend, Reports, Store};
use crate::telemetry;

mod api;
pub mod connections;
pub mod error;
mod events;
mod extract;
mod health;
pub mod limits;
mod movies;
mod openapi;
mod pages;
mod reports;
mod seat_maps;
mod sessions;
mod shares;

pub use error::AppError;
use events::Streams;
use extract::Json;
use seat_maps::SeatMaps;
use tokio_util::sync::CancellationToken;

/// What every handler shares, behind one `Arc`: extractors and middleware clone it for every
/// request, and one counter costs less than one per field.
pub struct AppState<S>(Arc<Shared<S>>);

impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S> std::ops::Deref for AppState<S> {
    type Target = Shared<S>;

    fn deref(&self) -> &Shared<S> {
        &self.0
    }
}

/// The store, the seat maps' rounds, the streams, the settings the routes need.
pub struct Shared<S> {
    pub store: S,
    /// The report views, if the store has them.
    pub reports: Option<Arc<dyn Reports>>,
    pub seat_maps: SeatMaps,
    pub streams: Streams,
    /// `REPORTS_TOKEN`; `None`: the reports route is off.
    pub reports_token: Option<Arc<str>>,
    pub api: api::Api,
    pub openapi: openapi::Document,
    pub limiter: limits::Limiter,
}

/// The body of hold, confirm and release: who is asking.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    /// Letters, digits, `-` and `_`, 1 to 64 of them.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub user_id: String,
}

/// The whole application: API routes, health checks, and the page from `static_dir`. Its
/// event streams end when `stop_streams` is cancelled. An error if tokens would have no
/// secret to be signed with: neither `IDENTITY_SECRET` nor a store that keeps one.
pub fn app<S: Store>(
    backend: Backend<S>,
    config: &Config,
    stop_streams: CancellationToken,
) -> Result<Router, NoSigningSecret> {
    let Backend {
        store,
        secrets,
        reports,
    } = backend;
    let signing_secret = match (config.identity_secret.clone(), secrets) {
        (Some(secret), _) => api::SigningSecret::Set(secret),
        (None, Some(kept)) => api::SigningSecret::Kept(kept),
        (None, None) => return Err(NoSigningSecret),
    };
    // Before anything is recorded: what is recorded without a recorder is lost.
    telemetry::handle();
    let unknown_route = || async { AppError::RouteNotFound };
    let page = ServeDir::new(&config.static_dir)
        .call_fallback_on_method_not_allowed(true)
        .fallback(unknown_route.into_service());
    let page = tower::Layer::layer(&middleware::from_fn(pages::inline_policy), page);
    let strict_policy = HeaderValue::try_from(pages::policy(&[], &[])).expect("a header value");

    let v1 = OpenApiRouter::new()
        .routes(routes!(api::create_identity))
        .routes(routes!(api::movies))
        .routes(routes!(api::seat_map))
        .routes(routes!(api::hold))
        .routes(routes!(api::events))
        .routes(routes!(api::my_sessions))
        .routes(routes!(api::session, api::release))
        .routes(routes!(api::extend))
        .routes(routes!(api::confirm));
    let seed = OpenApiRouter::new()
        .routes(routes!(movies::list))
        .routes(routes!(movies::seat_map))
        .routes(routes!(events::stream))
        .routes(routes!(sessions::hold))
        .routes(routes!(sessions::confirm))
        .routes(routes!(sessions::release));
    let operations = OpenApiRouter::new()
        .routes(routes!(reports::report))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(openapi::document));
    let mut routes = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest("/api/v1", v1)
        .merge(operations);
    if config.seed_api {
        routes = routes.merge(seed);
    }
    let (router, mut document) = routes.split_for_parts();
    openapi::finish(&mut document);
    let document = document.to_pretty_json().expect("the document is JSON");
    let router = router
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .fallback_service(page)
        .with_state(AppState(Arc::new(Shared {
            store,
            reports,
            seat_maps: SeatMaps::default(),
            streams: Streams::new(
                config.max_event_streams,
                config.max_event_streams_per_ip,
                stop_streams,
            ),
            reports_token: config.reports_token.as_ref().map(|t| Arc::from(t.expose())),
            openapi: openapi::Document(document.into()),
            limiter: limits::Limiter::new(&config.rate_limits),
            api: api::Api {
                signing: api::Signing::new(signing_secret, config.identity_secret_previous.clone()),
                max_seats_per_hold: config.max_seats_per_hold,
                max_holds_per_user: config.hold.max_holds_per_user,
                max_keys_per_user: config.max_idempotency_keys_per_user,
            },
        })))
        .layer(
            ServiceBuilder::new()
                .layer(RequestBodyDeadlineLayer::new(config.body_read_timeout))
                .map_request(|request: Request<DeadlineBody<Body>>| request.map(Body::new))
                // Every 5xx the server answers is logged where it is decided (an outage once
                // for all it answers, a refusal by choice at a lower level, rate-limited), so
                // the trace's own line for it is debug, not an error per request.
                .layer(TraceLayer::new_for_http().on_failure(
                    tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
                ))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::X_CONTENT_TYPE_OPTIONS,
                    HeaderValue::from_static("nosniff"),
                ))
                // Our page runs no inline code; a page with inline blocks has its own.
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::CONTENT_SECURITY_POLICY,
                    strict_policy,
                ))
                .layer(SetResponseHeaderLayer::if_not_present(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ))
                .layer(middleware::from_fn_with_state(
                    Edge {
                        timeout: config.request_timeout,
                        max_body_bytes: config.max_body_bytes,
                    },
                    edge,
                ))
                // A bug that panics answers 500 JSON rather than dropping the connection,
                // which a client could only take for an outcome unknown.
                .layer(CatchPanicLayer::custom(panic_response)),
        )
        .layer(DefaultBodyLimit::max(config.max_body_bytes));
    Ok(router)
}

/// Neither `IDENTITY_SECRET` nor a store that keeps a secret.
#[derive(Debug, thiserror::Error)]
#[error("IDENTITY_SECRET must be set: this store keeps no secret to sign API tokens with")]
pub struct NoSigningSecret;

/// The metrics, on a listener of their own (`METRICS_ADDR`): Prometheus scrapes them there,
/// and the public listener doesn't serve them.
pub fn metrics_app<S: Store>(store: S) -> Router {
    telemetry::handle();
    #[allow(clippy::disallowed_methods)] // one route, kept out of the public document
    Router::new()
        .route("/metrics", axum::routing::get(health::metrics::<S>))
        .fallback(|| async { AppError::RouteNotFound })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .with_state(store)
}

/// What the edge checks every request against.
#[derive(Clone, Copy)]
struct Edge {
    timeout: Duration,
    max_body_bytes: usize,
}

/// Every request's way in and out, in one middleware (each `from_fn` layer clones the stack
/// below it and boxes a future for every request; BENCHMARKS.md, "Seat maps"): it is measured,
/// refused if its target or headers are broken or its body declared too large, given its
/// deadline, and any error answer becomes JSON.
async fn edge(State(edge): State<Edge>, request: Request, next: Next) -> Response {
    let measured = Measured::start(&request);
    let sound = sound_target(request.uri())
        .and_then(|()| single_headers(request.headers()))
        .and_then(|()| declared_size(request.headers(), edge.max_body_bytes));
    let response = match sound {
        Ok(()) => deadline(edge.timeout, request, next).await,
        Err(refusal) => refusal.into_response(),
    };
    let response = json_errors(response);
    measured.record(&response);
    response
}

/// Refuses a request target no route could mean before anything reads it: one without a
/// leading slash (`GET a HTTP/1.1`, `OPTIONS *`), or with a control character such as NUL in
/// its path or query once decoded, which no id has and PostgreSQL refuses in text.
fn sound_target(uri: &axum::http::Uri) -> Result<(), AppError> {
    let control = |part: &str| percent_decode_str(part).any(|byte| byte.is_ascii_control());
    if !uri.path().starts_with('/') || control(uri.path()) || uri.query().is_some_and(control) {
        return Err(AppError::InvalidTarget);
    }
    Ok(())
}

/// Headers that say who asks, what the body is or which change it is: sent twice, which one
/// counts would be a guess (a proxy may have read the other), so the request is refused.
const SINGLE_HEADERS: [&str; 4] = ["authorization", "content-type", "host", "idempotency-key"];

fn single_headers(headers: &axum::http::HeaderMap) -> Result<(), AppError> {
    match SINGLE_HEADERS
        .into_iter()
        .find(|name| headers.get_all(*name).iter().nth(1).is_some())
    {
        Some(name) => Err(AppError::DuplicateHeader(name)),
        None => Ok(()),
    }
}

/// Refuses a body whose declared length is over the limit before it is read: the client is
/// told at once (and not invited to send it with `100 Continue`).
fn declared_size(headers: &axum::http::HeaderMap, max: usize) -> Result<(), AppError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    match declared {
        Some(length) if length > max as u64 => Err(AppError::BodyTooLarge),
        _ => Ok(()),
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    AppError::Internal.into_response()
}

/// Answers a request that runs past `timeout`. A read has done nothing, so it may be retried;
/// a change may have been under way when it was cut short (the database's deadlines are set to
/// fire before this one, so this is rare), so it may or may not have taken effect.
async fn deadline(timeout: Duration, request: Request, next: Next) -> Response {
    let change = !request.method().is_safe();
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) if change => AppError::OutcomeUnknown.into_response(),
        Err(_) => AppError::Timeout.into_response(),
    }
}

/// A request being counted by route (the pattern, not the path, so that ids don't make a
/// label each), method and status, and timed. Every label comes from a set the server knows,
/// so no request can add series: the routes are the router's, the methods are HTTP's own
/// (anything else is `other`), and the statuses are the ones it answers.
struct Measured {
    route: String,
    method: &'static str,
    started: std::time::Instant,
}

impl Measured {
    fn start(request: &Request) -> Self {
        let route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or_else(|| "static".to_owned(), |path| path.as_str().to_owned());
        Self {
            route,
            method: method_label(request.method()),
            started: std::time::Instant::now(),
        }
    }

    fn record(self, response: &Response) {
        let Self {
            route,
            method,
            started,
        } = self;
        let status = response.status().as_u16().to_string();
        metrics::histogram!(telemetry::HTTP_DURATION, "route" => route.clone(), "method" => method)
            .record(started.elapsed().as_secs_f64());
        metrics::counter!(telemetry::HTTP_REQUESTS, "route" => route, "method" => method, "status" => status)
            .increment(1);
    }
}

/// A method's metrics label: the methods of HTTP's own specifications, or `other`.
fn method_label(method: &Method) -> &'static str {
    [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ]
    .iter()
    .find(|known| *known == method)
    .map_or("other", Method::as_str)
}

/// Turns any error response that is not already JSON (a framework rejection, a static-file
/// error) into the `{"error", "code"}` shape, so clients can rely on it for every status.
fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        return AppError::Other(status).into_response();
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    async fn boom() -> &'static str {
        panic!("a bug")
    }

    #[tokio::test]
    async fn a_handler_that_panics_answers_500_json() {
        #[allow(clippy::disallowed_methods)] // a route of the test's own
        let router: Router = Router::new()
            .route("/boom", axum::routing::get(boom))
            .layer(CatchPanicLayer::custom(panic_response));
        let request = Request::get("/boom").body(Body::empty()).unwrap();
        let response = router.oneshot(request).await.unwrap();
        assert_eq!(
            response.status(),
            axum::http::StatusCode::INTERNAL_SERVER_ERROR
        );
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "internal_error");
    }
}
