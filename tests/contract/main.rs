//! The store contract: one module per capability, each run over every store that has it (the
//! first line of each module's `contract!` names them), so a store joins by adding itself to
//! the line of each capability it has. The rules here are the specification.

#[path = "../common/mod.rs"]
#[macro_use]
mod common;

mod catalogue;
mod change_feed;
mod health;
mod housekeeping;
mod postgres;
mod seats;
mod secrets;

use crate::common::{LONG_TTL, Opened, StoreUnderTest, policy};
use boxoffice::domain::{Hold, Movie, SeatId, UserId};
use boxoffice::store::{Store, StoreError};

fn user(name: &str) -> UserId {
    UserId::parse(name.to_owned()).unwrap()
}

fn seats(ids: &[&str]) -> Vec<SeatId> {
    ids.iter().map(|id| SeatId::parse(id).unwrap()).collect()
}

async fn movie<S: Store>(store: &S, id: &str) -> Movie {
    store.movie(&crate::common::screening(id)).await.unwrap()
}

async fn hold<S: Store>(
    store: &S,
    movie_id: &str,
    ids: &[&str],
    who: &str,
) -> Result<Hold, StoreError> {
    hold_from(store, movie_id, ids, who, None).await
}

/// A hold asked from the client address `from`.
async fn hold_from<S: Store>(
    store: &S,
    movie_id: &str,
    ids: &[&str],
    who: &str,
    from: Option<&str>,
) -> Result<Hold, StoreError> {
    let movie = movie(store, movie_id).await;
    let from = from.map(|ip| ip.parse().unwrap());
    store.hold(&movie, seats(ids), &user(who), from).await
}

/// The seat map as (seat, user, confirmed) triples.
async fn taken<S: Store>(store: &S, movie_id: &str) -> Vec<(String, String, bool)> {
    store
        .seat_map(movie_id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.seat_id.to_string(), t.user_id.to_string(), t.confirmed))
        .collect()
}

fn row(seat: &str, user: &str, confirmed: bool) -> (String, String, bool) {
    (seat.into(), user.into(), confirmed)
}

async fn open<B: StoreUnderTest>() -> Opened<B::Store> {
    B::open(policy(LONG_TTL, 8)).await
}
