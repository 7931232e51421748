//! `GET /movies` and the seat map, `GET /movies/{movie_id}/seats`.

use std::hash::{DefaultHasher, Hash, Hasher};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::{Movie, ScreeningId, SeatId};
use crate::http::seat_maps::{Rendered, Round};
use crate::http::wire::responses::{InvalidTarget, MovieNotFound, Unavailable};
use crate::http::{AppError, AppState};
use crate::store::Store;

#[utoipa::path(get, path = "/movies", tag = "seed",
    summary = "The movies and their room sizes",
    responses(
        (status = 200, body = Vec<Movie>),
        (status = 503, response = inline(Unavailable)),
    ))]
pub async fn list<S: Store>(
    State(app): State<AppState<S>>,
) -> Result<axum::Json<Vec<Movie>>, AppError> {
    Ok(axum::Json(app.store.movies().await?))
}

/// One taken seat, in the tutorial's wire format. An API user's id is never shown: whoever
/// knows a seed user's id is that user, and an API user's must not be learned here.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TakenSeatBody {
    seat_id: SeatId,
    user_id: String,
    booked: bool,
    confirmed: bool,
}

/// The seat map, with an `ETag` so that polling clients get a bodiless 304 while nothing
/// changed. The tag is a hash of the body, and the body leaves out expired holds, so the tag
/// changes when a hold expires even though nothing was written. Concurrent requests for one
/// movie share reads (`SeatMaps`).
#[utoipa::path(get, path = "/movies/{movie_id}/seats", tag = "seed",
    summary = "The taken seats of a movie (the tutorial's format)",
    description = "Only taken seats are listed. An API user's seat shows `user_id` `(hidden)`. Sends an `ETag`; `If-None-Match` with it answers 304 while nothing changed.",
    params(("movie_id" = String, Path, pattern = "^[a-z0-9]+(-[a-z0-9]+)*$", description = "The movie's slug, such as `inception`")),
    responses(
        (status = 400, response = inline(InvalidTarget)),
        (status = 200, body = Vec<TakenSeatBody>),
        (status = 304, description = "Nothing changed since the `ETag` sent"),
        (status = 404, response = inline(MovieNotFound)),
        (status = 503, response = inline(Unavailable)),
    ))]
pub async fn seat_map<S: Store>(
    State(app): State<AppState<S>>,
    Path(movie_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let movie = app.store.movie(&ScreeningId::parse(&movie_id)?).await?;
    let round = app.seat_maps.round(&app.store, &movie).await?;
    let Rendered { body, etag } = round.tutorial(render);
    let cache = [
        (header::ETAG, etag.clone()),
        (header::CACHE_CONTROL, "no-cache".to_owned()),
    ];
    if matches_etag(&headers, etag) {
        return Ok((StatusCode::NOT_MODIFIED, cache).into_response());
    }
    Ok((
        cache,
        [(header::CONTENT_TYPE, "application/json")],
        body.clone(),
    )
        .into_response())
}

fn render(round: &Round) -> Rendered {
    let seats: Vec<TakenSeatBody> = round
        .taken
        .iter()
        .map(|seat| TakenSeatBody {
            seat_id: seat.seat_id.clone(),
            user_id: seat.user_id.public().to_owned(),
            booked: true,
            confirmed: seat.confirmed,
        })
        .collect();
    let body = serde_json::to_vec(&seats).expect("our bodies serialize");
    // Same build, same tag: DefaultHasher::new() uses fixed keys, so every server process
    // behind one load balancer agrees.
    let mut hasher = DefaultHasher::new();
    body.hash(&mut hasher);
    Rendered {
        etag: format!("\"{:016x}\"", hasher.finish()),
        body: body.into(),
    }
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*")
}
