//! The storage seam: one trait per capability a store may have, and the store's error type.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::booking::{Claim, Command, Effect, Final, Kept, Keyed, Refusal};
use crate::domain::{
    Booking, Hold, Movie, ScreeningId, SeatId, SeatSet, SeatSetError, SessionError, SessionId,
    SessionInfo, TakenSeat, UserId,
};
use crate::events::Hub;
use crate::reports::{Report, Rows};

pub mod batcher;
pub mod memory;
pub mod postgres;

pub use memory::MemoryStore;
pub use postgres::PgStore;

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
    /// The client's address holds as many seats as `max_holds_per_address` allows.
    #[error("hold limit of {limit} seats per address reached")]
    AddressLimitReached { limit: u32 },
    /// This user or address held one of the seats for the longest a hold may last, in one run
    /// (`HoldPolicy::rehold_window`): it may start a new run at `retry_at`.
    #[error("held for as long as a hold may last; again from {retry_at}")]
    HeldTooLong { retry_at: DateTime<Utc> },
    /// A best-available request for more seats than are free.
    #[error("only {free} seats are free")]
    NotEnoughSeats { free: usize },
    #[error("this hold cannot be extended any further")]
    ExtensionLimit,
    /// A request with this idempotency key is still being carried out.
    #[error("a request with this idempotency key is in flight")]
    KeyInFlight,
    /// The idempotency key was used before for a different request.
    #[error("this idempotency key was used for a different request")]
    KeyReused,
    /// The caller's gate (`Claim::admit`) refused a new keyed request; nothing was done.
    #[error("refused: {0}")]
    Refused(Refusal),
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

impl From<SessionError> for StoreError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::Expired => Self::Expired,
            SessionError::Released => Self::Released,
            SessionError::AlreadyConfirmed => Self::AlreadyConfirmed,
        }
    }
}

impl From<Final> for StoreError {
    fn from(refusal: Final) -> Self {
        match refusal {
            Final::MovieNotFound => Self::MovieNotFound,
            Final::Expired => Self::Expired,
            Final::Released => Self::Released,
            Final::DuplicateSeat(seat) => Self::DuplicateSeat(seat),
        }
    }
}

