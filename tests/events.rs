//! The live seat map, `GET /movies/{movie_id}/events`, on both stores: a snapshot, then every
//! change in order; resuming after a reconnect without a gap; expiries; the cap on open
//! streams; shutdown; a subscriber that falls behind.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use boxoffice::Config;
use boxoffice::domain::{SeatId, UserId};
use boxoffice::store::{Catalogue, MemoryStore, Seats};
use common::sse::{EventStream, SseEvent};
use common::{LONG_TTL, SHORT_TTL, TestApp, TestDb, assert_error, json_of, policy, test_config};
use reqwest::StatusCode;
use serde_json::{Value, json};

const EVENTS: &str = "/movies/inception/events";

/// Which store a test runs on.
#[derive(Clone, Copy)]
enum Store {
    Memory,
    Postgres,
}

/// A server on `store` with `config`; the database, if any, lives as long as the server.
async fn serve(store: Store, config: Config) -> (TestApp, Option<TestDb>) {
    match store {
        Store::Memory => {
            let memory = MemoryStore::new(config.hold);
            (TestApp::spawn(memory, config).await, None)
        }
        Store::Postgres => {
            let db = TestDb::new().await;
            let app = TestApp::spawn(db.store(config.hold, 8).await, config).await;
            (app, Some(db))
        }
    }
}

fn config_with_ttl(ttl: Duration) -> Config {
    let mut config = test_config();
    config.hold = policy(ttl, 8);
    config
}

