//! `hold_seats` (migrations/0003, 0009) called directly with batches a test lays out, so that
//! batches the hold workers make only by chance are decided here every time: whoever is told
//! "held" holds every seat asked for, in the database, and no seat is told to two.

mod common;

use std::collections::BTreeMap;

use common::TestDb;
use sqlx::PgPool;
use uuid::Uuid;

/// One request of a batch: who asks, for which seats of `inception`.
struct Ask {
    user: String,
    seats: Vec<String>,
    /// The client's address, if known.
    from: Option<&'static str>,
}

/// Calls `hold_seats` with `asks` (in arrival order) and returns each request's outcome.
async fn decide(pool: &PgPool, asks: &[Ask], max_holds: i32) -> Vec<(String, Uuid)> {
    decide_per_address(pool, asks, max_holds, None).await
}

/// `decide`, with a cap of seats per address.
async fn decide_per_address(
    pool: &PgPool,
    asks: &[Ask],
    max_holds: i32,
    per_address: Option<i32>,
) -> Vec<(String, Uuid)> {
    let mut seats: Vec<(&str, i32)> = asks
        .iter()
        .zip(1..)
        .flat_map(|(ask, n)| ask.seats.iter().map(move |s| (s.as_str(), n)))
        .collect();
    seats.sort_unstable();
    let sessions: Vec<Uuid> = asks.iter().map(|_| Uuid::new_v4()).collect();
    let outcomes: Vec<(i32, String)> = sqlx::query_as(
        "select request, outcome from hold_seats($1, $2, $3, $4, $5, 3600, $6, $7::inet[], $8)
          order by request",
    )
    .bind(seats.iter().map(|s| s.1).collect::<Vec<_>>())
    .bind(vec!["inception"; seats.len()])
    .bind(seats.iter().map(|s| s.0).collect::<Vec<_>>())
    .bind(&sessions)
    .bind(asks.iter().map(|a| a.user.as_str()).collect::<Vec<_>>())
    .bind(max_holds)
    .bind(asks.iter().map(|a| a.from).collect::<Vec<_>>())
    .bind(per_address)
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(outcomes.len(), asks.len());
    outcomes
        .into_iter()
        .zip(sessions)
        .map(|((_, outcome), session)| (outcome, session))
        .collect()
}

/// The holder (session) of each taken seat of `inception`.
async fn holders(pool: &PgPool) -> BTreeMap<String, Uuid> {
    let rows: Vec<(String, Uuid)> =
        sqlx::query_as("select seat_id, session_id from seat_holds where movie_id = 'inception'")
            .fetch_all(pool)
            .await
            .unwrap();
    rows.into_iter().collect()
}

fn ask(user: &str, seats: &[&str]) -> Ask {
    Ask {
        user: user.into(),
        seats: seats.iter().map(|s| (*s).to_owned()).collect(),
        from: None,
    }
}

fn ask_from(from: &'static str, user: &str, seats: &[&str]) -> Ask {
    Ask {
        from: Some(from),
        ..ask(user, seats)
    }
}

