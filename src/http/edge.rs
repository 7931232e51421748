//! Every request's way in and out: measured, refused early when broken, given its deadline,
//! and every error answered as JSON.

use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;

use super::AppError;
use crate::telemetry;

/// What the edge checks every request against.
#[derive(Clone, Copy)]
pub struct Edge {
    pub timeout: Duration,
    pub max_body_bytes: usize,
}

/// Every request's way in and out, in one middleware (each `from_fn` layer clones the stack
/// below it and boxes a future for every request; BENCHMARKS.md, "Seat maps"): it is measured,
/// refused if its target or headers are broken or its body declared too large, given its
/// deadline, and any error answer becomes JSON.
pub async fn edge(State(edge): State<Edge>, request: Request, next: Next) -> Response {
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

pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
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
    use axum::Router;
    use axum::body::Body;
    use tower::ServiceExt;
    use tower_http::catch_panic::CatchPanicLayer;

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
