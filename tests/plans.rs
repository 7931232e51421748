//! Every operation of the store reads only the rows it is about, even when its connection made
//! (and cached) its plans while the tables were empty, and the tables then filled without an
//! analyze: a new database on its first night, or the morning after an analyze that saw nothing
//! held. An operation that scanned a table instead would get slower with every hold of the rush.
//!
//! The store's pool has one connection, so each operation's reads, its foreign-key checks
//! included, show in `pg_stat_user_tables` for that connection's backend. Holds are of two
//! seats: a group is decided on a pool connection, while single-seat holds are batched on the
//! hold workers' own connections, with the same `hold_seats` call.

mod common;

use std::future::Future;

use boxoffice::booking::{Claim, Keyed};
use boxoffice::booking::{Command, Effect, Want};
use boxoffice::domain::{Hold, Movie, SessionId, UserId};
use boxoffice::store::{Catalogue, Housekeeping, PgStore, Seats, StoreError};
use common::{LONG_TTL, TestDb, policy};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// What the tables hold once they have filled: bookings, live holds and lapsed holds, each
/// with its session, in rooms of their own.
const BOOKINGS: i64 = 5_000;
const LIVE: i64 = 2_000;
const EXPIRED: i64 = 100;
/// The most rows one operation on one or two seats may read from a table.
const FEW: i64 = 10;

/// What the planner knows when the store's connection makes its plans.
#[derive(Clone, Copy, PartialEq)]
enum Statistics {
    /// Migrations just ran; nothing has been analysed.
    NeverAnalysed,
    /// Analysed while every table was empty.
    AnalysedEmpty,
    /// Analysed when the bookings were in but nothing was held.
    AnalysedNothingHeld,
}

#[tokio::test]
async fn plans_made_on_a_never_analysed_database_survive_the_rush() {
    operations_read_only_their_rows(Statistics::NeverAnalysed).await;
}

#[tokio::test]
async fn plans_made_on_tables_analysed_empty_survive_the_rush() {
    operations_read_only_their_rows(Statistics::AnalysedEmpty).await;
}

#[tokio::test]
async fn plans_made_when_nothing_was_held_survive_the_rush() {
    operations_read_only_their_rows(Statistics::AnalysedNothingHeld).await;
}

async fn operations_read_only_their_rows(statistics: Statistics) {
    let db = TestDb::new().await;
    // One connection, so that `reads` can make it hand its counters over.
    let admin = db.pool(1).await;
    let rooms: Vec<_> = (1..=10)
        .map(|g| common::Rectangle::new(format!("room-{g}"), format!("Room {g}"), 26, 50))
        .collect();
    common::rectangular_screenings(&admin, &rooms).await;
    match statistics {
        Statistics::NeverAnalysed => {}
        Statistics::AnalysedEmpty => sql(&admin, "analyze").await,
        Statistics::AnalysedNothingHeld => {
            fill(&admin, 0, BOOKINGS, "confirmed").await;
            sql(&admin, "analyze").await;
        }
    }
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(db.options())
        .await
        .unwrap();
    let store = PgStore::new(pool, policy(LONG_TTL, 8));
    let room = store.movie(&common::screening("room-1")).await.unwrap();

    // Every operation, enough times for each statement to settle on a cached plan.
    for i in 0..8 {
        let user = user(&format!("early-{i}"));
        let row = char::from(b'A' + i);
        every_operation(&store, &admin, &room, row, &user).await;
    }

    if statistics != Statistics::AnalysedNothingHeld {
        fill(&admin, 0, BOOKINGS, "confirmed").await;
    }
    fill(&admin, BOOKINGS, LIVE, "live").await;
    fill(&admin, BOOKINGS + LIVE, EXPIRED, "expired").await;

    // The same operations on the full tables, one at a time, counted.
    let room = store.movie(&common::screening("room-9")).await.unwrap();
    let user = user("late");
    // Pairs of seats, held as `hold` does, on the pool's one connection, the one counted here.
    let pair = |first: u32| {
        vec![
            room.seat(&format!("Y{first}")).unwrap(),
            room.seat(&format!("Y{}", first + 1)).unwrap(),
        ]
    };
    let held = within(
        &store,
        &admin,
        "a hold",
        FEW,
        hold(&store, &room, pair(1), &user),
    )
    .await
    .unwrap();
    let refused = within(
        &store,
        &admin,
        "a hold on taken seats",
        FEW,
        hold(&store, &room, pair(1), &other()),
    )
    .await;
    assert!(
        matches!(refused, Err(StoreError::SeatTaken(_))),
        "{refused:?}"
    );
    within(
        &store,
        &admin,
        "a confirm",
        FEW,
        store.confirm(held.session_id, &user),
    )
    .await
    .unwrap();
    let second = hold(&store, &room, pair(3), &user).await.unwrap();
    within(
        &store,
        &admin,
        "a release",
        FEW,
        store.release(second.session_id, &user),
    )
    .await
    .unwrap();
    let extended = hold(&store, &room, pair(7), &user).await.unwrap();
    within(
        &store,
        &admin,
        "an extension",
        FEW,
        extend(&store, &extended, &user),
    )
    .await;
    let lapsed = hold(&store, &room, pair(5), &user).await.unwrap();
    lapse(&admin, lapsed.session_id).await;
    within(
        &store,
        &admin,
        "a takeover of lapsed seats",
        FEW,
        hold(&store, &room, pair(5), &other()),
    )
    .await
    .unwrap();
    within(&store, &admin, "a seat map", FEW, store.seat_map("room-9"))
        .await
        .unwrap();
    // Each expired row is read twice, to lock it and to delete it; nothing else.
    let reaped = within(
        &store,
        &admin,
        "the reaper",
        2 * EXPIRED,
        store.reap_expired(1_000),
    )
    .await;
    assert_eq!(
        reaped.unwrap(),
        EXPIRED as u64,
        "every lapsed hold is reaped"
    );
}

