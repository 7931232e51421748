//! The API's commands on PostgreSQL: group and best-available holds, confirm and extend, each
//! in one transaction with its idempotency key when it has one; and what sessions show their
//! owners.
//!
//! An idempotency key is written in the transaction of its change, so it is invisible while
//! that change is under way: a duplicate would not see it and would do the change again. So
//! the transaction first takes a try-lock on (user, key), held to its end: a duplicate that
//! cannot take it is in flight (409), one that can sees the key if the first committed.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::hold::{self, Request};
use super::{LockedSession, PgStore, classify, corrupt, statements, uncommitted};
use crate::booking::{Claim, Kept, Keyed};
use crate::booking::{Command, Effect, KEY_LIFETIME, Want};
use crate::domain::seating::Room;
use crate::domain::{Booking, BookingReference, Hold, Movie, SeatId, SessionId, UserId};
use crate::domain::{SessionInfo, SessionStatus, Verdict};
use crate::store::{StoreError, StoreResult, Unavailable, lock_order, to_keep};

/// Advisory lock classes, beside the per-user and per-address ones of `hold_seats` (45253,
/// 45256).
const KEY_LOCK: i32 = 45254;
const MOVIE_LOCK: i32 = 45255;

/// How many times a best-available hold picks again after a named hold took one of its seats
/// between its read and its insert; each time the room has fewer free seats.
const MAX_PICKS: usize = 64;

mod sql {
    /// Whether this transaction may act for key `$2` of user `$1`: a try-lock, never a wait.
    /// Two keys whose hashes meet are told "in flight" while both are: rare, and retried.
    pub const CLAIM: &str = "select pg_try_advisory_xact_lock($1, hashtext($2 || ' ' || $3))";

    /// The key's kept answer, if any, and how many keys the user keeps (old ones not yet
    /// forgotten included): always one row.
    pub const KEPT: &str = "select k.fingerprint, k.outcome::text, k.status, k.body,
                (select count(*) from idempotency_keys where user_id = $1) as keys
           from (select) as one
           left join idempotency_keys k
             on k.user_id = $1 and k.key = $2
            and k.created_at > now() - make_interval(secs => $3)";

    /// A key past its lifetime but not yet deleted is written over.
    pub const KEEP: &str = "insert into idempotency_keys (user_id, key, fingerprint, outcome)
         values ($1, $2, $3, $4::jsonb)
         on conflict (user_id, key) do update
         set fingerprint = excluded.fingerprint, outcome = excluded.outcome, status = null,
             body = null, created_at = now()";

    pub const FORGET: &str = "with doomed as (
             select user_id, key from idempotency_keys
              where created_at <= now() - make_interval(secs => $2)
              limit $1
                for update skip locked)
         delete from idempotency_keys k using doomed d
          where k.user_id = d.user_id and k.key = d.key";

    /// Released and expired sessions past their retention, oldest first. One without seat
    /// rows only (a session's are gone when it ends; the check keeps a stray one from
    /// failing the whole batch on the foreign key).
    /// Runs of holds whose re-hold window has passed.
    pub const FORGET_RUNS: &str = "with doomed as (
             select movie_id, seat_id, holder from hold_marks
              where until <= now() - make_interval(secs => $2)
              limit $1
                for update skip locked)
         delete from hold_marks m using doomed d
          where m.movie_id = d.movie_id and m.seat_id = d.seat_id and m.holder = d.holder";

    pub const FORGET_SESSIONS: &str = "with doomed as (
             select id from hold_sessions s
              where ended_at < now() - make_interval(secs => $2)
                and not exists (select from seat_holds h where h.session_id = s.id)
              order by ended_at
              limit $1
                for update skip locked)
         delete from hold_sessions s using doomed d where s.id = d.id";

    /// Seats taken now (live holds and bookings) in a room.
    pub const TAKEN: &str = concat!(
        "select seat_id from seat_holds where movie_id = $1 and ",
        live_seat!()
    );

    /// Sessions as their owner sees them. A held one is expired once its deadline passed or
    /// some of its seats went to someone else (taken over after it lapsed).
    const SESSION_COLUMNS: &str = "s.id, s.movie_id, s.seat_ids,
         case when s.status = 'held'
                   and (s.expires_at <= now()
                        or s.seat_count > (select count(*) from seat_holds h
                                            where h.session_id = s.id and h.expires_at > now()))
              then 'expired' else s.status end as status,
         s.created_at, s.expires_at, s.extensions, s.booking_reference
         from hold_sessions s";

    pub fn session() -> String {
        format!("select {SESSION_COLUMNS} where s.id = $1 and s.user_id = $2")
    }

    pub fn user_sessions() -> String {
        format!(
            "select * from (select {SESSION_COLUMNS} where s.user_id = $1
                              and s.status in ('held', 'confirmed')) s
              where s.status <> 'expired' order by s.created_at, s.id"
        )
    }

    /// The signing secret: `$1` unless one was kept before.
    pub const IDENTITY_SECRET: &str = "with made as (
             insert into identity_secret (secret) values ($1)
             on conflict do nothing returning secret)
         select secret from made union all select secret from identity_secret limit 1";
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: Uuid,
    movie_id: String,
    seat_ids: Vec<String>,
    status: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    extensions: i32,
    booking_reference: Option<String>,
}

