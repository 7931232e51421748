//! The statements that read `seat_holds` through its partial indexes reach only the rows they
//! are about, even when the planner's statistics were taken while nothing was held: the state
//! of every morning before the first rush, until autovacuum analyses again. A statement that
//! walked a whole index instead would get slower with every live hold during the rush.

mod common;

use common::TestDb;
use serde_json::Value;
use sqlx::PgPool;

use boxoffice::store::postgres::statements;

/// Bookings when the statistics are taken; then live holds and expired holds arrive.
const BOOKINGS: i64 = 5_000;
const LIVE: i64 = 2_000;
const EXPIRED: i64 = 100;

/// A cinema whose statistics say nothing is held, though `LIVE` holds are and `EXPIRED`
/// holds have lapsed unreaped.
async fn stale_statistics() -> (TestDb, PgPool) {
    let db = TestDb::new().await;
    let pool = db.pool(2).await;
    for statement in [
        "insert into movies (id, title, rows, seats_per_row)
         select 'room-' || g, 'Room ' || g, 26, 50 from generate_series(1, 10) g",
        "insert into hold_sessions (id, movie_id, user_id, seat_count, status, expires_at, confirmed_at)
         values ('00000000-0000-0000-0000-000000000001', 'room-1', 'past', 1, 'confirmed', now(), now())",
    ] {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    // Seat n of the ten rooms, 1,300 seats each.
    let seats = |from: i64, to: i64, status: &str, expires: &str| {
        format!(
            "insert into seat_holds (movie_id, seat_id, session_id, user_id, status, expires_at, confirmed_at)
             select 'room-' || (n / 1300 + 1), chr(65 + n % 1300 / 50) || (n % 50 + 1),
                    '00000000-0000-0000-0000-000000000001', 'user-' || n, '{status}', {expires}
             from generate_series({from}, {to}) n"
        )
    };
    let bookings = seats(0, BOOKINGS - 1, "confirmed", "null, now()");
    sqlx::query(sqlx::AssertSqlSafe(bookings))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("analyze seat_holds")
        .execute(&pool)
        .await
        .unwrap();
    let live = seats(
        BOOKINGS,
        BOOKINGS + LIVE - 1,
        "held",
        "now() + interval '1 hour', null",
    );
    let expired = seats(
        BOOKINGS + LIVE,
        BOOKINGS + LIVE + EXPIRED - 1,
        "held",
        "now() - interval '1 minute', null",
    );
    for statement in [live, expired] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&pool)
            .await
            .unwrap();
    }
    (db, pool)
}

/// Prepares `statement` as the store's connections do, runs it under EXPLAIN ANALYZE with
/// `arguments` (SQL literals, "(array['a'], 2)") and the given plan cache mode (a custom plan
/// for those values, or the generic plan a prepared statement settles on), and rolls back
/// what it did. Returns how many rows the plan read and threw away, and the plan.
async fn rows_thrown_away(
    pool: &PgPool,
    plan_cache_mode: &str,
    statement: &str,
    arguments: &str,
) -> (f64, Value) {
    let mut conn = pool.acquire().await.unwrap();
    let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
    let setup =
        format!("set local plan_cache_mode = {plan_cache_mode}; prepare probe as {statement}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
        .execute(&mut *tx)
        .await
        .unwrap();
    let explain = format!("explain (analyze, format json) execute probe {arguments}");
    let plan: Value = sqlx::query_scalar(sqlx::AssertSqlSafe(explain))
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    sqlx::raw_sql("deallocate probe")
        .execute(&mut *conn)
        .await
        .unwrap();
    (thrown_away(&plan), plan)
}

/// `values` as a SQL text array literal.
fn array(values: &[String]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("'{v}'")).collect();
    format!("array[{}]", quoted.join(", "))
}

/// Rows removed by a filter, a join filter or an index recheck, over the whole plan.
fn thrown_away(node: &Value) -> f64 {
    match node {
        Value::Object(fields) => {
            let loops = fields
                .get("Actual Loops")
                .and_then(Value::as_f64)
                .unwrap_or(1.0);
            let here: f64 = fields
                .iter()
                .filter(|(key, _)| key.starts_with("Rows Removed by"))
                .filter_map(|(_, value)| value.as_f64())
                .sum();
            here * loops + fields.values().map(thrown_away).sum::<f64>()
        }
        Value::Array(items) => items.iter().map(thrown_away).sum(),
        _ => 0.0,
    }
}

const MODES: [&str; 2] = ["force_custom_plan", "force_generic_plan"];

#[tokio::test]
async fn the_per_user_count_reads_only_the_users_own_holds() {
    let (_db, pool) = stale_statistics().await;
    // One user with a live hold, seven without: what a batch of holds asks.
    let mut users: Vec<String> = (0..7).map(|n| format!("newcomer-{n}")).collect();
    users.push(format!("user-{BOOKINGS}"));
    let arguments = format!("({})", array(&users));
    for mode in MODES {
        let statement = statements::LIVE_HOLDS_PER_USER;
        let (waste, plan) = rows_thrown_away(&pool, mode, statement, &arguments).await;
        assert_eq!(
            waste, 0.0,
            "{mode}: the count read other users' holds:\n{plan:#}"
        );
    }
}

#[tokio::test]
async fn taking_over_expired_seats_reads_only_those_seats() {
    let (_db, pool) = stale_statistics().await;
    // An expired seat and a free one, as a batch of holds would ask.
    let first_expired = BOOKINGS + LIVE;
    let movies = vec![
        format!("room-{}", first_expired / 1300 + 1),
        "room-10".to_owned(),
    ];
    let seat = |n: i64| format!("{}{}", (b'A' + (n % 1300 / 50) as u8) as char, n % 50 + 1);
    let seats = vec![seat(first_expired), "Z50".to_owned()];
    let arguments = format!("({}, {})", array(&movies), array(&seats));
    for mode in MODES {
        let statement = statements::TAKE_OVER_EXPIRED;
        let (waste, plan) = rows_thrown_away(&pool, mode, statement, &arguments).await;
        assert_eq!(
            waste, 0.0,
            "{mode}: the takeover read other seats:\n{plan:#}"
        );
        let deleted = plan[0]["Plan"]["Actual Rows"].as_f64();
        assert_eq!(
            deleted,
            Some(1.0),
            "{mode}: the expired seat was taken over:\n{plan:#}"
        );
    }
}

#[tokio::test]
async fn the_reaper_reads_only_expired_holds() {
    let (_db, pool) = stale_statistics().await;
    for mode in MODES {
        let (waste, plan) = rows_thrown_away(&pool, mode, statements::REAP_EXPIRED, "(1000)").await;
        assert_eq!(
            waste, 0.0,
            "{mode}: the reaper read live holds or bookings:\n{plan:#}"
        );
        let reaped = plan[0]["Plan"]["Actual Rows"].as_f64();
        assert_eq!(
            reaped,
            Some(EXPIRED as f64),
            "{mode}: every expired hold:\n{plan:#}"
        );
    }
}
