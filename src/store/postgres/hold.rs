//! Holds, decided together: concurrent holds (single seats and groups) are gathered into one call of
//! `hold_seats` (migrations/0003), one round trip and one transaction, and each request still
//! gets the answer it could get alone, sent only after the commit. The function keeps the one
//! lock order: per-user advisory locks (sorted by key), then per-address ones (sorted), then
//! seat rows in seat order, then session rows, then runs of holds (`hold_marks`).

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};

use sqlx::{Connection, PgConnection};
use tokio::time::Instant;
use uuid::Uuid;

use super::link::{self, Link};
use super::{classify, statements, uncommitted};
use crate::booking::HoldPolicy;
use crate::domain::{Hold, SeatId, SessionId, UserId};
use crate::store::batcher::{Batcher, Refused};
use crate::store::{StoreError, StoreResult, Unavailable};

/// One hold request: `seats` are in lock order and distinct.
pub(super) struct Request {
    pub movie_id: String,
    pub seats: Vec<SeatId>,
    pub user: UserId,
    /// The client's address, if known.
    pub from: Option<IpAddr>,
}

/// What one round decided for a request.
enum Decision {
    Done(StoreResult<Hold>),
    /// The user's quota was taken by other requests of theirs in this round, some of which
    /// may still lose their seat, or its seat went to a hold made since the round's read:
    /// decide again in a later round.
    Again,
}

/// How the queue in front of the hold workers behaves.
#[derive(Debug, Clone, Copy)]
pub struct HoldQueue {
    /// Most requests waiting; beyond it a hold answers 503 `overloaded` at once.
    pub capacity: usize,
    /// How long a request may wait for a worker before it is answered 503 `timeout`, with
    /// nothing done. What is left of the request's time then covers the database's deadlines.
    pub start_within: Duration,
}

impl Default for HoldQueue {
    fn default() -> Self {
        Self {
            capacity: 4096,
            start_within: Duration::from_secs(2),
        }
    }
}

/// Most requests decided in one transaction.
const MAX_BATCH: usize = 64;

/// Hands holds to a few worker tasks; each takes whatever is queued when it
/// becomes free. Under light load a batch is one request; under a rush it is many, and one
/// transaction (one commit) serves them all.
#[derive(Clone)]
pub(super) struct Holds {
    batcher: Batcher<Request, StoreResult<Hold>>,
    start_within: Duration,
}

impl Holds {
    pub fn start(link: Link, policy: HoldPolicy, queue: HoldQueue, workers: usize) -> Self {
        let connections = Connections {
            link,
            spare: Arc::default(),
        };
        let decide = move |requests| decide(connections.clone(), policy, requests);
        Self {
            batcher: Batcher::start(workers, queue.capacity, MAX_BATCH, decide),
            start_within: queue.start_within,
        }
    }

    pub async fn hold(&self, request: Request) -> StoreResult<Hold> {
        let start_by = Instant::now() + self.start_within;
        match self.batcher.submit(request, start_by).await {
            Ok(answer) => answer,
            Err(Refused::QueueFull) => Err(StoreError::Unavailable(Unavailable::QueueFull)),
            Err(Refused::NotStarted) => Err(StoreError::Unavailable(Unavailable::NotStarted)),
            Err(Refused::Stopped) => Err(StoreError::Unavailable(Unavailable::WorkersDown)),
            Err(Refused::Lost) => Err(StoreError::OutcomeUnknown),
        }
    }

    /// Requests waiting for a worker.
    pub fn queued(&self) -> usize {
        self.batcher.queued()
    }

    /// Whether holds can be served: a worker runs and the queue has room.
    pub fn ready(&self) -> StoreResult<()> {
        if self.batcher.ready() {
            Ok(())
        } else if self.batcher.queued() > 0 {
            Err(StoreError::Unavailable(Unavailable::QueueFull))
        } else {
            Err(StoreError::Unavailable(Unavailable::WorkersDown))
        }
    }
}

