//! `PgStore`: the PostgreSQL store. All SQL lives here.
//!
//! The unique (movie, seat) key of `seat_holds` is what keeps two people off one seat; the
//! code around it only decides which answer each request gets.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

use super::{
    Backend, Catalogue, ChangeFeed, Health, Housekeeping, Reports, Seats, Secrets, StoreError,
    StoreResult, Unavailable, lock_order,
};

use crate::booking::{Claim, Keyed};

use crate::booking::{Command, HoldPolicy};

use crate::domain::{
    Booking, BookingReference, Hold, Movie, ScreeningId, SeatId, SessionId, TakenSeat, UserId,
};
use crate::domain::{SessionInfo, SessionStatus, Verdict};
use crate::events::Hub;
use crate::reports::{Report, Rows};

/// The store's statements' one copy of the live-seat rule (`domain::seat_is_live`): a row of
/// `seat_holds` is taken if booked, or held and not past its deadline. Columns of `seat_holds`,
/// or of the alias given. (The functions of the migrations say it too: migrations/schema.sql.)
macro_rules! live_seat {
    () => {
        live_seat!("")
    };
    ($alias:literal) => {
        concat!(
            "(",
            $alias,
            "status = 'confirmed' or ",
            $alias,
            "expires_at > now())"
        )
    };
}

/// The lapsed-session rule (`SessionStatus::lapsed`) for the columns of `hold_sessions`, or of
/// the alias given: held, and past its deadline.
macro_rules! lapsed_session {
    () => {
        lapsed_session!("")
    };
    ($alias:literal) => {
        concat!(
            "(",
            $alias,
            "status = 'held' and ",
            $alias,
            "expires_at <= now())"
        )
    };
}

mod api;
mod hold;
mod link;
pub mod listener;
pub mod reports;

pub use hold::HoldQueue;
use link::Link;

/// Tasks deciding holds. A worker takes everything queued when it becomes free,
/// so fewer workers make fuller batches, and since a batch is one call (one round trip), a
/// fuller batch is nearly free: with wrk on the hot seat (fresh database, pool of 32), one
/// worker answered 10.0k/20.0k attempts/s at 8/32 clients against 4.3k/13.5k for two.
/// Every wait inside a batch is bounded by the statement timeout, and a dead worker is started
/// again (`store::batcher`).
const HOLD_WORKERS: usize = 1;

/// The statements of the hold batcher and the reaper: calls of migrations/0003's functions.
mod statements {
    /// Decides a batch of holds in one call.
    pub const HOLD_SEATS: &str = "select request, outcome, taken, held_until, decided_at, retry_at
         from hold_seats($1, $2, $3, $4, $5, $6, $7, $8::inet[], $9, $10, $11)";

    /// Deletes up to `$1` expired holds; returns how many went.
    pub const REAP_EXPIRED: &str = "select reap_expired($1)";

