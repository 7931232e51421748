//! The report views after a scripted day of bookings, each row computed here by hand; the
//! time zone their days are cut in; and the reporting role, which reads them and nothing else.

mod common;

use std::collections::BTreeMap;

use boxoffice::domain::{Hold, SeatId, UserId};
use boxoffice::reports::Report;
use boxoffice::store::{Catalogue, Housekeeping, PgStore, Reports, Seats, StoreError};
use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use common::{LONG_TTL, SHORT_TTL, TestDb, policy, wait_until_lapsed};
use serde_json::{Map, Value, json};
use sqlx::{Connection, PgConnection, PgPool};

fn user(name: &str) -> UserId {
    UserId::parse(name.to_owned()).unwrap()
}

async fn hold(store: &PgStore, movie: &str, ids: &[&str], who: &str) -> Hold {
    try_hold(store, movie, ids, who).await.unwrap()
}

async fn try_hold(
    store: &PgStore,
    movie: &str,
    ids: &[&str],
    who: &str,
) -> Result<Hold, StoreError> {
    let movie = store.movie(&common::screening(movie)).await.unwrap();
    let seats = ids.iter().map(|id| SeatId::parse(id).unwrap()).collect();
    store.hold(&movie, seats, &user(who), None).await
}

async fn confirm(store: &PgStore, hold: &Hold) {
    store.confirm(hold.session_id, &hold.user_id).await.unwrap();
}

async fn rows(store: &PgStore, report: Report) -> Vec<Map<String, Value>> {
    store.report(report, None).await.unwrap().rows
}

fn objects(value: Value) -> Vec<Map<String, Value>> {
    serde_json::from_value(value).unwrap()
}

/// Seconds from hold to confirm of each confirmed session of `movie`, from the ledger's own
/// times, in order.
async fn seconds_to_confirm(pool: &PgPool, movie: &str) -> Vec<f64> {
    let pairs: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "select h.at, c.at from booking_events h
           join booking_events c on c.session_id = h.session_id and c.kind = 'confirmed'
                                and c.seat_id = h.seat_id
          where h.kind = 'held' and h.movie_id = $1
            and h.seat_id = (select min(seat_id) from booking_events where session_id = h.session_id)",
    )
    .bind(movie)
    .fetch_all(pool)
    .await
    .unwrap();
    let mut seconds: Vec<f64> = pairs
        .into_iter()
        .map(|(held, confirmed)| (confirmed - held).as_seconds_f64())
        .collect();
    seconds.sort_by(f64::total_cmp);
    seconds
}

/// The interpolated percentile `p` of sorted `values`, as `percentile_cont` defines it.
fn percentile(values: &[f64], p: f64) -> f64 {
    let rank = p * (values.len() - 1) as f64;
    let (low, high) = (rank.floor() as usize, rank.ceil() as usize);
    values[low] + (rank - low as f64) * (values[high] - values[low])
}

/// Takes the timing columns out of a funnel row, checking them against `seconds`.
fn check_and_strip_timings(row: &mut Map<String, Value>, seconds: &[f64]) {
    let median = row.remove("median_seconds_to_confirm").unwrap();
    let p90 = row.remove("p90_seconds_to_confirm").unwrap();
    if seconds.is_empty() {
        assert_eq!((median, p90), (Value::Null, Value::Null));
        return;
    }
    for (got, p) in [(median, 0.5), (p90, 0.9)] {
        let want = percentile(seconds, p);
        let got = got.as_f64().unwrap();
        assert!((got - want).abs() <= 0.0006, "p{p}: {got} against {want}");
    }
}

