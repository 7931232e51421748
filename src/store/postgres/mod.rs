//! `PgStore`: the PostgreSQL store. All SQL lives here.
//!
//! The unique (movie, seat) key of `seat_holds` is what keeps two people off one seat; the
//! code around it only decides which answer each request gets.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{HoldPolicy, SeatStore, StoreError, StoreResult, lock_order};
use crate::domain::{Booking, Hold, Movie, SeatId, SessionId, TakenSeat, UserId};

mod hold;

/// Namespace (first key) of the per-user advisory lock that serialises the hold limit check.
const USER_LOCK_NAMESPACE: i32 = 0x_b0c5;

/// Tasks deciding single-seat holds. A worker takes everything queued when it becomes free,
/// so fewer workers make fuller transactions: measured with a pool of 32 at 8/32/128
/// clients, 2 workers held 1.2k/2.1k/3.2k holds/s against 0.9k/1.5k/2.5k for 8 workers
/// (BENCHMARKS.md); one worker did no better and would let one slow transaction stall all.
const HOLD_WORKERS: usize = 2;

/// The statements that a partial index of `seat_holds` could lead astray. Each must reach
/// only the rows it is about whatever the planner's statistics say: right after an analyze
/// that saw no live holds, every partial index looks empty, and any one whose predicate a
/// statement's conditions imply looks as cheap as another. Public so that a test can pin
/// their plans (`tests/plans.rs`).
#[doc(hidden)]
pub mod statements {
    /// Live holds of each of the users in `$1`. The deadline is checked in the aggregate, not
    /// in the WHERE clause: the statistics of `expires_at` always lag behind `now()`, so a
    /// condition on it there would look like it matched almost nothing and send the planner
    /// through the expiry index, past every live hold. As it stands, only the user index
    /// (`status = 'held'`) fits.
    pub const LIVE_HOLDS_PER_USER: &str =
        "select user_id, count(*) filter (where expires_at > now()) from seat_holds
         where user_id = any($1) and status = 'held'
         group by user_id";

    /// Deletes and returns the expired holds on the seats `($1[i], $2[i])`, locking them in
    /// seat order. The seats lead, through the primary key: the deadline is compared in a form
    /// no index serves (a booking's null deadline counts as never), because through the
    /// expiry index the statement would read every lapsed hold not yet reaped, and through
    /// the user index ("status = 'held'") every live one.
    pub const TAKE_OVER_EXPIRED: &str = r#"delete from seat_holds h
           using (select s.movie_id, s.seat_id from seat_holds s
                  join unnest($1::text[], $2::text[]) as t(movie_id, seat_id)
                    on s.movie_id = t.movie_id and s.seat_id = t.seat_id
                  where coalesce(s.expires_at, 'infinity') <= now()
                  order by s.movie_id, s.seat_id collate "C"
                  for update of s) doomed
           where h.movie_id = doomed.movie_id and h.seat_id = doomed.seat_id
           returning h.movie_id, h.seat_id, h.session_id, h.user_id"#;

    /// Deletes and returns up to `$1` expired holds. `skip locked` never waits, so reapers in
    /// several processes neither block each other nor a hold or confirm that is busy with one
    /// of these rows.
    pub const REAP_EXPIRED: &str = "with doomed as (
             select movie_id, seat_id from seat_holds
             where expires_at <= now()
             limit $1 for update skip locked)
         delete from seat_holds s using doomed d
         where s.movie_id = d.movie_id and s.seat_id = d.seat_id
         returning s.movie_id, s.seat_id, s.session_id, s.user_id";
}

/// How the connection pool is set up.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// How long a request waits for a connection before it is told 503.
    pub acquire_timeout: Duration,
    /// Server-side cap on one statement, lock waits included.
    pub statement_timeout: Duration,
}

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    policy: HoldPolicy,
    /// Movies rarely change; a miss falls through to the database, so a room added with SQL
    /// is served without a restart.
    movies: Arc<RwLock<HashMap<String, Movie>>>,
    batcher: hold::Batcher,
}

