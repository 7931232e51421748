//! Holds, decided together: concurrent single-seat holds are gathered into one transaction,
//! and each request still gets the answer it could get alone, sent only after the commit.
//!
//! Lock order, the same for every transaction that takes these locks: per-user advisory
//! locks (sorted by key) first, then seat rows in seat order. A transaction waiting for a
//! seat already holds all its user locks, and one waiting for a user lock holds no seats, so
//! no cycle can form.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

use super::{ChangeKind, SeatChange, USER_LOCK_NAMESPACE, classify, record, statements};
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

/// A seat row the batch's insert got.
#[derive(sqlx::FromRow)]
struct Won {
    movie_id: String,
    session_id: Uuid,
    seat_id: String,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
}

/// One transaction deciding `requests` (arrival order). Requests whose user's quota may
/// still free up come back as `Again`.
async fn round(
    pool: &PgPool,
    policy: HoldPolicy,
    requests: &[&Request],
) -> StoreResult<Vec<Decision>> {
    let mut decisions: Vec<Option<Decision>> = requests.iter().map(|_| None).collect();

    // Seats already held or booked are refused without a transaction: the hot-seat rush
    // costs one read per batch. The read also tells which seats have a lapsed hold to take
    // over; on the others there is nothing to delete.
    let (movies, seats): (Vec<&str>, Vec<&str>) = requests
        .iter()
        .flat_map(|r| r.seats.iter().map(|s| (r.movie_id.as_str(), s.as_str())))
        .unzip();
    let found: Vec<(String, String, bool)> = sqlx::query_as(
        "select h.movie_id, h.seat_id, h.status = 'confirmed' or h.expires_at > now()
         from seat_holds h
         join unnest($1::text[], $2::text[]) as t(movie_id, seat_id)
           on h.movie_id = t.movie_id and h.seat_id = t.seat_id",
    )
    .bind(&movies)
    .bind(&seats)
    .fetch_all(pool)
    .await
    .map_err(classify)?;
    let seen = |request: &Request, seat: &SeatId, live: bool| {
        found
            .iter()
            .any(|(m, s, l)| *m == request.movie_id && s == seat.as_str() && *l == live)
    };
    for (i, request) in requests.iter().enumerate() {
        let taken: Vec<SeatId> = request
            .seats
            .iter()
            .filter(|seat| seen(request, seat, true))
            .cloned()
            .collect();
        if !taken.is_empty() {
            decisions[i] = Some(Decision::Done(Err(StoreError::SeatTaken(taken))));
        }
    }
    let open: Vec<usize> = (0..requests.len())
        .filter(|&i| decisions[i].is_none())
        .collect();
    if open.is_empty() {
        return Ok(decisions.into_iter().map(Option::unwrap).collect());
    }

    let mut tx = pool.begin().await.map_err(classify)?;

    // 1. The per-user limit spans movies, so it is serialised per user. The locks are one
    //    statement of their own (a count in the same statement would read a snapshot taken
    //    before the lock waits), taken in key order.
    let users: Vec<&str> = open.iter().map(|&i| requests[i].user.as_str()).collect();
    sqlx::query(
        "select pg_advisory_xact_lock($1, key)
         from (select distinct hashtext(u) as key from unnest($2::text[]) as u order by key offset 0) k",
    )
    .bind(USER_LOCK_NAMESPACE)
    .bind(&users)
    .execute(&mut *tx)
    .await
    .map_err(classify)?;
    let counts: Vec<(String, i64)> = sqlx::query_as(statements::LIVE_HOLDS_PER_USER)
        .bind(&users)
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;

    // Each user may take up to their remaining quota in this round, first come first served.
    // A request beyond it waits for the next round unless the quota is surely spent.
    let limit = i64::from(policy.max_holds_per_user);
    let mut quota: HashMap<&str, i64> = HashMap::new();
    for &i in &open {
        let user = requests[i].user.as_str();
        let live = counts
            .iter()
            .find(|(u, _)| u == user)
            .map_or(0, |(_, n)| *n);
        quota.entry(user).or_insert(limit - live);
    }
    let mut admitted = Vec::new();
    let mut deferred = Vec::new();
    for &i in &open {
        let request = requests[i];
        let left = quota
            .get_mut(request.user.as_str())
            .expect("every open user has a quota");
        let wanted = request.seats.len() as i64;
        if wanted <= *left {
            *left -= wanted;
            admitted.push(i);
        } else {
            deferred.push(i);
        }
    }

    // 2. Lapsed holds on the admitted seats are taken over now, whether or not the reaper
    //    has run; their rows are locked in seat order. Only seats where the first read saw
    //    one need it: a row that appeared since is a new hold, and its seat is contested.
    let (lapsed_movies, lapsed_seats): (Vec<&str>, Vec<&str>) = admitted
        .iter()
        .flat_map(|&i| {
            let r = requests[i];
            r.seats
                .iter()
                .filter(|seat| seen(r, seat, false))
                .map(move |s| (r.movie_id.as_str(), s.as_str()))
        })
        .unzip();
    let expired: Vec<SeatChange> = if lapsed_seats.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(statements::TAKE_OVER_EXPIRED)
            .bind(&lapsed_movies)
            .bind(&lapsed_seats)
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?
    };

    // 3. The seat rows, in seat order (arrival order among requests for one seat), and in
    //    the same statement the sessions of the requests that got all their seats. A seat
    //    someone else holds is skipped: the request that wanted it locks and writes nothing.
    let sessions: Vec<SessionId> = requests.iter().map(|_| SessionId::new()).collect();
    let mut rows = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut wanted = (Vec::new(), Vec::new());
    for &i in &admitted {
        let request = requests[i];
        for seat in &request.seats {
            rows.0.push(request.movie_id.as_str());
            rows.1.push(seat.as_str());
            rows.2.push(sessions[i].0);
            rows.3.push(request.user.as_str());
        }
        wanted.0.push(sessions[i].0);
        wanted.1.push(request.seats.len() as i64);
    }
    let won: Vec<Won> = sqlx::query_as(
        r#"with won as (
               insert into seat_holds (movie_id, seat_id, session_id, user_id, expires_at)
               select movie_id, seat_id, session_id, user_id, now() + make_interval(secs => $5)
               from unnest($1::text[], $2::text[], $3::uuid[], $4::text[])
                    with ordinality as t(movie_id, seat_id, session_id, user_id, arrival)
               order by movie_id, seat_id collate "C", arrival
               on conflict do nothing
               returning movie_id, seat_id, session_id, user_id, expires_at),
           whole as (
               insert into hold_sessions (id, movie_id, user_id, seat_count, expires_at, created_at)
               select w.session_id, min(w.movie_id), min(w.user_id), count(*), min(w.expires_at), now()
               from won w join unnest($6::uuid[], $7::bigint[]) as r(session_id, seats)
                 on r.session_id = w.session_id
               group by w.session_id, r.seats
               having count(*) = r.seats)
           select movie_id, seat_id, session_id, expires_at, now() as now from won"#,
    )
    .bind(&rows.0)
    .bind(&rows.1)
    .bind(&rows.2)
    .bind(&rows.3)
    .bind(policy.ttl.as_secs_f64())
    .bind(&wanted.0)
    .bind(&wanted.1)
    .fetch_all(&mut *tx)
    .await
    .map_err(classify)?;

    // A request that got only some of its seats gets none: its rows go again. A seat it
    // lost to a request of this batch is taken (batches are of single-seat requests, so that
    // one got all it asked for); one it lost to a hold made since the first read is decided
    // again, from a fresh read: that hold may be live, lapsed or gone.
    let mut partial = Vec::new();
    let mut winners = Vec::new();
    for &i in &admitted {
        let request = requests[i];
        let got: Vec<&Won> = won
            .iter()
            .filter(|w| w.session_id == sessions[i].0)
            .collect();
        if got.len() == request.seats.len() {
            winners.push((i, got[0].expires_at, got[0].now));
            continue;
        }
        if !got.is_empty() {
            partial.push(sessions[i].0);
        }
        let lost: Vec<SeatId> = request
            .seats
            .iter()
            .filter(|seat| !got.iter().any(|w| w.seat_id == seat.as_str()))
            .cloned()
            .collect();
        let batch_mate_won = |seat: &SeatId| {
            won.iter()
                .any(|w| w.movie_id == request.movie_id && w.seat_id == seat.as_str())
        };
        // Its quota was not used after all.
        *quota.get_mut(request.user.as_str()).expect("has a quota") += request.seats.len() as i64;
        decisions[i] = Some(if lost.iter().all(batch_mate_won) {
            Decision::Done(Err(StoreError::SeatTaken(lost)))
        } else {
            Decision::Again
        });
    }
    if !partial.is_empty() {
        sqlx::query("delete from seat_holds where session_id = any($1)")
            .bind(&partial)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
    }

    // Deferred requests: if their user's quota is spent for good, the answer is the limit;
    // if a request of theirs lost its seat, they try again in the next round.
    for &i in &deferred {
        let request = requests[i];
        let left = quota[request.user.as_str()];
        decisions[i] = Some(if (request.seats.len() as i64) <= left {
            Decision::Again
        } else {
            Decision::Done(Err(StoreError::LimitReached {
                limit: policy.max_holds_per_user,
            }))
        });
    }

    // 4. The side writes, then one commit for all.
    if winners.is_empty() && expired.is_empty() {
        tx.rollback().await.map_err(classify)?;
    } else {
        record(&mut tx, ChangeKind::Expired, &expired).await?;
        let held: Vec<SeatChange> = winners
            .iter()
            .flat_map(|&(i, ..)| {
                let (request, session) = (requests[i], sessions[i]);
                request.seats.iter().map(move |seat| SeatChange {
                    movie_id: request.movie_id.clone(),
                    seat_id: seat.to_string(),
                    session_id: session.0,
                    user_id: request.user.to_string(),
                })
            })
            .collect();
        record(&mut tx, ChangeKind::Held, &held).await?;
        tx.commit().await.map_err(classify)?;
    }

    for (i, expires_at, server_time) in winners {
        let request = requests[i];
        decisions[i] = Some(Decision::Done(Ok(Hold {
            session_id: sessions[i],
            movie_id: request.movie_id.clone(),
            seats: request.seats.clone(),
            user_id: request.user.clone(),
            expires_at,
            server_time,
        })));
    }
    Ok(decisions
        .into_iter()
        .map(|d| d.expect("every request is decided or deferred"))
        .collect())
}

/// A batch's one error, for each of its requests.
fn copy_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::Unavailable(e) => StoreError::Unavailable(sqlx::Error::Protocol(e.to_string())),
        other => StoreError::Database(sqlx::Error::Protocol(other.to_string())),
    }
}
