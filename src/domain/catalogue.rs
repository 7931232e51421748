//! What is on: today a movie is a room with a grid of seats.

use serde::Serialize;

use super::{SeatId, SeatIdError};

/// A screening room. Seats are `A1` … up to row `rows` and number `seats_per_row`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Movie {
    pub id: String,
    pub title: String,
    pub rows: i32,
    pub seats_per_row: i32,
}

impl Movie {
    /// How many seats the room has.
    pub fn capacity(&self) -> usize {
        usize::try_from(self.rows * self.seats_per_row).unwrap_or(0)
    }

    /// Every seat of the room, row by row, in number order.
    pub fn seat_ids(&self) -> impl Iterator<Item = SeatId> + '_ {
        (0..self.rows).flat_map(move |row| {
            (1..=self.seats_per_row).map(move |number| SeatId::at(row, number))
        })
    }

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