/// A seat that changed state, as the side writes (session status, and later the ledger and
/// change notifications) need it.
#[derive(Debug, Clone, sqlx::FromRow)]
struct SeatChange {
    movie_id: String,
    seat_id: String,
    session_id: Uuid,
    user_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChangeKind {
    Held,
    Confirmed,
    Released,
    Expired,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    movie_id: String,
    user_id: String,
    seat_count: i32,
    status: String,
    /// Still marked held, but its time has passed.
    lapsed: bool,
}

impl PgStore {
    /// Connects lazily (the first request opens the first connection) and runs migrations.
    pub async fn connect(url: &str, pool: &PoolSettings, policy: HoldPolicy) -> StoreResult<Self> {
        let options: PgConnectOptions = url.parse().map_err(StoreError::Database)?;
        let statement_timeout = pool.statement_timeout.as_millis().to_string();
        let options = options
            .application_name("boxoffice")
            .options([("statement_timeout", statement_timeout.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(pool.max_connections)
            .acquire_timeout(pool.acquire_timeout)
            .connect_lazy_with(options);
        let store = Self::new(pool, policy);
        store.migrate().await?;
        Ok(store)
    }

    /// Wraps a pool whose database is already migrated. Starts the hold batcher's workers,
    /// so it must be called inside a Tokio runtime.
    pub fn new(pool: PgPool, policy: HoldPolicy) -> Self {
        Self {
            batcher: hold::Batcher::start(pool.clone(), policy, HOLD_WORKERS),
            pool,
            policy,
            movies: Arc::default(),
        }
    }

    pub async fn migrate(&self) -> StoreResult<()> {
        sqlx::migrate!().run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => classify(e),
            other => StoreError::Database(sqlx::Error::Migrate(Box::new(other))),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Locks a session row for the rest of the transaction; `SessionNotFound` unless it is
    /// `user`'s.
    async fn lock_session(
        conn: &mut PgConnection,
        session: SessionId,
        user: &UserId,
    ) -> StoreResult<SessionRow> {
        let row: Option<SessionRow> = sqlx::query_as(
            "select movie_id, user_id, seat_count, status,
                    (status = 'held' and expires_at <= now()) as lapsed
             from hold_sessions where id = $1 for update",
        )
        .bind(session.0)
        .fetch_optional(&mut *conn)
        .await
        .map_err(classify)?;
        row.filter(|row| row.user_id == user.as_str())
            .ok_or(StoreError::SessionNotFound)
    }

    /// Locks the session's seat rows in seat order and returns them.
    async fn lock_session_seats(
        conn: &mut PgConnection,
        session: SessionId,
    ) -> StoreResult<Vec<SeatChange>> {
        sqlx::query_as(
            r#"select movie_id, seat_id, session_id, user_id from seat_holds
               where session_id = $1 and (status = 'confirmed' or expires_at > now())
               order by seat_id collate "C" for update"#,
        )
        .bind(session.0)
        .fetch_all(&mut *conn)
        .await
        .map_err(classify)
    }
}

/// The one place a state change's side writes go, in the transaction of the change itself.
///
/// Today that is the status of sessions whose holds expired; the booking ledger and change
/// notifications belong here too.
async fn record(
    conn: &mut PgConnection,
    kind: ChangeKind,
    changes: &[SeatChange],
) -> StoreResult<()> {
    if changes.is_empty() {
        return Ok(());
    }
    for c in changes {
        tracing::debug!(
            ?kind,
            movie_id = %c.movie_id,
            seat_id = %c.seat_id,
            session_id = %c.session_id,
            user_id = %c.user_id,
            "seat change"
        );
    }
    if kind == ChangeKind::Expired {
        let sessions: Vec<Uuid> = changes.iter().map(|c| c.session_id).collect();
        sqlx::query(
            "update hold_sessions set status = 'expired', ended_at = now()
             where id = any($1) and status = 'held'",
        )
        .bind(sessions)
        .execute(&mut *conn)
        .await
        .map_err(classify)?;
    }
    Ok(())
}

fn seat_ids(changes: &[SeatChange]) -> Vec<SeatId> {
    changes
        .iter()
        .map(|c| {
            SeatId::parse(&c.seat_id).expect("the table's check constraint admits valid ids only")
        })
        .collect()
}

impl SeatStore for PgStore {
    async fn movies(&self) -> StoreResult<Vec<Movie>> {
        let movies: Vec<Movie> =
            sqlx::query_as("select id, title, rows, seats_per_row from movies order by title, id")
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
        let mut cache = self.movies.write().expect("movie cache poisoned");
        cache.clear();
        cache.extend(movies.iter().map(|m| (m.id.clone(), m.clone())));
        Ok(movies)
    }

    async fn movie(&self, movie_id: &str) -> StoreResult<Movie> {
        if let Some(movie) = self
            .movies
            .read()
            .expect("movie cache poisoned")
            .get(movie_id)
        {
            return Ok(movie.clone());
        }
        let movie: Movie =
            sqlx::query_as("select id, title, rows, seats_per_row from movies where id = $1")
                .bind(movie_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(classify)?
                .ok_or(StoreError::MovieNotFound)?;
        self.movies
            .write()
            .expect("movie cache poisoned")
            .insert(movie.id.clone(), movie.clone());
        Ok(movie)
    }

    async fn seat_map(&self, movie_id: &str) -> StoreResult<Vec<TakenSeat>> {
        let rows: Vec<(String, String, bool)> = sqlx::query_as(
            r#"select seat_id, user_id, status = 'confirmed' from seat_holds
               where movie_id = $1 and (status = 'confirmed' or expires_at > now())
               order by seat_id collate "C""#,
        )
        .bind(movie_id)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        rows.into_iter()
            .map(|(seat_id, user_id, confirmed)| {
                Ok(TakenSeat {
                    seat_id: SeatId::parse(&seat_id).map_err(|_| corrupt("seat_id", &seat_id))?,
                    user_id: UserId::parse(user_id)
                        .map_err(|e| corrupt("user_id", &e.to_string()))?,
                    confirmed,
                })
            })
            .collect()
    }

    async fn hold(&self, movie: &Movie, seats: Vec<SeatId>, user: &UserId) -> StoreResult<Hold> {
        let request = hold::Request {
            movie_id: movie.id.clone(),
            seats: lock_order(seats)?,
            user: user.clone(),
        };
        if request.seats.len() == 1 {
            self.batcher.hold(request).await
        } else {
            // A group is all or nothing; deciding it alone keeps a failed group from
            // touching anyone else's answer.
            hold::hold_alone(&self.pool, self.policy, request).await
        }
    }

    async fn confirm(&self, session: SessionId, user: &UserId) -> StoreResult<Booking> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let row = Self::lock_session(&mut tx, session, user).await?;
        let booking = |seats: &[SeatChange]| Booking {
            session_id: session,
            movie_id: row.movie_id.clone(),
            seats: seat_ids(seats),
            user_id: user.clone(),
        };
        match row.status.as_str() {
            "confirmed" => {
                let seats = Self::lock_session_seats(&mut tx, session).await?;
                return Ok(booking(&seats));
            }
            "released" => return Err(StoreError::Released),
            "expired" => return Err(StoreError::Expired),
            _ if row.lapsed => return Err(StoreError::Expired),
            _ => {}
        }

        let seats = Self::lock_session_seats(&mut tx, session).await?;
        if seats.len() != usize::try_from(row.seat_count).unwrap_or(0) {
            // Part of the group lapsed and was taken over: the hold as a whole is gone.
            return Err(StoreError::Expired);
        }
        sqlx::query(
            "update seat_holds set status = 'confirmed', expires_at = null, confirmed_at = now()
             where session_id = $1",
        )
        .bind(session.0)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        sqlx::query(
            "update hold_sessions set status = 'confirmed', confirmed_at = now() where id = $1",
        )
        .bind(session.0)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        record(&mut tx, ChangeKind::Confirmed, &seats).await?;
        tx.commit().await.map_err(classify)?;
        Ok(booking(&seats))
    }

    async fn release(&self, session: SessionId, user: &UserId) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let row = Self::lock_session(&mut tx, session, user).await?;
        match row.status.as_str() {
            "confirmed" => return Err(StoreError::AlreadyConfirmed),
            "released" => return Ok(()),
            "expired" => return Err(StoreError::Expired),
            _ if row.lapsed => return Err(StoreError::Expired),
            _ => {}
        }
        let seats = Self::lock_session_seats(&mut tx, session).await?;
        sqlx::query("delete from seat_holds where session_id = $1")
            .bind(session.0)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        sqlx::query("update hold_sessions set status = 'released', ended_at = now() where id = $1")
            .bind(session.0)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        record(&mut tx, ChangeKind::Released, &seats).await?;
        tx.commit().await.map_err(classify)
    }

    async fn reap_expired(&self, batch: u32) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        let expired: Vec<SeatChange> = sqlx::query_as(statements::REAP_EXPIRED)
            .bind(i64::from(batch))
            .fetch_all(&mut *tx)
            .await
            .map_err(classify)?;
        record(&mut tx, ChangeKind::Expired, &expired).await?;
        tx.commit().await.map_err(classify)?;
        Ok(expired.len() as u64)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("select 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(classify)
    }
}

/// Sorts a database error into "try again later" (503) and "bug" (500).
fn classify(error: sqlx::Error) -> StoreError {
    let transient = match &error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Classes: 08 connection exception, 28 refused login, 53 out of resources,
            // 57 operator intervention (shutdown, statement timeout).
            matches!(&code[..2], "08" | "28" | "53" | "57")
                || matches!(
                    &*code,
                    // serialization failure, deadlock, lock timeout, database not accepting
                    // connections, database missing
                    "40001" | "40P01" | "55P03" | "55000" | "3D000"
                )
        }),
        _ => false,
    };
    if transient {
        StoreError::Unavailable(error)
    } else {
        StoreError::Database(error)
    }
}

fn corrupt(column: &str, value: &str) -> StoreError {
    StoreError::Database(sqlx::Error::Decode(
        format!("seat_holds.{column} holds an invalid value {value:?}").into(),
    ))
}
