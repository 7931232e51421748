//! Liveness (`/healthz`: the process answers), readiness (`/readyz`: so does the store) and
//! the metrics (`/metrics`, Prometheus text format).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{AppError, AppState};
use crate::store::SeatStore;

pub async fn live() -> axum::Json<Value> {
    axum::Json(json!({ "status": "ok" }))
}

pub async fn metrics<S: SeatStore>(State(app): State<AppState<S>>) -> impl IntoResponse {
    app.store.observe();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::handle().render(),
    )
}

pub async fn ready<S: SeatStore>(
    State(app): State<AppState<S>>,
) -> Result<axum::Json<Value>, AppError> {
    app.store.ping().await?;
    Ok(axum::Json(json!({ "status": "ready" })))
}