    /// Confirms session `$1`, gives it a booking reference, and records it for its seats (`$2`
    /// movies, `$3` seats, `$4` sessions, `$5` users), in one statement: what the ledger reads
    /// of the session (its seat count and deadline) is the same before and after the update.
    /// Answers the reference.
    pub const CONFIRM: &str = "with seats as (
             update seat_holds
             set status = 'confirmed', expires_at = null, confirmed_at = now(), client_ip = null
             where session_id = $1),
         session as (
             update hold_sessions
             set status = 'confirmed', confirmed_at = now(),
                 booking_reference = new_booking_reference()
             where id = $1
             returning booking_reference)
         select s.booking_reference, record_seat_changes('confirmed', $2, $3, $4, $5, null)::text
           from session s";

    /// Releases session `$1` and records it, as `CONFIRM` does.
    pub const RELEASE: &str = "with seats as (delete from seat_holds where session_id = $1),
         session as (
             update hold_sessions set status = 'released', ended_at = now() where id = $1)
         select record_seat_changes('released', $2, $3, $4, $5, null)";

    /// Extends session `$1` to now + `$6` seconds, but no later than `$7` seconds after its
    /// run began and only if it has been extended fewer than `$8` times and the new deadline
    /// is later; moves its runs' deadlines on with it; records it as `CONFIRM` does. Answers
    /// the new deadline and count, or no row.
    pub const EXTEND: &str = "with deadline as (
             select least(now() + make_interval(secs => $6),
                          coalesce(s.began_at, s.created_at) + make_interval(secs => $7)) as at
               from hold_sessions s
              where s.id = $1 and s.extensions < $8),
         session as (
             update hold_sessions s set expires_at = d.at, extensions = s.extensions + 1
               from deadline d
              where s.id = $1 and d.at > s.expires_at
             returning s.expires_at, s.extensions),
         seats as (
             update seat_holds h set expires_at = s.expires_at
               from session s
              where h.session_id = $1),
         runs as (
             update hold_marks m set until = s.expires_at
               from session s, seat_holds h
              where h.session_id = $1
                and m.movie_id = h.movie_id and m.seat_id = h.seat_id
                and m.holder in ('user:' || h.user_id, 'ip:' || host(h.client_ip))
                and m.until < s.expires_at)
         select s.expires_at, s.extensions,
                record_seat_changes('extended', $2, $3, $4, $5,
                                    array_fill(s.expires_at, array[cardinality($3)]))::text
           from session s";
}

/// How the connection pool is set up.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// How long a request waits for a connection before it is told 503.
    pub acquire_timeout: Duration,
    /// Server-side cap on one statement, lock waits included.
    pub statement_timeout: Duration,
    /// What the pool's URL points at.
    pub pooler: Pooler,
}

/// The defaults of the settings (`DB_MAX_CONNECTIONS` and the rest, README).
impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
            pooler: Pooler::Direct,
        }
    }
}

/// What the pool's connections reach (`DATABASE_POOLER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooler {
    /// PostgreSQL itself, or a pooler in session mode.
    #[default]
    Direct,
    /// A pooler in transaction mode, such as PgBouncer's `pool_mode = transaction`: every
    /// statement runs in an explicit transaction, unnamed, with its settings set in it
    /// (`link`). Migrations and the listening connection need a direct URL.
    Transaction,
}

impl std::str::FromStr for Pooler {
    type Err = &'static str;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "direct" => Ok(Self::Direct),
            "transaction" => Ok(Self::Transaction),
            _ => Err(
                "must be `transaction` (a pooler in transaction mode, such as PgBouncer's \
                      pool_mode = transaction) or `direct`",
            ),
        }
    }
}

#[derive(Clone)]
pub struct PgStore {
    link: Link,
    /// A connection straight to PostgreSQL, for what needs a session of its own: migrations
    /// (a session-level advisory lock) and listening for seat changes. Shared: the store is
    /// cloned into every route's handler for every connection, and a copy of the options is a
    /// handful of strings (measured: 15 KiB more per open event stream).
    direct: Arc<PgConnectOptions>,
    policy: HoldPolicy,
    /// Movies rarely change; a miss falls through to the database, so a room added with SQL
    /// is served without a restart.
    movies: Arc<RwLock<HashMap<String, Movie>>>,
    holds: hold::Holds,
    /// Fed by this process's listening connection, with every process's changes.
    events: Hub,
    _listener: Arc<listener::Listener>,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    movie_id: String,
    seat_count: i32,
    status: String,
    /// Still marked held, but its time has passed.
    lapsed: bool,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    extensions: i32,
    booking_reference: Option<String>,
}

