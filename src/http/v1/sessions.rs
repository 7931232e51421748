//! Holds (named seats or best available, with a counter-offer after a lost race), sessions,
//! extensions, confirms and releases: every change idempotent with `Idempotency-Key`.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Caller, KeyHeader};
use crate::booking::{Claim, Kept, Keyed};
use crate::booking::{Command, Effect, Refusal, Want};
use crate::domain::seating::Room;
use crate::domain::{
    Booking, BookingReference, Hold, IdempotencyKey, Movie, ScreeningId, SeatId, SeatSet,
    SeatSetError, SessionId, UserId,
};
use crate::domain::{SessionInfo, SessionStatus};
use crate::http::error::ErrorBody;
use crate::http::limits::ClientIp;
use crate::http::metrics::{Api, count_hold};
use crate::http::wire::responses::{
    BodyTooLarge, InvalidTarget, InvalidToken, Unavailable, UnsupportedBody,
};
use crate::http::wire::rfc3339;
use crate::http::{AppError, AppState, Json};
use crate::store::{Store, StoreError, StoreResult};

/// `{"seat_ids": [...]}` or `{"quantity": n}`, not both.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(max_properties = 1)] // and min_properties 1: `openapi::finish`
pub struct HoldRequest {
    /// These seats, all or none (1 to MAX_SEATS_PER_HOLD of them, 8 unless set otherwise).
    #[schema(value_type = Vec<SeatId>, required = false, min_items = 1, max_items = 8)]
    #[serde(default, deserialize_with = "present")]
    seat_ids: Option<Vec<String>>,
    /// The best available seats for a group of this many (1 to MAX_SEATS_PER_HOLD).
    #[schema(value_type = u32, required = false, minimum = 1, maximum = 8)]
    #[serde(default, deserialize_with = "count")]
    quantity: Option<usize>,
}

/// A field that, when sent, is not `null`: absent is `None`, `null` is refused.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// A count, as JSON Schema's `integer` has it: `8` or `8.0`, not `8.5`.
fn count<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<usize>, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    let whole = number.as_u64().or_else(|| {
        number
            .as_f64()
            .filter(|f| f.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(f))
            .map(|f| f as u64)
    });
    whole
        .and_then(|n| usize::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("{number} is not a count of seats")))
}

#[derive(Serialize, ToSchema)]
pub struct ApiHoldBody {
    session_id: SessionId,
    movie_id: String,
    seat_ids: Vec<SeatId>,
    /// `held`.
    #[schema(value_type = String, pattern = "^held$")]
    status: &'static str,
    #[serde(serialize_with = "rfc3339")]
    expires_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339")]
    server_time: DateTime<Utc>,
}

