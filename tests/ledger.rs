//! The booking ledger (`booking_events`): one row per seat per change, written with the
//! change, each expiry exactly once whoever deletes the lapsed hold, and nothing can alter it.

mod common;

use boxoffice::domain::{Hold, SeatId, UserId};
use boxoffice::store::{Catalogue, Housekeeping, PgStore, Seats, StoreError};
use chrono::{DateTime, Utc};
use common::{LONG_TTL, SHORT_TTL, TestDb, policy, wait_until_lapsed};
use sqlx::PgPool;
use uuid::Uuid;

fn user(name: &str) -> UserId {
    UserId::parse(name.to_owned()).unwrap()
}

async fn hold(store: &PgStore, ids: &[&str], who: &str) -> Result<Hold, StoreError> {
    let movie = store.movie(&common::screening("inception")).await.unwrap();
    let seats = ids.iter().map(|id| SeatId::parse(id).unwrap()).collect();
    store.hold(&movie, seats, &user(who), None).await
}

#[derive(Debug, PartialEq)]
struct Event {
    kind: String,
    seat: String,
    session: Uuid,
    user: String,
    seat_count: i32,
}

fn event(kind: &str, seat: &str, hold: &Hold) -> Event {
    Event {
        kind: kind.into(),
        seat: seat.into(),
        session: hold.session_id.0,
        user: hold.user_id.to_string(),
        seat_count: i32::try_from(hold.seats.len()).unwrap(),
    }
}

/// The ledger in the order it was written.
async fn ledger(pool: &PgPool) -> Vec<Event> {
    let rows: Vec<(String, String, Uuid, String, i32)> = sqlx::query_as(
        "select kind, seat_id, session_id, user_id, seat_count from booking_events order by id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(kind, seat, session, user, seat_count)| Event {
            kind,
            seat,
            session,
            user,
            seat_count,
        })
        .collect()
}