impl PgStore {
    /// Connects lazily (`lazy_pool`) and runs migrations. `direct_url` (default: `url`)
    /// reaches PostgreSQL without a pooler in transaction mode.
    pub async fn connect(
        url: &str,
        direct_url: Option<&str>,
        pool: &PoolSettings,
        policy: HoldPolicy,
        queue: HoldQueue,
    ) -> StoreResult<Self> {
        let direct: PgConnectOptions = direct_url
            .unwrap_or(url)
            .parse()
            .map_err(StoreError::Database)?;
        let direct = session_options(direct.application_name("boxoffice"));
        let link = match pool.pooler {
            Pooler::Direct => Link::direct(lazy_pool(url, pool)?, pool.statement_timeout),
            Pooler::Transaction => Link::pooled(lazy_pool(url, pool)?, pool.statement_timeout),
        };
        let store = Self::build(link, direct, policy, queue);
        store.migrate().await?;
        Ok(store)
    }

    /// Sets the time zone the report views cut days in (`REPORT_TIME_ZONE`).
    pub async fn set_report_time_zone(&self, time_zone: &str) -> StoreResult<()> {
        let mut session = self.link.session().await.map_err(classify)?;
        reports::set_time_zone(&mut session, self.link.persistent(), time_zone).await?;
        session.done().await.map_err(classify)
    }

    /// Wraps a pool whose database is already migrated. Starts the hold batcher's workers,
    /// so it must be called inside a Tokio runtime.
    pub fn new(pool: PgPool, policy: HoldPolicy) -> Self {
        let direct = (*pool.connect_options()).clone();
        let statement_timeout = PoolSettings::default().statement_timeout;
        let link = Link::direct(pool, statement_timeout);
        Self::build(link, direct, policy, HoldQueue::default())
    }

    /// `new` for a pool whose connections go through a pooler in transaction mode (and have
    /// none of `session_options`); `direct` reaches the same database without it.
    pub fn behind_pooler(
        pool: PgPool,
        direct: PgConnectOptions,
        statement_timeout: Duration,
        policy: HoldPolicy,
    ) -> Self {
        let link = Link::pooled(pool, statement_timeout);
        Self::build(link, direct, policy, HoldQueue::default())
    }

    /// Starts the hold workers, and listening for seat changes on a connection of its own.
    fn build(link: Link, direct: PgConnectOptions, policy: HoldPolicy, queue: HoldQueue) -> Self {
        let events = Hub::waiting();
        let listener = listener::Listener::start(direct.clone(), events.clone());
        Self {
            holds: hold::Holds::start(link.clone(), policy, queue, HOLD_WORKERS),
            link,
            direct: Arc::new(direct),
            policy,
            movies: Arc::default(),
            events,
            _listener: Arc::new(listener),
        }
    }

    pub async fn migrate(&self) -> StoreResult<()> {
        let migrator = sqlx::migrate!();
        let migrated = if self.link.persistent() {
            migrator.run(&self.link.pool).await
        } else {
            // The migrator holds a session-level advisory lock throughout.
            let mut conn = PgConnection::connect_with(&self.direct)
                .await
                .map_err(classify)?;
            let migrated = migrator.run(&mut conn).await;
            let _ = conn.close().await;
            migrated
        };
        migrated.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => classify(e),
            other => StoreError::Database(sqlx::Error::Migrate(Box::new(other))),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.link.pool
    }