impl SessionRow {
    fn info(self) -> StoreResult<SessionInfo> {
        let seats = self
            .seat_ids
            .iter()
            .map(|s| SeatId::parse(s).map_err(|_| corrupt("hold_sessions.seat_ids", s)))
            .collect::<StoreResult<_>>()?;
        let reference = self
            .booking_reference
            .map(|r| {
                BookingReference::parse(r.clone())
                    .ok_or_else(|| corrupt("hold_sessions.booking_reference", &r))
            })
            .transpose()?;
        Ok(SessionInfo {
            session_id: SessionId(self.id),
            movie_id: self.movie_id,
            seats,
            status: SessionStatus::parse(&self.status)
                .ok_or_else(|| corrupt("hold_sessions.status", &self.status))?,
            created_at: self.created_at,
            expires_at: self.expires_at,
            extensions: u32::try_from(self.extensions).unwrap_or(0),
            reference,
        })
    }
}

/// A key's fingerprint, typed outcome, or the status and body of an answer kept before
/// typed outcomes, and how many keys its user keeps.
type KeptRow = (
    Option<String>,
    Option<String>,
    Option<i16>,
    Option<String>,
    i64,
);

impl PgStore {
    /// `Seats::execute`. Without a key, holds of named seats and confirms take the paths
    /// the seed routes take (single seats through the batcher).
    pub(super) async fn execute_command(
        &self,
        user: &UserId,
        command: Command,
        claim: Option<Claim<'_>>,
    ) -> StoreResult<Keyed> {
        use crate::store::Seats;
        let effect = match (command, &claim) {
            (
                Command::Hold {
                    movie,
                    want: Want::Seats(seats),
                    from,
                },
                None,
            ) => self.hold(&movie, seats, user, from).await.map(Effect::Held),
            (Command::Confirm(session), None) => {
                self.confirm(session, user).await.map(Effect::Confirmed)
            }
            (command, _) => return self.in_transaction(user, command, claim).await,
        };
        effect.map(Keyed::Done)
    }

    /// One transaction: the key's claim, the command, the key with its kept response. It
    /// ends here, committed or rolled back, before the answer goes: a dropped transaction
    /// would be rolled back only when its connection is next used, and would keep the key's
    /// lock (behind a transaction pooler, a server connection too) until then.
    async fn in_transaction(
        &self,
        user: &UserId,
        command: Command,
        claim: Option<Claim<'_>>,
    ) -> StoreResult<Keyed> {
        let mut tx = self.link.begin().await.map_err(classify)?;
        let (outcome, write) = self.in_tx(&mut tx, user, command, claim).await;
        if !write {
            let _ = tx.rollback().await;
            return outcome;
        }
        tx.commit().await.map_err(uncommitted)?;
        outcome
    }

    /// The body of `in_transaction`; also says whether there is anything to commit.
    async fn in_tx(
        &self,
        tx: &mut PgConnection,
        user: &UserId,
        command: Command,
        claim: Option<Claim<'_>>,
    ) -> (StoreResult<Keyed>, bool) {
        if let Some(claim) = &claim {
            match self.claim(tx, user, claim).await {
                Ok(None) => {}
                Ok(Some(replay)) => return (Ok(Keyed::Replayed(replay)), false),
                Err(error) => return (Err(error), false),
            }
        }
        let outcome = match command {
            Command::Hold { movie, want, from } => self
                .hold_in(tx, &movie, want, user, from)
                .await
                .map(Effect::Held),
            Command::Confirm(session) => self
                .confirm_in(tx, session, user)
                .await
                .map(Effect::Confirmed),
            Command::Extend(session) => self
                .extend_in(tx, session, user)
                .await
                .map(Effect::Extended),
        };
        let kept = claim.and_then(|claim| Some((claim, to_keep(&outcome)?)));
        let Some((claim, kept)) = kept else {
            // Nothing to keep: commit the change, if there is one.
            let write = outcome.is_ok();
            return (outcome.map(Keyed::Done), write);
        };
        let kept = sqlx::query(sql::KEEP)
            .persistent(self.link.persistent())
            .bind(user.as_str())
            .bind(claim.key)
            .bind(claim.fingerprint)
            .bind(serde_json::to_string(&kept).expect("an outcome serializes"))
            .execute(&mut *tx)
            .await
            .map_err(classify);
        match kept {
            Ok(_) => (outcome.map(Keyed::Done), true),
            Err(error) => (Err(error), false),
        }
    }

