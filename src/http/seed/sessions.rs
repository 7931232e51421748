//! Holding a seat, and confirming or releasing the hold session it starts.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::UserBody;
use crate::domain::{ScreeningId, SeatId, SessionId, UserId};
use crate::http::error::ErrorBody;
use crate::http::limits::ClientIp;
use crate::http::metrics::{Api, count_hold};
use crate::http::wire::responses::{BodyTooLarge, Unavailable, UnsupportedBody};
use crate::http::wire::rfc3339;
use crate::http::{AppError, AppState, Json};
use crate::store::Store;

#[derive(Serialize, utoipa::ToSchema)]
pub struct HoldBody {
    session_id: SessionId,
    movie_id: String,
    seat_id: SeatId,
    #[serde(serialize_with = "rfc3339")]
    expires_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    server_time: DateTime<Utc>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct BookingBody {
    session_id: SessionId,
    movie_id: String,
    seat_id: SeatId,
    user_id: UserId,
    /// `confirmed`.
    #[schema(value_type = String, pattern = "^confirmed$")]
    status: &'static str,
}

#[utoipa::path(post, path = "/movies/{movie_id}/seats/{seat_id}/hold", tag = "seed",
    summary = "Hold one seat for `user_id`",
    params(("movie_id" = String, Path, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", description = "The movie's slug, such as `inception`"), ("seat_id" = String, Path, pattern = "^[A-Z][1-9][0-9]?$", description = "A seat such as `C7`")),
    request_body = UserBody,
    responses(
        (status = 201, body = HoldBody),
        (status = 400, description = "`malformed_json`; `invalid_target`: a control character in the path or query", body = ErrorBody),
        (status = 404, description = "`movie_not_found`, `seat_not_found`", body = ErrorBody),
        (status = 409, description = "`seat_taken`, with `seats`; `held_too_long` (with `Retry-After`)", body = ErrorBody),
        (status = 413, response = inline(BodyTooLarge)), (status = 415, response = inline(UnsupportedBody)),
        (status = 422, description = "`invalid_user_id`, `invalid_seat_id`, `invalid_body` (also JSON that is not an object)", body = ErrorBody),
        (status = 429, description = "`hold_limit`, `address_hold_limit`; `rate_limited` (with `Retry-After`)", body = ErrorBody),
        (status = 503, response = inline(Unavailable)),
    ))]
pub async fn hold<S: Store>(
    State(app): State<AppState<S>>,
    client: ClientIp,
    Path((movie_id, seat_id)): Path<(String, String)>,
    Json(body): Json<UserBody>,
) -> Result<(StatusCode, axum::Json<HoldBody>), AppError> {
    let user = UserId::parse(body.user_id)?;
    let movie = app.store.movie(&ScreeningId::parse(&movie_id)?).await?;
    let seat = movie.seat(&seat_id)?;
    app.limiter.spend(user.as_str(), client, 1)?;
    let hold = app
        .store
        .hold(&movie, vec![seat], &user, client.network())
        .await;
    count_hold(Api::Seed, hold.as_ref().map(|_| true));
    let hold = hold?;
    let body = HoldBody {
        session_id: hold.session_id,
        movie_id: hold.movie_id,
        seat_id: hold.seats.into_iter().next().expect("a hold has seats"),
        expires_at: hold.expires_at,
        server_time: hold.server_time,
    };
    Ok((StatusCode::CREATED, axum::Json(body)))
}

#[utoipa::path(put, path = "/sessions/{session_id}/confirm", tag = "seed",
    summary = "Book a held seat for good",
    params(("session_id" = uuid::Uuid, Path, description = "The hold session's id (a UUID)")),
    request_body = UserBody,
    responses(
        (status = 200, body = BookingBody),
        (status = 400, description = "`malformed_json`; `invalid_target`: a control character in the path or query", body = ErrorBody),
        (status = 404, description = "`session_not_found` (unknown, or someone else's)", body = ErrorBody),
        (status = 410, description = "`hold_expired`, `hold_released`", body = ErrorBody),
        (status = 413, response = inline(BodyTooLarge)), (status = 415, response = inline(UnsupportedBody)),
        (status = 422, description = "`invalid_session_id`, `invalid_user_id`, `invalid_body` (also JSON that is not an object)", body = ErrorBody),
        (status = 503, response = inline(Unavailable)),
    ))]
pub async fn confirm<S: Store>(
    State(app): State<AppState<S>>,
    Path(session_id): Path<String>,
    Json(body): Json<UserBody>,
) -> Result<axum::Json<BookingBody>, AppError> {
    let session = SessionId::parse(&session_id)?;
    let user = UserId::parse(body.user_id)?;
    let booking = app.store.confirm(session, &user).await?;
    Ok(axum::Json(BookingBody {
        session_id: booking.session_id,
        movie_id: booking.movie_id,
        seat_id: booking
            .seats
            .into_iter()
            .next()
            .expect("a booking has seats"),
        user_id: booking.user_id,
        status: "confirmed",
    }))
}

#[utoipa::path(delete, path = "/sessions/{session_id}", tag = "seed",
    summary = "Give a held seat back",
    params(("session_id" = uuid::Uuid, Path, description = "The hold session's id (a UUID)")),
    request_body = UserBody,
    responses(
        (status = 204, description = "Released (again: releasing twice is harmless)"),
        (status = 400, description = "`malformed_json`; `invalid_target`: a control character in the path or query", body = ErrorBody),
        (status = 404, description = "`session_not_found` (unknown, or someone else's)", body = ErrorBody),
        (status = 409, description = "`already_confirmed`", body = ErrorBody),
        (status = 410, description = "`hold_expired`", body = ErrorBody),
        (status = 413, response = inline(BodyTooLarge)), (status = 415, response = inline(UnsupportedBody)),
        (status = 422, description = "`invalid_session_id`, `invalid_user_id`, `invalid_body` (also JSON that is not an object)", body = ErrorBody),
        (status = 503, response = inline(Unavailable)),
    ))]
pub async fn release<S: Store>(
    State(app): State<AppState<S>>,
    Path(session_id): Path<String>,
    Json(body): Json<UserBody>,
) -> Result<StatusCode, AppError> {
    let session = SessionId::parse(&session_id)?;
    let user = UserId::parse(body.user_id)?;
    app.store.release(session, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}