/// The connections the hold workers decide on: their own, beside the pool, each taken back by
/// the next batch (last used, first reused). The pool hands out its idle connections first
/// in, first out, so each batch would land on another backend, cold; measured with wrk at one
/// client, a hold then took half as long again (BENCHMARKS.md). Same settings as the pool's.
#[derive(Clone)]
struct Connections {
    link: Link,
    spare: Arc<Mutex<Vec<PgConnection>>>,
}

impl Connections {
    async fn take(&self) -> StoreResult<PgConnection> {
        if let Some(conn) = self.spare.lock().expect("spare connections").pop() {
            return Ok(conn);
        }
        let pool = &self.link.pool;
        let options = pool.connect_options();
        let connect = PgConnection::connect_with(&options);
        match tokio::time::timeout(pool.options().get_acquire_timeout(), connect).await {
            Ok(conn) => conn.map_err(classify),
            Err(_) => Err(classify(sqlx::Error::PoolTimedOut)),
        }
    }

    /// One round on one of these connections, kept for the next batch unless what went wrong
    /// may have been the connection.
    async fn round(&self, policy: HoldPolicy, batch: &[&Request]) -> StoreResult<Vec<Decision>> {
        let mut conn = self.take().await?;
        let deadline = self.link.deadline;
        let Ok(outcome) =
            tokio::time::timeout(deadline, round(&mut conn, &self.link, policy, batch)).await
        else {
            // A dead link, perhaps: this connection goes (dropping it closes its socket) and
            // the next round opens another. The round may have committed.
            return Err(uncommitted(link::no_answer()));
        };
        if !matches!(
            outcome,
            Err(StoreError::Unavailable(_) | StoreError::OutcomeUnknown)
        ) {
            self.spare.lock().expect("spare connections").push(conn);
        }
        outcome
    }
}

/// Runs rounds until every request has its answer. A batch that fails as a whole for a
/// reason all its requests share (an outage) gives each the same answer; one that fails
/// because of something in one request is decided again request by request, so that only
/// that one fails.
async fn decide(
    connections: Connections,
    policy: HoldPolicy,
    requests: Vec<Request>,
) -> Vec<StoreResult<Hold>> {
    let mut answers: Vec<Option<StoreResult<Hold>>> = requests.iter().map(|_| None).collect();
    let mut open: Vec<usize> = (0..requests.len()).collect();
    while !open.is_empty() {
        let batch: Vec<&Request> = open.iter().map(|&i| &requests[i]).collect();
        match connections.round(policy, &batch).await {
            Ok(decisions) => {
                let mut again = Vec::new();
                for (i, decision) in open.into_iter().zip(decisions) {
                    match decision {
                        Decision::Done(answer) => answers[i] = Some(answer),
                        Decision::Again => again.push(i),
                    }
                }
                open = again;
            }
            Err(error) => {
                if let Some(shared) = error.shared() {
                    for &i in &open {
                        answers[i] = shared.shared().map(Err);
                    }
                } else if let [i] = open[..] {
                    answers[i] = Some(Err(error));
                } else {
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        requests = open.len(),
                        "a batch of holds failed; deciding its requests one by one"
                    );
                    for &i in &open {
                        answers[i] =
                            Some(hold_alone(&connections.link, policy, &requests[i]).await);
                    }
                }
                break;
            }
        }
    }
    answers
        .into_iter()
        .map(|answer| answer.expect("every request is answered"))
        .collect()
}

