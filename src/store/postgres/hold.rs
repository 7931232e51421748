//! Holds, decided together: concurrent single-seat holds are gathered into one transaction,
//! and each request still gets the answer it could get alone, sent only after the commit.
//!
//! Lock order, the same for every transaction that takes these locks: per-user advisory
//! locks (sorted by key) first, then seat rows in seat order. A transaction waiting for a
//! seat already holds all its user locks, and one waiting for a user lock holds no seats, so
//! no cycle can form.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use super::{classify, statements};
use crate::domain::{Hold, SeatId, SessionId, UserId};
use crate::store::{HoldPolicy, StoreError, StoreResult};

/// Most requests decided in one transaction.
const MAX_BATCH: usize = 64;

/// One hold request: `seats` are in lock order and distinct.
pub(super) struct Request {
    pub movie_id: String,
    pub seats: Vec<SeatId>,
    pub user: UserId,
}

/// What one round decided for a request.
enum Decision {
    Done(StoreResult<Hold>),
    /// The user's quota was taken by other requests of theirs in this round, some of which
    /// may still lose their seat: decide again in a later round.
    Again,
}

struct Pending {
    request: Request,
    reply: oneshot::Sender<StoreResult<Hold>>,
}

/// Hands single-seat holds to a few worker tasks; each takes whatever is queued when it
/// becomes free. Under light load a batch is one request; under a rush it is many, and one
/// transaction (one commit) serves them all.
#[derive(Clone)]
pub(super) struct Batcher {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Batcher {
    pub fn start(pool: PgPool, policy: HoldPolicy, workers: usize) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel::<Pending>();
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..workers.max(1) {
            let (pool, receiver) = (pool.clone(), receiver.clone());
            tokio::spawn(async move {
                loop {
                    let mut batch = Vec::new();
                    {
                        let mut receiver = receiver.lock().await;
                        match receiver.recv().await {
                            Some(first) => batch.push(first),
                            None => return, // every store handle is gone
                        }
                        while batch.len() < MAX_BATCH {
                            match receiver.try_recv() {
                                Ok(next) => batch.push(next),
                                Err(_) => break,
                            }
                        }
                    }
                    decide(&pool, policy, batch).await;
                }
            });
        }
        Self { queue }
    }

    pub async fn hold(&self, request: Request) -> StoreResult<Hold> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending { request, reply })
            .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolClosed))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable(sqlx::Error::PoolClosed))?
    }
}

/// Runs rounds until every request in `batch` has its answer.
async fn decide(pool: &PgPool, policy: HoldPolicy, mut batch: Vec<Pending>) {
    while !batch.is_empty() {
        let requests: Vec<&Request> = batch.iter().map(|p| &p.request).collect();
        let decisions = match round(pool, policy, &requests).await {
            Ok(decisions) => decisions,
            Err(error) => {
                // The whole transaction failed: every request in it gets the error.
                for pending in batch {
                    let _ = pending.reply.send(Err(copy_error(&error)));
                }
                return;
            }
        };
        let mut again = Vec::new();
        for (pending, decision) in batch.into_iter().zip(decisions) {
            match decision {
                Decision::Done(answer) => {
                    let _ = pending.reply.send(answer);
                }
                Decision::Again => again.push(pending),
            }
        }
        batch = again;
    }
}

/// Decides one request (a group hold) in transactions of its own.
pub(super) async fn hold_alone(
    pool: &PgPool,
    policy: HoldPolicy,
    request: Request,
) -> StoreResult<Hold> {
    loop {
        let mut decisions = round(pool, policy, &[&request]).await?;
        if let Decision::Done(answer) = decisions.remove(0) {
            return answer;
        }
    }
}

/// One request's answer from `hold_seats` (migrations/0003).
#[derive(sqlx::FromRow)]
struct Outcome {
    outcome: String,
    taken: Option<Vec<String>>,
    held_until: Option<DateTime<Utc>>,
    decided_at: DateTime<Utc>,
}

