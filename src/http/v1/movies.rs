//! The movies with their free seats, a movie's seat map with the caller's own seats marked,
//! and its live stream.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::Caller;
use crate::domain::{Movie, ScreeningId, SeatId, SeatState, TakenSeat, UserId};
use crate::http::limits::ClientIp;
use crate::http::seat_maps::{Marked, Round};
use crate::http::wire::optional_rfc3339;
use crate::http::wire::responses::{
    InvalidTarget, InvalidToken, MovieNotFound, StreamsUnavailable, Unavailable,
};
use crate::http::wire::rfc3339;
use crate::http::{AppError, AppState};
use crate::store::Store;

/// A movie, its room, and how many of its seats are free.
#[derive(Serialize, ToSchema)]
pub struct MovieBody {
    #[serde(flatten)]
    #[schema(inline)]
    movie: Movie,
    /// Seats neither held nor booked, read after the request arrived.
    free: usize,
}

#[utoipa::path(get, path = "/movies", tag = "v1", security(("bearer" = [])),
    summary = "The movies, their room sizes and their free seats",
    responses(
        (status = 200, body = Vec<MovieBody>),
        (status = 401, response = inline(InvalidToken)),
        (status = 503, response = inline(Unavailable)),
    ))]
pub async fn movies<S: Store>(
    State(app): State<AppState<S>>,
    _caller: Caller,
) -> Result<axum::Json<Vec<MovieBody>>, AppError> {
    let movies = app.store.movies().await?;
    // In the seat maps' rounds: a crowd of pages polling the list shares their reads.
    let rounds = futures_util::future::try_join_all(
        movies
            .iter()
            .map(|movie| app.seat_maps.round(&app.store, movie)),
    )
    .await?;
    let body = movies
        .into_iter()
        .zip(rounds)
        .map(|(movie, round)| MovieBody {
            free: movie.capacity().saturating_sub(round.taken.len()),
            movie,
        })
        .collect();
    Ok(axum::Json(body))
}

#[derive(Serialize, ToSchema)]
pub struct SeatMapBody {
    movie_id: String,
    rows: i32,
    seats_per_row: i32,
    /// Every seat of the room, in row order then number.
    seats: Vec<SeatBody>,
    #[serde(serialize_with = "rfc3339")]
    server_time: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct SeatBody {
    seat_id: SeatId,
    /// `free`, `held` or `booked`.
    #[schema(value_type = String, pattern = "^(free|held|booked)$")]
    state: &'static str,
    /// Whether the caller holds or booked it.
    yours: bool,
    /// A held seat's deadline.
    #[serde(serialize_with = "optional_rfc3339")]
    expires_at: Option<DateTime<Utc>>,
}

#[utoipa::path(get, path = "/movies/{movie_id}/seats", tag = "v1", security(("bearer" = [])),
    summary = "Every seat of a movie: free, held or booked, and whether it is yours",
    params(("movie_id" = String, Path, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", description = "The movie's slug, such as `inception`")),
    responses(
        (status = 400, response = inline(InvalidTarget)),
        (status = 200, body = SeatMapBody),
        (status = 401, response = inline(InvalidToken)),
        (status = 404, response = inline(MovieNotFound)),
        (status = 503, response = inline(Unavailable)),
    ))]
pub async fn seat_map<S: Store>(
    State(app): State<AppState<S>>,
    Caller(user): Caller,
    Path(movie_id): Path<String>,
) -> Result<Response, AppError> {
    let movie = app.store.movie(&ScreeningId::parse(&movie_id)?).await?;
    let round = app.seat_maps.round(&app.store, &movie).await?;
    let body = round.api(|round| render_map(&movie, round)).for_user(&user);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// The API's seat map of a round, rendered once for every caller: `yours` is `false` of
/// every seat, and each holder's seats are noted for `Marked::for_user` to mark on a copy.
fn render_map(movie: &Movie, round: &Round) -> Marked {
    let taken: HashMap<&SeatId, &TakenSeat> = round.taken.iter().map(|t| (&t.seat_id, t)).collect();
    let mut holders = Vec::new();
    let seats = movie
        .seat_ids()
        .map(|seat_id| {
            let seat = taken.get(&seat_id);
            holders.push(seat.map(|t| &t.user_id));
            SeatBody {
                state: SeatState::of(seat.copied()).as_str(),
                expires_at: seat.and_then(|t| t.expires_at),
                yours: false,
                seat_id,
            }
        })
        .collect();
    let body = serde_json::to_vec(&SeatMapBody {
        movie_id: movie.id.clone(),
        rows: movie.rows,
        seats_per_row: movie.seats_per_row,
        seats,
        server_time: round.read_at,
    })
    .expect("our bodies serialize");
    // The seats' `"yours":false`, in seat order: nothing else in the body can match, as a
    // quote inside a string is escaped.
    const FALSE: &[u8] = br#""yours":false"#;
    let mut marks: HashMap<UserId, Vec<usize>> = HashMap::new();
    let mut from = 0;
    for holder in holders {
        let at = from
            + body[from..]
                .windows(FALSE.len())
                .position(|w| w == FALSE)
                .expect("every seat says whose it is");
        from = at + FALSE.len();
        if let Some(user) = holder {
            marks
                .entry(user.clone())
                .or_default()
                .push(from - "false".len());
        }
    }
    Marked::new(body, marks)
}

#[utoipa::path(get, path = "/movies/{movie_id}/events", tag = "v1",
    summary = "The seat map, live, as server-sent events (as `/movies/{movie_id}/events`)",
    description = "Public, as a browser's `EventSource` sends no credentials: it names no user. Events as on the seed route.",
    params(("movie_id" = String, Path, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", description = "The movie's slug, such as `inception`")),
    responses(
        (status = 400, response = inline(InvalidTarget)),
        (status = 200, content_type = "text/event-stream", body = crate::http::events::SseEvent, description = "One object per event, as on the seed route"),
        (status = 404, response = inline(MovieNotFound)),
        (status = 503, response = inline(StreamsUnavailable)),
    ))]
pub async fn events<S: Store>(
    State(app): State<AppState<S>>,
    client: ClientIp,
    Path(movie_id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<Response, AppError> {
    crate::http::events::open(app, client, &movie_id, &headers).await
}
