//! Seats as the stores answer for them: a hold just granted, a booking, a taken seat.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{BookingReference, SeatId, SessionId, UserId};

/// A live hold just granted: what the client needs to run its countdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub session_id: SessionId,
    pub movie_id: String,
    /// In seat order.
    pub seats: Vec<SeatId>,
    pub user_id: UserId,
    pub expires_at: DateTime<Utc>,
    /// The store's clock when the hold was taken.
    pub server_time: DateTime<Utc>,
}

/// A confirmed booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booking {
    pub session_id: SessionId,
    pub movie_id: String,
    /// In seat order.
    pub seats: Vec<SeatId>,
    pub user_id: UserId,
    pub reference: BookingReference,
}

/// Whether a seat whose hold ends at `expires_at` (`None`: booked) is taken at `now`: the
/// live-seat rule of every store.
pub fn seat_is_live(expires_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    expires_at.is_none_or(|at| at > now)
}

/// One taken seat on a seat map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenSeat {
    pub seat_id: SeatId,
    pub user_id: UserId,
    pub confirmed: bool,
    /// `None` once confirmed.
    pub expires_at: Option<DateTime<Utc>>,
}
