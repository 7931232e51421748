//! Best available seats: which free seats to offer a group, for `{"quantity": n}` holds and
//! for the counter-offer after a lost race.
//!
//! The rule, in order of importance:
//! 1. **Together**: a block of adjacent seats in one row, if any row has one free.
//! 2. **No stranded seat**: among blocks, one that leaves no single empty seat between itself
//!    and a taken seat or the row's end, if there is such a block (a lone seat rarely sells).
//! 3. **Nearest the target**: the room's centre (middle rows, middle seats), or for a
//!    counter-offer the middle of the seats asked for; distance counts rows twice as much
//!    as seats, since a row further back moves the view more than a seat to the side.
//! 4. Ties go to the front row, then the left.
//!
//! When no row has a block free, the group is split: the free seats nearest the target.

use crate::domain::{Movie, SeatId};

/// The free and taken seats of one room.
pub struct Room {
    rows: usize,
    seats_per_row: usize,
    /// `taken[row][seat]`, both from zero.
    taken: Vec<Vec<bool>>,
}

/// Where a group should sit near: the centre of the room, or the middle of some seats.
#[derive(Clone, Copy)]
struct Target {
    row: f64,
    seat: f64,
}

impl Room {
    /// `movie`'s room with `taken` seats taken; seats outside the grid are ignored.
    pub fn new<'a>(movie: &Movie, taken: impl IntoIterator<Item = &'a SeatId>) -> Self {
        let rows = usize::try_from(movie.rows).unwrap_or(0);
        let seats_per_row = usize::try_from(movie.seats_per_row).unwrap_or(0);
        let mut room = Self {
            rows,
            seats_per_row,
            taken: vec![vec![false; seats_per_row]; rows],
        };
        for seat in taken {
            if let Some((row, number)) = room.index(seat) {
                room.taken[row][number] = true;
            }
        }
        room
    }

    fn index(&self, seat: &SeatId) -> Option<(usize, usize)> {
        let (row, number) = seat.position();
        let row = usize::try_from(row).ok()?;
        let number = usize::try_from(number).ok()?.checked_sub(1)?;
        (row < self.rows && number < self.seats_per_row).then_some((row, number))
    }

    fn seat_id(row: usize, number: usize) -> SeatId {
        let index = |n: usize| i32::try_from(n).expect("a small room");
        SeatId::at(index(row), index(number) + 1)
    }

    pub fn free(&self) -> usize {
        self.taken.iter().flatten().filter(|taken| !**taken).count()
    }

    fn is_free(&self, row: usize, number: usize) -> bool {
        !self.taken[row][number]
    }

    /// `quantity` seats for a group by the rule above, in seat order; `None` if fewer are free.
    pub fn best(&self, quantity: usize) -> Option<Vec<SeatId>> {
        let centre = Target {
            row: (self.rows as f64 - 1.0) / 2.0,
            seat: (self.seats_per_row as f64 - 1.0) / 2.0,
        };
        self.pick(quantity, centre)
    }

    /// `quantity` seats by the rule above, but as near as possible to `seats` rather than to
    /// the centre: a counter-offer for someone who asked for `seats`.
    pub fn near(&self, quantity: usize, seats: &[SeatId]) -> Option<Vec<SeatId>> {
        let places: Vec<(usize, usize)> = seats.iter().filter_map(|s| self.index(s)).collect();
        if places.is_empty() {
            return self.best(quantity);
        }
        let n = places.len() as f64;
        let target = Target {
            row: places.iter().map(|p| p.0 as f64).sum::<f64>() / n,
            seat: places.iter().map(|p| p.1 as f64).sum::<f64>() / n,
        };
        self.pick(quantity, target)
    }

    fn pick(&self, quantity: usize, target: Target) -> Option<Vec<SeatId>> {
        if quantity == 0 || self.free() < quantity {
            return None;
        }
        let block = (0..self.rows)
            .flat_map(|row| {
                // Where a block may start: nowhere when the group is wider than a row.
                let starts = (self.seats_per_row + 1).saturating_sub(quantity);
                (0..starts).map(move |start| (row, start))
            })
            .filter(|&(row, start)| (start..start + quantity).all(|n| self.is_free(row, n)))
            .min_by(|&a, &b| {
                self.block_rank(a, quantity, target)
                    .order(&self.block_rank(b, quantity, target))
            });
        let mut seats: Vec<SeatId> = match block {
            Some((row, start)) => (start..start + quantity)
                .map(|n| Self::seat_id(row, n))
                .collect(),
            None => {
                let mut free: Vec<(f64, usize, usize)> = (0..self.rows)
                    .flat_map(|row| (0..self.seats_per_row).map(move |n| (row, n)))
                    .filter(|&(row, n)| self.is_free(row, n))
                    .map(|(row, n)| (distance(target, row, n as f64), row, n))
                    .collect();
                free.sort_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
                free.into_iter()
                    .take(quantity)
                    .map(|(_, row, n)| Self::seat_id(row, n))
                    .collect()
            }
        };
        seats.sort();
        Some(seats)
    }

    /// Rule 2, 3 and 4 for the block of `quantity` seats from `start` in `row`.
    fn block_rank(&self, (row, start): (usize, usize), quantity: usize, target: Target) -> Rank {
        let end = start + quantity; // one past the block
        // A single free seat between the block and a taken seat or the wall.
        let stranded_left = start >= 1
            && self.is_free(row, start - 1)
            && (start == 1 || !self.is_free(row, start - 2));
        let stranded_right = end < self.seats_per_row
            && self.is_free(row, end)
            && (end + 1 == self.seats_per_row || !self.is_free(row, end + 1));
        let middle = start as f64 + (quantity as f64 - 1.0) / 2.0;
        Rank {
            stranded: u8::from(stranded_left) + u8::from(stranded_right),
            distance: distance(target, row, middle),
            row,
            start,
        }
    }
}

