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

/// Seats asked for together: at least one, each once, at most a bound, in seat order, which
/// is the order every multi-seat statement locks them in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatSet(Vec<SeatId>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeatSetError {
    #[error("no seats")]
    Empty,
    #[error("more than {max} seats")]
    TooMany { max: usize },
    #[error("seat {0} is listed twice")]
    Duplicate(SeatId),
}

impl SeatSet {
    /// `seats` in seat order, if there are 1 to `max` of them and none twice.
    pub fn new(mut seats: Vec<SeatId>, max: usize) -> Result<Self, SeatSetError> {
        if seats.is_empty() {
            return Err(SeatSetError::Empty);
        }
        if seats.len() > max {
            return Err(SeatSetError::TooMany { max });
        }
        seats.sort();
        if let Some(pair) = seats.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(SeatSetError::Duplicate(pair[0].clone()));
        }
        Ok(Self(seats))
    }

    pub fn as_slice(&self) -> &[SeatId] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<SeatId> {
        self.0
    }
}

/// What a seat is on a map: nobody's, someone's for now, or someone's for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatState {
    Free,
    Held,
    Booked,
}

impl SeatState {
    /// The state of a seat that is `taken` (live), or free if not.
    pub fn of(taken: Option<&TakenSeat>) -> Self {
        match taken {
            None => Self::Free,
            Some(seat) if seat.confirmed => Self::Booked,
            Some(_) => Self::Held,
        }
    }

    /// Its name on the wire, in both APIs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Held => "held",
            Self::Booked => "booked",
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn seats(ids: &[&str]) -> Vec<SeatId> {
        ids.iter().map(|id| SeatId::parse(id).unwrap()).collect()
    }

    #[test]
    fn a_seat_set_is_sorted_distinct_and_bounded() {
        let set = SeatSet::new(seats(&["B2", "A10", "A2"]), 3).unwrap();
        assert_eq!(set.as_slice(), seats(&["A10", "A2", "B2"]));
        assert_eq!(SeatSet::new(Vec::new(), 3), Err(SeatSetError::Empty));
        assert_eq!(
            SeatSet::new(seats(&["A1", "A2", "A3", "A4"]), 3),
            Err(SeatSetError::TooMany { max: 3 })
        );
        assert_eq!(
            SeatSet::new(seats(&["A2", "A1", "A2"]), 3),
            Err(SeatSetError::Duplicate(seats(&["A2"])[0].clone()))
        );
    }
}
