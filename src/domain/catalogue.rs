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

/// A screening's id: today a movie's slug, such as `inception` (lowercase letters and digits
/// in words joined by single dashes, at most `MAX_LEN`). The tutorial's wire name for it is
/// `movie_id`. Parsed once where a request names it, so no store is asked about ids that
/// cannot exist.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScreeningId(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a screening id is lowercase letters and digits in words joined by dashes")]
pub struct ScreeningIdError;

impl ScreeningId {
    pub const MAX_LEN: usize = 100;

    pub fn parse(raw: &str) -> Result<Self, ScreeningIdError> {
        let valid = (1..=Self::MAX_LEN).contains(&raw.len())
            && raw.split('-').all(|word| {
                !word.is_empty()
                    && word
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
        if !valid {
            return Err(ScreeningIdError);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ScreeningId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screening_ids_are_slugs() {
        for good in [
            "inception",
            "dune-part-two",
            "the-grand-budapest-hotel",
            "film-2",
        ] {
            assert_eq!(ScreeningId::parse(good).unwrap().as_str(), good);
        }
        let long = "a".repeat(ScreeningId::MAX_LEN + 1);
        for bad in [
            "",
            "Inception",
            "dune--two",
            "-dune",
            "dune-",
            "dune two",
            "dune_two",
            "é",
            &long,
        ] {
            assert_eq!(ScreeningId::parse(bad), Err(ScreeningIdError), "{bad:?}");
        }
    }
}
