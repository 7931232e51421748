//! What the PostgreSQL store promises beyond the contract: keys in flight across
//! transactions, keys kept before typed outcomes, the ledger, forgetting keys by their age in
//! the database, the reports.

use crate::seats::commands::{api_user, claim, extend, hold_seats, holders, roomy};
use crate::{common, movie, seats};

use boxoffice::booking::{Command, Kept, Keyed, Want};
use boxoffice::store::{Housekeeping, Reports, Seats, StoreError};

/// PostgreSQL only: a request whose key another transaction holds is in flight, and does
/// nothing; the memory store decides under one lock and is never seen in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_held_by_a_request_in_flight_is_refused_and_nothing_is_done() {
    use sqlx::Connection;
    let db = common::TestDb::new().await;
    let store = db.store(roomy(), 8).await;
    let inception = movie(&store, "inception").await;
    let user = api_user();
    let mut in_flight = sqlx::PgConnection::connect_with(&db.options())
        .await
        .unwrap();
    let mut tx = in_flight.begin().await.unwrap();
    sqlx::query("select pg_advisory_xact_lock(45254, hashtext($1 || ' ' || $2))")
        .bind(user.as_str())
        .bind("busy")
        .execute(&mut *tx)
        .await
        .unwrap();
    let command = || Command::Hold {
        movie: inception.clone(),
        want: Want::Best(1),
        from: None,
    };
    let refused = store
        .execute(&user, command(), Some(claim("busy", "best 1")))
        .await;
    assert!(
        matches!(refused, Err(StoreError::KeyInFlight)),
        "{refused:?}"
    );
    assert!(holders(&store, "inception").await.is_empty());
    tx.rollback().await.unwrap();
    let done = store
        .execute(&user, command(), Some(claim("busy", "best 1")))
        .await
        .unwrap();
    assert!(matches!(done, Keyed::Done(_)));
}

/// PostgreSQL only: an extension is a ledger row per seat with the new deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_is_in_the_ledger_with_its_new_deadline() {
    let db = common::TestDb::new().await;
    let store = db.store(roomy(), 8).await;
    let inception = movie(&store, "inception").await;
    let user = api_user();
    let hold = hold_seats(&store, &user, &inception, Want::Seats(seats(&["E1", "E2"])))
        .await
        .unwrap();
    let info = extend(&store, &user, hold.session_id).await.unwrap();
    let rows: Vec<(String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "select seat_id, expires_at from booking_events where kind = 'extended' order by seat_id",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        rows,
        [
            ("E1".into(), info.expires_at),
            ("E2".into(), info.expires_at)
        ]
    );
}

/// PostgreSQL only: the reaper forgets a key past its lifetime, and the key then acts afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_past_their_lifetime_are_forgotten_and_act_afresh() {
    let db = common::TestDb::new().await;
    let store = db.store(roomy(), 8).await;
    let inception = movie(&store, "inception").await;
    let user = api_user();
    let command = || Command::Hold {
        movie: inception.clone(),
        want: Want::Best(1),
        from: None,
    };
    let first = store
        .execute(&user, command(), Some(claim("old", "best 1")))
        .await
        .unwrap();
    assert!(matches!(first, Keyed::Done(_)));
    assert_eq!(
        store.forget_keys(100).await.unwrap(),
        0,
        "a fresh key stays"
    );
    sqlx::query("update idempotency_keys set created_at = now() - interval '25 hours'")
        .execute(store.pool())
        .await
        .unwrap();
    let again = store
        .execute(&user, command(), Some(claim("old", "best 1")))
        .await
        .unwrap();
    assert!(
        matches!(again, Keyed::Done(_)),
        "a key past its lifetime is not replayed"
    );
    sqlx::query("update idempotency_keys set created_at = now() - interval '25 hours'")
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(store.forget_keys(100).await.unwrap(), 1);
    assert_eq!(store.forget_keys(100).await.unwrap(), 0);
    assert_eq!(holders(&store, "inception").await.len(), 2);
}

/// PostgreSQL only: the bookings report lists a booking by its reference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bookings_report_lists_each_booking_by_its_reference() {
    let db = common::TestDb::new().await;
    let store = db.store(roomy(), 8).await;
    let inception = movie(&store, "inception").await;
    let user = api_user();
    let hold = hold_seats(&store, &user, &inception, Want::Seats(seats(&["B7", "B8"])))
        .await
        .unwrap();
    let booking = store.confirm(hold.session_id, &user).await.unwrap();
    let rows = store
        .report(boxoffice::reports::Report::Bookings, Some("inception"))
        .await
        .unwrap()
        .rows;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["booking_reference"], booking.reference.as_str());
    assert_eq!(rows[0]["seats"], "B7 B8");
    assert_eq!(rows[0]["seat_count"], 2);
}

/// PostgreSQL only: a key kept as a whole answer by a server before typed outcomes
/// (migrations/0012) is replayed as it is, so an upgrade breaks no client's retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_kept_as_an_answer_before_typed_outcomes_is_replayed_as_it_is() {
    let db = common::TestDb::new().await;
    let store = db.store(roomy(), 8).await;
    let inception = movie(&store, "inception").await;
    let user = api_user();
    let body = r#"{"session_id":"00000000-0000-4000-8000-000000000000"}"#;
    sqlx::query(
        "insert into idempotency_keys (user_id, key, fingerprint, status, body)
         values ($1, 'old', 'best 1', 201, $2)",
    )
    .bind(user.as_str())
    .bind(body)
    .execute(store.pool())
    .await
    .unwrap();
    let command = Command::Hold {
        movie: inception,
        want: Want::Best(1),
        from: None,
    };
    let replayed = store
        .execute(&user, command, Some(claim("old", "best 1")))
        .await
        .unwrap();
    let Keyed::Replayed(kept) = replayed else {
        panic!("replayed: {replayed:?}")
    };
    assert_eq!(
        kept,
        Kept::Answer {
            status: 201,
            body: body.to_owned()
        }
    );
    assert!(
        holders(&store, "inception").await.is_empty(),
        "nothing done"
    );
}

/// PostgreSQL only: the database makes and checks booking references with its own copy of
/// the alphabet (a migration, never edited); it must be the domain's, the one home of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_makes_and_checks_references_as_the_domain_does() {
    use boxoffice::domain::BookingReference;
    let db = common::TestDb::new().await;
    let pool = db.pool(2).await;
    let made: Vec<String> =
        sqlx::query_scalar("select new_booking_reference() from generate_series(1, 500)")
            .fetch_all(&pool)
            .await
            .unwrap();
    for reference in &made {
        assert!(
            BookingReference::parse(reference.clone()).is_some(),
            "{reference:?}"
        );
    }
    let used: std::collections::BTreeSet<char> = made
        .iter()
        .flat_map(|r| r.chars())
        .filter(|c| *c != '-')
        .collect();
    let alphabet: std::collections::BTreeSet<char> = BookingReference::ALPHABET.chars().collect();
    assert_eq!(
        used, alphabet,
        "500 references use every character of the alphabet"
    );
    let check: String = sqlx::query_scalar(
        "select pg_get_constraintdef(oid) from pg_constraint
          where conname = 'hold_sessions_booking_reference_format'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        check.contains(&format!("'{}'", BookingReference::PATTERN)),
        "{check}"
    );
}
