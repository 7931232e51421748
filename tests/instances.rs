//! Several server processes on one database, as behind a load balancer: every promise holds
//! with all of them running, straight to PostgreSQL or through PgBouncer in transaction mode.

mod common;

use std::time::{Duration, Instant};

use common::pgbouncer::PgBouncer;
use common::process::ServerProcess;
use common::sse::EventStream;
use common::{TestDb, json_of};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// How the servers reach the database.
#[derive(Clone, Copy)]
enum Through {
    Direct,
    PgBouncer,
}

fn two_servers(db: &TestDb, through: Through, env: &[(&str, &str)]) -> [ServerProcess; 2] {
    let start = || match through {
        Through::Direct => ServerProcess::start(Some(&db.url), env),
        Through::PgBouncer => {
            let mut env = env.to_vec();
            env.extend([
                ("DATABASE_POOLER", "transaction"),
                ("DATABASE_DIRECT_URL", &db.url),
            ]);
            ServerProcess::start(Some(&PgBouncer::get().url(db)), &env)
        }
    };
    [start(), start()]
}

async fn hold(
    client: &reqwest::Client,
    server: &ServerProcess,
    seat: &str,
    user: &str,
) -> reqwest::Response {
    client
        .post(server.url(&format!("/movies/inception/seats/{seat}/hold")))
        .json(&json!({ "user_id": user }))
        .send()
        .await
        .expect("request")
}

async fn a_thousand_holds_of_one_seat(through: Through) {
    common::raise_open_files_limit();
    let db = TestDb::new().await;
    let servers = two_servers(&db, through, &[]);
    let client = reqwest::Client::new();
    let attempts = (0..1000).map(|i| {
        let (client, server) = (&client, &servers[i % 2]);
        async move {
            hold(client, server, "C4", &format!("user{i}"))
                .await
                .status()
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    let won = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let taken = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((won, taken), (1, 999), "{statuses:?}");

    let pool = db.pool(1).await;
    let rows: i64 = sqlx::query_scalar("select count(*) from seat_holds")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
}

#[tokio::test]
async fn a_thousand_holds_of_one_seat_across_two_processes_give_one_winner() {
    a_thousand_holds_of_one_seat(Through::Direct).await;
}

#[tokio::test]
async fn a_thousand_holds_of_one_seat_through_pgbouncer_give_one_winner() {
    a_thousand_holds_of_one_seat(Through::PgBouncer).await;
}

#[tokio::test]
async fn the_hold_limit_spans_processes_and_a_hold_made_on_one_is_confirmed_on_the_other() {
    let db = TestDb::new().await;
    let servers = two_servers(&db, Through::Direct, &[("MAX_HOLDS_PER_USER", "3")]);
    let client = reqwest::Client::new();
    let attempts = ["A1", "A2", "A3", "A4", "A5", "A6", "A7", "A8"]
        .iter()
        .enumerate()
        .map(|(i, seat)| {
            let (client, server) = (&client, &servers[i % 2]);
            async move { hold(client, server, seat, "alice").await }
        });
    let responses = futures::future::join_all(attempts).await;
    let mut held = Vec::new();
    let mut limited = 0;
    for response in responses {
        match response.status() {
            StatusCode::CREATED => held.push(response.json::<Value>().await.unwrap()),
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((held.len(), limited), (3, 5));

    // Made on one process (any), confirmed on each in turn.
    for (i, hold) in held.iter().enumerate() {
        let session = hold["session_id"].as_str().unwrap();
        let confirm = client
            .put(servers[i % 2].url(&format!("/sessions/{session}/confirm")))
            .json(&json!({ "user_id": "alice" }))
            .send()
            .await
            .unwrap();
        assert_eq!(confirm.status(), StatusCode::OK);
    }
    for server in &servers {
        let map = json_of(client.get(server.url("/movies/inception/seats"))).await;
        let booked = map
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["booked"] == true)
            .count();
        assert_eq!(booked, 3, "{map}");
    }
}

async fn two_reapers(through: Through) {
    let db = TestDb::new().await;
    let servers = two_servers(
        &db,
        through,
        &[
            ("HOLD_TTL_SECS", "0.3"),
            ("REAPER_INTERVAL_SECS", "0.05"),
            ("REAPER_BATCH_SIZE", "3"),
        ],
    );
    let client = reqwest::Client::new();
    let mut stream =
        EventStream::open(&client, &servers[0].url("/movies/inception/events"), None).await;
    assert_eq!(stream.next().await.unwrap().event, "snapshot");
    let seats: Vec<String> = ["A", "B", "C", "D", "E"]
        .iter()
        .flat_map(|row| (1..=8).map(move |n| format!("{row}{n}")))
        .collect();
    let attempts = seats.iter().enumerate().map(|(i, seat)| {
        let (client, server) = (&client, &servers[i % 2]);
        async move {
            hold(client, server, seat, &format!("user{i}"))
                .await
                .status()
        }
    });
    let statuses = futures::future::join_all(attempts).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::CREATED),
        "{statuses:?}"
    );

    // Both reapers sweep every 50 ms, three rows at a time: wait until the rows are gone.
    let pool = db.pool(1).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left: i64 = sqlx::query_scalar("select count(*) from seat_holds")
            .fetch_one(&pool)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} expired holds were never reaped"
        );
        tokio::task::yield_now().await;
    }
    let per_seat: Vec<(String, i64, i64)> = sqlx::query_as(
        "select seat_id, count(*) filter (where kind = 'held'),
                count(*) filter (where kind = 'expired')
           from booking_events group by seat_id order by seat_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(per_seat.len(), seats.len());
    for (seat, held, expired) in per_seat {
        assert_eq!((held, expired), (1, 1), "{seat}");
    }
    let sessions: Vec<String> = sqlx::query_scalar("select distinct status from hold_sessions")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(sessions, ["expired"]);

    // One expired event per seat, whichever process reaped it; then a last hold marks the
    // end, so a duplicate in between would be seen.
    let mut expired = Vec::new();
    let mut held = 0;
    let marker = hold(&client, &servers[1], "A1", "marker").await;
    assert_eq!(marker.status(), StatusCode::CREATED);
    loop {
        let event = stream.next().await.expect("the stream is open");
        match event.event.as_str() {
            "held" if event.seats() == ["A1"] && held == seats.len() => break,
            "held" => held += event.seats().len(),
            "expired" => expired.extend(event.seats()),
            other => panic!("unexpected {other} event: {event:?}"),
        }
    }
    expired.sort();
    let mut expected = seats.clone();
    expected.sort();
    assert_eq!(expired, expected, "every seat expired once");
}