    /// Locks `user`'s session for the rest of the transaction, in the one lock order: its
    /// live seat rows (in seat order) first, then its row. Returns what confirm and release
    /// decide on; `SessionNotFound` unless the session is `user`'s, and then nothing is locked.
    async fn lock_session(
        &self,
        conn: &mut PgConnection,
        session: SessionId,
        user: &UserId,
    ) -> StoreResult<LockedSession> {
        let seats: Vec<String> = sqlx::query_scalar(concat!(
            "select seat_id from seat_holds where session_id = $1 and user_id = $2 and ",
            live_seat!(),
            r#" order by seat_id collate "C" for update"#
        ))
        .persistent(self.link.persistent())
        .bind(session.0)
        .bind(user.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(classify)?;
        let row: Option<SessionRow> = sqlx::query_as(concat!(
            "select movie_id, seat_count, status, ",
            lapsed_session!(),
            " as lapsed, created_at, expires_at, extensions, booking_reference
             from hold_sessions where id = $1 and user_id = $2 for update"
        ))
        .persistent(self.link.persistent())
        .bind(session.0)
        .bind(user.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(classify)?;
        let row = row.ok_or(StoreError::SessionNotFound)?;
        let status = SessionStatus::parse(&row.status)
            .ok_or_else(|| corrupt("hold_sessions.status", &row.status))?;
        let seats = seats
            .iter()
            .map(|s| SeatId::parse(s).map_err(|_| corrupt("seat_holds.seat_id", s)))
            .collect::<StoreResult<Vec<_>>>()?;
        // Part of a group that lapsed may have been taken over: the hold as a whole is gone.
        let complete = usize::try_from(row.seat_count).is_ok_and(|n| n == seats.len());
        let reference = row
            .booking_reference
            .map(|r| {
                BookingReference::parse(r.clone()).ok_or_else(|| corrupt("booking_reference", &r))
            })
            .transpose()?;
        Ok(LockedSession {
            movie_id: row.movie_id,
            lapsed: status == SessionStatus::Held && (row.lapsed || !complete),
            status,
            seats,
            created_at: row.created_at,
            expires_at: row.expires_at,
            extensions: u32::try_from(row.extensions).unwrap_or(0),
            reference,
        })
    }
}

impl LockedSession {
    /// `statement` (`CONFIRM`, `RELEASE` or `EXTEND`) for this session's rows, with the
    /// arguments of its side writes (the ledger rows, through `record_seat_changes`, where
    /// every change's go): `$1` the session, `$2`.. `$5` per seat its movie, seat, session and
    /// user.
    fn apply<'q, O>(
        &'q self,
        link: &Link,
        statement: &'static str,
        session: SessionId,
        user: &'q UserId,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>
    where
        O: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        let n = self.seats.len();
        sqlx::query_as(statement)
            .persistent(link.persistent())
            .bind(session.0)
            .bind(vec![self.movie_id.as_str(); n])
            .bind(self.seats.iter().map(SeatId::as_str).collect::<Vec<_>>())
            .bind(vec![session.0; n])
            .bind(vec![user.as_str(); n])
    }

    fn info(&self, session_id: SessionId) -> SessionInfo {
        SessionInfo {
            session_id,
            movie_id: self.movie_id.clone(),
            seats: self.seats.clone(),
            status: if self.lapsed {
                SessionStatus::Expired
            } else {
                self.status
            },
            created_at: self.created_at,
            expires_at: self.expires_at,
            extensions: self.extensions,
            reference: self.reference.clone(),
        }
    }
}

/// A session locked by `PgStore::lock_session`.
struct LockedSession {
    movie_id: String,
    status: SessionStatus,
    lapsed: bool,
    /// Its live seats, in seat order.
    seats: Vec<SeatId>,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    extensions: u32,
    reference: Option<BookingReference>,
}

/// A pool for `url` that connects lazily (the first query opens the first connection), each
/// connection with the store's settings and statement timeout: as start-up options, or,
/// behind a transaction pooler (which refuses them), set in every transaction (`link`).
fn lazy_pool(url: &str, settings: &PoolSettings) -> StoreResult<PgPool> {
    let options: PgConnectOptions = url.parse().map_err(StoreError::Database)?;
    let options = options.application_name("boxoffice");
    let options = match settings.pooler {
        Pooler::Direct => bounded(session_options(options), settings.statement_timeout),
        Pooler::Transaction => options,
    };
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        // sqlx pings every idle connection it hands out: a round trip before each read or
        // change, which doubled a seat-map read's time (BENCHMARKS.md, "Seat maps"). A
        // connection in use a moment ago is alive; one idle for longer (across a restart of
        // the database, say) is still checked, and replaced if dead.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= CHECK_IDLE_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options))
}

/// How long a pooled connection may sit idle and still be handed out unchecked.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// The database's own deadlines, in milliseconds, every connection of the store runs with: a
/// statement (lock waits included), a lock wait, and a transaction left idle (by a client that
/// hung between two of its statements) all end after `statement_timeout`, and the last also
/// ends the session, so that no row stays locked by a client gone quiet.
pub fn timeouts(statement_timeout: Duration) -> [(&'static str, String); 3] {
    let ms = statement_timeout.as_millis().to_string();
    [
        ("statement_timeout", ms.clone()),
        ("lock_timeout", ms.clone()),
        ("idle_in_transaction_session_timeout", ms),
    ]
}

/// `options` with the database's deadlines (`timeouts`) as start-up options.
pub fn bounded(options: PgConnectOptions, statement_timeout: Duration) -> PgConnectOptions {
    let timeouts = timeouts(statement_timeout);
    options.options(timeouts.iter().map(|(name, value)| (*name, value.as_str())))
}

/// The settings every connection of the store runs with.
///
/// Every statement is planned for its own arguments and the tables as they are now
/// (`force_custom_plan`): a plan cached while the tables were small, on a new database or
/// before the first analyze, would keep scanning them as they grew, and the foreign-key checks
/// PostgreSQL makes cache their plans in the same way. The functions of migrations/0003, which
/// run under a rush, pin key-lookup plans of their own and cache them.
pub fn session_options(options: PgConnectOptions) -> PgConnectOptions {
    options.options([("plan_cache_mode", "force_custom_plan")])
}

/// A row of `movies`.
type MovieRow = (String, String, i32, i32);

fn movie_of_row((id, title, rows, seats_per_row): MovieRow) -> Movie {
    Movie {
        id,
        title,
        rows,
        seats_per_row,
    }
}

impl Catalogue for PgStore {
    async fn movies(&self) -> StoreResult<Vec<Movie>> {
        let mut session = self.link.session().await.map_err(classify)?;
        let movies: Vec<MovieRow> =
            sqlx::query_as("select id, title, rows, seats_per_row from movies order by title, id")
                .persistent(self.link.persistent())
                .fetch_all(&mut *session)
                .await
                .map_err(classify)?;
        session.done().await.map_err(classify)?;
        let movies: Vec<Movie> = movies.into_iter().map(movie_of_row).collect();
        let mut cache = self.movies.write().expect("movie cache poisoned");
        cache.clear();
        cache.extend(movies.iter().map(|m| (m.id.clone(), m.clone())));
        Ok(movies)
    }

    async fn movie(&self, movie_id: &ScreeningId) -> StoreResult<Movie> {
        let movie_id = movie_id.as_str();
        if let Some(movie) = self
            .movies
            .read()
            .expect("movie cache poisoned")
            .get(movie_id)
        {
            return Ok(movie.clone());
        }
        let mut session = self.link.session().await.map_err(classify)?;
        let movie: Option<MovieRow> =
            sqlx::query_as("select id, title, rows, seats_per_row from movies where id = $1")
                .persistent(self.link.persistent())
                .bind(movie_id)
                .fetch_optional(&mut *session)
                .await
                .map_err(classify)?;
        session.done().await.map_err(classify)?;
        let movie = movie.map(movie_of_row).ok_or(StoreError::MovieNotFound)?;
        self.movies
            .write()
            .expect("movie cache poisoned")
            .insert(movie.id.clone(), movie.clone());
        Ok(movie)
    }
}

impl Seats for PgStore {
    async fn seat_map(&self, movie_id: &str) -> StoreResult<Vec<TakenSeat>> {
        let mut session = self.link.session().await.map_err(classify)?;
        let rows: Vec<(String, String, bool, Option<DateTime<Utc>>)> = sqlx::query_as(concat!(
            "select seat_id, user_id, status = 'confirmed', expires_at from seat_holds
             where movie_id = $1 and ",
            live_seat!(),
            r#" order by seat_id collate "C""#
        ))
        .persistent(self.link.persistent())
        .bind(movie_id)
        .fetch_all(&mut *session)
        .await
        .map_err(classify)?;
        session.done().await.map_err(classify)?;
        rows.into_iter()
            .map(|(seat_id, user_id, confirmed, expires_at)| {
                Ok(TakenSeat {
                    seat_id: SeatId::parse(&seat_id)
                        .map_err(|_| corrupt("seat_holds.seat_id", &seat_id))?,
                    user_id: UserId::parse_stored(user_id)
                        .map_err(|e| corrupt("seat_holds.user_id", &e.to_string()))?,
                    confirmed,
                    expires_at,
                })
            })
            .collect()
    }

    async fn hold(
        &self,
        movie: &Movie,
        seats: Vec<SeatId>,
        user: &UserId,
        from: Option<IpAddr>,
    ) -> StoreResult<Hold> {
        let request = hold::Request {
            movie_id: movie.id.clone(),
            seats: lock_order(seats)?,
            user: user.clone(),
            from,
        };
        // Groups too: `hold_seats` settles a group that got only some of its seats by
        // deleting them, and decides again whoever lost a seat to it, so batching changes no
        // answer; it saves a commit per group (BENCHMARKS.md, "Group holds").
        self.holds.hold(request).await
    }

    async fn confirm(&self, session: SessionId, user: &UserId) -> StoreResult<Booking> {
        let mut tx = self.link.begin().await.map_err(classify)?;
        let booking = self.confirm_in(&mut tx, session, user).await?;
        tx.commit().await.map_err(uncommitted)?;
        Ok(booking)
    }

    async fn release(&self, session: SessionId, user: &UserId) -> StoreResult<()> {
        let mut tx = self.link.begin().await.map_err(classify)?;
        let found = self.lock_session(&mut tx, session, user).await?;
        if found.status.release(found.lapsed)? == Verdict::Apply {
            found
                .apply::<()>(&self.link, statements::RELEASE, session, user)
                .fetch_all(&mut *tx)
                .await
                .map_err(classify)?;
            tx.commit().await.map_err(uncommitted)?;
            tracing::debug!(%session, seats = ?found.seats, "released");
        }
        Ok(())
    }

    async fn execute(
        &self,
        user: &UserId,
        command: Command,
        claim: Option<Claim<'_>>,
    ) -> StoreResult<Keyed> {
        self.execute_command(user, command, claim).await
    }

    async fn session(&self, session: SessionId, user: &UserId) -> StoreResult<SessionInfo> {
        self.session_info(session, user).await
    }

    async fn user_sessions(&self, user: &UserId) -> StoreResult<Vec<SessionInfo>> {
        self.sessions_of(user).await
    }
}

impl Secrets for PgStore {
    fn identity_secret(&self) -> Pin<Box<dyn Future<Output = StoreResult<Vec<u8>>> + Send + '_>> {
        Box::pin(self.kept_identity_secret())
    }
}

impl Reports for PgStore {
    fn report<'a>(
        &'a self,
        report: Report,
        movie: Option<&'a str>,
    ) -> Pin<Box<dyn Future<Output = StoreResult<Rows>> + Send + 'a>> {
        Box::pin(async move {
            let mut session = self.link.session().await.map_err(classify)?;
            let rows = reports::fetch(&mut session, report, movie).await?;
            session.done().await.map_err(classify)?;
            Ok(rows)
        })
    }
}

