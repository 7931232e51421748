//! The use cases' vocabulary, between the domain and the stores: the rules a hold is granted
//! under, the commands an API user gives and what they do, and the gate a new idempotency key
//! passes.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use std::time::Duration;

mod idempotency;

pub use idempotency::{Claim, Final, KEY_LIFETIME, Kept, Keyed};

use crate::domain::{Booking, Hold, Movie, SeatId, SessionId, SessionInfo};

/// The rules a hold is granted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldPolicy {
    /// How long a hold lasts before the seat is free again.
    pub ttl: Duration,
    /// How many live (unconfirmed) seats one user may hold at once, across all movies.
    pub max_holds_per_user: u32,
    /// How many live seats the users of one client address may hold at once, across all
    /// movies (`MAX_HOLDS_PER_IP`); 0 for no cap. Holds whose address is unknown are not
    /// counted.
    pub max_holds_per_address: u32,
    /// How many times a hold may be extended (`MAX_HOLD_EXTENSIONS`).
    pub max_extensions: u32,
    /// How long after it began a hold may last at most, extensions included
    /// (`MAX_HOLD_LIFETIME_SECS`). A hold that continues a run (`rehold_window`) began when
    /// the run did.
    pub max_lifetime: Duration,
    /// A hold of a seat by the same user, or from the same address, within this long after
    /// the deadline of their last hold of it continues that run of holds: its lifetime counts
    /// from the run's first hold, so letting a seat go and taking it again does not reset its
    /// clock (`REHOLD_WINDOW_SECS`); zero to keep no runs.
    pub rehold_window: Duration,
    /// How long a released or expired session is remembered after it ended, to answer 410
    /// rather than 404 (`SESSION_RETENTION_SECS`); then the reaper forgets it. Bookings are
    /// never forgotten.
    pub session_retention: Duration,
}

impl HoldPolicy {
    /// Whether a user who holds `held` live seats may hold `asked` more: the per-user quota,
    /// for the memory store and the counter-offer (PostgreSQL's `hold_seats` is given
    /// `max_holds_per_user` and counts under the user's lock).
    pub fn user_may_hold(&self, held: usize, asked: usize) -> bool {
        held + asked <= self.max_holds_per_user as usize
    }

    /// The same for the users of one client address, against `max_holds_per_address`.
    pub fn address_may_hold(&self, held: usize, asked: usize) -> bool {
        self.max_holds_per_address == 0 || held + asked <= self.max_holds_per_address as usize
    }
}

/// The defaults of the settings (`HOLD_TTL_SECS` and the rest, README).
impl Default for HoldPolicy {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(120),
            max_holds_per_user: 8,
            max_holds_per_address: 48,
            max_extensions: 2,
            max_lifetime: Duration::from_secs(600),
            rehold_window: Duration::from_secs(600),
            session_retention: Duration::from_secs(60 * 60),
        }
    }
}

/// What seats a hold asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Want {
    /// These, all or none.
    Seats(Vec<SeatId>),
    /// The best available for a group of this many (`seating`).
    Best(usize),
}

/// A change an API user asks for, which an idempotency key can guard.
#[derive(Debug, Clone)]
pub enum Command {
    Hold {
        movie: Movie,
        want: Want,
        /// The client's address, when known: counted against `max_holds_per_address`.
        from: Option<IpAddr>,
    },
    Confirm(SessionId),
    Extend(SessionId),
}

/// What a `Command` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    Held(Hold),
    Confirmed(Booking),
    Extended(SessionInfo),
}

/// Why a caller's gate refused a keyed request (`Claim::admit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("past the rate limit: retry in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("{limit} idempotency keys are kept already")]
    TooManyKeys { limit: u64 },
}
