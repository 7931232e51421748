//! The holds' outcomes as the metrics count them (`boxoffice_holds_total`), on both APIs.

use crate::store::StoreError;

/// Which API a hold came through: the `api` label.
#[derive(Clone, Copy)]
pub enum Api {
    Seed,
    V1,
}

/// Counts one hold request by its API and outcome: `Ok(true)` a hold made now, `Ok(false)`
/// the replay of one made before with the same idempotency key.
pub fn count_hold(api: Api, outcome: Result<bool, &StoreError>) {
    let api = match api {
        Api::Seed => "seed",
        Api::V1 => "v1",
    };
    let outcome = match outcome {
        Ok(true) => "held",
        Ok(false) => "replayed",
        Err(StoreError::SeatTaken(_)) => "taken",
        Err(StoreError::LimitReached { .. } | StoreError::AddressLimitReached { .. }) => "limit",
        Err(StoreError::HeldTooLong { .. }) => "held_too_long",
        Err(StoreError::NotEnoughSeats { .. }) => "not_enough_seats",
        Err(StoreError::Unavailable(_)) => "unavailable",
        Err(StoreError::OutcomeUnknown) => "outcome_unknown",
        Err(_) => "error",
    };
    metrics::counter!(crate::telemetry::HOLDS, "api" => api, "outcome" => outcome).increment(1);
}