/// With the reports of its views, and the secret it keeps.
impl From<PgStore> for Backend<PgStore> {
    fn from(store: PgStore) -> Self {
        Self {
            secrets: Some(Arc::new(store.clone())),
            reports: Some(Arc::new(store.clone())),
            store,
        }
    }
}

impl Housekeeping for PgStore {
    async fn forget_keys(&self, batch: u32) -> StoreResult<u64> {
        self.forget_old_keys(batch).await
    }

    async fn forget_sessions(&self, batch: u32) -> StoreResult<u64> {
        self.forget_old_sessions(batch).await
    }

    async fn forget_runs(&self, batch: u32) -> StoreResult<u64> {
        self.forget_old_runs(batch).await
    }

    async fn reap_expired(&self, batch: u32) -> StoreResult<u64> {
        let mut session = self.link.session().await.map_err(classify)?;
        let persistent = self.link.persistent();
        let reaped: i32 = session
            .within(&self.link, async |conn| {
                sqlx::query_scalar(statements::REAP_EXPIRED)
                    .persistent(persistent)
                    .bind(i32::try_from(batch).unwrap_or(i32::MAX))
                    .fetch_one(conn)
                    .await
            })
            .await
            .map_err(classify)?;
        session.done().await.map_err(classify)?;
        Ok(u64::try_from(reaped).unwrap_or(0))
    }
}

