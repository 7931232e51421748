//! `boxoffice report` as a process: its formats, its exit codes, and the reporting role as
//! its user; and the server writing `REPORT_TIME_ZONE` at start-up.

mod common;

use std::process::Output;

use boxoffice::domain::{SeatId, UserId};
use boxoffice::store::{Catalogue, Seats};
use common::process::ServerProcess;
use common::{LONG_TTL, TestDb, policy};
use serde_json::{Value, json};

const TITLE: &str = r#"Crouching Tiger, "Hidden" Dragon"#;

/// `boxoffice report <args>` against `database_url` (none: unset).
fn report(database_url: Option<&str>, args: &[&str]) -> Output {
    let mut command = common::server_binary();
    command.arg("report").args(args);
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    command.output().expect("run the binary")
}

fn stdout(output: &Output) -> String {
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn failure(output: &Output, code: i32) -> String {
    assert_eq!(output.status.code(), Some(code), "{output:?}");
    assert!(output.stdout.is_empty(), "{output:?}");
    String::from_utf8(output.stderr.clone()).unwrap()
}

/// A database with one more movie, titled with a comma and quotes, and one seat booked in it.
async fn database_with_a_hard_title() -> TestDb {
    let db = TestDb::new().await;
    let pool = db.pool(1).await;
    common::rectangular_screenings(&pool, &[common::Rectangle::new("tiger", TITLE, 2, 3)]).await;
    let store = db.store(policy(LONG_TTL, 8), 2).await;
    let movie = store.movie(&common::screening("tiger")).await.unwrap();
    let alice = UserId::parse("alice".to_owned()).unwrap();
    let hold = store
        .hold(&movie, vec![SeatId::parse("B3").unwrap()], &alice, None)
        .await
        .unwrap();
    store.confirm(hold.session_id, &alice).await.unwrap();
    db
}

#[tokio::test]
async fn behind_a_pooler_the_report_reads_straight_from_postgresql() {
    let db = database_with_a_hard_title().await;
    let output = common::server_binary()
        .args(["report", "occupancy", "--movie", "tiger", "--format", "csv"])
        // Nothing listens there: only the direct URL can answer.
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nowhere")
        .env("DATABASE_POOLER", "transaction")
        .env("DATABASE_DIRECT_URL", &db.url)
        .output()
        .expect("run the binary");
    assert!(
        stdout(&output)
            .ends_with("tiger,\"Crouching Tiger, \"\"Hidden\"\" Dragon\",6,1,0,5,16.7\r\n")
    );
}

#[tokio::test]
async fn each_format_prints_the_report_and_exits_0() {
    let db = database_with_a_hard_title().await;
    let url = Some(db.url.as_str());

    let csv = stdout(&report(url, &["occupancy", "--format", "csv"]));
    assert_eq!(
        csv,
        "movie_id,title,capacity,booked,held_now,free,occupancy_pct\r\n\
         dune-part-two,Dune: Part Two,24,0,0,24,0.0\r\n\
         inception,Inception,40,0,0,40,0.0\r\n\
         the-grand-budapest-hotel,The Grand Budapest Hotel,160,0,0,160,0.0\r\n\
         tiger,\"Crouching Tiger, \"\"Hidden\"\" Dragon\",6,1,0,5,16.7\r\n"
    );

    let json: Value = serde_json::from_str(&stdout(&report(
        url,
        &["occupancy", "--movie", "tiger", "--format", "json"],
    )))
    .unwrap();
    assert_eq!(
        json,
        json!([{"movie_id": "tiger", "title": TITLE, "capacity": 6, "booked": 1,
                "held_now": 0, "free": 5, "occupancy_pct": 16.7}])
    );

    // The table is the default format.
    let table = stdout(&report(url, &["seat-popularity", "--movie", "tiger"]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        "movie_id | seat_id | row_number | seat_number | times_held | times_booked | sold_rank"
    );
    assert_eq!(
        lines[7],
        "tiger    | B3      |          2 |           3 |          1 |            1 |         1"
    );
    assert_eq!(lines[8], "(6 rows)");
}

#[tokio::test]
async fn errors_exit_non_zero_with_a_message_on_stderr() {
    let db = TestDb::new().await;
    let url = Some(db.url.as_str());

    let no_movie = failure(&report(url, &["occupancy", "--movie", "nope"]), 1);
    assert!(no_movie.contains("no movie \"nope\""), "{no_movie}");

    let memory = failure(&report(None, &["occupancy"]), 1);
    assert!(memory.contains("reports need PostgreSQL"), "{memory}");

    let port = common::free_port();
    let unreachable = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let down = failure(&report(Some(&unreachable), &["occupancy"]), 1);
    assert!(down.contains("cannot connect to PostgreSQL"), "{down}");

    // The server's own database, never migrated.
    let bare = failure(&report(Some(&common::admin_url()), &["occupancy"]), 1);
    assert!(bare.contains("no report views"), "{bare}");

    for usage in [
        vec!["revenue"],
        vec![],
        vec!["occupancy", "--format", "xml"],
        vec!["occupancy", "--bogus"],
    ] {
        let error = failure(&report(url, &usage), 2);
        assert!(error.starts_with("error:"), "{usage:?}: {error}");
    }
}

#[tokio::test]
async fn the_reporting_role_with_a_login_runs_every_report() {
    let db = database_with_a_hard_title().await;
    let role = format!("boxoffice_test_role_{}", uuid::Uuid::new_v4().simple());
    let pool = db.pool(1).await;
    // As the README has an administrator do it: a login role that is a member of the
    // reporting role.
    let create = format!("create role {role} login password 'reader' in role boxoffice_reporting");
    sqlx::query(sqlx::AssertSqlSafe(create))
        .execute(&pool)
        .await
        .unwrap();
    let options: sqlx::postgres::PgConnectOptions = db.url.parse().unwrap();
    let url = format!(
        "postgres://{role}:reader@{}:{}/{}",
        options.get_host(),
        options.get_port(),
        db.name
    );
    let outcomes: Vec<Output> = boxoffice::reports::Report::ALL
        .iter()
        .map(|r| report(Some(&url), &[r.name(), "--format", "json"]))
        .collect();
    sqlx::query(sqlx::AssertSqlSafe(format!("drop role {role}")))
        .execute(&pool)
        .await
        .unwrap();
    for output in &outcomes {
        let rows: Value = serde_json::from_str(&stdout(output)).unwrap();
        assert!(!rows.as_array().unwrap().is_empty(), "{output:?}");
    }
}

// ---------------------------------------------------------------------------------------
// REPORT_TIME_ZONE at start-up

/// Starts the server on `db` with `REPORT_TIME_ZONE=time_zone` and stops it again; or
/// what it logged before it exited without listening.
fn start_server(db: &TestDb, time_zone: &str) -> Result<(), String> {
    ServerProcess::try_start(Some(&db.url), &[("REPORT_TIME_ZONE", time_zone)])
        .map(drop)
        .map_err(|log| log.join("\n"))
}

async fn stored_time_zone(db: &TestDb) -> String {
    sqlx::query_scalar("select time_zone from report_settings")
        .fetch_one(&db.pool(1).await)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_server_writes_its_report_time_zone_and_refuses_an_unknown_one() {
    let db = TestDb::new().await;
    assert_eq!(stored_time_zone(&db).await, "UTC");
    start_server(&db, "America/Sao_Paulo").unwrap();
    assert_eq!(stored_time_zone(&db).await, "America/Sao_Paulo");

    let refused = start_server(&db, "Atlantis/Capital").unwrap_err();
    assert!(refused.contains("REPORT_TIME_ZONE"), "{refused}");
    assert!(refused.contains("Atlantis/Capital"), "{refused}");
    assert!(!refused.contains("listening"), "{refused}");
    assert_eq!(stored_time_zone(&db).await, "America/Sao_Paulo");
}