/// The arguments of one `hold_seats` call: every requested seat in lock order, with the
/// number (from 1, in arrival order) of the request it belongs to, and per request the
/// session it starts and its user.
#[derive(Default)]
struct Batch<'a> {
    seat_requests: Vec<i32>,
    seat_movies: Vec<&'a str>,
    seat_ids: Vec<&'a str>,
    sessions: Vec<Uuid>,
    users: Vec<&'a str>,
}

impl<'a> Batch<'a> {
    fn new(requests: &[&'a Request]) -> Self {
        let mut seats: Vec<(&str, &str, i32)> = requests
            .iter()
            .zip(1..)
            .flat_map(|(r, n)| {
                r.seats
                    .iter()
                    .map(move |s| (r.movie_id.as_str(), s.as_str(), n))
            })
            .collect();
        // Plain byte order, as PostgreSQL's collate "C": the order every transaction locks in.
        seats.sort_unstable();
        let mut batch = Self::default();
        for (movie, seat, request) in seats {
            batch.seat_movies.push(movie);
            batch.seat_ids.push(seat);
            batch.seat_requests.push(request);
        }
        for request in requests {
            batch.sessions.push(SessionId::new().0);
            batch.users.push(request.user.as_str());
        }
        batch
    }
}

/// One call of `hold_seats`, one transaction, deciding `requests` (arrival order). Requests
/// that may still succeed come back as `Again`.
async fn round(
    pool: &PgPool,
    policy: HoldPolicy,
    requests: &[&Request],
) -> StoreResult<Vec<Decision>> {
    let batch = Batch::new(requests);
    let outcomes: Vec<Outcome> = sqlx::query_as(statements::HOLD_SEATS)
        .bind(&batch.seat_requests)
        .bind(&batch.seat_movies)
        .bind(&batch.seat_ids)
        .bind(&batch.sessions)
        .bind(&batch.users)
        .bind(policy.ttl.as_secs_f64())
        .bind(i32::try_from(policy.max_holds_per_user).unwrap_or(i32::MAX))
        .fetch_all(pool)
        .await
        .map_err(classify)?;
    if outcomes.len() != requests.len() {
        return Err(StoreError::Database(sqlx::Error::Protocol(format!(
            "hold_seats answered {} of {} requests",
            outcomes.len(),
            requests.len()
        ))));
    }
    requests
        .iter()
        .zip(batch.sessions)
        .zip(outcomes)
        .map(|((request, session), o)| decision(request, SessionId(session), o, policy))
        .collect()
}

fn decision(
    request: &Request,
    session: SessionId,
    o: Outcome,
    policy: HoldPolicy,
) -> StoreResult<Decision> {
    let bad = |what: &str| {
        StoreError::Database(sqlx::Error::Protocol(format!("hold_seats answered {what}")))
    };
    Ok(match (o.outcome.as_str(), o.held_until) {
        ("held", Some(expires_at)) => Decision::Done(Ok(Hold {
            session_id: session,
            movie_id: request.movie_id.clone(),
            seats: request.seats.clone(),
            user_id: request.user.clone(),
            expires_at,
            server_time: o.decided_at,
        })),
        ("taken", _) => {
            let taken = o
                .taken
                .unwrap_or_default()
                .iter()
                .map(|s| SeatId::parse(s).map_err(|_| bad("a malformed seat id")))
                .collect::<StoreResult<Vec<SeatId>>>()?;
            Decision::Done(Err(StoreError::SeatTaken(taken)))
        }
        ("limit", _) => Decision::Done(Err(StoreError::LimitReached {
            limit: policy.max_holds_per_user,
        })),
        ("again", _) => Decision::Again,
        (other, _) => return Err(bad(&format!("{other:?}"))),
    })
}

/// A batch's one error, for each of its requests.
fn copy_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(e) => StoreError::Unavailable(sqlx::Error::Protocol(e.to_string())),
        other => StoreError::Database(sqlx::Error::Protocol(other.to_string())),
    }
}