impl ChangeFeed for PgStore {
    fn events(&self) -> &Hub {
        &self.events
    }
}

impl Health for PgStore {
    fn observe(&self) {
        let pool = &self.link.pool;
        let (size, idle) = (pool.size(), pool.num_idle() as u32);
        let connections = |state: &'static str| metrics::gauge!(crate::telemetry::POOL_CONNECTIONS, "state" => state);
        connections("idle").set(f64::from(idle));
        connections("in_use").set(f64::from(size.saturating_sub(idle)));
        metrics::gauge!(crate::telemetry::HOLD_QUEUE_DEPTH).set(self.holds.queued() as f64);
    }

    async fn ping(&self) -> StoreResult<()> {
        let mut session = self.link.session().await.map_err(classify)?;
        let persistent = self.link.persistent();
        session
            .within(&self.link, async |conn| {
                sqlx::query("select 1")
                    .persistent(persistent)
                    .execute(conn)
                    .await
            })
            .await
            .map_err(classify)?;
        session.done().await.map_err(classify)?;
        self.holds.ready()
    }
}

/// Sorts a database error into "try again later" (503) and "bug" (500). A transient one is
/// logged here, once, however many requests it answers.
pub(crate) fn classify(error: sqlx::Error) -> StoreError {
    use Unavailable::*;
    let why = match &error {
        sqlx::Error::PoolTimedOut => Some(PoolExhausted),
        sqlx::Error::PoolClosed | sqlx::Error::Io(_) => Some(Unreachable),
        sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) => Some(Unreachable),
        sqlx::Error::Database(db) => db.code().and_then(|code| match (&code[..2], &*code) {
            // lock timeout, statement timeout (a cancel), a transaction left idle too long
            (_, "55P03" | "57014" | "25P03") => Some(TimedOut),
            // serialization failure, deadlock
            (_, "40001" | "40P01") => Some(Conflict),
            // out of resources
            ("53", _) => Some(Overloaded),
            // connection exception, refused login, operator intervention (shutdown),
            // database not accepting connections, database missing
            ("08" | "28" | "57", _) | (_, "55000" | "3D000") => Some(Unreachable),
            _ => None,
        }),
        _ => None,
    };
    match why {
        Some(why) => {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "database unavailable: {why}"
            );
            StoreError::Unavailable(why)
        }
        None => StoreError::Database(error),
    }
}

/// A failed commit: PostgreSQL answered, so it did not commit; or the answer was lost, and it
/// may have.
pub(crate) fn uncommitted(error: sqlx::Error) -> StoreError {
    match error {
        sqlx::Error::Database(_) => classify(error),
        _ => StoreError::OutcomeUnknown,
    }
}

fn corrupt(column: &str, value: &str) -> StoreError {
    StoreError::Database(sqlx::Error::Decode(
        format!("{column} holds an invalid value {value:?}").into(),
    ))
}
