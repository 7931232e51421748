//! The HTTP layer's router: the tutorial's routes, `/api/v1`, the operators' routes and the page,
//! behind the layers every request passes.

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request};
use axum::handler::HandlerWithoutStateExt;
use axum::http::{HeaderValue, header};
use axum::middleware;
use std::sync::Arc;
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
use crate::store::{Backend, Store};
use crate::telemetry;

pub mod connections;
mod edge;
pub mod error;
mod events;
mod extract;
pub mod limits;
mod metrics;
mod ops;
mod pages;
mod seat_maps;
mod seed;
mod shares;
mod state;
mod v1;
mod wire;

pub use error::AppError;
use events::Streams;
use extract::Json;
use ops::{health, openapi, reports};
use seat_maps::SeatMaps;
pub use state::{AppState, Shared};
use tokio_util::sync::CancellationToken;

/// The whole application: API routes, health checks, and the page from `static_dir`. Its
/// event streams end when `stop_streams` is cancelled. An error if tokens would have no
/// secret to be signed with: neither `IDENTITY_SECRET` nor a store that keeps one.
pub fn app<S: Store>(
    backend: Backend<S>,
    config: &Config,
    stop_streams: CancellationToken,
) -> Result<Router, NoSigningSecret> {
    // Before anything is recorded: what is recorded without a recorder is lost.
    telemetry::handle();
    let (router, document) = routes::<S>(config.seed_api).split_for_parts();
    let state = state(backend, config, stop_streams, document)?;
    // The page and any file of `static_dir`, each page with the policy its inline blocks need.
    let unknown_route = || async { AppError::RouteNotFound };
    let page = ServeDir::new(&config.static_dir)
        .call_fallback_on_method_not_allowed(true)
        .fallback(unknown_route.into_service());
    let page = tower::Layer::layer(&middleware::from_fn(pages::inline_policy), page);
    let router = router
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .fallback_service(page)
        .with_state(state);
    Ok(layers(router, config))
}

/// Every route, with its part of the OpenAPI document; the tutorial's only if `seed_api`.
fn routes<S: Store>(seed_api: bool) -> OpenApiRouter<AppState<S>> {
    let v1 = OpenApiRouter::new()
        .routes(routes!(v1::identities::create_identity))
        .routes(routes!(v1::movies::movies))
        .routes(routes!(v1::movies::seat_map))
        .routes(routes!(v1::sessions::hold))
        .routes(routes!(v1::movies::events))
        .routes(routes!(v1::sessions::my_sessions))
        .routes(routes!(v1::sessions::session, v1::sessions::release))
        .routes(routes!(v1::sessions::extend))
        .routes(routes!(v1::sessions::confirm));
    let seed = OpenApiRouter::new()
        .routes(routes!(seed::movies::list))
        .routes(routes!(seed::movies::seat_map))
        .routes(routes!(seed::events::stream))
        .routes(routes!(seed::sessions::hold))
        .routes(routes!(seed::sessions::confirm))
        .routes(routes!(seed::sessions::release));
    let operations = OpenApiRouter::new()
        .routes(routes!(reports::report))
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(openapi::document));
    let routes = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest("/api/v1", v1)
        .merge(operations);
    if seed_api { routes.merge(seed) } else { routes }
}

/// What the handlers share, with the finished document and the secret tokens are signed with.
fn state<S: Store>(
    backend: Backend<S>,
    config: &Config,
    stop_streams: CancellationToken,
    mut document: utoipa::openapi::OpenApi,
) -> Result<AppState<S>, NoSigningSecret> {
    let Backend {
        store,
        secrets,
        reports,
    } = backend;
    let signing_secret = match (config.identity_secret.clone(), secrets) {
        (Some(secret), _) => v1::SigningSecret::Set(secret),
        (None, Some(kept)) => v1::SigningSecret::Kept(kept),
        (None, None) => return Err(NoSigningSecret),
    };
    openapi::finish(&mut document);
    let document = document.to_pretty_json().expect("the document is JSON");
    Ok(AppState(Arc::new(Shared {
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
        api: v1::Api {
            signing: v1::Signing::new(signing_secret, config.identity_secret_previous.clone()),
            max_seats_per_hold: config.max_seats_per_hold,
            hold_policy: config.hold,
            max_keys_per_user: config.max_idempotency_keys_per_user,
        },
    })))
}

/// What every answer passes through, outermost last: the body's deadline, the trace, the
/// security headers, the edge (metrics, early refusals, the request's deadline, JSON errors)
/// and the catch of a panic; and the body limit.
fn layers(router: Router, config: &Config) -> Router {
    let strict_policy = HeaderValue::try_from(pages::policy(&[], &[])).expect("a header value");
    router
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
                    edge::Edge {
                        timeout: config.request_timeout,
                        max_body_bytes: config.max_body_bytes,
                    },
                    edge::edge,
                ))
                // A bug that panics answers 500 JSON rather than dropping the connection,
                // which a client could only take for an outcome unknown.
                .layer(CatchPanicLayer::custom(edge::panic_response)),
        )
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
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