async fn a_hold_reaches_the_other_process(through: Through) {
    let db = TestDb::new().await;
    let servers = two_servers(&db, through, &[]);
    let client = reqwest::Client::new();
    let mut stream =
        EventStream::open(&client, &servers[1].url("/movies/inception/events"), None).await;
    assert_eq!(stream.next().await.unwrap().event, "snapshot");
    for seat in ["B1", "B2", "B3"] {
        let response = hold(&client, &servers[0], seat, "alice").await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let acknowledged = Instant::now();
        let event = stream.next().await.unwrap();
        let delay = acknowledged.elapsed();
        assert_eq!(
            (event.event.as_str(), event.seats()),
            ("held", vec![seat.to_owned()])
        );
        assert!(delay < Duration::from_secs(1), "{seat} took {delay:?}");
    }
}

#[tokio::test]
async fn a_hold_made_through_one_process_reaches_a_subscriber_of_the_other_within_a_second() {
    a_hold_reaches_the_other_process(Through::Direct).await;
}

#[tokio::test]
async fn through_pgbouncer_a_hold_reaches_a_subscriber_of_the_other_process_within_a_second() {
    a_hold_reaches_the_other_process(Through::PgBouncer).await;
}

#[tokio::test]
async fn two_reapers_remove_every_expired_hold_once_with_one_ledger_row_each() {
    two_reapers(Through::Direct).await;
}

#[tokio::test]
async fn through_pgbouncer_two_reapers_remove_every_expired_hold_once() {
    two_reapers(Through::PgBouncer).await;
}
