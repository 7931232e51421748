//! `GET /movies` and the seat map, `GET /movies/{movie_id}/seats`.

use axum::extract::{Path, State};
use serde::Serialize;

use super::{AppError, AppState};
use crate::domain::{Movie, SeatId, UserId};
use crate::store::SeatStore;

pub async fn list<S: SeatStore>(
    State(app): State<AppState<S>>,
) -> Result<axum::Json<Vec<Movie>>, AppError> {
    Ok(axum::Json(app.store.movies().await?))
}

/// One taken seat, in the tutorial's wire format.
#[derive(Serialize)]
pub struct TakenSeatBody {
    seat_id: SeatId,
    user_id: UserId,
    booked: bool,
    confirmed: bool,
}

pub async fn seat_map<S: SeatStore>(
    State(app): State<AppState<S>>,
    Path(movie_id): Path<String>,
) -> Result<axum::Json<Vec<TakenSeatBody>>, AppError> {
    let movie = app.store.movie(&movie_id).await?;
    let seats = app.store.seat_map(&movie.id).await?;
    Ok(axum::Json(
        seats
            .into_iter()
            .map(|seat| TakenSeatBody {
                seat_id: seat.seat_id,
                user_id: seat.user_id,
                booked: true,
                confirmed: seat.confirmed,
            })
            .collect(),
    ))
}