#[tokio::test]
async fn every_view_gives_the_rows_of_a_scripted_day() {
    let db = TestDb::new().await;
    let long = db.store(policy(LONG_TTL, 8), 4).await;
    let short = db.store(policy(SHORT_TTL, 8), 4).await;
    // The cinema is at UTC+14 all year: its day starts ten hours before UTC's.
    long.set_report_time_zone("Pacific/Kiritimati")
        .await
        .unwrap();

    // Inception: a group booked, a hold released, three expired (one reaped, one left for the
    // reaper, one taken over), a seat held now, another booking.
    let alice = hold(&long, "inception", &["A1", "A2"], "alice").await;
    confirm(&long, &alice).await;
    let bob = hold(&long, "inception", &["B1"], "bob").await;
    long.release(bob.session_id, &bob.user_id).await.unwrap();
    let carol = hold(&short, "inception", &["C1"], "carol").await;
    wait_until_lapsed(carol.server_time, carol.expires_at).await;
    assert_eq!(short.reap_expired(100).await.unwrap(), 1);
    let dave = hold(&short, "inception", &["C2"], "dave").await;
    let erin = hold(&short, "inception", &["D1"], "erin").await;
    wait_until_lapsed(erin.server_time, erin.expires_at).await;
    hold(&long, "inception", &["D1"], "bob").await;
    let gina = hold(&long, "inception", &["E8"], "gina").await;
    confirm(&long, &gina).await;
    assert!(dave.expires_at <= erin.expires_at);

    // Dune: a race of eight on one seat, the winner books; a seat held now.
    let racers = (0..8).map(|i| {
        let long = long.clone();
        async move { try_hold(&long, "dune-part-two", &["A1"], &format!("racer{i}")).await }
    });
    let results = futures::future::join_all(racers).await;
    let winners: Vec<&Hold> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    confirm(&long, winners[0]).await;
    hold(&long, "dune-part-two", &["B2"], "carol").await;

    let pool = db.pool(1).await;
    let occupancy = objects(json!([
        {"movie_id": "dune-part-two", "title": "Dune: Part Two", "capacity": 24, "booked": 1,
         "held_now": 1, "free": 22, "occupancy_pct": 4.2},
        {"movie_id": "inception", "title": "Inception", "capacity": 40, "booked": 3,
         "held_now": 1, "free": 36, "occupancy_pct": 7.5},
        {"movie_id": "the-grand-budapest-hotel", "title": "The Grand Budapest Hotel",
         "capacity": 160, "booked": 0, "held_now": 0, "free": 160, "occupancy_pct": 0.0},
    ]));
    let funnel = objects(json!([
        {"movie_id": "dune-part-two", "title": "Dune: Part Two", "holds_started": 2,
         "confirmed": 1, "released": 0, "expired": 0, "still_held": 1, "conversion_pct": 50.0},
        {"movie_id": "inception", "title": "Inception", "holds_started": 7, "confirmed": 2,
         "released": 1, "expired": 3, "still_held": 1, "conversion_pct": 28.6},
        {"movie_id": "the-grand-budapest-hotel", "title": "The Grand Budapest Hotel",
         "holds_started": 0, "confirmed": 0, "released": 0, "expired": 0, "still_held": 0,
         "conversion_pct": null},
    ]));
    let timings = [
        seconds_to_confirm(&pool, "dune-part-two").await,
        seconds_to_confirm(&pool, "inception").await,
        vec![],
    ];
    assert_eq!(timings[1].len(), 2);

    // Sales per day at UTC+14, from the confirms' own times.
    let confirms: Vec<(DateTime<Utc>, String, String)> = sqlx::query_as(
        "select at, movie_id, session_id::text from booking_events where kind = 'confirmed'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let kiritimati = FixedOffset::east_opt(14 * 3600).unwrap();
    let mut days: BTreeMap<(NaiveDate, String), (i64, Vec<String>)> = BTreeMap::new();
    for (at, movie, session) in confirms {
        let day = at.with_timezone(&kiritimati).date_naive();
        let entry = days.entry((day, movie)).or_default();
        entry.0 += 1;
        if !entry.1.contains(&session) {
            entry.1.push(session);
        }
    }
    let title = |movie: &str| match movie {
        "inception" => "Inception",
        _ => "Dune: Part Two",
    };
    let sales: Vec<Map<String, Value>> = objects(Value::Array(
        days.iter()
            .map(|((day, movie), (seats, sessions))| {
                json!({"day": day.to_string(), "movie_id": movie, "title": title(movie),
                       "seats_booked": seats, "bookings": sessions.len()})
            })
            .collect(),
    ));
    assert_eq!(
        days.values().map(|(seats, _)| seats).sum::<i64>(),
        4,
        "{days:?}"
    );

    // Seats held or booked; every other seat of every room has zeros.
    let popular: BTreeMap<(&str, &str), (i64, i64, Option<i64>)> = [
        (("dune-part-two", "A1"), (1, 1, Some(1))),
        (("dune-part-two", "B2"), (1, 0, None)),
        (("inception", "A1"), (1, 1, Some(1))),
        (("inception", "A2"), (1, 1, Some(1))),
        (("inception", "B1"), (1, 0, None)),
        (("inception", "C1"), (1, 0, None)),
        (("inception", "C2"), (1, 0, None)),
        (("inception", "D1"), (2, 0, None)),
        (("inception", "E8"), (1, 1, Some(3))),
    ]
    .into_iter()
    .collect();

    // Before the reaper has taken dave's lapsed hold, and after: the same rows.
    for reaped in [false, true] {
        if reaped {
            assert_eq!(long.reap_expired(100).await.unwrap(), 1, "dave's C2");
        }
        assert_eq!(
            rows(&long, Report::Occupancy).await,
            occupancy,
            "reaped: {reaped}"
        );
        let mut got = rows(&long, Report::HoldFunnel).await;
        for (row, seconds) in got.iter_mut().zip(&timings) {
            check_and_strip_timings(row, seconds);
        }
        assert_eq!(got, funnel, "reaped: {reaped}");
        assert_eq!(rows(&long, Report::SalesDaily).await, sales);

        let seats = rows(&long, Report::SeatPopularity).await;
        assert_eq!(seats.len(), 24 + 40 + 160);
        for seat in &seats {
            let key = (
                seat["movie_id"].as_str().unwrap(),
                seat["seat_id"].as_str().unwrap(),
            );
            let (held, booked, rank) = popular.get(&key).copied().unwrap_or((0, 0, None));
            assert_eq!(
                (
                    &seat["times_held"],
                    &seat["times_booked"],
                    &seat["sold_rank"]
                ),
                (&json!(held), &json!(booked), &json!(rank)),
                "{key:?}"
            );
        }
    }

    let ledger = long.report(Report::Ledger, None).await.unwrap();
    assert!(
        !ledger.columns.iter().any(|c| c == "session_id"),
        "{:?}",
        ledger.columns
    );
    // Held: inception's A1 A2 B1 C1 C2 D1 D1 E8 and dune's A1 B2; confirmed: A1 A2 E8 and
    // dune's A1; released: B1; expired: C1, erin's D1, and C2 once reaped.
    let kinds: Vec<&str> = ledger
        .rows
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    let count = |kind: &str| kinds.iter().filter(|k| **k == kind).count();
    assert_eq!(
        (
            count("held"),
            count("confirmed"),
            count("released"),
            count("expired")
        ),
        (10, 4, 1, 3)
    );
}

#[tokio::test]
async fn a_movie_filter_keeps_its_rows_and_an_unknown_movie_is_refused() {
    let db = TestDb::new().await;
    let store = db.store(policy(LONG_TTL, 8), 4).await;
    let got = store
        .report(Report::SeatPopularity, Some("dune-part-two"))
        .await
        .unwrap();
    assert_eq!(got.rows.len(), 24);
    assert!(got.rows.iter().all(|r| r["movie_id"] == "dune-part-two"));
    let refused = store.report(Report::Occupancy, Some("nope")).await;
    assert!(
        matches!(refused, Err(StoreError::MovieNotFound)),
        "{refused:?}"
    );
}

#[tokio::test]
async fn an_unknown_time_zone_is_refused_and_the_old_one_kept() {
    let db = TestDb::new().await;
    let store = db.store(policy(LONG_TTL, 8), 4).await;
    store.set_report_time_zone("Europe/Paris").await.unwrap();
    let refused = store.set_report_time_zone("Mars/Olympus_Mons").await;
    match refused {
        Err(StoreError::InvalidTimeZone(message)) => {
            assert!(message.contains("Mars/Olympus_Mons"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let pool = db.pool(1).await;
    let kept: String = sqlx::query_scalar("select time_zone from report_settings")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(kept, "Europe/Paris");
}

// ---------------------------------------------------------------------------------------
// The reporting role

const VIEWS: [&str; 5] = [
    "report_occupancy",
    "report_sales_daily",
    "report_hold_funnel",
    "report_seat_popularity",
    "report_ledger",
];

/// `sql` run as `role`, in a transaction rolled back after.
async fn as_role(conn: &mut PgConnection, role: &str, sql: &str) -> Result<(), sqlx::Error> {
    let mut tx = conn.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("set local role {role}")))
        .execute(&mut *tx)
        .await
        .unwrap();
    let result = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut *tx)
        .await
        .map(drop);
    tx.rollback().await.unwrap();
    result
}

fn is_permission_denied(result: &Result<(), sqlx::Error>) -> bool {
    error_code(result) == Some("42501".into())
}

fn error_code(result: &Result<(), sqlx::Error>) -> Option<String> {
    match result {
        Err(sqlx::Error::Database(db)) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

#[tokio::test]
async fn the_reporting_role_reads_every_view_and_nothing_else_and_writes_nothing() {
    let db = TestDb::new().await;
    let store = db.store(policy(LONG_TTL, 8), 4).await;
    let booked = hold(&store, "inception", &["A1"], "alice").await;
    confirm(&store, &booked).await;
    let mut conn = PgConnection::connect_with(&db.options()).await.unwrap();
    let role = "boxoffice_reporting";

    for view in VIEWS {
        let read = as_role(&mut conn, role, &format!("select * from {view}")).await;
        assert!(read.is_ok(), "{view}: {read:?}");
        for write in [
            format!("delete from {view}"),
            format!("insert into {view} default values"),
        ] {
            // Refused for want of the privilege, or, for a view of several tables, because
            // it cannot be written at all.
            let refused = as_role(&mut conn, role, &write).await;
            let code = error_code(&refused);
            assert!(
                code.as_deref() == Some("42501")
                    || view != "report_ledger" && code.as_deref() == Some("55000"),
                "{write}: {refused:?}"
            );
        }
    }
    for table in ["movies", "hold_sessions", "seat_holds", "booking_events"] {
        for sql in [
            format!("select * from {table}"),
            format!("delete from {table}"),
            format!("truncate {table}"),
        ] {
            let refused = as_role(&mut conn, role, &sql).await;
            assert!(is_permission_denied(&refused), "{sql}: {refused:?}");
        }
    }
    for sql in [
        "update report_settings set time_zone = 'Europe/Paris'",
        "select reap_expired(100)",
        "select record_seat_changes('released', '{inception}', '{A1}', \
         array[gen_random_uuid()], '{alice}', null)",
        "create table public.sneaky (x int)",
    ] {
        let refused = as_role(&mut conn, role, sql).await;
        assert!(is_permission_denied(&refused), "{sql}: {refused:?}");
    }
    let booked_now: i32 =
        sqlx::query_scalar("select booked from report_occupancy where movie_id = 'inception'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(booked_now, 1);
}

/// Runs `sql` (built here, not from input) on `pool`.
async fn execute(pool: &PgPool, sql: String) {
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(pool)
        .await
        .unwrap();
}

/// A role name no other test uses, dropped with its grants at the end.
struct ScratchRole(String);

impl ScratchRole {
    fn new() -> Self {
        Self(format!(
            "boxoffice_test_role_{}",
            uuid::Uuid::new_v4().simple()
        ))
    }
}

async fn role_exists(pool: &PgPool, role: &str) -> bool {
    sqlx::query_scalar("select exists (select from pg_roles where rolname = $1)")
        .bind(role)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn databases_migrating_at_once_all_grant_to_one_role_created_once() {
    let dbs = futures::future::join_all((0..4).map(|_| TestDb::new())).await;
    let role = ScratchRole::new();
    let pools = futures::future::join_all(dbs.iter().map(|db| db.pool(1))).await;
    let grants = pools.iter().map(|pool| {
        sqlx::query_scalar::<_, bool>("select grant_reporting_access($1)")
            .bind(&role.0)
            .fetch_one(pool)
    });
    let granted = futures::future::join_all(grants).await;
    assert!(granted.iter().all(|g| matches!(g, Ok(true))), "{granted:?}");
    for pool in &pools {
        let mut conn = pool.acquire().await.unwrap();
        let read = as_role(&mut conn, &role.0, "select * from report_hold_funnel").await;
        assert!(read.is_ok(), "{read:?}");
    }
    // Out of the way: its grants in each database, then the role.
    for pool in &pools {
        execute(pool, format!("drop owned by {}", role.0)).await;
    }
    for pool in pools {
        pool.close().await;
    }
    drop(dbs);
    let admin = sqlx::PgPool::connect(&common::admin_url()).await.unwrap();
    execute(&admin, format!("drop role {}", role.0)).await;
}

#[tokio::test]
async fn an_application_role_that_may_not_create_roles_still_migrates() {
    let admin = sqlx::PgPool::connect(&common::admin_url()).await.unwrap();
    let app = ScratchRole::new();
    let missing = ScratchRole::new();
    execute(
        &admin,
        format!(
            "create role {} login nocreaterole nosuperuser password 'app'",
            app.0
        ),
    )
    .await;
    let name = format!("boxoffice_test_{}", uuid::Uuid::new_v4().simple());
    execute(&admin, format!("create database {name} owner {}", app.0)).await;

    let url = common::url_for_database(&common::admin_url(), &name);
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let as_app = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.username(&app.0).password("app"))
        .await
        .unwrap();
    let store = PgStore::new(as_app.clone(), policy(LONG_TTL, 8));
    let migrated = store.migrate().await;
    let granted: Result<bool, _> = sqlx::query_scalar("select grant_reporting_access($1)")
        .bind(&missing.0)
        .fetch_one(&as_app)
        .await;
    let rows = store
        .report(Report::Occupancy, None)
        .await
        .map(|r| r.rows.len());
    let exists = role_exists(&admin, &missing.0).await;
    as_app.close().await;
    drop(store);
    execute(&admin, format!("drop database {name} with (force)")).await;
    execute(&admin, format!("drop role {}", app.0)).await;

    assert!(migrated.is_ok(), "{migrated:?}");
    assert!(matches!(granted, Ok(false)), "{granted:?}");
    assert!(!exists, "the role was created after all");
    assert_eq!(rows.unwrap(), 3);
}
