//! Races. Checks judge what clients were told: one success per seat, and every success
//! visible afterwards. For PostgreSQL the racers go through separate pools, as separate
//! server processes would, so a lock inside one process could not pass these tests.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use boxoffice::domain::UserId;
use boxoffice::store::{Catalogue, Seats, Store, StoreError};
use common::{LONG_TTL, TestApp, TestDb, json_of, policy, test_config};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{Barrier, Semaphore};

const ATTEMPTS: usize = 100_000;
const IN_FLIGHT: usize = 1_000;

/// Fires `ATTEMPTS` holds on one seat, each from its own user, spread over `stores`, with at
/// most `IN_FLIGHT` at once. Asserts exactly one success and `seat_taken` for all others.
async fn one_seat_rush<S: Store>(stores: Vec<S>, label: &str) {
    let movie = stores[0]
        .movie(&common::screening("inception"))
        .await
        .unwrap();
    let seat = movie.seat("C4").unwrap();
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let started = Instant::now();
    let attempts: Vec<_> = (0..ATTEMPTS)
        .map(|i| {
            let store = stores[i % stores.len()].clone();
            let (movie, seat, gate) = (movie.clone(), seat.clone(), gate.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.unwrap();
                let user = UserId::parse(format!("fan-{i}")).unwrap();
                store
                    .hold(&movie, vec![seat], &user, None)
                    .await
                    .map(|hold| (user, hold))
            })
        })
        .collect();

    let (mut winners, mut taken) = (Vec::new(), 0);
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(won) => winners.push(won),
            Err(StoreError::SeatTaken(seats)) if seats == [seat.clone()] => taken += 1,
            Err(other) => panic!("an attempt failed with {other:?}"),
        }
    }
    eprintln!(
        "{label}: {ATTEMPTS} holds on one seat in {:.2?}",
        started.elapsed()
    );
    assert_eq!(winners.len(), 1, "exactly one winner");
    assert_eq!(taken, ATTEMPTS - 1);
    let (user, _) = &winners[0];
    let map = stores[1 % stores.len()]
        .seat_map("inception")
        .await
        .unwrap();
    assert_eq!(map.len(), 1);
    assert_eq!((&map[0].seat_id, &map[0].user_id), (&seat, user));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_holds_on_one_seat_have_one_winner_in_memory() {
    let store = boxoffice::store::MemoryStore::new(policy(LONG_TTL, 8));
    one_seat_rush(vec![store], "memory store").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_holds_on_one_seat_have_one_winner_in_postgres() {
    let db = TestDb::new().await;
    let stores = vec![
        db.store(policy(LONG_TTL, 8), 16).await,
        db.store(policy(LONG_TTL, 8), 16).await,
    ];
    one_seat_rush(stores, "PostgreSQL store, two pools").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_http_holds_on_one_seat_get_one_201() {
    common::raise_open_files_limit();
    let db = TestDb::new().await;
    let app = TestApp::spawn(db.store(policy(LONG_TTL, 8), 16).await, test_config()).await;
    let url = app.url("/movies/inception/seats/B5/hold");
    let n = 1_000;
    let start = Arc::new(Barrier::new(n));
    let requests: Vec<_> = (0..n)
        .map(|i| {
            let (client, url, start) = (app.client.clone(), url.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                let response = client
                    .post(url)
                    .json(&json!({ "user_id": format!("fan-{i}") }))
                    .send()
                    .await
                    .expect("the server answers every request");
                let status = response.status();
                let body: Value = response.json().await.unwrap();
                (status, body)
            })
        })
        .collect();
    let mut by_status: HashMap<StatusCode, usize> = HashMap::new();
    for request in requests {
        let (status, body) = request.await.unwrap();
        if status == StatusCode::CONFLICT {
            assert_eq!(body["code"], "seat_taken");
        }
        *by_status.entry(status).or_default() += 1;
    }
    assert_eq!(
        by_status,
        HashMap::from([(StatusCode::CREATED, 1), (StatusCode::CONFLICT, n - 1)])
    );
}

/// Many users grab many seats through two server instances; some confirm, some release.
/// Judged by what clients were told: no seat granted twice while held, and every hold or
/// booking a client kept is on the seat map afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_users_racing_for_many_seats_never_share_one() {
    common::raise_open_files_limit();
    let db = TestDb::new().await;
    let mut apps = Vec::new();
    for _ in 0..2 {
        let store = db.store(policy(LONG_TTL, 8), 8).await;
        apps.push(Arc::new(TestApp::spawn(store, test_config()).await));
    }
    let movie = "dune-part-two"; // 24 seats, so users collide often
    let all_seats: Vec<String> = (b'A'..=b'D')
        .flat_map(|row| (1..=6).map(move |n| format!("{}{n}", row as char)))
        .collect();
    let users = 60;
    let start = Arc::new(Barrier::new(users));
    let racers: Vec<_> = (0..users)
        .map(|u| {
            let app = apps[u % apps.len()].clone();
            let start = start.clone();
            // Every user tries 6 seats, starting at a different place in the room.
            let wanted: Vec<String> = (0..6)
                .map(|k| all_seats[(u * 5 + k * 7) % all_seats.len()].clone())
                .collect();
            tokio::spawn(async move {
                let user = format!("user-{u}");
                start.wait().await;
                let mut kept = Vec::new();
                for (k, seat) in wanted.into_iter().enumerate() {
                    let response = app
                        .client
                        .post(app.url(&format!("/movies/{movie}/seats/{seat}/hold")))
                        .json(&json!({ "user_id": user }))
                        .send()
                        .await
                        .unwrap();
                    match response.status() {
                        StatusCode::CREATED => {}
                        StatusCode::CONFLICT => continue,
                        other => panic!("hold answered {other}"),
                    }
                    let hold: Value = response.json().await.unwrap();
                    let session = hold["session_id"].as_str().unwrap().to_owned();
                    let body = json!({ "user_id": user });
                    // Confirm some, release some, keep the rest held.
                    let outcome = match (u + k) % 3 {
                        0 => {
                            let r = app
                                .client
                                .put(app.url(&format!("/sessions/{session}/confirm")))
                                .json(&body)
                                .send()
                                .await
                                .unwrap();
                            assert_eq!(r.status(), StatusCode::OK);
                            Some(true)
                        }
                        1 => {
                            let r = app
                                .client
                                .delete(app.url(&format!("/sessions/{session}")))
                                .json(&body)
                                .send()
                                .await
                                .unwrap();
                            assert_eq!(r.status(), StatusCode::NO_CONTENT);
                            None
                        }
                        _ => Some(false),
                    };
                    if let Some(confirmed) = outcome {
                        kept.push((seat, user.clone(), confirmed));
                    }
                }
                kept
            })
        })
        .collect();

    let mut kept: HashMap<String, (String, bool)> = HashMap::new();
    for racer in racers {
        for (seat, user, confirmed) in racer.await.unwrap() {
            // A seat kept (not released) by one user can never have been granted again.
            if let Some(previous) = kept.insert(seat.clone(), (user.clone(), confirmed)) {
                panic!("seat {seat} was granted to both {} and {user}", previous.0);
            }
        }
    }
    assert!(!kept.is_empty());
    let map = json_of(
        apps[0]
            .client
            .get(apps[0].url(&format!("/movies/{movie}/seats"))),
    )
    .await;
    let on_map: HashMap<String, (String, bool)> = map
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let seat = t["seat_id"].as_str().unwrap().to_owned();
            (
                seat,
                (
                    t["user_id"].as_str().unwrap().to_owned(),
                    t["confirmed"].as_bool().unwrap(),
                ),
            )
        })
        .collect();
    assert_eq!(
        on_map, kept,
        "the seat map is exactly what clients were told they kept"
    );
}

