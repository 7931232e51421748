//! Fault runs: the real binary under load on a small room, on a PostgreSQL cluster of the
//! run's own (never the one the other tests share), while something breaks; then the history
//! checker (tests/common/history.rs) holds the responses and the database to the promises,
//! and the run to two more: the server serves again by itself within a few seconds of the
//! fault ending, and no request waits past the request timeout.
//!
//! Each run loads for `FAULT_LOAD_SECS` (default 12); `scripts/faults` runs them for 60.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::history::{self, Load, Op, Outcome, Snapshot, Summary};
use common::process::ServerProcess;
use common::proxy::{Link, Proxy};
use common::server::Cluster;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

const MOVIE: &str = "tiny";
const IDENTITY_SECRET: &str = "fault-runs-identity-secret-0123456789abcdef";
/// The server's deadlines, short so that a run sees many of them: a request 4 s, the
/// database 1 s for a connection and 1.5 s for a statement.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);
const SERVER_ENV: &[(&str, &str)] = &[
    ("IDENTITY_SECRET", IDENTITY_SECRET),
    ("REQUEST_TIMEOUT_SECS", "4"),
    ("BODY_READ_TIMEOUT_SECS", "2"),
    ("DB_ACQUIRE_TIMEOUT_SECS", "1"),
    ("DB_STATEMENT_TIMEOUT_SECS", "1.5"),
    ("HOLD_TTL_SECS", "2"),
    ("REAPER_INTERVAL_SECS", "0.5"),
    // Sixteen users on one address, each far busier than a person: no rate limits.
    ("HOLD_SEATS_PER_MINUTE", "0"),
    ("HOLD_SEATS_PER_MINUTE_PER_IP", "0"),
    ("IDENTITIES_PER_MINUTE_PER_IP", "0"),
];
/// "Within a few seconds".
const RECOVERY: Duration = Duration::from_secs(5);

fn load_time() -> Duration {
    let secs = std::env::var("FAULT_LOAD_SECS").map_or(12.0, |s| s.parse().expect("seconds"));
    Duration::from_secs_f64(secs)
}

/// A cluster of the run's own, migrated, with a room of 25 rows of 40 (the load fights over
/// a few seats at a time, and books a few).
struct Rig {
    cluster: Cluster,
    pool: PgPool,
}

impl Rig {
    async fn new() -> Self {
        let cluster = Cluster::start(&["max_connections=100", "fsync=off"]);
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&cluster.url())
            .await
            .expect("the run's cluster");
        let store = boxoffice::store::PgStore::new(pool.clone(), boxoffice::Config::default().hold);
        store.migrate().await.expect("migrate");
        common::rectangular_screenings(&pool, &[common::Rectangle::new(MOVIE, "Tiny", 25, 40)])
            .await;
        Self { cluster, pool }
    }

    fn server(&self, url: &str, env: &[(&str, &str)]) -> ServerProcess {
        let env: Vec<_> = SERVER_ENV.iter().chain(env).copied().collect();
        ServerProcess::start(Some(url), &env)
    }

    /// A server on `port`: one in place of a server that was killed.
    fn server_on(&self, port: u16, url: &str) -> ServerProcess {
        ServerProcess::start_on(port, Some(url), SERVER_ENV)
    }

    /// The database again after a restart: the pool's connections died with the old server.
    async fn snapshot(&self) -> Snapshot {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.cluster.url())
            .await
            .expect("the run's cluster, after the run");
        Snapshot::read(&pool, MOVIE).await
    }
}

fn seats() -> Vec<String> {
    ('A'..='Y')
        .flat_map(|row| (1..=40).map(move |n| format!("{row}{n}")))
        .collect()
}

fn load(bases: &[&ServerProcess], users: usize) -> tokio::task::JoinHandle<Vec<Op>> {
    tokio::spawn(history::run(Load {
        bases: bases.iter().map(|server| server.base.clone()).collect(),
        movie: MOVIE.into(),
        seats: seats(),
        users,
        duration: load_time(),
        client_timeout: REQUEST_TIMEOUT + Duration::from_secs(2),
    }))
}

/// A point in the run, as a fraction of the load time.
async fn at(fraction: f64, started: tokio::time::Instant) {
    tokio::time::sleep_until(started + load_time().mul_f64(fraction)).await;
}

