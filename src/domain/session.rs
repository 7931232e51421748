//! A hold session's states and the rules of confirming, extending and releasing one.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{BookingReference, SeatId, SessionId};

/// Where a hold session stands. `Held` may have lapsed: its deadline passed, or some of its
/// seats were taken over since, which the stores tell apart from a live hold when they ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Held,
    Confirmed,
    Released,
    Expired,
}

/// What a confirm or release does to a session, once the rules allow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
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

    /// Whether a session in this state, with this deadline, is a hold that has lapsed at
    /// `now`: the lapsed-hold rule of every store.
    pub fn lapsed(self, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self == Self::Held && expires_at <= now
    }

    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Held, Self::Confirmed, Self::Released, Self::Expired]
            .into_iter()
            .find(|status| status.as_str() == raw)
    }

    /// The rule of confirm, for every store: confirming twice answers the same booking; a
    /// released or expired hold is gone (410). `lapsed`: held, but past its deadline or no
    /// longer holding all its seats.
    pub fn confirm(self, lapsed: bool) -> Result<Verdict, SessionError> {
        match self {
            Self::Confirmed => Ok(Verdict::AlreadyDone),
            Self::Released => Err(SessionError::Released),
            Self::Expired => Err(SessionError::Expired),
            Self::Held if lapsed => Err(SessionError::Expired),
            Self::Held => Ok(Verdict::Apply),
        }
    }

    /// The rule of extend, for every store: only a live hold can be extended; a booking needs
    /// none (409), a released or expired hold is gone (410).
    pub fn extend(self, lapsed: bool) -> Result<(), SessionError> {
        match self {
            Self::Confirmed => Err(SessionError::AlreadyConfirmed),
            Self::Released => Err(SessionError::Released),
            Self::Expired => Err(SessionError::Expired),
            Self::Held if lapsed => Err(SessionError::Expired),
            Self::Held => Ok(()),
        }
    }

    /// The rule of release, for every store: releasing twice is harmless; a booking cannot be
    /// released (409); an expired hold is gone (410).
    pub fn release(self, lapsed: bool) -> Result<Verdict, SessionError> {
        match self {
            Self::Confirmed => Err(SessionError::AlreadyConfirmed),
            Self::Released => Ok(Verdict::AlreadyDone),
            Self::Expired => Err(SessionError::Expired),
            Self::Held if lapsed => Err(SessionError::Expired),
            Self::Held => Ok(Verdict::Apply),
        }
    }
}

/// One session as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub session_id: SessionId,
    pub movie_id: String,
    /// In seat order.
    pub seats: Vec<SeatId>,
    /// A lapsed hold is `Expired`.
    pub status: SessionStatus,
    pub created_at: DateTime<Utc>,
    /// The hold's deadline (for a booking, the one it beat).
    pub expires_at: DateTime<Utc>,
    pub extensions: u32,
    /// Set once confirmed.
    pub reference: Option<BookingReference>,
}

/// Why a session's rule refuses a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("hold expired")]
    Expired,
    #[error("hold was released")]
    Released,
    #[error("already confirmed")]
    AlreadyConfirmed,
}
