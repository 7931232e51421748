//! Liveness (`/healthz`: the process answers) and readiness (`/readyz`: so does the store).

use axum::extract::State;
use serde_json::{Value, json};

use super::{AppError, AppState};
use crate::store::SeatStore;

pub async fn live() -> axum::Json<Value> {
    axum::Json(json!({ "status": "ok" }))
}

pub async fn ready<S: SeatStore>(
    State(app): State<AppState<S>>,
) -> Result<axum::Json<Value>, AppError> {
    app.store.ping().await?;
    Ok(axum::Json(json!({ "status": "ready" })))
}