/// A request that fails for a reason of its own (here, a movie that was deleted after it was
/// looked up) does not take its batch-mates down with it: they are decided again without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_request_does_not_fail_its_batch() {
    let db = TestDb::new().await;
    let store = db.store(policy(LONG_TTL, 8), 4).await;
    let room = store
        .movie(&common::screening("the-grand-budapest-hotel"))
        .await
        .unwrap();
    let gone = boxoffice::domain::Movie {
        id: "closed-for-repairs".into(),
        ..room.clone()
    };
    let n = 40;
    let start = Arc::new(Barrier::new(n));
    let holds: Vec<_> = (0..n)
        .map(|i| {
            let (store, start) = (store.clone(), start.clone());
            let movie = if i == n / 2 {
                gone.clone()
            } else {
                room.clone()
            };
            tokio::spawn(async move {
                let seat = movie.seat(&format!("C{}", i % 16 + 1)).unwrap();
                let seat = if i < 16 {
                    seat
                } else {
                    movie.seat(&format!("D{}", i % 16 + 1)).unwrap()
                };
                let user = UserId::parse(format!("guest-{i}")).unwrap();
                start.wait().await;
                (i, store.hold(&movie, vec![seat], &user, None).await)
            })
        })
        .collect();
    for hold in holds {
        let (i, answer) = hold.await.unwrap();
        match answer {
            Err(StoreError::Database(_)) if i == n / 2 => {}
            Ok(_) | Err(StoreError::SeatTaken(_)) if i != n / 2 => {}
            other => panic!("request {i} was answered {other:?}"),
        }
    }
}
