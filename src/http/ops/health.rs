//! Liveness (`/healthz`: the process answers), readiness (`/readyz`: so does the store) and
//! the metrics (`/metrics`, Prometheus text format, on a listener of their own).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::http::wire::responses::Unavailable;
use crate::http::{AppError, AppState};
use crate::store::Store;

#[utoipa::path(get, path = "/healthz", tag = "operations",
    summary = "Liveness: the process answers",
    responses((status = 200, body = Object, example = json!({"status": "ok"}))))]
pub async fn live() -> axum::Json<Value> {
    axum::Json(json!({ "status": "ok" }))
}

/// Prometheus metrics, served on the metrics listener (`crate::http::metrics_app`).
pub async fn metrics<S: Store>(State(store): State<S>) -> impl IntoResponse {
    store.observe();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::handle().render(),
    )
}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    summary = "Readiness: so does the store",
    responses(
        (status = 200, body = Object, example = json!({"status": "ready"})),
        (status = 503, response = inline(Unavailable)),
    ))]
pub async fn ready<S: Store>(
    State(app): State<AppState<S>>,
) -> Result<axum::Json<Value>, AppError> {
    app.store.ping().await?;
    Ok(axum::Json(json!({ "status": "ready" })))
}