/// Checks a finished run and says how it went.
async fn verdict(name: &str, rig: &Rig, history: &[Op], fault_ended: Option<DateTime<Utc>>) {
    let summary = Summary::of(history, fault_ended);
    eprintln!("fault run {name}: {summary}");
    let broken = history::check(history, &rig.snapshot().await);
    assert!(broken.is_empty(), "{name}: {broken:#?}");
    assert!(summary.done > 0, "{name}: nothing was done");
    if fault_ended.is_some() {
        let recovery = summary.recovery.expect("served again after the fault");
        assert!(
            recovery <= RECOVERY,
            "{name}: recovered only after {recovery:?}"
        );
    }
    assert!(
        summary.longest <= REQUEST_TIMEOUT + Duration::from_secs(1),
        "{name}: a request took {:?}",
        summary.longest
    );
    for op in history {
        if let Outcome::Refused { status: 503, code } = &op.outcome {
            assert!(
                op.retry_after.is_some(),
                "{name}: 503 {code} without Retry-After"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_killed_and_restarted_mid_load() {
    let rig = Rig::new().await;
    let url = rig.cluster.url();
    let mut server = rig.server(&url, &[]);
    let port = server.port();
    let started = tokio::time::Instant::now();
    let run = load(&[&server], 16);
    at(0.3, started).await;
    server.signal("-KILL");
    let _ = server.child.wait();
    tokio::time::sleep(Duration::from_millis(500)).await;
    server = rig.server_on(port, &url);
    let ended = Utc::now();
    let history = run.await.unwrap();
    verdict("kill -9", &rig, &history, Some(ended)).await;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_immediately_mid_load() {
    let rig = Rig::new().await;
    let server = rig.server(&rig.cluster.url(), &[]);
    let started = tokio::time::Instant::now();
    let run = load(&[&server], 16);
    at(0.3, started).await;
    let rig = std::sync::Arc::new(rig);
    let restarting = std::sync::Arc::clone(&rig);
    tokio::task::spawn_blocking(move || restarting.cluster.restart_immediately())
        .await
        .unwrap();
    let ended = Utc::now();
    let history = run.await.unwrap();
    verdict(
        "PostgreSQL restart -m immediate",
        &rig,
        &history,
        Some(ended),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_database_sessions_killed_mid_transaction() {
    let rig = Rig::new().await;
    let server = rig.server(&rig.cluster.url(), &[]);
    let started = tokio::time::Instant::now();
    let run = load(&[&server], 16);
    let mut killed = 0;
    for fraction in [0.25, 0.45, 0.65] {
        at(fraction, started).await;
        // Those mid-transaction first, then every other of the server's sessions.
        let terminated: Vec<bool> = sqlx::query_scalar(
            "select pg_terminate_backend(pid) from pg_stat_activity
              where application_name like 'boxoffice%' and pid <> pg_backend_pid()
              order by state = 'idle in transaction' desc, state = 'active' desc",
        )
        .fetch_all(&rig.pool)
        .await
        .unwrap();
        killed += terminated.into_iter().filter(|t| *t).count();
    }
    let ended = Utc::now();
    assert!(killed > 0, "no session was there to kill");
    let history = run.await.unwrap();
    verdict("pg_terminate_backend", &rig, &history, Some(ended)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_dropped_and_reset_link_to_the_database() {
    let rig = Rig::new().await;
    let target = format!("127.0.0.1:{}", rig.cluster.port).parse().unwrap();
    let proxy = Proxy::start(target).await;
    let url = format!("postgres://postgres@{}/postgres", proxy.addr);
    let server = rig.server(&url, &[]);
    let started = tokio::time::Instant::now();
    let run = load(&[&server], 16);
    at(0.1, started).await;
    proxy.set(Link::Slow(Duration::from_millis(300)));
    at(0.25, started).await;
    proxy.set(Link::Up);
    // Dead for good, and nothing says so: the server's own deadlines must notice, and its
    // new connections work.
    proxy.set(Link::Dropped);
    let dropped = Utc::now();
    at(0.8, started).await;
    let reset = Utc::now();
    proxy.reset();
    at(0.9, started).await;
    proxy.reset();
    let ended = Utc::now();
    let history = run.await.unwrap();
    eprintln!(
        "fault run network: since the link dropped, {}",
        Summary::of(&history, Some(dropped))
    );
    // A hold worker whose connection died waits on it no longer than its deadline (the
    // statement timeout and a second), then decides on a new one: holds are granted again
    // before the dead connections are reset.
    let recovered = dropped + chrono::Duration::milliseconds(3500);
    assert!(
        history.iter().any(|op| op.kind == history::Kind::Hold
            && op.done()
            && op.start > recovered
            && op.end < reset),
        "no hold was granted between {recovered} and the reset at {reset}"
    );
    verdict("slow, dropped and reset link", &rig, &history, Some(ended)).await;
}

/// A change whose commit PostgreSQL completed but whose answer was lost (the link reset while
/// it committed) may have taken effect: it answers `outcome_unknown`, never "nothing was
/// done". A deferred trigger makes every commit touching seat rows take a moment, for the
/// reset to land in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_answer_is_lost_answers_outcome_unknown() {
    let rig = Rig::new().await;
    for statement in [
        "create function slow_commit() returns trigger language plpgsql as
           $$ begin perform pg_sleep(0.3); return null; end $$",
        "create constraint trigger slow_commit after insert or update on seat_holds
           deferrable initially deferred for each row execute function slow_commit()",
    ] {
        sqlx::query(statement).execute(&rig.pool).await.unwrap();
    }
    let target = format!("127.0.0.1:{}", rig.cluster.port).parse().unwrap();
    let proxy = Proxy::start(target).await;
    let url = format!("postgres://postgres@{}/postgres", proxy.addr);
    let server = rig.server(&url, &[]);
    let client = reqwest::Client::new();
    let alice = serde_json::json!({ "user_id": "alice" });
    let hold = |seat: &str| {
        client
            .post(server.url(&format!("/movies/{MOVIE}/seats/{seat}/hold")))
            .json(&alice)
            .send()
    };
    assert_eq!(hold("A1").await.unwrap().status(), 201);
    let session: uuid::Uuid = sqlx::query_scalar("select session_id from seat_holds")
        .fetch_one(&rig.pool)
        .await
        .unwrap();
    let confirm = client
        .put(server.url(&format!("/sessions/{session}/confirm")))
        .json(&alice)
        .send();
    type Change = std::pin::Pin<
        Box<dyn std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send>,
    >;
    for (name, change, done) in [
        (
            "hold",
            Box::pin(hold("A2")) as Change,
            "select count(*) = 2 from seat_holds",
        ),
        (
            "confirm",
            Box::pin(confirm) as Change,
            "select count(*) = 1 from seat_holds where status = 'confirmed'",
        ),
    ] {
        let answer = tokio::spawn(change);
        until(
            &rig.pool,
            "select count(*) > 0 from pg_stat_activity where wait_event = 'PgSleep'",
        )
        .await
        .unwrap_or_else(|_| panic!("{name}: never reached its commit"));
        proxy.reset();
        let response = answer.await.unwrap().unwrap();
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            (status.as_u16(), body["code"].as_str()),
            (503, Some("outcome_unknown")),
            "{name}: {body}"
        );
        // It did: once PostgreSQL has finished committing.
        until(&rig.pool, done)
            .await
            .unwrap_or_else(|_| panic!("{name}: the commit did not complete"));
    }
}

/// Waits, at most 10 s, until the query `condition` answers true.
async fn until(pool: &PgPool, condition: &str) -> Result<(), tokio::time::error::Elapsed> {
    let poll = async {
        while !sqlx::query_scalar::<_, bool>(sqlx::AssertSqlSafe(condition.to_owned()))
            .fetch_one(pool)
            .await
            .unwrap()
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), poll).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_answers_503_with_retry_after_quickly_and_memory_stays_bounded() {
    let rig = Rig::new().await;
    let target = format!("127.0.0.1:{}", rig.cluster.port).parse().unwrap();
    let proxy = Proxy::start(target).await;
    // Two connections, each statement slowed by the link: far fewer than the readers.
    proxy.set(Link::Slow(Duration::from_millis(100)));
    let url = format!("postgres://postgres@{}/postgres", proxy.addr);
    let server = rig.server(&url, &[("DB_MAX_CONNECTIONS", "2")]);
    let before = server.resident_kib();
    let started = tokio::time::Instant::now();
    let run = load(&[&server], 8);
    let readers: Vec<_> = (0..48)
        .map(|_| tokio::spawn(read_seat_maps(server.base.clone(), started + load_time())))
        .collect();
    let mut peak = before;
    while tokio::time::Instant::now() < started + load_time() {
        peak = peak.max(server.resident_kib());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut reads = Vec::new();
    for reader in readers {
        reads.extend(reader.await.unwrap());
    }
    let history = run.await.unwrap();
    verdict("exhausted pool", &rig, &history, None).await;
    let refused: Vec<_> = reads.iter().filter(|r| r.0 == 503).collect();
    eprintln!(
        "fault run exhausted pool: {} reads, {} answered 503, slowest 503 {:.2} s; \
         resident memory {before} KiB before, {peak} KiB at most",
        reads.len(),
        refused.len(),
        refused.iter().map(|r| r.1).fold(0.0, f64::max)
    );
    assert!(!refused.is_empty(), "the pool was never exhausted");
    for (status, secs, retry_after) in &reads {
        assert!(matches!(status, 200 | 503), "a read answered {status}");
        assert!(
            *secs < REQUEST_TIMEOUT.as_secs_f64() + 1.0,
            "a read took {secs} s"
        );
        if *status == 503 {
            assert!(retry_after, "503 without Retry-After");
            // A connection is waited for 1 s (DB_ACQUIRE_TIMEOUT_SECS), then refused. A map
            // request waits for the read under way when it arrived (it may not be shown a map
            // older than itself; a slowed statement after up to 1 s of waiting) and then for
            // its own: two such reads at most.
            assert!(*secs < 3.0, "a 503 took {secs} s");
        }
    }
    assert!(
        peak < before + 64 * 1024,
        "memory grew from {before} KiB to {peak} KiB"
    );
}

/// Reads the seat map until `until`: (status, seconds, had Retry-After) per request.
async fn read_seat_maps(base: String, until: tokio::time::Instant) -> Vec<(u16, f64, bool)> {
    let client = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT * 2)
        .build()
        .unwrap();
    let token = loop {
        let response = client
            .post(format!("{base}/api/v1/identities"))
            .send()
            .await;
        if let Ok(response) = response
            && response.status() == 201
        {
            let body: serde_json::Value = response.json().await.unwrap();
            break body["token"].as_str().unwrap().to_owned();
        }
    };
    let mut reads = Vec::new();
    while tokio::time::Instant::now() < until {
        let started = std::time::Instant::now();
        let response = client
            .get(format!("{base}/api/v1/movies/{MOVIE}/seats"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("an answer");
        let retry_after = response.headers().contains_key("retry-after");
        let status = response.status().as_u16();
        let _ = response.bytes().await;
        reads.push((status, started.elapsed().as_secs_f64(), retry_after));
    }
    reads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_instances_one_killed_the_other_serves_and_streams_on() {
    let rig = Rig::new().await;
    let url = rig.cluster.url();
    let doomed = rig.server(&url, &[]);
    let survivor = rig.server(&url, &[]);
    let client = reqwest::Client::new();
    let mut stream = common::sse::EventStream::open(
        &client,
        &survivor.url(&format!("/movies/{MOVIE}/events")),
        None,
    )
    .await;
    let started = tokio::time::Instant::now();
    let run = load(&[&doomed, &survivor], 16);
    let deadline = started + load_time();
    let killed_at = started + load_time().mul_f64(0.3);
    let received = tokio::spawn(async move {
        let mut after_kill = 0;
        while tokio::time::Instant::now() < deadline {
            match tokio::time::timeout_at(deadline, stream.next()).await {
                Ok(Some(_)) if tokio::time::Instant::now() > killed_at => after_kill += 1,
                Ok(Some(_)) => {}
                Ok(None) => panic!("the survivor's stream ended"),
                Err(_) => break,
            }
        }
        after_kill
    });
    tokio::time::sleep_until(killed_at).await;
    doomed.signal("-KILL");
    let killed = Utc::now();
    let history = run.await.unwrap();
    let after_kill = received.await.unwrap();
    eprintln!(
        "fault run two instances: the survivor's stream had {after_kill} events after the kill"
    );
    assert!(
        after_kill > 0,
        "the survivor's subscriber heard nothing after the kill"
    );
    let served_after: usize = history
        .iter()
        .filter(|op| op.done() && op.start > killed)
        .count();
    assert!(served_after > 0, "nothing was served after the kill");
    verdict("one of two instances killed", &rig, &history, None).await;
}

// ---------------------------------------------------------------------------------------
// The checker's own test: histories that break a promise, made by hand

mod checker {
    use super::common::history::{Kind, Op, Outcome, Snapshot, check};
    use chrono::{DateTime, Duration, Utc};
    use uuid::Uuid;

    fn op(kind: Kind, session: Uuid, seats: &[&str], at: DateTime<Utc>, outcome: Outcome) -> Op {
        Op {
            user: "u1".into(),
            kind,
            session: Some(session),
            seats: seats.iter().map(|s| s.to_string()).collect(),
            start: at,
            end: at + Duration::milliseconds(5),
            outcome,
            retry_after: None,
        }
    }

    fn held(session: Uuid, until: DateTime<Utc>) -> Outcome {
        Outcome::Done {
            session: Some(session),
            expires_at: Some(until),
        }
    }

    const DONE: Outcome = Outcome::Done {
        session: None,
        expires_at: None,
    };

    /// The database as the history says it should be: each hold's session and ledger rows.
    fn db_of(history: &[Op]) -> Snapshot {
        let mut db = Snapshot::default();
        for op in history.iter().filter(|op| op.kind == Kind::Hold) {
            let session = op.session.unwrap();
            db.sessions
                .insert(session, (op.user.clone(), "held".into(), op.seats.clone()));
            for seat in &op.seats {
                db.ledger.push((session, "held".into(), seat.clone()));
            }
        }
        db
    }

    #[test]
    fn a_consistent_history_passes() {
        let t = Utc::now();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let history = [
            op(Kind::Hold, a, &["A1"], t, held(a, t + Duration::seconds(2))),
            op(Kind::Release, a, &["A1"], t + Duration::seconds(1), DONE),
            op(
                Kind::Hold,
                b,
                &["A1"],
                t + Duration::seconds(1) + Duration::milliseconds(10),
                held(b, t + Duration::seconds(3)),
            ),
        ];
        let mut db = db_of(&history);
        db.sessions.get_mut(&a).unwrap().1 = "released".into();
        db.ledger.push((a, "released".into(), "A1".into()));
        assert_eq!(check(&history, &db), Vec::<String>::new());
    }

    #[test]
    fn a_double_booking_is_caught() {
        let t = Utc::now();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let history = [
            op(
                Kind::Hold,
                a,
                &["A1", "A2"],
                t,
                held(a, t + Duration::seconds(2)),
            ),
            // A1 again, while the first is surely still held.
            op(
                Kind::Hold,
                b,
                &["A1"],
                t + Duration::seconds(1),
                held(b, t + Duration::seconds(3)),
            ),
        ];
        let broken = check(&history, &db_of(&history));
        assert!(
            broken
                .iter()
                .any(|b| b.contains("told held by two sessions at once")),
            "{broken:?}"
        );
    }

    #[test]
    fn a_lost_confirm_is_caught() {
        let t = Utc::now();
        let a = Uuid::new_v4();
        let history = [
            op(Kind::Hold, a, &["A1"], t, held(a, t + Duration::seconds(2))),
            op(Kind::Confirm, a, &["A1"], t + Duration::seconds(1), DONE),
        ];
        // The database never heard of the confirm: the session is still held.
        let broken = check(&history, &db_of(&history));
        assert!(
            broken
                .iter()
                .any(|b| b.contains("Confirm of") && b.contains("acknowledged")),
            "{broken:?}"
        );
    }

    #[test]
    fn a_refused_change_that_happened_is_caught() {
        let t = Utc::now();
        let a = Uuid::new_v4();
        let refused = Outcome::Refused {
            status: 410,
            code: "hold_expired".into(),
        };
        let history = [
            op(Kind::Hold, a, &["A1"], t, held(a, t + Duration::seconds(2))),
            op(Kind::Confirm, a, &["A1"], t + Duration::seconds(1), refused),
        ];
        let mut db = db_of(&history);
        db.sessions.get_mut(&a).unwrap().1 = "confirmed".into();
        db.ledger.push((a, "confirmed".into(), "A1".into()));
        let broken = check(&history, &db);
        assert!(
            broken.iter().any(|b| b.contains("was refused")),
            "{broken:?}"
        );
    }

    #[test]
    fn a_session_no_one_was_told_of_needs_a_hold_of_unknown_outcome() {
        let t = Utc::now();
        let a = Uuid::new_v4();
        let history = [op(
            Kind::Hold,
            a,
            &["A1"],
            t,
            held(a, t + Duration::seconds(2)),
        )];
        let mut db = db_of(&history);
        let stray = Uuid::new_v4();
        db.sessions
            .insert(stray, ("u1".into(), "held".into(), vec!["B1".into()]));
        let broken = check(&history, &db);
        assert!(
            broken.iter().any(|b| b.contains("never told of")),
            "{broken:?}"
        );
    }
}