    /// Takes the key's try-lock and reads what it keeps: `Some` to replay, `None` to go on
    /// once the claim's gate admits a new key.
    async fn claim(
        &self,
        tx: &mut PgConnection,
        user: &UserId,
        claim: &Claim<'_>,
    ) -> StoreResult<Option<Kept>> {
        let claimed: bool = sqlx::query_scalar(sql::CLAIM)
            .persistent(self.link.persistent())
            .bind(KEY_LOCK)
            .bind(user.as_str())
            .bind(claim.key)
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
        if !claimed {
            return Err(StoreError::KeyInFlight);
        }
        let kept: KeptRow = sqlx::query_as(sql::KEPT)
            .persistent(self.link.persistent())
            .bind(user.as_str())
            .bind(claim.key)
            .bind(KEY_LIFETIME.as_secs_f64())
            .fetch_one(&mut *tx)
            .await
            .map_err(classify)?;
        match kept {
            (Some(fingerprint), ..) if fingerprint != claim.fingerprint => {
                Err(StoreError::KeyReused)
            }
            (Some(_), Some(outcome), _, _, _) => serde_json::from_str(&outcome)
                .map(Some)
                .map_err(|_| corrupt("idempotency_keys.outcome", &outcome)),
            (Some(_), None, Some(status), Some(body), _) => Ok(Some(Kept::Answer {
                status: u16::try_from(status)
                    .map_err(|_| corrupt("idempotency_keys.status", &status.to_string()))?,
                body,
            })),
            (.., keys) => {
                (claim.admit)(u64::try_from(keys).unwrap_or(0)).map_err(StoreError::Refused)?;
                Ok(None)
            }
        }
    }

    async fn hold_in(
        &self,
        tx: &mut PgConnection,
        movie: &Movie,
        want: Want,
        user: &UserId,
        from: Option<IpAddr>,
    ) -> StoreResult<Hold> {
        let request = |seats| Request {
            movie_id: movie.id.clone(),
            seats,
            user: user.clone(),
            from,
        };
        let quantity = match want {
            Want::Seats(seats) => {
                let request = request(lock_order(seats)?);
                return hold::hold_in(tx, &self.link, self.policy, &request).await;
            }
            Want::Best(quantity) => quantity,
        };
        // Best-available picks of one room would all pick the same seats: one at a time. Taken
        // before any other lock of the transaction, and only here, so it closes no cycle.
        sqlx::query("select pg_advisory_xact_lock($1, hashtext($2))")
            .persistent(self.link.persistent())
            .bind(MOVIE_LOCK)
            .bind(&movie.id)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        for _ in 0..MAX_PICKS {
            let taken: Vec<String> = sqlx::query_scalar(sql::TAKEN)
                .persistent(self.link.persistent())
                .bind(&movie.id)
                .fetch_all(&mut *tx)
                .await
                .map_err(classify)?;
            let taken: Vec<SeatId> = taken.iter().filter_map(|s| SeatId::parse(s).ok()).collect();
            let room = Room::new(movie, &taken);
            let seats = room
                .best(quantity)
                .ok_or(StoreError::NotEnoughSeats { free: room.free() })?;
            match hold::hold_in(tx, &self.link, self.policy, &request(seats)).await {
                // A hold of named seats took one since the read: pick again.
                Err(StoreError::SeatTaken(_)) => continue,
                answer => return answer,
            }
        }
        Err(StoreError::Unavailable(Unavailable::Conflict))
    }

