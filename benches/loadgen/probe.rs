//! Latencies from a client that times each request. wrk gives the rate, but its latency
//! histogram has been seen wrong on this machine class (a p99 of 80 ms where timing each
//! request gave 0.6 ms), so the tables take their latencies from here: one connection beside
//! wrk's, asking what wrk's connections ask, one request at a time, for as long as wrk runs.
//! One client among 32 or more, it changes the load little.

use std::time::{Duration, Instant};

use crate::check::Told;
use crate::fixtures::{HOT_ROOM, HOT_SEAT, MAP_ROOM, ROOM_SEATS, ROOMS, distinct_seat};
use crate::options::Scenario;
use crate::report::Latency;
use crate::wrk;

/// Times requests of `scenario` against `base` for `duration`; `token`: an API user's, for the
/// API's seat map. Holds take seats wrk does not reach (the last of the bench rooms, and the
/// last group rooms), each for a user of its own, and are told to the invariant check.
pub async fn run(
    scenario: Scenario,
    duration: Duration,
    base: String,
    token: Option<String>,
) -> (Option<Latency>, Told) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .build()
        .unwrap();
    let mut told = Told::default();
    let mut micros = Vec::new();
    let deadline = Instant::now() + duration;
    let mut group_token = None;
    for k in 0_u64.. {
        if Instant::now() >= deadline {
            break;
        }
        let request = match scenario {
            Scenario::SeatMap => client.get(format!("{base}/movies/{MAP_ROOM}/seats")),
            Scenario::SeatMapV1 => client
                .get(format!("{base}/api/v1/movies/{MAP_ROOM}/seats"))
                .bearer_auth(token.as_deref().expect("the API's map needs a token")),
            Scenario::HotSeat => client
                .post(format!("{base}/movies/{HOT_ROOM}/seats/{HOT_SEAT}/hold"))
                .json(&serde_json::json!({ "user_id": "probe" })),
            Scenario::Holds => {
                let (movie, seat) = distinct_seat(ROOMS * ROOM_SEATS - 1 - k);
                client
                    .post(format!("{base}/movies/{movie}/seats/{seat}/hold"))
                    .json(&serde_json::json!({ "user_id": format!("probe-{k}") }))
            }
            Scenario::GroupHolds => {
                // Groups of 4 from the last group room down; a user holds two (8 seats).
                if k.is_multiple_of(2) {
                    group_token = wrk::identities(1).pop().map(|(_, token)| token);
                }
                let room = 400 - k / 312 % 400;
                let within = k % 312;
                let row = char::from(b'A' + (within / 12) as u8);
                let first = within % 12 * 4 + 1;
                let seats: Vec<String> = (first..first + 4).map(|n| format!("{row}{n}")).collect();
                client
                    .post(format!("{base}/api/v1/movies/group-{room}/holds"))
                    .bearer_auth(group_token.as_deref().expect("made above"))
                    .json(&serde_json::json!({ "seat_ids": seats }))
            }
            Scenario::Flow => unreachable!("the flow client times its own requests"),
        };
        let began = Instant::now();
        let Ok(response) = request.send().await else {
            continue;
        };
        let status = response.status();
        let Ok(body) = response.bytes().await else {
            continue;
        };
        micros.push(began.elapsed().as_micros() as u64);
        if status == 201 {
            told.hold(&serde_json::from_slice(&body).unwrap());
        }
    }
    (Latency::of(micros), told)
}