/// Holds `seats` for `user` under an idempotency key of its own: a keyed hold runs
/// `hold_seats` in a transaction on the pool's connection, which `reads` can make hand its
/// counters over (unkeyed holds are decided on the hold workers' own connections, whose
/// counters come in when those backends next flush them). The SQL is the same.
async fn hold(
    store: &PgStore,
    room: &Movie,
    seats: Vec<boxoffice::domain::SeatId>,
    user: &UserId,
) -> Result<Hold, StoreError> {
    let key = uuid::Uuid::new_v4().to_string();
    let claim = Claim {
        key: &key,
        fingerprint: "plans",
        admit: &|_| Ok(()),
    };
    // Each user from an address: the cap per address and the runs of holds are read too.
    let from = if user.as_str().starts_with("other-") {
        "192.0.2.2"
    } else {
        "192.0.2.1"
    };
    let command = Command::Hold {
        movie: room.clone(),
        want: Want::Seats(seats),
        from: Some(from.parse().unwrap()),
    };
    match store.execute(user, command, Some(claim)).await? {
        Keyed::Done(Effect::Held(hold)) => Ok(hold),
        other => panic!("a hold answered {other:?}"),
    }
}

async fn extend(store: &PgStore, hold: &Hold, user: &UserId) {
    let command = Command::Extend(hold.session_id);
    match store.execute(user, command, None).await {
        Ok(Keyed::Done(Effect::Extended(session))) => {
            assert!(session.expires_at > hold.expires_at, "{session:?}");
        }
        other => panic!("an extension answered {other:?}"),
    }
}

/// Runs each operation once for `user` on `seat` of `room` (and the seat after it).
async fn every_operation(store: &PgStore, admin: &PgPool, room: &Movie, row: char, user: &UserId) {
    let pair = |first: u32| {
        vec![
            room.seat(&format!("{row}{first}")).unwrap(),
            room.seat(&format!("{row}{}", first + 1)).unwrap(),
        ]
    };
    let held = hold(store, room, pair(1), user).await.unwrap();
    assert!(matches!(
        hold(store, room, pair(1), &other()).await,
        Err(StoreError::SeatTaken(_))
    ));
    store.confirm(held.session_id, user).await.unwrap();
    let extended = hold(store, room, pair(7), user).await.unwrap();
    extend(store, &extended, user).await;
    store.release(extended.session_id, user).await.unwrap();
    let group = hold(store, room, pair(3), user).await.unwrap();
    store.release(group.session_id, user).await.unwrap();
    let lapsed = hold(store, room, pair(5), user).await.unwrap();
    lapse(admin, lapsed.session_id).await;
    let taken_over = hold(store, room, pair(5), &other()).await.unwrap();
    lapse(admin, taken_over.session_id).await;
    store.reap_expired(100).await.unwrap();
    store.seat_map(&room.id).await.unwrap();
}