    /// Confirms in `tx`, which the caller commits.
    pub(super) async fn confirm_in(
        &self,
        tx: &mut PgConnection,
        session: SessionId,
        user: &UserId,
    ) -> StoreResult<Booking> {
        let found = self.lock_session(tx, session, user).await?;
        let reference = match found.status.confirm(found.lapsed)? {
            Verdict::AlreadyDone => found.reference.clone(),
            Verdict::Apply => {
                let (reference, _): (String, Option<String>) = found
                    .apply(&self.link, statements::CONFIRM, session, user)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(classify)?;
                BookingReference::parse(reference.clone())
            }
        };
        let reference = reference.ok_or_else(|| corrupt("booking_reference", "(none)"))?;
        tracing::debug!(%session, seats = ?found.seats, "confirmed");
        Ok(Booking {
            session_id: session,
            movie_id: found.movie_id,
            seats: found.seats,
            user_id: user.clone(),
            reference,
        })
    }

    async fn extend_in(
        &self,
        tx: &mut PgConnection,
        session: SessionId,
        user: &UserId,
    ) -> StoreResult<SessionInfo> {
        let found: LockedSession = self.lock_session(tx, session, user).await?;
        found.status.extend(found.lapsed)?;
        let extended: Option<(DateTime<Utc>, i32, Option<String>)> = found
            .apply(&self.link, statements::EXTEND, session, user)
            .bind(self.policy.ttl.as_secs_f64())
            .bind(self.policy.max_lifetime.as_secs_f64())
            .bind(i32::try_from(self.policy.max_extensions).unwrap_or(i32::MAX))
            .fetch_optional(&mut *tx)
            .await
            .map_err(classify)?;
        let (expires_at, extensions, _) = extended.ok_or(StoreError::ExtensionLimit)?;
        let mut info = found.info(session);
        info.expires_at = expires_at;
        info.extensions = u32::try_from(extensions).unwrap_or(0);
        Ok(info)
    }

    pub(super) async fn session_info(
        &self,
        session: SessionId,
        user: &UserId,
    ) -> StoreResult<SessionInfo> {
        let mut conn = self.link.session().await.map_err(classify)?;
        let row: Option<SessionRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql::session()))
            .persistent(self.link.persistent())
            .bind(session.0)
            .bind(user.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(classify)?;
        conn.done().await.map_err(classify)?;
        row.ok_or(StoreError::SessionNotFound)?.info()
    }

    pub(super) async fn sessions_of(&self, user: &UserId) -> StoreResult<Vec<SessionInfo>> {
        let mut conn = self.link.session().await.map_err(classify)?;
        let rows: Vec<SessionRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql::user_sessions()))
            .persistent(self.link.persistent())
            .bind(user.as_str())
            .fetch_all(&mut *conn)
            .await
            .map_err(classify)?;
        conn.done().await.map_err(classify)?;
        rows.into_iter().map(SessionRow::info).collect()
    }

    pub(super) async fn kept_identity_secret(&self) -> StoreResult<Vec<u8>> {
        let candidate = crate::identity::random_secret();
        let mut conn = self.link.session().await.map_err(classify)?;
        let secret: Vec<u8> = sqlx::query_scalar(sql::IDENTITY_SECRET)
            .persistent(self.link.persistent())
            .bind(candidate)
            .fetch_one(&mut *conn)
            .await
            .map_err(classify)?;
        conn.done().await.map_err(classify)?;
        Ok(secret)
    }

    pub(super) async fn forget_old_keys(&self, batch: u32) -> StoreResult<u64> {
        self.forget(sql::FORGET, batch, KEY_LIFETIME).await
    }

    pub(super) async fn forget_old_runs(&self, batch: u32) -> StoreResult<u64> {
        self.forget(sql::FORGET_RUNS, batch, self.policy.rehold_window)
            .await
    }

    pub(super) async fn forget_old_sessions(&self, batch: u32) -> StoreResult<u64> {
        self.forget(sql::FORGET_SESSIONS, batch, self.policy.session_retention)
            .await
    }

    /// Runs a deletion of up to `batch` rows older than `age`.
    async fn forget(&self, statement: &'static str, batch: u32, age: Duration) -> StoreResult<u64> {
        let mut session = self.link.session().await.map_err(classify)?;
        let persistent = self.link.persistent();
        let gone = session
            .within(&self.link, async |conn| {
                sqlx::query(statement)
                    .persistent(persistent)
                    .bind(i64::from(batch))
                    .bind(age.as_secs_f64())
                    .execute(conn)
                    .await
            })
            .await
            .map_err(classify)?;
        session.done().await.map_err(classify)?;
        Ok(gone.rows_affected())
    }
}