impl From<&Hold> for ApiHoldBody {
    fn from(hold: &Hold) -> Self {
        Self {
            session_id: hold.session_id,
            movie_id: hold.movie_id.clone(),
            seat_ids: hold.seats.clone(),
            status: SessionStatus::Held.as_str(),
            expires_at: hold.expires_at,
            server_time: hold.server_time,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ApiBookingBody {
    session_id: SessionId,
    movie_id: String,
    seat_ids: Vec<SeatId>,
    /// `confirmed`.
    #[schema(value_type = String, pattern = "^confirmed$")]
    status: &'static str,
    #[schema(value_type = BookingReference)]
    booking_reference: String,
}

impl From<&Booking> for ApiBookingBody {
    fn from(booking: &Booking) -> Self {
        Self {
            session_id: booking.session_id,
            movie_id: booking.movie_id.clone(),
            seat_ids: booking.seats.clone(),
            status: SessionStatus::Confirmed.as_str(),
            booking_reference: booking.reference.as_str().to_owned(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionBody {
    session_id: SessionId,
    movie_id: String,
    seat_ids: Vec<SeatId>,
    /// `held`, `confirmed`, `released` or `expired`.
    #[schema(value_type = String, pattern = "^(held|confirmed|released|expired)$")]
    status: &'static str,
    #[serde(serialize_with = "rfc3339")]
    created_at: DateTime<Utc>,
    /// The hold's deadline; for a booking, the one it beat.
    #[serde(serialize_with = "rfc3339")]
    expires_at: DateTime<Utc>,
    extensions: u32,
    /// Set once confirmed.
    #[schema(value_type = Option<BookingReference>)]
    booking_reference: Option<String>,
}

impl From<&SessionInfo> for SessionBody {
    fn from(s: &SessionInfo) -> Self {
        Self {
            session_id: s.session_id,
            movie_id: s.movie_id.clone(),
            seat_ids: s.seats.clone(),
            status: s.status.as_str(),
            created_at: s.created_at,
            expires_at: s.expires_at,
            extensions: s.extensions,
            booking_reference: s.reference.as_ref().map(|r| r.as_str().to_owned()),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionsBody {
    sessions: Vec<SessionBody>,
}

#[utoipa::path(post, path = "/movies/{movie_id}/holds", tag = "v1", security(("bearer" = [])),
    summary = "Hold seats for a group: named ones, all or none, or the best available",
    description = "`seat_ids` holds exactly those seats or none of them; a 409 lists the taken ones and suggests a block of the same size nearby (`suggestion`, or null), which is not held. `quantity` picks the best available seats (README, \"Best available\").",
    params(("movie_id" = String, Path, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", description = "The movie's slug, such as `inception`"), ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Up to 255 visible ASCII characters; a retry with the same key within 24 hours gets the first response again (with `Idempotency-Replayed: true`)")),
    request_body = HoldRequest,
    responses(
        (status = 201, body = ApiHoldBody),
        (status = 400, description = "`malformed_json`, `invalid_idempotency_key`; `invalid_target`: a control character in the path or query", body = ErrorBody),
        (status = 401, response = inline(InvalidToken)),
        (status = 404, description = "`movie_not_found`, `seat_not_found`", body = ErrorBody),
        (status = 409, description = "`seat_taken` (with `seats` and `suggestion`), `not_enough_seats` (with `free`), `held_too_long` (with `Retry-After`), `idempotency_key_in_flight` (with `Retry-After`)", body = ErrorBody),
        (status = 413, response = inline(BodyTooLarge)), (status = 415, response = inline(UnsupportedBody)),
        (status = 422, description = "`invalid_body` (also JSON that is not an object), `invalid_seat_id`, `duplicate_seat`, `too_many_seats`, `idempotency_key_reused`", body = ErrorBody),
        (status = 429, description = "`hold_limit`, `address_hold_limit`; `rate_limited` (with `Retry-After`); `idempotency_key_limit`", body = ErrorBody),
        (status = 503, response = inline(Unavailable)),
    ))]
pub async fn hold<S: Store>(
    State(app): State<AppState<S>>,
    Caller(user): Caller,
    client: ClientIp,
    KeyHeader(key): KeyHeader,
    Path(movie_id): Path<String>,
    Json(body): Json<HoldRequest>,
) -> Result<Response, AppError> {
    let movie = app.store.movie(&ScreeningId::parse(&movie_id)?).await?;
    let want = body.parse(&movie, app.api.max_seats_per_hold)?;
    let seats = match &want {
        Want::Seats(seats) => seats.len(),
        Want::Best(quantity) => *quantity,
    };
    // The request as parsed, for a retry with the same key to match.
    let fingerprint = match &want {
        Want::Seats(seats) => {
            let seats: Vec<&str> = seats.iter().map(SeatId::as_str).collect();
            format!(
                "POST /api/v1/movies/{}/holds seats {}",
                movie.id,
                seats.join(",")
            )
        }
        Want::Best(quantity) => {
            format!("POST /api/v1/movies/{}/holds quantity {quantity}", movie.id)
        }
    };
    let asked = match &want {
        Want::Seats(seats) => seats.clone(),
        Want::Best(_) => Vec::new(),
    };
    let command = Command::Hold {
        movie: movie.clone(),
        want,
        from: client.network(),
    };
    let change = Change {
        user: &user,
        client,
        units: seats,
    };
    let outcome = execute(&app, change, command, key, &fingerprint).await;
    count_hold(
        Api::V1,
        outcome
            .as_ref()
            .map(|keyed| matches!(keyed, Keyed::Done(_))),
    );
    match outcome {
        Err(StoreError::SeatTaken(taken)) if !asked.is_empty() => Err(AppError::SeatsTaken {
            seats: taken,
            suggestion: counter_offer(&app, &user, &movie, &asked).await,
        }),
        outcome => answer(outcome),
    }
}

impl HoldRequest {
    /// What the request asks of `movie`: at most `max` seats, named (each once) or counted.
    fn parse(self, movie: &Movie, max: usize) -> Result<Want, AppError> {
        match (self.seat_ids, self.quantity) {
            (Some(ids), None) => {
                let seats = ids
                    .iter()
                    .map(|id| movie.seat(id))
                    .collect::<Result<Vec<_>, _>>()?;
                match SeatSet::new(seats, max) {
                    Ok(seats) => Ok(Want::Seats(seats.into_vec())),
                    Err(SeatSetError::Duplicate(seat)) => Err(AppError::DuplicateSeat(seat)),
                    Err(SeatSetError::Empty | SeatSetError::TooMany { .. }) => {
                        Err(AppError::TooManySeats { max })
                    }
                }
            }
            (None, Some(quantity)) if (1..=max).contains(&quantity) => Ok(Want::Best(quantity)),
            (None, Some(_)) => Err(AppError::TooManySeats { max }),
            _ => Err(AppError::InvalidBody(
                "send either seat_ids (a list of seats) or quantity (how many seats)".into(),
            )),
        }
    }
}

/// A block like `asked`, as near to it as the room allows, that `user` may still hold: read
/// after the refusal. `None` if there is none, or if it cannot be read now.
async fn counter_offer<S: Store>(
    app: &AppState<S>,
    user: &UserId,
    movie: &Movie,
    asked: &[SeatId],
) -> Option<Vec<SeatId>> {
    let (taken, sessions) =
        tokio::join!(app.store.seat_map(&movie.id), app.store.user_sessions(user));
    let held: usize = sessions
        .ok()?
        .iter()
        .filter(|s| s.status == SessionStatus::Held)
        .map(|s| s.seats.len())
        .sum();
    if !app.api.hold_policy.user_may_hold(held, asked.len()) {
        return None;
    }
    let taken = taken.ok()?;
    Room::new(movie, taken.iter().map(|t| &t.seat_id)).near(asked.len(), asked)
}

#[utoipa::path(get, path = "/sessions/{session_id}", tag = "v1", security(("bearer" = [])),
    summary = "One of your sessions: its seats, status and deadline",
    params(("session_id" = uuid::Uuid, Path, description = "The hold session's id (a UUID)")),
    responses(
        (status = 400, response = inline(InvalidTarget)),
        (status = 200, body = SessionBody),
        (status = 401, response = inline(InvalidToken)),
        (status = 404, description = "`session_not_found` (unknown, malformed, or someone else's)", body = ErrorBody),
        (status = 503, response = inline(Unavailable)),
    ))]
pub async fn session<S: Store>(
    State(app): State<AppState<S>>,
    Caller(user): Caller,
    Path(session_id): Path<String>,
) -> Result<axum::Json<SessionBody>, AppError> {
    let session = app
        .store
        .session(parse_session(&session_id)?, &user)
        .await?;
    Ok(axum::Json(SessionBody::from(&session)))
}

/// An unknown session id and a malformed one look the same: a guess learns nothing.
fn parse_session(raw: &str) -> Result<SessionId, AppError> {
    SessionId::parse(raw).map_err(|_| AppError::SessionNotFound)
}

#[utoipa::path(get, path = "/me/sessions", tag = "v1", security(("bearer" = [])),
    summary = "Your live holds and bookings, oldest first",
    responses(
        (status = 200, body = SessionsBody),
        (status = 401, response = inline(InvalidToken)),
        (status = 503, response = inline(Unavailable)),
    ))]
pub async fn my_sessions<S: Store>(
    State(app): State<AppState<S>>,
    Caller(user): Caller,
) -> Result<axum::Json<SessionsBody>, AppError> {
    let sessions = app.store.user_sessions(&user).await?;
    Ok(axum::Json(SessionsBody {
        sessions: sessions.iter().map(SessionBody::from).collect(),
    }))
}

#[utoipa::path(post, path = "/sessions/{session_id}/extend", tag = "v1", security(("bearer" = [])),
    summary = "Push a live hold's deadline to now + the hold time",
    description = "At most MAX_HOLD_EXTENSIONS times, and never past MAX_HOLD_LIFETIME_SECS after the hold began.",
    params(("session_id" = uuid::Uuid, Path, description = "The hold session's id (a UUID)"), ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Up to 255 visible ASCII characters; a retry with the same key within 24 hours gets the first response again (with `Idempotency-Replayed: true`)")),
    responses(
        (status = 200, body = SessionBody),
        (status = 400, description = "`invalid_idempotency_key`; `invalid_target`: a control character in the path or query", body = ErrorBody),
        (status = 401, response = inline(InvalidToken)),
        (status = 404, description = "`session_not_found`", body = ErrorBody),
        (status = 409, description = "`extension_limit`, `already_confirmed`, `idempotency_key_in_flight`", body = ErrorBody),
        (status = 410, description = "`hold_expired`, `hold_released`", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (with `Retry-After`); `idempotency_key_limit`", body = ErrorBody),
        (status = 503, response = inline(Unavailable)),
    ))]
pub async fn extend<S: Store>(
    State(app): State<AppState<S>>,
    Caller(user): Caller,
    client: ClientIp,
    KeyHeader(key): KeyHeader,
    Path(session_id): Path<String>,
) -> Result<Response, AppError> {
    on_session(
        &app,
        &user,
        client,
        key,
        &session_id,
        "extend",
        Command::Extend,
    )
    .await
}

#[utoipa::path(post, path = "/sessions/{session_id}/confirm", tag = "v1", security(("bearer" = [])),
    summary = "Book every seat of a session for good; answers the booking reference",
    params(("session_id" = uuid::Uuid, Path, description = "The hold session's id (a UUID)"), ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "Up to 255 visible ASCII characters; a retry with the same key within 24 hours gets the first response again (with `Idempotency-Replayed: true`)")),
    responses(
        (status = 200, body = ApiBookingBody),
        (status = 400, description = "`invalid_idempotency_key`; `invalid_target`: a control character in the path or query", body = ErrorBody),
        (status = 401, response = inline(InvalidToken)),
        (status = 404, description = "`session_not_found`", body = ErrorBody),
        (status = 409, description = "`idempotency_key_in_flight`", body = ErrorBody),
        (status = 410, description = "`hold_expired`, `hold_released`", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`", body = ErrorBody),
        (status = 429, description = "`rate_limited` (with `Retry-After`); `idempotency_key_limit`", body = ErrorBody),
        (status = 503, response = inline(Unavailable)),
    ))]
pub async fn confirm<S: Store>(
    State(app): State<AppState<S>>,
    Caller(user): Caller,
    client: ClientIp,
    KeyHeader(key): KeyHeader,
    Path(session_id): Path<String>,
) -> Result<Response, AppError> {
    on_session(
        &app,
        &user,
        client,
        key,
        &session_id,
        "confirm",
        Command::Confirm,
    )
    .await
}

/// A keyed command on one session (`POST /api/v1/sessions/{id}/{action}`): one unit of the
/// caller's allowance, the route and the session as its fingerprint.
async fn on_session<S: Store>(
    app: &AppState<S>,
    user: &UserId,
    client: ClientIp,
    key: Option<IdempotencyKey>,
    session_id: &str,
    action: &str,
    command: fn(SessionId) -> Command,
) -> Result<Response, AppError> {
    let session = parse_session(session_id)?;
    let fingerprint = format!("POST /api/v1/sessions/{session}/{action}");
    let change = Change::one(user, client);
    answer(execute(app, change, command(session), key, &fingerprint).await)
}

#[utoipa::path(delete, path = "/sessions/{session_id}", tag = "v1", security(("bearer" = [])),
    summary = "Give every seat of a session back",
    params(("session_id" = uuid::Uuid, Path, description = "The hold session's id (a UUID)")),
    responses(
        (status = 400, response = inline(InvalidTarget)),
        (status = 204, description = "Released (again: releasing twice is harmless)"),
        (status = 401, response = inline(InvalidToken)),
        (status = 404, description = "`session_not_found`", body = ErrorBody),
        (status = 409, description = "`already_confirmed`", body = ErrorBody),
        (status = 410, description = "`hold_expired`", body = ErrorBody),
        (status = 503, response = inline(Unavailable)),
    ))]
pub async fn release<S: Store>(
    State(app): State<AppState<S>>,
    Caller(user): Caller,
    Path(session_id): Path<String>,
) -> Result<StatusCode, AppError> {
    app.store
        .release(parse_session(&session_id)?, &user)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who asks for a change, from where, and how much of their allowance it spends (a hold its
/// seats, a confirm or an extension one).
#[derive(Clone, Copy)]
struct Change<'a> {
    user: &'a UserId,
    client: ClientIp,
    units: usize,
}

impl<'a> Change<'a> {
    fn one(user: &'a UserId, client: ClientIp) -> Self {
        Self {
            user,
            client,
            units: 1,
        }
    }
}

/// Runs `command` under `key`, if any, keeping the response a retry should get again. The
/// change spends the caller's and the address's allowance, and a new key counts against
/// `MAX_IDEMPOTENCY_KEYS_PER_USER`; a retry answered with its kept response costs neither.
async fn execute<S: Store>(
    app: &AppState<S>,
    change: Change<'_>,
    command: Command,
    key: Option<IdempotencyKey>,
    fingerprint: &str,
) -> StoreResult<Keyed> {
    let spend = || {
        app.limiter
            .spend(change.user.as_str(), change.client, change.units)
    };
    let Some(key) = key.as_ref().map(IdempotencyKey::as_str) else {
        spend().map_err(StoreError::Refused)?;
        return app.store.execute(change.user, command, None).await;
    };
    let limit = app.api.max_keys_per_user;
    let admit = |kept: u64| {
        if kept >= limit {
            return Err(Refusal::TooManyKeys { limit });
        }
        spend()
    };
    let claim = Claim {
        key,
        fingerprint,
        admit: &admit,
    };
    app.store.execute(change.user, command, Some(claim)).await
}

/// The response for an outcome: the effect's, or the kept outcome of an earlier request,
/// rendered the same way and marked as a replay.
fn answer(outcome: StoreResult<Keyed>) -> Result<Response, AppError> {
    let kept = match outcome? {
        Keyed::Done(effect) => return Ok(respond(&effect)),
        Keyed::Replayed(kept) => kept,
    };
    let mut response = match kept {
        Kept::Done(effect) => respond(&effect),
        Kept::Refused(refusal) => AppError::from(StoreError::from(refusal)).into_response(),
        Kept::Answer { status, body } => {
            let status = StatusCode::from_u16(status).map_err(|_| AppError::Internal)?;
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
    };
    response
        .headers_mut()
        .insert("idempotency-replayed", HeaderValue::from_static("true"));
    Ok(response)
}

fn respond(effect: &Effect) -> Response {
    match effect {
        Effect::Held(hold) => {
            (StatusCode::CREATED, axum::Json(ApiHoldBody::from(hold))).into_response()
        }
        Effect::Confirmed(booking) => axum::Json(ApiBookingBody::from(booking)).into_response(),
        Effect::Extended(session) => axum::Json(SessionBody::from(session)).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> Result<(Option<Vec<String>>, Option<usize>), serde_json::Error> {
        serde_json::from_str::<HoldRequest>(json).map(|r| (r.seat_ids, r.quantity))
    }

    /// Found by schemathesis: `8.0` is an integer to JSON Schema, and `null` is not a list.
    #[test]
    fn a_hold_body_takes_whole_counts_and_no_nulls() {
        assert_eq!(body(r#"{"quantity": 8.0}"#).unwrap(), (None, Some(8)));
        assert_eq!(body(r#"{"quantity": 2}"#).unwrap(), (None, Some(2)));
        assert_eq!(body("{}").unwrap(), (None, None));
        for refused in [
            r#"{"quantity": 8.5}"#,
            r#"{"quantity": -1}"#,
            r#"{"quantity": 1e300}"#,
            r#"{"quantity": null}"#,
            r#"{"quantity": 1, "seat_ids": null}"#,
        ] {
            assert!(body(refused).is_err(), "{refused}");
        }
    }
}
