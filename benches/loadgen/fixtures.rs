//! What every run starts from: a new database with the benchmark's rooms, fresh (never
//! analysed) or with an analysed history of bookings.

use std::time::Duration;

use sqlx::PgPool;

use crate::common::{Rectangle, TestDb, rectangular_screenings};
use crate::options::History;

/// Rooms for distinct-seat holds: `bench-1` … `bench-ROOMS`, each 26 × 50; as many
/// `group-` rooms for group holds.
pub const ROOMS: u64 = 400;
pub const ROOM_SEATS: u64 = 26 * 50;
/// The seat-map room: 15 × 20 = 300 seats, a third of them taken.
pub const MAP_ROOM: &str = "bench-map";
pub const HOT_ROOM: &str = "inception";
pub const HOT_SEAT: &str = "A1";
/// Long enough that nothing expires during a run.
pub const TTL: Duration = Duration::from_secs(3600);
/// The session that pgbench's rows and the seat-map room's bookings belong to.
pub const BASE_SESSION: &str = "00000000-0000-0000-0000-000000000001";

/// The n-th distinct seat of the bench rooms (wrk.lua counts the same way).
pub fn distinct_seat(n: u64) -> (String, String) {
    let room = n / ROOM_SEATS % ROOMS + 1;
    let within = n % ROOM_SEATS;
    let row = (b'A' + (within / 50) as u8) as char;
    (format!("bench-{room}"), format!("{row}{}", within % 50 + 1))
}

/// A new database for one run, with its admin pool.
pub async fn database(history: History) -> (TestDb, PgPool) {
    let db = TestDb::new().await;
    let admin = db.pool(2).await;
    let rooms = |prefix: &'static str, title: &'static str| {
        (1..=ROOMS)
            .map(move |g| Rectangle::new(format!("{prefix}-{g}"), format!("{title} {g}"), 26, 50))
    };
    let screenings: Vec<Rectangle> = rooms("bench", "Bench")
        .chain([Rectangle::new(MAP_ROOM, "Bench seat map", 15, 20)])
        .chain(rooms("group", "Group"))
        .collect();
    rectangular_screenings(&admin, &screenings).await;
    for statement in [
        format!(
            "insert into hold_sessions (id, movie_id, user_id, seat_count, status, expires_at,
                                        confirmed_at, booking_reference)
             values ('{BASE_SESSION}', 'inception', 'history', 1, 'confirmed', now(), now(),
                     new_booking_reference())"
        ),
        // pgbench's baselines: a sequence for distinct seats, and the bare table, with the
        // primary key and nothing else.
        "create sequence bench_seq".into(),
        "create table bench_bare (movie_id text, seat_id text, session_id uuid, user_id text,
             expires_at timestamptz, primary key (movie_id, seat_id))"
            .into(),
    ] {
        sql(&admin, &statement).await;
    }
    if history == History::Analysed {
        prepare_history(&admin).await;
        sql(&admin, "vacuum analyze").await;
    }
    (db, admin)
}

/// A cinema with a past: 20,000 confirmed bookings, each with its session, in rooms of their
/// own, so that tables, indexes and planner statistics look like a system in use.
async fn prepare_history(admin: &PgPool) {
    let rooms: Vec<_> = (1..=20)
        .map(|g| Rectangle::new(format!("history-{g}"), format!("History {g}"), 20, 50))
        .collect();
    rectangular_screenings(admin, &rooms).await;
    for statement in [
        format!(
            "insert into hold_sessions (id, movie_id, user_id, seat_count, status, expires_at,
                                        confirmed_at, booking_reference)
             select md5('history-' || n)::uuid, 'history-' || (n / 1000 + 1),
                    'regular-' || (n % 5000), 1, 'confirmed', now(), now(), {}
             from generate_series(0, 19999) n",
            crate::common::reference_of("n")
        ),
        "insert into seat_holds (movie_id, seat_id, session_id, user_id, status, confirmed_at)
         select 'history-' || (n / 1000 + 1), chr(65 + n % 1000 / 50) || (n % 50 + 1),
                md5('history-' || n)::uuid, 'regular-' || (n % 5000), 'confirmed', now()
         from generate_series(0, 19999) n"
            .to_owned(),
    ] {
        sql(admin, &statement).await;
    }
}

/// The seat-map room's bookings: every third of its 300 seats, the first ones of `owners`
/// (one each), the rest of regulars.
pub async fn book_map_room(admin: &PgPool, owners: &[String]) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "insert into seat_holds (movie_id, seat_id, session_id, user_id, status, confirmed_at)
         select '{MAP_ROOM}', chr(65 + n / 20) || (n % 20 + 1), '{BASE_SESSION}',
                coalesce(($1::text[])[n / 3 + 1], 'regular-' || n), 'confirmed', now()
         from generate_series(0, 299, 3) n
         on conflict (movie_id, seat_id) do update set user_id = excluded.user_id"
    )))
    .bind(owners)
    .execute(admin)
    .await
    .unwrap();
}

pub async fn sql(admin: &PgPool, statement: &str) {
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(admin)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}