/// The cap per address spans the batch's users, first come first served; a request that
/// loses its seat gives its share back to those after it.
#[tokio::test]
async fn one_batch_keeps_each_address_to_its_cap() {
    let db = TestDb::new().await;
    let pool = db.pool(2).await;
    let (office, home) = ("192.0.2.1", "198.51.100.7");
    decide(&pool, &[ask("early", &["A1"])], 8).await;
    let asks = [
        ask_from(office, "u1", &["A1"]),
        ask_from(office, "u2", &["B1"]),
        ask_from(office, "u3", &["B2", "B3"]),
        ask_from(office, "u4", &["B4"]),
        ask_from(home, "u5", &["B5", "B6"]),
        ask_from(office, "u6", &["B7"]),
    ];
    let outcomes = decide_per_address(&pool, &asks, 8, Some(2)).await;
    let told: Vec<&str> = outcomes.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(
        told,
        [
            "taken",
            "held",
            "address_limit",
            "held",
            "held",
            "address_limit"
        ]
    );
    let live: Vec<(String, i64)> = sqlx::query_as(
        "select host(client_ip), count(*) from seat_holds where client_ip is not null
          group by 1 order by 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(live, [(office.into(), 2), (home.into(), 2)]);
}

#[tokio::test]
async fn a_request_over_its_limit_between_two_for_one_seat_leaves_it_to_the_first() {
    let db = TestDb::new().await;
    let pool = db.pool(2).await;
    // "full" holds one seat already, its whole limit of one.
    decide(&pool, &[ask("full", &["E8"])], 1).await;
    let asks = [ask("u1", &["B2"]), ask("full", &["B2"]), ask("u3", &["B2"])];
    let outcomes = decide(&pool, &asks, 1).await;
    let told: Vec<&str> = outcomes.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(told, ["held", "limit", "taken"], "one seat, one holder");
    assert_eq!(holders(&pool).await.get("B2"), Some(&outcomes[0].1));
}

#[tokio::test]
async fn a_group_refused_between_two_for_one_seat_leaves_it_to_the_first() {
    let db = TestDb::new().await;
    let pool = db.pool(2).await;
    decide(&pool, &[ask("early", &["A4"])], 8).await;
    // The second group is refused at once (A4 is taken): it must not let the third try A5
    // beside the first.
    let asks = [
        ask("u1", &["A5", "B5"]),
        ask("u2", &["A4", "A5"]),
        ask("u3", &["A1", "A5"]),
    ];
    let outcomes = decide(&pool, &asks, 8).await;
    let told: Vec<&str> = outcomes.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(told, ["held", "taken", "taken"]);
    let held = holders(&pool).await;
    assert_eq!(held.get("A5"), Some(&outcomes[0].1));
    assert_eq!(held.get("A1"), None, "a refused group writes nothing");
}

/// Many random batches of overlapping groups, some users and addresses near their limit, on a
/// room that fills up: after each, every request told "held" has all its seats and no seat is told
/// twice; "again" is decided in a later call, as the hold workers do.
#[tokio::test]
async fn random_batches_never_tell_two_requests_one_seat() {
    let db = TestDb::new().await;
    let pool = db.pool(2).await;
    let seats: Vec<String> = (0..5)
        .flat_map(|r| (1..=8).map(move |n| format!("{}{n}", char::from(b'A' + r))))
        .collect();
    let mut rng = 12345_u64;
    let mut below = |n: usize| {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((rng >> 33) as usize) % n
    };
    let mut told: BTreeMap<String, Uuid> = BTreeMap::new();
    for round in 0..60 {
        let mut asks: Vec<Ask> = (0..2 + below(10))
            .map(|_| {
                let mut wanted: Vec<String> = (0..1 + below(4))
                    .map(|_| seats[below(seats.len())].clone())
                    .collect();
                wanted.sort();
                wanted.dedup();
                Ask {
                    user: format!("user-{}", below(6)),
                    seats: wanted,
                    from: [Some("192.0.2.1"), Some("192.0.2.2"), None][below(3)],
                }
            })
            .collect();
        while !asks.is_empty() {
            let outcomes = decide_per_address(&pool, &asks, 3, Some(7)).await;
            let mut again = Vec::new();
            for (ask, (outcome, session)) in asks.into_iter().zip(outcomes) {
                match outcome.as_str() {
                    "held" => {
                        for seat in &ask.seats {
                            let before = told.insert(seat.clone(), session);
                            assert!(before.is_none(), "round {round}: {seat} told twice");
                        }
                    }
                    "again" => again.push(ask),
                    "taken" | "limit" | "address_limit" => {}
                    other => panic!("round {round}: {other}"),
                }
            }
            asks = again;
        }
        assert_eq!(
            holders(&pool).await,
            told,
            "round {round}: told is what is held"
        );
        let most: Option<i64> = sqlx::query_scalar(
            "select max(n) from (select count(*) as n from seat_holds
                                   where client_ip is not null group by client_ip) c",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(
            most.unwrap_or(0) <= 7,
            "round {round}: an address over its cap"
        );
        if round % 10 == 9 {
            sqlx::query("delete from seat_holds")
                .execute(&pool)
                .await
                .unwrap();
            told.clear();
        }
    }
}