async fn hold(app: &TestApp, seat: &str, user: &str) -> Value {
    let response = app
        .client
        .post(app.url(&format!("/movies/inception/seats/{seat}/hold")))
        .json(&json!({ "user_id": user }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED, "hold {seat}");
    response.json().await.unwrap()
}

async fn end(app: &TestApp, hold: &Value, user: &str, confirm: bool) {
    let session = hold["session_id"].as_str().unwrap();
    let request = if confirm {
        app.client
            .put(app.url(&format!("/sessions/{session}/confirm")))
    } else {
        app.client.delete(app.url(&format!("/sessions/{session}")))
    };
    let response = request
        .json(&json!({ "user_id": user }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

async fn open(app: &TestApp, last_event_id: Option<&str>) -> EventStream {
    EventStream::open(&app.client, &app.url(EVENTS), last_event_id).await
}

fn kind_and_seats(event: &SseEvent) -> (String, Vec<String>) {
    (event.event.clone(), event.seats())
}

async fn changes_follow_a_snapshot_in_order_and_name_no_user(store: Store) {
    let (app, _db) = serve(store, config_with_ttl(LONG_TTL)).await;
    let early = hold(&app, "E8", "earlier-user").await;
    let mut stream = open(&app, None).await;
    let snapshot = stream.next().await.unwrap();
    assert_eq!(snapshot.event, "snapshot");
    assert_eq!(snapshot.data["seats"][0]["seat_id"], "E8");
    assert_eq!(snapshot.data["seats"][0]["state"], "held");
    assert_eq!(snapshot.data["seats"][0]["expires_at"], early["expires_at"]);

    let a1 = hold(&app, "A1", "alice").await;
    end(&app, &a1, "alice", true).await;
    let a2 = hold(&app, "A2", "alice").await;
    end(&app, &a2, "alice", false).await;

    let mut events = vec![snapshot.clone()];
    while events.len() < 5 {
        let event = stream.next().await.unwrap();
        // A change committed before the snapshot was read can still be on its way from the
        // database (PostgreSQL delivers notifications after the commit is visible): the page
        // applies it again, which changes nothing.
        if event.seats() == ["E8"] {
            assert_eq!(event.event, "held");
            assert_eq!(event.data["expires_at"], early["expires_at"]);
            continue;
        }
        events.push(event);
    }
    let seen: Vec<_> = events[1..].iter().map(kind_and_seats).collect();
    let expected = [
        ("held", "A1"),
        ("confirmed", "A1"),
        ("held", "A2"),
        ("released", "A2"),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(kind, seat)| (kind.to_string(), vec![seat.to_string()]))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(events[1].data["expires_at"], a1["expires_at"]);
    let versions: Vec<u64> = events.iter().map(SseEvent::version).collect();
    assert!(versions.is_sorted_by(|a, b| a < b), "{versions:?}");
    for event in &events {
        assert!(event.id.is_some(), "{event:?}");
        for user in ["alice", "earlier-user"] {
            assert!(!event.raw.contains(user), "{event:?} names {user}");
        }
    }

    // A newcomer's snapshot shows the booking, with no deadline and no user.
    let mut later = open(&app, None).await;
    let snapshot = later.next().await.unwrap();
    let seats = &snapshot.data["seats"];
    assert_eq!(seats[0], json!({ "seat_id": "A1", "state": "booked" }));
    assert_eq!(seats[1]["seat_id"], "E8");
    assert_eq!(seats.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn memory_changes_follow_a_snapshot_in_order_and_name_no_user() {
    changes_follow_a_snapshot_in_order_and_name_no_user(Store::Memory).await;
}

#[tokio::test]
async fn postgres_changes_follow_a_snapshot_in_order_and_name_no_user() {
    changes_follow_a_snapshot_in_order_and_name_no_user(Store::Postgres).await;
}

async fn a_reconnect_resumes_after_its_last_event_or_gets_a_snapshot(store: Store) {
    let (app, _db) = serve(store, config_with_ttl(LONG_TTL)).await;
    let mut stream = open(&app, None).await;
    stream.next().await.unwrap();
    hold(&app, "A1", "alice").await;
    assert_eq!(stream.next().await.unwrap().seats(), ["A1"]);
    let last = stream.last_event_id.clone().unwrap();
    drop(stream);

    // Missed while disconnected.
    hold(&app, "A2", "bob").await;
    hold(&app, "A3", "carol").await;
    // So that the test knows both were delivered to this process before it reconnects.
    let mut watcher = open(&app, Some(&last)).await;
    let (_, missed) = watcher.until(|e| e.seats() == ["A3"]).await;
    assert!(
        missed.iter().all(|e| e.event != "snapshot"),
        "resumed, not restarted: {missed:?}"
    );

    let mut resumed = open(&app, Some(&last)).await;
    let first = resumed.next().await.unwrap();
    let second = resumed.next().await.unwrap();
    assert_eq!(kind_and_seats(&first), ("held".into(), vec!["A2".into()]));
    assert_eq!(kind_and_seats(&second), ("held".into(), vec!["A3".into()]));
    hold(&app, "A4", "dave").await;
    assert_eq!(resumed.next().await.unwrap().seats(), ["A4"]);

    // An id this process did not give: a snapshot with everything.
    for foreign in ["0123456789ab-00000000-2", "nonsense", ""] {
        let mut fresh = open(&app, Some(foreign)).await;
        let snapshot = fresh.next().await.unwrap();
        assert_eq!(snapshot.event, "snapshot", "{foreign:?}");
        assert_eq!(snapshot.seats(), ["A1", "A2", "A3", "A4"]);
    }
}

#[tokio::test]
async fn memory_a_reconnect_resumes_after_its_last_event_or_gets_a_snapshot() {
    a_reconnect_resumes_after_its_last_event_or_gets_a_snapshot(Store::Memory).await;
}

#[tokio::test]
async fn postgres_a_reconnect_resumes_after_its_last_event_or_gets_a_snapshot() {
    a_reconnect_resumes_after_its_last_event_or_gets_a_snapshot(Store::Postgres).await;
}

async fn the_reaper_and_a_takeover_send_expired_events(store: Store) {
    // The reaper sweeps at start, then not again for an hour: the takeover happens first.
    let mut config = config_with_ttl(SHORT_TTL);
    config.reaper_interval = Duration::from_secs(3600);
    let (app, _db) = serve(store, config).await;
    let mut stream = open(&app, None).await;
    stream.next().await.unwrap();
    let first = hold(&app, "B2", "alice").await;
    stream.until(|e| e.event == "held").await;
    common::wait_until_lapsed(
        first["server_time"].as_str().unwrap().parse().unwrap(),
        first["expires_at"].as_str().unwrap().parse().unwrap(),
    )
    .await;
    hold(&app, "B2", "bob").await;
    let expired = stream.next().await.unwrap();
    let held = stream.next().await.unwrap();
    assert_eq!(
        kind_and_seats(&expired),
        ("expired".into(), vec!["B2".into()])
    );
    assert_eq!(kind_and_seats(&held), ("held".into(), vec!["B2".into()]));
    assert!(expired.version() < held.version());

    // With the reaper sweeping often, an untouched hold's expiry comes by itself.
    let mut config = config_with_ttl(SHORT_TTL);
    config.reaper_interval = Duration::from_millis(50);
    let (app, _db) = serve(store, config).await;
    let mut stream = open(&app, None).await;
    stream.next().await.unwrap();
    hold(&app, "C3", "carol").await;
    let (expired, before) = stream.until(|e| e.event == "expired").await;
    assert_eq!(expired.seats(), ["C3"]);
    assert_eq!(before.len(), 1, "{before:?}");
}

#[tokio::test]
async fn memory_the_reaper_and_a_takeover_send_expired_events() {
    the_reaper_and_a_takeover_send_expired_events(Store::Memory).await;
}

#[tokio::test]
async fn postgres_the_reaper_and_a_takeover_send_expired_events() {
    the_reaper_and_a_takeover_send_expired_events(Store::Postgres).await;
}

#[tokio::test]
async fn streams_beyond_the_cap_get_503_and_a_closed_one_frees_its_place() {
    let mut config = test_config();
    config.max_event_streams = 1;
    let (app, _) = serve(Store::Memory, config).await;
    let mut first = open(&app, None).await;
    first.next().await.unwrap();
    let refused = EventStream::request(&app.client, &app.url(EVENTS), None).await;
    assert!(refused.headers().contains_key("retry-after"));
    assert_error(refused, StatusCode::SERVICE_UNAVAILABLE, "too_many_streams").await;

    drop(first);
    // The server notices the closed connection when it next writes: a change makes it write.
    let deadline = tokio::time::Instant::now() + common::sse::PATIENCE;
    let mut seat = 0;
    loop {
        let response = EventStream::request(&app.client, &app.url(EVENTS), None).await;
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place never came free"
        );
        seat += 1;
        hold(&app, &format!("A{}", seat % 8 + 1), &format!("u{seat}")).await;
    }

    let mut config = test_config();
    config.max_event_streams = 0;
    let (off, _) = serve(Store::Memory, config).await;
    let refused = EventStream::request(&off.client, &off.url(EVENTS), None).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn an_unknown_movie_has_no_stream() {
    let (app, _) = serve(Store::Memory, test_config()).await;
    let body = json_of(app.client.get(app.url("/movies/nope/events"))).await;
    assert_eq!(body["code"], "movie_not_found");
}

#[tokio::test]
async fn a_graceful_shutdown_ends_open_streams() {
    let (app, _) = serve(Store::Memory, test_config()).await;
    let mut stream = open(&app, None).await;
    stream.next().await.unwrap();
    drop(app);
    assert!(
        stream.next().await.is_none(),
        "the stream ended within the test's patience"
    );
}

/// The seat map as a page following the stream would show it.
fn apply(page: &mut BTreeMap<String, String>, event: &SseEvent) {
    match event.event.as_str() {
        "snapshot" => {
            page.clear();
            for seat in event.data["seats"].as_array().unwrap() {
                let state = seat["state"].as_str().unwrap();
                page.insert(seat["seat_id"].as_str().unwrap().into(), state.into());
            }
        }
        kind => {
            for seat in event.seats() {
                match kind {
                    "held" => page.insert(seat, "held".into()),
                    "confirmed" => page.insert(seat, "booked".into()),
                    _ => page.remove(&seat),
                };
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_falls_behind_gets_a_snapshot_and_ends_up_right() {
    let config = config_with_ttl(LONG_TTL);
    let store = MemoryStore::new(config.hold);
    let app = TestApp::spawn(store.clone(), config).await;
    let mut stream = open(&app, None).await;
    let mut page = BTreeMap::new();
    apply(&mut page, &stream.next().await.unwrap());

    // Far more than the socket buffers and the hub's replay hold, while the client reads
    // nothing; then one last hold to wait for.
    let movie = store.movie(&common::screening("inception")).await.unwrap();
    let user = UserId::parse("cycler".into()).unwrap();
    let seat = SeatId::parse("D4").unwrap();
    for _ in 0..100_000 {
        let hold = store
            .hold(&movie, vec![seat.clone()], &user, None)
            .await
            .unwrap();
        store.release(hold.session_id, &user).await.unwrap();
    }
    let last = SeatId::parse("E1").unwrap();
    store.hold(&movie, vec![last], &user, None).await.unwrap();

    let mut snapshots = 0;
    loop {
        let event = stream.next().await.unwrap();
        snapshots += usize::from(event.event == "snapshot");
        apply(&mut page, &event);
        if page.contains_key("E1") {
            break;
        }
    }
    assert!(
        snapshots >= 1,
        "a subscriber that lagged is sent a snapshot"
    );
    assert_eq!(page, BTreeMap::from([("E1".into(), "held".into())]));
}

#[tokio::test]
async fn a_killed_listening_connection_means_a_fresh_snapshot_and_changes_keep_coming() {
    let (app, db) = serve(Store::Postgres, config_with_ttl(LONG_TTL)).await;
    let db = db.unwrap();
    let mut stream = open(&app, None).await;
    assert_eq!(stream.next().await.unwrap().event, "snapshot");
    let admin = db.pool(1).await;
    let killed: Vec<bool> = sqlx::query_scalar(
        "select pg_terminate_backend(pid) from pg_stat_activity
          where application_name = $1 and datname = current_database()",
    )
    .bind(boxoffice::store::postgres::listener::APPLICATION_NAME)
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(killed, [true], "exactly one listening connection");
    // Made while nobody may be listening yet, or after the new connection listens: either
    // the fresh snapshot has it or an event after it does.
    hold(&app, "A1", "alice").await;
    hold(&app, "A2", "bob").await;
    let mut page = BTreeMap::new();
    let mut snapshots = 0;
    while page.get("A2").map(String::as_str) != Some("held") {
        let event = stream.next().await.unwrap();
        snapshots += usize::from(event.event == "snapshot");
        apply(&mut page, &event);
    }
    assert_eq!(snapshots, 1, "one fresh snapshot after the reconnect");
    assert_eq!(page.get("A1").map(String::as_str), Some("held"), "{page:?}");
}

/// One address could take every stream the process allows, pushing every other page to
/// polling: now it has a share (`MAX_EVENT_STREAMS_PER_IP`), and another address still gets
/// one.
#[tokio::test]
async fn one_address_past_its_stream_share_is_refused_while_another_is_served() {
    let mut config = test_config();
    config.max_event_streams = 10;
    config.max_event_streams_per_ip = 2;
    // The test's requests come through a "proxy" on 127.0.0.1 naming the client.
    config.rate_limits.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let (app, _) = serve(Store::Memory, config).await;
    let stream_from = |client: &'static str| {
        app.client
            .get(app.url(EVENTS))
            .header("x-forwarded-for", client)
            .send()
    };
    let mut open = Vec::new();
    for _ in 0..2 {
        let response = stream_from("203.0.113.7").await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        open.push(response);
    }
    let refused = stream_from("203.0.113.7").await.unwrap();
    assert_error(refused, StatusCode::SERVICE_UNAVAILABLE, "too_many_streams").await;
    let other = stream_from("198.51.100.8").await.unwrap();
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another address has its own share"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"boxoffice_event_streams_refused_total{reason="address_share"} 1"#),
        "{metrics}"
    );
}

/// Every refused stream logged an ERROR line: one client retrying in a loop wrote 20,050
/// lines in 5 s. A refusal the server chose is counted, and logged at most once in a while.
#[tokio::test]
async fn refused_streams_are_counted_not_logged_one_by_one() {
    let server = common::process::ServerProcess::start(None, &[("MAX_EVENT_STREAMS", "0")]);
    let client = reqwest::Client::new();
    for _ in 0..200 {
        let refused = client
            .get(format!("{}{EVENTS}", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    server.signal("-TERM");
    let log = server.wait_for_log("stopped");
    let noisy: Vec<&String> = log
        .iter()
        .filter(|line| line.contains("ERROR") || line.contains("refused"))
        .collect();
    assert!(
        noisy.len() <= 1,
        "{} lines for 200 refusals: {noisy:#?}",
        noisy.len()
    );
    assert!(
        noisy.iter().all(|line| line.contains("WARN")),
        "a refusal is no error: {noisy:#?}"
    );
}