fn distance(target: Target, row: usize, seat: f64) -> f64 {
    2.0 * (row as f64 - target.row).abs() + (seat - target.seat).abs()
}

/// How good a block is: less is better, field by field.
struct Rank {
    stranded: u8,
    distance: f64,
    row: usize,
    start: usize,
}

impl Rank {
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        self.stranded
            .cmp(&other.stranded)
            .then(self.distance.total_cmp(&other.distance))
            .then(self.row.cmp(&other.row))
            .then(self.start.cmp(&other.start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn movie(rows: i32, seats_per_row: i32) -> Movie {
        Movie {
            id: "room".into(),
            title: "Room".into(),
            rows,
            seats_per_row,
        }
    }

    fn ids(list: &[&str]) -> Vec<SeatId> {
        list.iter().map(|s| SeatId::parse(s).unwrap()).collect()
    }

    /// Found by schemathesis: `{"quantity": 7}` in a room 6 seats wide panicked.
    #[test]
    fn a_group_wider_than_a_row_is_split_nearest_the_middle() {
        let room = Room::new(&movie(4, 6), &[]);
        let seats = room.best(7).unwrap();
        assert_eq!(seats.len(), 7);
        assert_eq!(room.best(25), None);
    }

    proptest::proptest! {
        #[test]
        fn best_gives_that_many_distinct_free_seats_or_none(
            rows in 1i32..6,
            seats_per_row in 1i32..10,
            quantity in 0usize..12,
            taken in proptest::collection::vec((0i32..6, 1i32..10), 0..20),
        ) {
            let taken: Vec<SeatId> = taken
                .into_iter()
                .filter(|&(r, n)| r < rows && n <= seats_per_row)
                .map(|(r, n)| SeatId::at(r, n))
                .collect();
            let room = Room::new(&movie(rows, seats_per_row), &taken);
            match room.best(quantity) {
                None => proptest::prop_assert!(quantity == 0 || room.free() < quantity),
                Some(seats) => {
                    proptest::prop_assert_eq!(seats.len(), quantity);
                    let mut distinct = seats.clone();
                    distinct.dedup();
                    proptest::prop_assert_eq!(distinct.len(), quantity);
                    proptest::prop_assert!(seats.iter().all(|s| !taken.contains(s)));
                }
            }
        }
    }

    #[test]
    fn an_empty_room_seats_a_group_together_in_the_middle() {
        let room = Room::new(&movie(5, 8), &[]);
        assert_eq!(room.best(2), Some(ids(&["C4", "C5"])));
        assert_eq!(room.best(3), Some(ids(&["C3", "C4", "C5"])));
    }

    #[test]
    fn a_block_that_strands_a_seat_loses_to_one_that_does_not() {
        // Row A of 7, A1 taken: A3-A5 is the middle but strands A2; A2-A4 strands nothing.
        let room = Room::new(&movie(1, 7), &ids(&["A1"]));
        assert_eq!(room.best(3), Some(ids(&["A2", "A3", "A4"])));
    }

    #[test]
    fn a_full_room_offers_nothing_and_a_fragmented_one_splits_the_group() {
        let all: Vec<SeatId> = ids(&["A1", "A2", "A3", "A4"]);
        assert_eq!(Room::new(&movie(1, 4), &all).best(1), None);
        let room = Room::new(&movie(2, 3), &ids(&["A2", "B2"]));
        assert_eq!(room.best(3).map(|s| s.len()), Some(3));
        assert_eq!(room.best(5), None);
    }

    #[test]
    fn a_counter_offer_sits_near_the_seats_asked_for() {
        let room = Room::new(&movie(10, 16), &ids(&["A1", "A2"]));
        assert_eq!(room.near(2, &ids(&["A1", "A2"])), Some(ids(&["A3", "A4"])));
    }
}