/// When `session`'s `kind` row says it happened, when it was written, and the deadline it
/// carries.
async fn times(
    pool: &PgPool,
    session: Uuid,
    kind: &str,
) -> (DateTime<Utc>, DateTime<Utc>, Option<DateTime<Utc>>) {
    sqlx::query_as(
        "select at, recorded_at, expires_at from booking_events
         where session_id = $1 and kind = $2",
    )
    .bind(session)
    .bind(kind)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn holds_confirms_and_releases_write_a_row_per_seat() {
    let db = TestDb::new().await;
    let store = db.store(policy(LONG_TTL, 8), 4).await;
    let group = hold(&store, &["B2", "B3"], "alice").await.unwrap();
    let single = hold(&store, &["C7"], "bob").await.unwrap();
    store
        .confirm(group.session_id, &group.user_id)
        .await
        .unwrap();
    store
        .release(single.session_id, &single.user_id)
        .await
        .unwrap();
    // Repeating either changes nothing, so it records nothing.
    store
        .confirm(group.session_id, &group.user_id)
        .await
        .unwrap();
    store
        .release(single.session_id, &single.user_id)
        .await
        .unwrap();

    let pool = db.pool(1).await;
    assert_eq!(
        ledger(&pool).await,
        [
            event("held", "B2", &group),
            event("held", "B3", &group),
            event("held", "C7", &single),
            event("confirmed", "B2", &group),
            event("confirmed", "B3", &group),
            event("released", "C7", &single),
        ]
    );
    let (held_at, _, deadline) = times(&pool, single.session_id.0, "held").await;
    assert_eq!(held_at, single.server_time);
    assert_eq!(deadline, Some(single.expires_at));
}

#[tokio::test]
async fn a_refused_hold_writes_nothing() {
    let db = TestDb::new().await;
    let store = db.store(policy(LONG_TTL, 2), 4).await;
    let first = hold(&store, &["A1"], "alice").await.unwrap();
    assert!(matches!(
        hold(&store, &["A1"], "bob").await,
        Err(StoreError::SeatTaken(_))
    ));
    assert!(matches!(
        hold(&store, &["A2", "A1"], "bob").await,
        Err(StoreError::SeatTaken(_))
    ));
    assert!(matches!(
        hold(&store, &["D1", "D2", "D3"], "alice").await,
        Err(StoreError::LimitReached { .. })
    ));
    assert_eq!(
        ledger(&db.pool(1).await).await,
        [event("held", "A1", &first)]
    );
}

#[tokio::test]
async fn an_expiry_taken_over_is_recorded_once_at_its_deadline() {
    let db = TestDb::new().await;
    let store = db.store(policy(SHORT_TTL, 8), 4).await;
    let lapsed = hold(&store, &["E5"], "alice").await.unwrap();
    wait_until_lapsed(lapsed.server_time, lapsed.expires_at).await;
    let next = hold(&store, &["E5"], "bob").await.unwrap();
    // The reaper finds nothing left of it.
    assert_eq!(store.reap_expired(100).await.unwrap(), 0);

    let pool = db.pool(1).await;
    assert_eq!(
        ledger(&pool).await,
        [
            event("held", "E5", &lapsed),
            event("expired", "E5", &lapsed),
            event("held", "E5", &next),
        ]
    );
    let (at, recorded_at, _) = times(&pool, lapsed.session_id.0, "expired").await;
    assert_eq!(at, lapsed.expires_at, "an expiry happens at the deadline");
    assert_eq!(
        recorded_at, next.server_time,
        "and is written by the takeover"
    );
}

#[tokio::test]
async fn an_expiry_reaped_is_recorded_once_at_its_deadline() {
    let db = TestDb::new().await;
    let store = db.store(policy(SHORT_TTL, 8), 4).await;
    let lapsed = hold(&store, &["F1", "F2"], "alice").await.unwrap();
    wait_until_lapsed(lapsed.server_time, lapsed.expires_at).await;
    assert_eq!(store.reap_expired(100).await.unwrap(), 2);
    assert_eq!(store.reap_expired(100).await.unwrap(), 0);
    // A hold on the seat afterwards takes over nothing.
    let next = hold(&store, &["F1"], "bob").await.unwrap();

    let pool = db.pool(1).await;
    assert_eq!(
        ledger(&pool).await,
        [
            event("held", "F1", &lapsed),
            event("held", "F2", &lapsed),
            event("expired", "F1", &lapsed),
            event("expired", "F2", &lapsed),
            event("held", "F1", &next),
        ]
    );
    let at: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "select at from booking_events where kind = 'expired' and at <= recorded_at",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(at, [lapsed.expires_at, lapsed.expires_at]);
}

#[tokio::test]
async fn the_ledger_refuses_update_delete_and_truncate_even_to_a_superuser_in_replica_mode() {
    let db = TestDb::new().await;
    let store = db.store(policy(LONG_TTL, 8), 4).await;
    hold(&store, &["G1"], "alice").await.unwrap();
    let pool = db.pool(1).await;
    let superuser: bool =
        sqlx::query_scalar("select rolsuper from pg_roles where rolname = current_user")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        superuser,
        "the test connects as a superuser, whom privileges don't stop"
    );

    for replica in [false, true] {
        let mut conn = pool.acquire().await.unwrap();
        if replica {
            // Replica mode skips ordinary triggers (and foreign keys).
            sqlx::query("set session_replication_role = replica")
                .execute(&mut *conn)
                .await
                .unwrap();
        }
        for statement in [
            "update booking_events set user_id = 'mallory'",
            "delete from booking_events",
            "truncate booking_events",
        ] {
            let error = sqlx::query(statement)
                .execute(&mut *conn)
                .await
                .expect_err(statement);
            assert!(
                error.to_string().contains("booking_events is append-only"),
                "{statement} (replica: {replica}): {error}"
            );
        }
        sqlx::query("reset session_replication_role")
            .execute(&mut *conn)
            .await
            .unwrap();
    }
    let left: i64 =
        sqlx::query_scalar("select count(*) from booking_events where user_id = 'alice'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(left, 1);
}
