//! Seat-map requests share their reads across both APIs: each waits for a read that began
//! after it arrived, and each caller of `/api/v1` still sees its own seats. Alone in its test
//! binary, as it counts reads in the process's metrics.

mod common;

use std::future::Future;
use std::time::Duration;

use common::{LONG_TTL, TestApp, TestDb, json_of, policy, test_config};
use serde_json::{Value, json};

/// The sum of a metric's series in the server's `/metrics`.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let body = app.metrics().await;
    body.lines()
        .filter_map(|line| line.strip_prefix(name))
        .filter_map(|rest| rest.rsplit_once(' '))
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

/// Waits, at most 10 s, until `condition` holds.
async fn until<F: Future<Output = bool>>(what: &str, condition: impl Fn() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn identity(app: &TestApp) -> String {
    let body = json_of(app.client.post(app.url("/api/v1/identities"))).await;
    body["token"].as_str().unwrap().to_owned()
}

fn api_map(app: &TestApp, token: &str) -> tokio::task::JoinHandle<Value> {
    let request = app
        .client
        .get(app.url("/api/v1/movies/inception/seats"))
        .bearer_auth(token);
    tokio::spawn(json_of(request))
}

fn yours(map: &Value, seat: &str) -> (Value, Value) {
    let seat = map["seats"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["seat_id"] == seat)
        .unwrap();
    (seat["state"].clone(), seat["yours"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_api_seat_maps_share_one_read_and_each_sees_its_own_seats() {
    let db = TestDb::new().await;
    let app = TestApp::spawn(db.store(policy(LONG_TTL, 8), 8).await, test_config()).await;
    let (mine, theirs) = (identity(&app).await, identity(&app).await);
    let hold = app
        .client
        .post(app.url("/api/v1/movies/inception/holds"))
        .bearer_auth(&mine)
        .json(&json!({ "seat_ids": ["B1"] }));
    assert_eq!(json_of(hold).await["status"], "held");

    // Every read of the seats waits behind this lock until it is released.
    let admin = db.pool(2).await;
    let mut lock = admin.begin().await.unwrap();
    sqlx::query("lock table seat_holds in access exclusive mode")
        .execute(&mut *lock)
        .await
        .unwrap();
    let first = api_map(&app, &mine);
    until("the first read waits on the lock", || async {
        sqlx::query_scalar::<_, bool>(
            "select count(*) = 1 from pg_stat_activity
              where datname = current_database() and wait_event_type = 'Lock'
                and query like '%from seat_holds%'",
        )
        .fetch_one(&admin)
        .await
        .unwrap()
    })
    .await;
    let reads = metric(&app, "boxoffice_seat_map_reads_total").await;
    // Two more, of two users, arrive while that read is under way: they need a later one.
    let second = api_map(&app, &mine);
    let third = api_map(&app, &theirs);
    until("both wait for the next round", || async {
        metric(&app, "boxoffice_seat_map_waiting").await == 2.0
    })
    .await;
    lock.commit().await.unwrap();

    let (first, second, third) = (
        first.await.unwrap(),
        second.await.unwrap(),
        third.await.unwrap(),
    );
    assert_eq!(
        metric(&app, "boxoffice_seat_map_reads_total").await - reads,
        1.0,
        "the two later requests shared one read"
    );
    assert_eq!(second["server_time"], third["server_time"], "one round");
    let held = |yours: bool| (json!("held"), json!(yours));
    assert_eq!(yours(&first, "B1"), held(true));
    assert_eq!(yours(&second, "B1"), held(true), "the shared body, marked");
    assert_eq!(yours(&third, "B1"), held(false), "someone else's seat");
    assert_eq!(yours(&third, "B2"), (json!("free"), json!(false)));
    // The tutorial's map and the list's counts come from the same reads.
    let list = json_of(
        app.client
            .get(app.url("/api/v1/movies"))
            .bearer_auth(&theirs),
    )
    .await;
    let inception = list
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "inception")
        .unwrap();
    assert_eq!(inception["free"], 39, "{inception}");
}
