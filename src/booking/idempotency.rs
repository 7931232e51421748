//! Idempotency keys: what a retry of a keyed command is answered with, and how a new key is
//! let in. The store keeps the typed outcome with the change, atomically; HTTP renders it,
//! the first time and on every retry alike.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Effect, Refusal};
use crate::domain::SeatId;

/// How long an idempotency key is remembered.
pub const KEY_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// An idempotency key, with what a retry must match and the gate a new key passes.
#[derive(Clone, Copy)]
pub struct Claim<'a> {
    pub key: &'a str,
    /// The request as parsed, with its route: a retry must match it.
    pub fingerprint: &'a str,
    /// Called once the key is known to be new (a retry of a kept outcome is never charged),
    /// before the command, with how many keys the user keeps now (old ones not yet forgotten
    /// included); a refusal refuses the request, and nothing is done or kept.
    pub admit: &'a (dyn Fn(u64) -> Result<(), Refusal> + Send + Sync),
}

/// A command's answer: carried out now, or the outcome kept for an earlier request with its
/// key.
#[derive(Debug)]
pub enum Keyed {
    Done(Effect),
    Replayed(Kept),
}

/// An outcome kept for a key. PostgreSQL keeps it as JSON for `KEY_LIFETIME`: a change to
/// these types must still read what a day of keys holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kept {
    Done(Effect),
    Refused(Final),
    /// A whole answer, as a server before typed outcomes kept it (migrations/0012): replayed
    /// as it is until it is forgotten, a day after the upgrade.
    Answer {
        status: u16,
        body: String,
    },
}

/// A refusal that a retry of the same request meets again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Final {
    MovieNotFound,
    Expired,
    Released,
    DuplicateSeat(SeatId),
}
