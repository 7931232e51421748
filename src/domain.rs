//! Domain types: movies, seat and user ids that are valid by construction, holds.
//!
//! Parsing happens once, at the edge; everything past it works with these types.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A screening room. Seats are `A1` … up to row `rows` and number `seats_per_row`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Movie {
    pub id: String,
    pub title: String,
    pub rows: i32,
    pub seats_per_row: i32,
}

impl Movie {
    /// Parses a seat id such as `C7` and checks it against this room's grid.
    pub fn seat(&self, raw: &str) -> Result<SeatId, SeatIdError> {
        let seat = SeatId::parse(raw)?;
        let (row, number) = seat.position();
        if row >= self.rows || number > self.seats_per_row {
            return Err(SeatIdError::OutsideGrid);
        }
        Ok(seat)
    }
}

/// The rooms every store starts with; `migrations/0001_*.sql` seeds the same rows.
pub fn seed_movies() -> Vec<Movie> {
    [
        ("inception", "Inception", 5, 8),
        ("dune-part-two", "Dune: Part Two", 4, 6),
        (
            "the-grand-budapest-hotel",
            "The Grand Budapest Hotel",
            10,
            16,
        ),
    ]
    .into_iter()
    .map(|(id, title, rows, seats_per_row)| Movie {
        id: id.to_owned(),
        title: title.to_owned(),
        rows,
        seats_per_row,
    })
    .collect()
}

/// A seat id: a row letter `A`–`Z` and a seat number `1`–`99` without a leading zero.
///
/// Ordering is plain string order (`A10` before `A2`), the same byte order PostgreSQL uses
/// under `collate "C"`: every multi-seat statement locks rows in this order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct SeatId(String);

impl TryFrom<String> for SeatId {
    type Error = SeatIdError;

    fn try_from(raw: String) -> Result<Self, SeatIdError> {
        Self::parse(&raw)
    }
}

impl From<SeatId> for String {
    fn from(seat: SeatId) -> Self {
        seat.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SeatIdError {
    #[error(
        "a seat id is a row letter A-Z followed by a seat number without leading zero, like C7"
    )]
    Malformed,
    #[error("that seat does not exist in this room")]
    OutsideGrid,
}

impl SeatId {
    pub fn parse(raw: &str) -> Result<Self, SeatIdError> {
        let bytes = raw.as_bytes();
        let well_formed = matches!(bytes.len(), 2 | 3)
            && bytes[0].is_ascii_uppercase()
            && (b'1'..=b'9').contains(&bytes[1])
            && bytes[2..].iter().all(u8::is_ascii_digit);
        if well_formed {
            Ok(Self(raw.to_owned()))
        } else {
            Err(SeatIdError::Malformed)
        }
    }

    /// Zero-based row index and one-based seat number.
    fn position(&self) -> (i32, i32) {
        let row = i32::from(self.0.as_bytes()[0] - b'A');
        let number = self.0[1..].parse().expect("checked by parse");
        (row, number)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SeatId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user id: 1–64 characters of ASCII letters, digits, `-` and `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("user_id must be 1 to 64 characters of letters, digits, '-' and '_'")]
pub struct UserIdError;

impl UserId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: String) -> Result<Self, UserIdError> {
        let valid = (1..=Self::MAX_LEN).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(Self(raw))
        } else {
            Err(UserIdError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A hold session id (a UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SessionId(pub Uuid);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a session id is a UUID")]
pub struct SessionIdError;

impl SessionId {
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn parse(raw: &str) -> Result<Self, SessionIdError> {
        Uuid::try_parse(raw).map(Self).map_err(|_| SessionIdError)
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A live hold just granted: what the client needs to run its countdown.
#[derive(Debug, Clone, PartialEq, Eq)]
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booking {
    pub session_id: SessionId,
    pub movie_id: String,
    /// In seat order.
    pub seats: Vec<SeatId>,
    pub user_id: UserId,
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

    fn room() -> Movie {
        Movie {
            id: "inception".into(),
            title: "Inception".into(),
            rows: 5,
            seats_per_row: 8,
        }
    }

    #[test]
    fn seats_inside_the_grid_parse() {
        for ok in ["A1", "E8", "C5"] {
            assert_eq!(room().seat(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn seats_outside_the_grid_do_not_exist() {
        for outside in ["F1", "Z9", "A9", "E10"] {
            assert_eq!(
                room().seat(outside),
                Err(SeatIdError::OutsideGrid),
                "{outside}"
            );
        }
    }

    #[test]
    fn malformed_seat_ids_are_rejected() {
        for bad in [
            "", "A", "A0", "A01", "a1", "A1;--", "1A", "A100", "AA1", "Ä1", "A-1",
        ] {
            assert_eq!(SeatId::parse(bad), Err(SeatIdError::Malformed), "{bad:?}");
        }
    }

    #[test]
    fn seat_ids_sort_in_byte_order() {
        let mut seats: Vec<_> = ["A2", "B1", "A10", "A1"]
            .into_iter()
            .map(|s| SeatId::parse(s).unwrap())
            .collect();
        seats.sort();
        let sorted: Vec<_> = seats.iter().map(SeatId::as_str).collect();
        assert_eq!(sorted, ["A1", "A10", "A2", "B1"]);
    }

    #[test]
    fn user_ids_are_short_and_plain() {
        assert!(UserId::parse("user-1_X".into()).is_ok());
        assert!(UserId::parse("a".repeat(64)).is_ok());
        for bad in [
            String::new(),
            "a".repeat(65),
            "a b".into(),
            "é".into(),
            "x'--".into(),
        ] {
            assert_eq!(UserId::parse(bad.clone()), Err(UserIdError), "{bad:?}");
        }
    }
}