/// What an idempotency key keeps of a command's outcome: its effect, or a refusal the same
/// request would meet again; never a conflict, a limit or an outage, which a retry may get
/// past, nor a session unknown (anyone may ask about any id, and meets it again anyway).
pub(crate) fn to_keep(outcome: &StoreResult<Effect>) -> Option<Kept> {
    Some(match outcome {
        Ok(effect) => Kept::Done(effect.clone()),
        Err(StoreError::MovieNotFound) => Kept::Refused(Final::MovieNotFound),
        Err(StoreError::Expired) => Kept::Refused(Final::Expired),
        Err(StoreError::Released) => Kept::Refused(Final::Released),
        Err(StoreError::DuplicateSeat(seat)) => Kept::Refused(Final::DuplicateSeat(seat.clone())),
        Err(_) => return None,
    })
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

/// What the server needs of a store: every capability on the hot path. A store implements
/// the capabilities it can honestly give, each passing its module of the contract suite
/// (`tests/contract/`); the cold-path ones (`Reports`) are optional parts of the app state.
pub trait Store: Catalogue + Seats + Housekeeping + ChangeFeed + Health + Clone + 'static {}

impl<T> Store for T where T: Catalogue + Seats + Housekeeping + ChangeFeed + Health + Clone + 'static
{}

/// The programme, read: what is on and in which room.
pub trait Catalogue: Send + Sync {
    fn movies(&self) -> impl Future<Output = StoreResult<Vec<Movie>>> + Send;

    /// One movie, or `MovieNotFound`.
    fn movie(&self, movie_id: &ScreeningId) -> impl Future<Output = StoreResult<Movie>> + Send;
}

/// Seats and the sessions that hold them: the one write path of holds, confirms, releases and
/// extensions, and the reads of their state.
pub trait Seats: Send + Sync {
    /// Seats currently taken (live holds and bookings), in seat order. Never an expired hold.
    fn seat_map(&self, movie_id: &str) -> impl Future<Output = StoreResult<Vec<TakenSeat>>> + Send;

    /// Holds all of `seats` for `user`, asking `from` the address if known, or none of them.
    /// The seats must belong to `movie`'s grid.
    fn hold(
        &self,
        movie: &Movie,
        seats: Vec<SeatId>,
        user: &UserId,
        from: Option<IpAddr>,
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

    /// Carries out an API user's command, at most once per idempotency key: a retry with the
    /// same key and request gets the kept response, one with another request `KeyReused`, one
    /// while the first is under way `KeyInFlight`. The key is kept with the change, atomically.
    fn execute(
        &self,
        user: &UserId,
        command: Command,
        claim: Option<Claim<'_>>,
    ) -> impl Future<Output = StoreResult<Keyed>> + Send;

    /// `user`'s session; `SessionNotFound` for anyone else's.
    fn session(
        &self,
        session: SessionId,
        user: &UserId,
    ) -> impl Future<Output = StoreResult<SessionInfo>> + Send;

    /// `user`'s live holds and bookings, oldest first.
    fn user_sessions(
        &self,
        user: &UserId,
    ) -> impl Future<Output = StoreResult<Vec<SessionInfo>>> + Send;
}

/// The reaper's work: garbage collection, on which no answer of the store depends.
pub trait Housekeeping: Send + Sync {
    /// Deletes up to `batch` expired holds; returns how many went.
    fn reap_expired(&self, batch: u32) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Deletes up to `batch` idempotency keys older than `KEY_LIFETIME`; returns how many went.
    fn forget_keys(&self, batch: u32) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Deletes up to `batch` released or expired sessions that ended more than
    /// `session_retention` ago, oldest first; returns how many went. Afterwards they answer
    /// 404, as if they had never been.
    fn forget_sessions(&self, batch: u32) -> impl Future<Output = StoreResult<u64>> + Send;

    /// Deletes up to `batch` runs of holds (`HoldPolicy::rehold_window`) whose window has
    /// passed; returns how many went.
    fn forget_runs(&self, batch: u32) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// Seat changes, from whichever process made them.
pub trait ChangeFeed: Send + Sync {
    /// The seat changes of this store, as they happen.
    fn events(&self) -> &Hub;
}

/// Whether the store can serve, and the gauges that say how it is doing.
pub trait Health: Send + Sync {
    /// Whether the backing storage answers.
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;

    /// Sets the gauges that describe the store now (connections, queue depth), just before
    /// the metrics are read.
    fn observe(&self) {}
}

/// The secret API tokens are signed with when `IDENTITY_SECRET` is not set: a cold path
/// (read once), called through a pointer.
pub trait Secrets: Send + Sync {
    /// Made on first use and shared by every process of the store (PostgreSQL keeps it; the
    /// memory store's is random per process, as everything else of it is).
    fn identity_secret(&self) -> Pin<Box<dyn Future<Output = StoreResult<Vec<u8>>> + Send + '_>>;
}

/// The report views (PostgreSQL only): a cold path, called through a pointer.
pub trait Reports: Send + Sync {
    /// A report's rows, of one movie or all.
    fn report<'a>(
        &'a self,
        report: Report,
        movie: Option<&'a str>,
    ) -> Pin<Box<dyn Future<Output = StoreResult<Rows>> + Send + 'a>>;
}

/// A store and the cold-path capabilities it has besides: what the server is built from.
pub struct Backend<S> {
    pub store: S,
    /// `None`: `IDENTITY_SECRET` must be set.
    pub secrets: Option<Arc<dyn Secrets>>,
    /// `None`: the reports answer `reports_need_postgres`.
    pub reports: Option<Arc<dyn Reports>>,
}

/// Puts a multi-seat request into lock order (byte order of seat id) and refuses duplicates.
pub(crate) fn lock_order(seats: Vec<SeatId>) -> StoreResult<Vec<SeatId>> {
    match SeatSet::new(seats, usize::MAX) {
        Ok(set) => Ok(set.into_vec()),
        Err(SeatSetError::Duplicate(seat)) => Err(StoreError::DuplicateSeat(seat)),
        Err(SeatSetError::Empty | SeatSetError::TooMany { .. }) => Err(StoreError::NoSeats),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::booking::Effect;
    use crate::domain::{BookingReference, UserId};

    #[test]
    fn conflicts_limits_outages_and_unknown_sessions_are_not_kept_for_a_retry() {
        for error in [
            StoreError::SeatTaken(vec![SeatId::parse("A1").unwrap()]),
            StoreError::NotEnoughSeats { free: 0 },
            StoreError::ExtensionLimit,
            StoreError::AlreadyConfirmed,
            StoreError::LimitReached { limit: 8 },
            StoreError::Unavailable(Unavailable::Unreachable),
            StoreError::OutcomeUnknown,
            // Anyone can ask about any session id, and meets the same answer again.
            StoreError::SessionNotFound,
        ] {
            assert_eq!(to_keep(&Err(error)), None);
        }
    }

    #[test]
    fn effects_and_final_refusals_are_kept_and_read_back_as_they_were() {
        let booking = Booking {
            session_id: SessionId::new(),
            movie_id: "inception".into(),
            seats: vec![SeatId::parse("A1").unwrap(), SeatId::parse("A2").unwrap()],
            user_id: UserId::issue(),
            reference: BookingReference::random(),
        };
        let seat = SeatId::parse("C3").unwrap();
        for (outcome, kept) in [
            (
                Ok(Effect::Confirmed(booking.clone())),
                Kept::Done(Effect::Confirmed(booking)),
            ),
            (Err(StoreError::Expired), Kept::Refused(Final::Expired)),
            (Err(StoreError::Released), Kept::Refused(Final::Released)),
            (
                Err(StoreError::MovieNotFound),
                Kept::Refused(Final::MovieNotFound),
            ),
            (
                Err(StoreError::DuplicateSeat(seat.clone())),
                Kept::Refused(Final::DuplicateSeat(seat)),
            ),
        ] {
            assert_eq!(to_keep(&outcome).as_ref(), Some(&kept));
            let stored = serde_json::to_string(&kept).unwrap();
            assert_eq!(
                serde_json::from_str::<Kept>(&stored).unwrap(),
                kept,
                "{stored}"
            );
        }
    }
}
