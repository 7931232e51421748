//! `POST /api/v1/identities`: a new user id and the token that proves it.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::UserId;
use crate::http::error::ErrorBody;
use crate::http::limits::ClientIp;
use crate::http::wire::responses::Unavailable;
use crate::http::{AppError, AppState};
use crate::store::Store;

#[derive(Serialize, ToSchema)]
pub struct IdentityBody {
    user_id: UserId,
    /// Send as `Authorization: Bearer <token>`.
    #[schema(example = "v1.0123456789abcdef0123456789abcdef.9s1c…")]
    token: String,
}

#[utoipa::path(post, path = "/identities", tag = "v1",
    summary = "A new identity: a user id and the bearer token that proves it",
    description = "Keep the token: it is the only way to act as this user. No `Idempotency-Key`: there is nobody to repeat it for yet.",
    responses(
        (status = 201, body = IdentityBody),
        (status = 429, description = "`rate_limited`: this address made too many identities this minute (with `Retry-After`)", body = ErrorBody),
        (status = 503, response = inline(Unavailable)),
    ))]
pub async fn create_identity<S: Store>(
    State(app): State<AppState<S>>,
    client: ClientIp,
) -> Result<Response, AppError> {
    app.limiter.identity(client)?;
    let (user_id, token) = app.api.signing.get().await?.issue();
    // A token is a credential: no cache on the way keeps it.
    let no_store = [(header::CACHE_CONTROL, "no-store")];
    let body = axum::Json(IdentityBody { user_id, token });
    Ok((StatusCode::CREATED, no_store, body).into_response())
}