/// Runs `operation` and checks that it scanned none of `seat_holds`, `hold_sessions` and
/// `hold_marks` and read at most `most` rows of each.
async fn within<T>(
    store: &PgStore,
    admin: &PgPool,
    what: &str,
    most: i64,
    operation: impl Future<Output = T>,
) -> T {
    let before = reads(store, admin).await;
    let result = operation.await;
    let after = reads(store, admin).await;
    for ((table, scans_before, rows_before), (_, scans_after, rows_after)) in
        before.iter().zip(&after)
    {
        let (scans, rows) = (scans_after - scans_before, rows_after - rows_before);
        assert!(
            scans == 0 && rows <= most,
            "{what}: {scans} sequential scans of {table} and {rows} rows read (at most {most} expected)"
        );
    }
    result
}

/// Sequential scans and rows read, per table, as of the store connection's last statement.
async fn reads(store: &PgStore, admin: &PgPool) -> Vec<(String, i64, i64)> {
    // Each connection hands its counters over when it next goes idle, so this one's below
    // are whole. The admin connection's too: a backend flushes lazily (at most once a second,
    // or when idle for a while), and the fill's foreign-key reads of hold_sessions, were they
    // flushed during an operation, would be counted as the operation's.
    for pool in [store.pool(), admin] {
        sqlx::query("select pg_stat_force_next_flush()")
            .execute(pool)
            .await
            .unwrap();
    }
    sqlx::query_as(
        "select relname::text, seq_scan, seq_tup_read + coalesce(idx_tup_fetch, 0)
         from pg_stat_user_tables where relname in ('seat_holds', 'hold_sessions', 'hold_marks')
         order by relname",
    )
    .fetch_all(admin)
    .await
    .unwrap()
}

/// `count` seat rows from the `from`-th seat of the rooms 2 to 8 (1,300 seats each), each with
/// a session of its own: bookings, live holds or lapsed ones.
async fn fill(admin: &PgPool, from: i64, count: i64, kind: &str) {
    let (status, expires) = match kind {
        "confirmed" => ("confirmed", "null"),
        "live" => ("held", "now() + interval '1 hour'"),
        _ => ("held", "now() - interval '1 minute'"),
    };
    let rows = format!(
        "with s as (
             insert into hold_sessions (id, movie_id, user_id, seat_count, status, expires_at,
                                        confirmed_at, booking_reference)
             select md5('fill-' || n)::uuid, 'room-' || (n / 1300 + 2), 'user-' || n, 1, '{status}',
                    coalesce({expires}, now()), case when '{status}' = 'confirmed' then now() end,
                    case when '{status}' = 'confirmed' then {reference} end
             from generate_series({from}, {to}) n
             returning id, movie_id, user_id)
         insert into seat_holds (movie_id, seat_id, session_id, user_id, status, expires_at,
                                 confirmed_at, client_ip)
         select s.movie_id, chr(65 + n % 1300 / 50) || (n % 50 + 1), s.id, s.user_id, '{status}',
                {expires}, case when '{status}' = 'confirmed' then now() end,
                case when '{status}' = 'held' then ('10.0.' || n % 250 || '.1')::inet end
         from generate_series({from}, {to}) n join s on s.id = md5('fill-' || n)::uuid",
        to = from + count - 1,
        reference = common::reference_of("n"),
    );
    sql(admin, &rows).await;
    // Each hold's runs: its user's and its address's.
    sql(
        admin,
        &format!(
            "insert into hold_marks (movie_id, seat_id, holder, first_at, until)
             select h.movie_id, h.seat_id, holder, now() - interval '1 hour',
                    coalesce(h.expires_at, now())
               from seat_holds h
              cross join lateral (values ('user:' || h.user_id),
                                         ('ip:' || host(h.client_ip))) as m(holder)
              where h.session_id in (select md5('fill-' || n)::uuid
                                       from generate_series({from}, {to}) n)
                and holder is not null
             on conflict do nothing",
            to = from + count - 1,
        ),
    )
    .await;
}

/// Moves a hold's deadline into the past, as time would.
async fn lapse(admin: &PgPool, session: SessionId) {
    for (table, key) in [("seat_holds", "session_id"), ("hold_sessions", "id")] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "update {table} set expires_at = now() - interval '1 second'
             where {key} = $1 and status = 'held'"
        )))
        .bind(session.0)
        .execute(admin)
        .await
        .unwrap();
    }
}

async fn sql(pool: &PgPool, statement: &str) {
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(pool)
        .await
        .unwrap();
}

fn user(name: &str) -> UserId {
    UserId::parse(name.to_owned()).unwrap()
}

fn other() -> UserId {
    user(&format!("other-{}", uuid::Uuid::new_v4().simple()))
}
