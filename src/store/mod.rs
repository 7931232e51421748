//! The storage seam: the `SeatStore` trait both stores implement, and its error type.

use std::future::Future;
use std::time::Duration;

use crate::domain::{Booking, Hold, Movie, SeatId, SessionId, TakenSeat, UserId};
use crate::events::Hub;
use crate::reports::{Report, Rows};

pub mod batcher;
pub mod memory;
pub mod postgres;

pub use memory::MemoryStore;
pub use postgres::PgStore;

/// The rules a hold is granted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldPolicy {
    /// How long a hold lasts before the seat is free again.
    pub ttl: Duration,
    /// How many live (unconfirmed) seats one user may hold at once, across all movies.
    pub max_holds_per_user: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("movie not found")]
    MovieNotFound,
    /// Unknown, or belonging to someone else: the two are deliberately indistinguishable.
    #[error("session not found")]
    SessionNotFound,
    /// The seats, in seat order, that someone else holds or has booked.
    #[error("seats already taken: {0:?}")]
    SeatTaken(Vec<SeatId>),
    #[error("seat {0} is listed twice")]
    DuplicateSeat(SeatId),
    #[error("no seats requested")]
    NoSeats,
    #[error("hold expired")]
    Expired,
    #[error("hold was released")]
    Released,
    #[error("already confirmed")]
    AlreadyConfirmed,
    #[error("hold limit of {limit} seats reached")]
    LimitReached { limit: u32 },
    /// Reports read views only the PostgreSQL store has.
    #[error("reports need PostgreSQL: set DATABASE_URL")]
    ReportsNeedPostgres,
    #[error("the database has no report views: start the server on it once to migrate it")]
    NoReportViews,
    #[error("REPORT_TIME_ZONE is not valid: {0}")]
    InvalidTimeZone(String),
    /// Transient, and nothing was done: retry later.
    #[error("unavailable: {0}")]
    Unavailable(Unavailable),
    /// The change was under way when contact was lost: it may or may not have taken effect.
    #[error("the outcome is unknown")]
    OutcomeUnknown,
    #[error("database error")]
    Database(#[source] sqlx::Error),
}

/// Why the store could not serve a request that it did not carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("the database cannot be reached")]
    Unreachable,
    #[error("no database connection came free in time")]
    PoolExhausted,
    #[error("the database is out of resources")]
    Overloaded,
    #[error("the database gave up waiting for a lock or a statement")]
    TimedOut,
    #[error("the transaction met a conflicting one")]
    Conflict,
    #[error("too many holds are waiting to be decided")]
    QueueFull,
    #[error("the request's time ran out before it was decided")]
    NotStarted,
    #[error("the hold workers are not running")]
    WorkersDown,
}

impl StoreError {
    /// A copy for every request of a batch that failed as a whole, if the error is one that
    /// every one of them would meet (an outage, not something about one request).
    pub(crate) fn shared(&self) -> Option<Self> {
        // Not Clone as a whole: a sqlx error can't be copied.
        match self {
            Self::Unavailable(why) => Some(Self::Unavailable(*why)),
            Self::OutcomeUnknown => Some(Self::OutcomeUnknown),
            _ => None,
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Where a hold session stands. `Held` may have lapsed: its deadline passed, or some of its
/// seats were taken over since, which the stores tell apart from a live hold when they ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    Held,
    Confirmed,
    Released,
    Expired,
}

/// What a confirm or release does to a session, once the rules allow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Make the change.
    Apply,
    /// It was made before: answer as then, change nothing.
    AlreadyDone,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Confirmed => "confirmed",
            Self::Released => "released",
            Self::Expired => "expired",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Held, Self::Confirmed, Self::Released, Self::Expired]
            .into_iter()
            .find(|status| status.as_str() == raw)
    }

    /// The rule of confirm, for both stores: confirming twice answers the same booking; a
    /// released or expired hold is gone (410). `lapsed`: held, but past its deadline or no
    /// longer holding all its seats.
    pub(crate) fn confirm(self, lapsed: bool) -> StoreResult<Verdict> {
        match self {
            Self::Confirmed => Ok(Verdict::AlreadyDone),
            Self::Released => Err(StoreError::Released),
            Self::Expired => Err(StoreError::Expired),
            Self::Held if lapsed => Err(StoreError::Expired),
            Self::Held => Ok(Verdict::Apply),
        }
    }

    /// The rule of release, for both stores: releasing twice is harmless; a booking cannot be
    /// released (409); an expired hold is gone (410).
    pub(crate) fn release(self, lapsed: bool) -> StoreResult<Verdict> {
        match self {
            Self::Confirmed => Err(StoreError::AlreadyConfirmed),
            Self::Released => Ok(Verdict::AlreadyDone),
            Self::Expired => Err(StoreError::Expired),
            Self::Held if lapsed => Err(StoreError::Expired),
            Self::Held => Ok(Verdict::Apply),
        }
    }
}

/// Everything the HTTP layer needs from storage. Both stores pass the same contract suite
/// (`tests/contract.rs`); the rules there are the specification.
pub trait SeatStore: Clone + Send + Sync + 'static {
    fn movies(&self) -> impl Future<Output = StoreResult<Vec<Movie>>> + Send;

    /// One movie, or `MovieNotFound`.
    fn movie(&self, movie_id: &str) -> impl Future<Output = StoreResult<Movie>> + Send;

    /// Seats currently taken (live holds and bookings), in seat order. Never an expired hold.
    fn seat_map(&self, movie_id: &str) -> impl Future<Output = StoreResult<Vec<TakenSeat>>> + Send;

    /// Holds all of `seats` for `user` or none of them. The seats must belong to `movie`'s grid.
    fn hold(
        &self,
        movie: &Movie,
        seats: Vec<SeatId>,
        user: &UserId,
    ) -> impl Future<Output = StoreResult<Hold>> + Send;

    /// Books the session's seats for good. Confirming twice answers the same booking.
    fn confirm(
        &self,
        session: SessionId,
        user: &UserId,
    ) -> impl Future<Output = StoreResult<Booking>> + Send;

    /// Frees the session's seats. Releasing twice is harmless.
    fn release(
        &self,
        session: SessionId,
        user: &UserId,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// Deletes up to `batch` expired holds; returns how many went. Garbage collection only:
    /// no answer of the store depends on it having run.
    fn reap_expired(&self, batch: u32) -> impl Future<Output = StoreResult<u64>> + Send;

    /// A report's rows, of one movie or all; `ReportsNeedPostgres` from the memory store.
    fn report(
        &self,
        report: Report,
        movie: Option<&str>,
    ) -> impl Future<Output = StoreResult<Rows>> + Send;

    /// Whether the backing storage answers.
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// The seat changes of this store, as they happen, from whichever process made them.
    fn events(&self) -> &Hub;

    /// Sets the gauges that describe the store now (connections, queue depth), just before
    /// the metrics are read.
    fn observe(&self) {}
}

/// Puts a multi-seat request into lock order (byte order of seat id) and refuses duplicates.
pub(crate) fn lock_order(mut seats: Vec<SeatId>) -> StoreResult<Vec<SeatId>> {
    seats.sort();
    if seats.is_empty() {
        return Err(StoreError::NoSeats);
    }
    if let Some(pair) = seats.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(StoreError::DuplicateSeat(pair[0].clone()));
    }
    Ok(seats)
}