/// Decides one request in transactions of its own (when its batch failed as a whole).
pub(super) async fn hold_alone(
    link: &Link,
    policy: HoldPolicy,
    request: &Request,
) -> StoreResult<Hold> {
    let mut conn = link.pool.acquire().await.map_err(classify)?;
    let batch = [request];
    loop {
        let round = round(&mut conn, link, policy, &batch);
        let Ok(decisions) = tokio::time::timeout(link.deadline, round).await else {
            conn.close_on_drop();
            return Err(uncommitted(link::no_answer()));
        };
        let mut decisions = decisions?;
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
    retry_at: Option<DateTime<Utc>>,
}

/// The arguments of one `hold_seats` call: every requested seat in lock order, with the
/// number (from 1, in arrival order) of the request it belongs to, and per request the
/// session it starts, its user and its address (as text, cast to `inet` in the call).
#[derive(Default)]
struct Batch<'a> {
    seat_requests: Vec<i32>,
    seat_movies: Vec<&'a str>,
    seat_ids: Vec<&'a str>,
    sessions: Vec<Uuid>,
    users: Vec<&'a str>,
    addresses: Vec<Option<String>>,
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
            batch
                .addresses
                .push(request.from.map(|address| address.to_string()));
        }
        batch
    }
}

/// One call of `hold_seats`, one transaction, deciding `requests` (arrival order). Requests
/// that may still succeed come back as `Again`.
async fn round(
    conn: &mut PgConnection,
    link: &Link,
    policy: HoldPolicy,
    requests: &[&Request],
) -> StoreResult<Vec<Decision>> {
    if link.persistent() {
        // One statement, its own transaction.
        return call(conn, link, policy, requests).await;
    }
    let mut tx = link.begin_on(conn).await.map_err(classify)?;
    let decisions = call(&mut tx, link, policy, requests).await?;
    tx.commit().await.map_err(uncommitted)?;
    Ok(decisions)
}

/// Decides one request inside the caller's transaction `tx`, calling `hold_seats` again
/// while it answers `again`.
pub(super) async fn hold_in(
    tx: &mut PgConnection,
    link: &Link,
    policy: HoldPolicy,
    request: &Request,
) -> StoreResult<Hold> {
    loop {
        let mut decisions = call(tx, link, policy, &[request]).await?;
        if let Decision::Done(answer) = decisions.remove(0) {
            return answer;
        }
    }
}

/// One call of `hold_seats` on `conn`, in whatever transaction it is in.
async fn call(
    conn: &mut PgConnection,
    link: &Link,
    policy: HoldPolicy,
    requests: &[&Request],
) -> StoreResult<Vec<Decision>> {
    let batch = Batch::new(requests);
    let outcomes: Vec<Outcome> = sqlx::query_as(statements::HOLD_SEATS)
        .persistent(link.persistent())
        .bind(&batch.seat_requests)
        .bind(&batch.seat_movies)
        .bind(&batch.seat_ids)
        .bind(&batch.sessions)
        .bind(&batch.users)
        .bind(policy.ttl.as_secs_f64())
        .bind(i32::try_from(policy.max_holds_per_user).unwrap_or(i32::MAX))
        .bind(&batch.addresses)
        .bind(
            Some(policy.max_holds_per_address)
                .filter(|&cap| cap > 0)
                .map(|cap| i32::try_from(cap).unwrap_or(i32::MAX)),
        )
        .bind(policy.max_lifetime.as_secs_f64())
        .bind(
            Some(policy.rehold_window)
                .filter(|window| !window.is_zero())
                .map(|window| window.as_secs_f64()),
        )
        .fetch_all(conn)
        .await
        // On its own, the statement is its transaction: a lost answer may be a lost "done".
        .map_err(if link.persistent() {
            uncommitted
        } else {
            classify
        })?;
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
        ("address_limit", _) => Decision::Done(Err(StoreError::AddressLimitReached {
            limit: policy.max_holds_per_address,
        })),
        ("rehold", _) => Decision::Done(Err(StoreError::HeldTooLong {
            retry_at: o.retry_at.ok_or_else(|| bad("rehold without a time"))?,
        })),
        ("again", _) => Decision::Again,
        (other, _) => return Err(bad(&format!("{other:?}"))),
    })
}
