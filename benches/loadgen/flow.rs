//! The hold → confirm / release flow, from a Rust HTTP client: each flow needs the session id
//! its hold was given, which wrk's scripts cannot carry from one request to the next.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::check::Told;
use crate::fixtures::{ROOM_SEATS, ROOMS, distinct_seat};
use crate::report::{Latency, Sample};

/// `clients` tasks, each running flows one after another until `duration` is up: a hold on
/// the next distinct seat, then its confirm (even flows) or release (odd ones).
pub async fn run(clients: usize, duration: Duration, base: &str) -> (Sample, Told) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (client, counter, base) = (client.clone(), counter.clone(), base.to_owned());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
                let mut told = Told::default();
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let began = Instant::now();
                    let label = flow(&client, &base, n, &format!("flow-{c}"), &mut told).await;
                    latencies.push(began.elapsed().as_micros() as u64);
                    *outcomes.entry(label).or_default() += 1;
                }
                (latencies, outcomes, told)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let mut sample = Sample::default();
    let mut told = Told::default();
    for task in tasks {
        let (some, outcomes, seen) = task.await.unwrap();
        latencies.extend(some);
        for (label, count) in outcomes {
            *sample.outcomes.entry(label).or_default() += count;
        }
        told.merge(seen);
    }
    sample.elapsed = started.elapsed();
    sample.ops = latencies.len() as u64;
    sample.latency = Latency::of(latencies);
    (sample, told)
}

/// Flows take seats from the second half of the bench rooms: the rush of holds before them
/// takes the first.
const FLOW_SEATS: u64 = ROOMS / 2 * ROOM_SEATS;

async fn flow(client: &reqwest::Client, base: &str, n: u64, who: &str, told: &mut Told) -> String {
    let (movie, seat) = distinct_seat(FLOW_SEATS + n);
    let body = serde_json::json!({ "user_id": who });
    let hold = client
        .post(format!("{base}/movies/{movie}/seats/{seat}/hold"))
        .json(&body)
        .send()
        .await;
    let session: uuid::Uuid = match hold {
        Ok(r) if r.status() == 201 => {
            let hold: serde_json::Value = r.json().await.unwrap();
            hold["session_id"].as_str().unwrap().parse().unwrap()
        }
        Ok(r) => return format!("hold {}", r.status().as_u16()),
        Err(e) => return format!("hold error: {e}"),
    };
    let confirm = n.is_multiple_of(2);
    let request = if confirm {
        client.put(format!("{base}/sessions/{session}/confirm"))
    } else {
        client.delete(format!("{base}/sessions/{session}"))
    };
    match request.json(&body).send().await {
        Ok(r) if r.status().is_success() => {
            if confirm {
                told.confirmed.push((movie, seat, session));
            } else {
                told.released.push(session);
            }
            "ok".to_owned()
        }
        Ok(r) => {
            told.held.push((movie, seat, session));
            let what = if confirm { "confirm" } else { "release" };
            format!("{what} {}", r.status().as_u16())
        }
        Err(e) => format!("error: {e}"),
    }
}
