//! The load benchmark: `cargo bench --bench loadgen [-- options]`.
//!
//! Starts the release server on a fresh PostgreSQL database on 127.0.0.1 and drives four
//! workloads at several client counts. Each HTTP figure comes with two baselines measured in
//! the same run at the same concurrency: the store's own work called directly (no HTTP), and
//! the minimal single SQL statement for it driven by `pgbench`. After every HTTP and direct
//! run the database is checked against what the clients were told. See BENCHMARKS.md.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use boxoffice::domain::UserId;
use boxoffice::store::{PgStore, SeatStore, StoreError};
use common::{TestDb, policy};
use sqlx::PgPool;

/// Rooms for distinct-seat holds: `bench-1` … `bench-ROOMS`, each 26 × 50.
const ROOMS: u64 = 400;
const ROOM_SEATS: u64 = 26 * 50;
/// The seat-map room: 15 × 20 = 300 seats, a third of them taken.
const MAP_ROOM: &str = "bench-map";
const HOT_ROOM: &str = "inception";
const HOT_SEAT: &str = "A1";
/// Long enough that nothing expires during a run.
const TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scenario {
    Holds,
    HotSeat,
    SeatMap,
    Flow,
}

impl Scenario {
    const ALL: [Self; 4] = [Self::Holds, Self::HotSeat, Self::SeatMap, Self::Flow];

    fn name(self) -> &'static str {
        match self {
            Self::Holds => "holds",
            Self::HotSeat => "hot-seat",
            Self::SeatMap => "seat-map",
            Self::Flow => "flow",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Holds => "holds on distinct seats (requests/s)",
            Self::HotSeat => "one hot seat (attempts/s)",
            Self::SeatMap => "seat-map reads, 300 seats, 100 taken (requests/s)",
            Self::Flow => "full flow: hold → confirm, hold → release (flows/s, 2 requests each)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Http,
    Direct,
    Raw,
}

struct Options {
    runs: usize,
    duration: Duration,
    clients: Vec<usize>,
    scenarios: Vec<Scenario>,
    hot_attempts: u64,
    pool: u32,
}

impl Options {
    fn parse() -> Self {
        let mut options = Self {
            runs: 3,
            duration: Duration::from_secs(5),
            clients: vec![1, 8, 32, 128],
            scenarios: Scenario::ALL.to_vec(),
            hot_attempts: 100_000,
            pool: 32,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
            };
            match arg.as_str() {
                "--bench" => {} // passed by `cargo bench`
                "--help" | "-h" => usage(""),
                "--runs" => options.runs = number(&value()),
                "--secs" => options.duration = Duration::from_secs_f64(number(&value())),
                "--clients" => options.clients = value().split(',').map(number).collect(),
                "--hot-attempts" => options.hot_attempts = number(&value()),
                "--pool" => options.pool = number(&value()),
                "--scenarios" => {
                    options.scenarios = value()
                        .split(',')
                        .map(|name| {
                            *Scenario::ALL
                                .iter()
                                .find(|s| s.name() == name)
                                .unwrap_or_else(|| usage(&format!("unknown scenario {name}")))
                        })
                        .collect()
                }
                other => usage(&format!("unknown option {other}")),
            }
        }
        options
    }
}

fn number<T: std::str::FromStr>(text: &str) -> T {
    text.parse()
        .unwrap_or_else(|_| usage(&format!("not a number: {text}")))
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "{problem}\n\nusage: cargo bench --bench loadgen -- [--runs 3] [--secs 5] \
         [--clients 1,8,32,128] [--scenarios holds,hot-seat,seat-map,flow] \
         [--hot-attempts 100000] [--pool 32]\n\
         DATABASE_URL names the PostgreSQL server to measure; a fresh database is made on it."
    );
    std::process::exit(if problem.is_empty() { 0 } else { 2 })
}

/// What one run measured.
#[derive(Default)]
struct Sample {
    /// Operations completed (requests, attempts or flows).
    ops: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
    outcomes: BTreeMap<String, u64>,
    server_cpu: Option<Duration>,
    server_peak_rss: Option<u64>,
    /// For pgbench: the connections it had (fewer than the clients when PostgreSQL's
    /// connection limit would be exceeded).
    connections: Option<usize>,
}

impl Sample {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Option<Duration> {
        if self.latencies_us.is_empty() {
            return None;
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() - 1) as f64 * p).round() as usize;
        Some(Duration::from_micros(sorted[index]))
    }
}

/// What clients were told, to check the database against afterwards.
#[derive(Default)]
struct Told {
    /// (movie, seat, session) of every hold acknowledged and neither released nor confirmed.
    held: Vec<(String, String, uuid::Uuid)>,
    confirmed: Vec<(String, String, uuid::Uuid)>,
    released: Vec<uuid::Uuid>,
}

impl Told {
    fn merge(&mut self, other: Told) {
        self.held.extend(other.held);
        self.confirmed.extend(other.confirmed);
        self.released.extend(other.released);
    }
}

/// The n-th distinct seat of the bench rooms.
fn distinct_seat(n: u64) -> (String, String) {
    let room = n / ROOM_SEATS % ROOMS + 1;
    let within = n % ROOM_SEATS;
    let row = (b'A' + (within / 50) as u8) as char;
    (format!("bench-{room}"), format!("{row}{}", within % 50 + 1))
}

// ---------------------------------------------------------------------------------------
// The server process

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(db: &TestDb, pool: u32) -> Self {
        let port = common::free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_boxoffice"))
            .env_clear()
            .env("DATABASE_URL", &db.url)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("HOLD_TTL_SECS", TTL.as_secs().to_string())
            .env("DB_MAX_CONNECTIONS", pool.to_string())
            .env("MAX_HOLDS_PER_USER", "8")
            .env("RUST_LOG", "warn,boxoffice=info")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the release server");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut lines = stdout.lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("listening") => break,
                Some(Ok(_)) => {}
                _ => panic!("the server exited before listening"),
            }
        }
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// User plus system CPU time so far.
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name, which is in parentheses and may contain spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / per_sec)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples the server's resident memory until stopped; returns the peak.
fn watch_memory(server: &Server) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let status = format!("/proc/{}/status", server.child.id());
    let flag = stop.clone();
    let handle = std::thread::spawn(move || {
        let rss = || {
            std::fs::read_to_string(&status)
                .ok()
                .and_then(|text| {
                    let kb = text.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
                    kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
                })
                .unwrap_or(0)
                * 1024
        };
        let mut peak = 0;
        while !flag.load(Ordering::Relaxed) {
            peak = peak.max(rss());
            std::thread::sleep(Duration::from_millis(20));
        }
        peak.max(rss())
    });
    (stop, handle)
}

// ---------------------------------------------------------------------------------------
// Fixtures

async fn prepare(pool: &PgPool) {
    sqlx::query(
        "insert into movies (id, title, rows, seats_per_row)
         select 'bench-' || g, 'Bench ' || g, 26, 50 from generate_series(1, $1) g
         on conflict do nothing",
    )
    .bind(ROOMS as i64)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "insert into movies (id, title, rows, seats_per_row)
         values ('bench-map', 'Bench seat map', 15, 20) on conflict do nothing",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// The session pgbench's rows and the seat-map room's bookings belong to.
const BASE_SESSION: &str = "00000000-0000-0000-0000-000000000001";

/// Lays down what every run starts from: a cinema with a past. 20,000 confirmed bookings,
/// each with its session, in rooms of their own, so that tables, indexes and planner
/// statistics look like a system in use rather than an empty one (on near-empty tables
/// PostgreSQL plans sequential scans, and the cached plans, the foreign-key checks' among
/// them, outlive the few seconds of a run).
async fn prepare_history(pool: &PgPool) {
    for statement in [
        "insert into movies (id, title, rows, seats_per_row)
         select 'history-' || g, 'History ' || g, 20, 50 from generate_series(1, 20) g",
        "insert into hold_sessions (id, movie_id, user_id, seat_count, status, expires_at, confirmed_at)
         select md5('history-' || n)::uuid, 'history-' || (n / 1000 + 1), 'regular-' || (n % 5000),
                1, 'confirmed', now(), now()
         from generate_series(0, 19999) n",
        "insert into seat_holds (movie_id, seat_id, session_id, user_id, status, confirmed_at)
         select 'history-' || (n / 1000 + 1), chr(65 + n % 1000 / 50) || (n % 50 + 1),
                md5('history-' || n)::uuid, 'regular-' || (n % 5000), 'confirmed', now()
         from generate_series(0, 19999) n",
    ] {
        sqlx::query(statement).execute(pool).await.unwrap();
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "insert into hold_sessions (id, movie_id, user_id, seat_count, status, expires_at, confirmed_at)
         values ('{BASE_SESSION}', 'inception', 'history', 1, 'confirmed', now(), now())"
    )))
    .execute(pool)
    .await
    .unwrap();
}

/// Removes what the last run wrote and lays out what `scenario` starts from.
async fn reset(pool: &PgPool, scenario: Scenario) {
    sqlx::query("delete from seat_holds where movie_id not like 'history-%'")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "delete from hold_sessions where movie_id not like 'history-%' and id <> '{BASE_SESSION}'"
    )))
    .execute(pool)
    .await
    .unwrap();
    if scenario == Scenario::SeatMap {
        // 100 of the 300 seats: every third one, as bookings.
        sqlx::query(
            "insert into seat_holds (movie_id, seat_id, session_id, user_id, status, confirmed_at)
             select 'bench-map', chr(65 + n / 20) || (n % 20 + 1),
                    '00000000-0000-0000-0000-000000000001', 'regular-' || n, 'confirmed', now()
             from generate_series(0, 299, 3) n",
        )
        .execute(pool)
        .await
        .unwrap();
    }
    sqlx::query("vacuum analyze seat_holds, hold_sessions")
        .execute(pool)
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Drivers: each client runs `op` until the deadline (or until the attempts run out).

/// The result of one operation as a label ("201", "409", "seat_taken", …), and what the
/// client was told, for the invariant check.
type Outcome = (String, Told);

async fn drive<F, Fut>(
    clients: usize,
    duration: Duration,
    attempts: Option<u64>,
    op: F,
) -> (Sample, Told)
where
    F: Fn(u64, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Outcome> + Send,
{
    let counter = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let (op, counter) = (op.clone(), counter.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
                let mut told = Told::default();
                loop {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    match attempts {
                        Some(limit) if n >= limit => break,
                        None if Instant::now() >= deadline => break,
                        _ => {}
                    }
                    let began = Instant::now();
                    let (label, seen) = op(n, client).await;
                    latencies.push(began.elapsed().as_micros() as u64);
                    *outcomes.entry(label).or_default() += 1;
                    told.merge(seen);
                }
                (latencies, outcomes, told)
            })
        })
        .collect();
    let mut sample = Sample::default();
    let mut told = Told::default();
    for task in tasks {
        let (latencies, outcomes, seen) = task.await.unwrap();
        sample.latencies_us.extend(latencies);
        for (label, count) in outcomes {
            *sample.outcomes.entry(label).or_default() += count;
        }
        told.merge(seen);
    }
    sample.elapsed = started.elapsed();
    sample.ops = sample.latencies_us.len() as u64;
    (sample, told)
}

fn user(n: u64) -> String {
    format!("b{n}")
}

async fn http_run(
    scenario: Scenario,
    clients: usize,
    options: &Options,
    base: &str,
) -> (Sample, Told) {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let base: Arc<str> = base.into();
    let hold = {
        let (client, base) = (client.clone(), base.clone());
        move |movie: String, seat: String, user: String| {
            let (client, base) = (client.clone(), base.clone());
            async move {
                let response = client
                    .post(format!("{base}/movies/{movie}/seats/{seat}/hold"))
                    .json(&serde_json::json!({ "user_id": user }))
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status() == 201 => {
                        let body: serde_json::Value = r.json().await.unwrap();
                        let session = body["session_id"].as_str().unwrap().parse().unwrap();
                        Ok(session)
                    }
                    Ok(r) => Err(r.status().as_u16().to_string()),
                    Err(e) => Err(format!("error: {e}")),
                }
            }
        }
    };
    let attempts = (scenario == Scenario::HotSeat).then_some(options.hot_attempts);
    match scenario {
        Scenario::Holds | Scenario::HotSeat => {
            drive(clients, options.duration, attempts, move |n, _| {
                let hold = hold.clone();
                async move {
                    let (movie, seat) = if scenario == Scenario::HotSeat {
                        (HOT_ROOM.to_owned(), HOT_SEAT.to_owned())
                    } else {
                        distinct_seat(n)
                    };
                    let mut told = Told::default();
                    let label = match hold(movie.clone(), seat.clone(), user(n)).await {
                        Ok(session) => {
                            told.held.push((movie, seat, session));
                            "201".to_owned()
                        }
                        Err(label) => label,
                    };
                    (label, told)
                }
            })
            .await
        }
        Scenario::SeatMap => {
            let url = format!("{base}/movies/{MAP_ROOM}/seats");
            drive(clients, options.duration, None, move |_, _| {
                let (client, url) = (client.clone(), url.clone());
                async move {
                    let label = match client.get(&url).send().await {
                        Ok(r) => {
                            let status = r.status().as_u16().to_string();
                            let _ = r.bytes().await;
                            status
                        }
                        Err(e) => format!("error: {e}"),
                    };
                    (label, Told::default())
                }
            })
            .await
        }
        Scenario::Flow => {
            drive(clients, options.duration, None, move |n, client_no| {
                let (hold, client, base) = (hold.clone(), client.clone(), base.clone());
                async move {
                    let (movie, seat) = distinct_seat(n);
                    let who = format!("flow-{client_no}");
                    let mut told = Told::default();
                    let session: uuid::Uuid =
                        match hold(movie.clone(), seat.clone(), who.clone()).await {
                            Ok(session) => session,
                            Err(label) => return (format!("hold {label}"), told),
                        };
                    let body = serde_json::json!({ "user_id": who });
                    let confirm = n % 2 == 0;
                    let request = if confirm {
                        client.put(format!("{base}/sessions/{session}/confirm"))
                    } else {
                        client.delete(format!("{base}/sessions/{session}"))
                    };
                    let label = match request.json(&body).send().await {
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
                            format!(
                                "{} {}",
                                if confirm { "confirm" } else { "release" },
                                r.status().as_u16()
                            )
                        }
                        Err(e) => format!("error: {e}"),
                    };
                    (label, told)
                }
            })
            .await
        }
    }
}

fn store_label(result: &StoreError) -> String {
    match result {
        StoreError::SeatTaken(_) => "seat_taken".into(),
        StoreError::LimitReached { .. } => "hold_limit".into(),
        StoreError::Unavailable(e) => format!("unavailable: {e}"),
        other => format!("{other}"),
    }
}

async fn direct_run(
    scenario: Scenario,
    clients: usize,
    options: &Options,
    store: &PgStore,
) -> (Sample, Told) {
    let attempts = (scenario == Scenario::HotSeat).then_some(options.hot_attempts);
    let store = store.clone();
    drive(clients, options.duration, attempts, move |n, client_no| {
        let store = store.clone();
        async move {
            let mut told = Told::default();
            let (movie_id, seat) = match scenario {
                Scenario::HotSeat => (HOT_ROOM.to_owned(), HOT_SEAT.to_owned()),
                Scenario::SeatMap => {
                    let label = match store.seat_map(MAP_ROOM).await {
                        Ok(_) => "ok".to_owned(),
                        Err(e) => store_label(&e),
                    };
                    return (label, told);
                }
                Scenario::Holds | Scenario::Flow => distinct_seat(n),
            };
            let movie = store.movie(&movie_id).await.unwrap();
            let who = if scenario == Scenario::Flow {
                format!("flow-{client_no}")
            } else {
                user(n)
            };
            let who = UserId::parse(who).unwrap();
            let held = store
                .hold(&movie, vec![movie.seat(&seat).unwrap()], &who)
                .await;
            let session = match held {
                Ok(hold) => hold.session_id,
                Err(e) => return (store_label(&e), told),
            };
            if scenario != Scenario::Flow {
                told.held.push((movie_id, seat, session.0));
                return ("ok".to_owned(), told);
            }
            let result = if n % 2 == 0 {
                store.confirm(session, &who).await.map(|_| {
                    told.confirmed
                        .push((movie_id.clone(), seat.clone(), session.0))
                })
            } else {
                store
                    .release(session, &who)
                    .await
                    .map(|()| told.released.push(session.0))
            };
            match result {
                Ok(()) => ("ok".to_owned(), told),
                Err(e) => {
                    told.held.push((movie_id, seat, session.0));
                    (store_label(&e), told)
                }
            }
        }
    })
    .await
}

/// Connections PostgreSQL can still accept, less a few for the harness: pgbench cannot use
/// more (the server here allows 100, and the benchmarked server keeps its own pool open).
async fn free_connections(pool: &PgPool) -> usize {
    let (free,): (i64,) = sqlx::query_as(
        "select current_setting('max_connections')::int
              - current_setting('superuser_reserved_connections')::int
              - (select count(*) from pg_stat_activity where backend_type = 'client backend')
              - 4",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    usize::try_from(free).unwrap_or(1).max(1)
}

/// `pgbench` running the minimal statement for the scenario, on `clients` connections.
fn raw_run(
    scenario: Scenario,
    clients: usize,
    options: &Options,
    db: &TestDb,
    dir: &std::path::Path,
) -> Sample {
    let script = match scenario {
        // One insert per transaction; a sequence hands out distinct seats.
        Scenario::Holds => {
            "insert into seat_holds (movie_id, seat_id, session_id, user_id, expires_at)
             select 'bench-' || (n / 1300 % 400 + 1), chr(65 + (n % 1300 / 50)::int) || (n % 50 + 1),
                    '00000000-0000-0000-0000-000000000001', 'raw', now() + interval '1 hour'
             from (select nextval('bench_seq') - 1 as n) s
             on conflict do nothing;"
        }
        Scenario::HotSeat => {
            "insert into seat_holds (movie_id, seat_id, session_id, user_id, expires_at)
             values ('inception', 'A1', '00000000-0000-0000-0000-000000000001', 'raw', now() + interval '1 hour')
             on conflict do nothing;"
        }
        Scenario::SeatMap => {
            r#"select seat_id, user_id, status = 'confirmed' from seat_holds
               where movie_id = 'bench-map' and (status = 'confirmed' or expires_at > now())
               order by seat_id collate "C";"#
        }
        // The flow's two writes: the seat row, then its confirmation (or deletion).
        Scenario::Flow => {
            "insert into seat_holds (movie_id, seat_id, session_id, user_id, expires_at)
             select 'bench-' || (n / 1300 % 400 + 1), chr(65 + (n % 1300 / 50)::int) || (n % 50 + 1),
                    '00000000-0000-0000-0000-000000000001', 'raw', now() + interval '1 hour'
             from (select nextval('bench_seq') - 1 as n) s
             on conflict do nothing;
             update seat_holds set status = 'confirmed', expires_at = null, confirmed_at = now()
             where (movie_id, seat_id) = (
                 select 'bench-' || (n / 1300 % 400 + 1), chr(65 + (n % 1300 / 50)::int) || (n % 50 + 1)
                 from (select currval('bench_seq') - 1 as n) s);"
        }
    };
    // pgbench reads one statement per line.
    let script = script
        .split(';')
        .map(|statement| statement.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|statement| !statement.is_empty())
        .fold(String::new(), |mut out, statement| {
            let _ = writeln!(out, "{statement};");
            out
        });
    let path = dir.join(format!("{}.sql", scenario.name()));
    std::fs::write(&path, script).unwrap();
    let mut command = Command::new("pgbench");
    command
        .args(["-n", "-M", "prepared", "-c", &clients.to_string()])
        .args(["-j", &clients.min(2).to_string(), "-f"])
        .arg(&path);
    if scenario == Scenario::HotSeat {
        command.args([
            "-t",
            &(options.hot_attempts / clients as u64).max(1).to_string(),
        ]);
    } else {
        command.args(["-T", &options.duration.as_secs().max(1).to_string()]);
    }
    let output = command
        .arg(&db.url)
        .output()
        .expect("run pgbench (from postgresql-client)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "pgbench failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tps: f64 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|tps| tps.parse().ok())
        .unwrap_or_else(|| panic!("no tps in pgbench output:\n{stdout}"));
    let failed: u64 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("number of failed transactions: "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let processed: u64 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("number of transactions actually processed: "))
        .and_then(|rest| rest.split(['/', ' ']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no transaction count in pgbench output:\n{stdout}"));
    let mut outcomes = BTreeMap::new();
    if failed > 0 {
        outcomes.insert("failed".to_owned(), failed);
    }
    Sample {
        ops: processed,
        elapsed: Duration::from_secs_f64(processed as f64 / tps),
        outcomes,
        connections: Some(clients),
        ..Sample::default()
    }
}

// ---------------------------------------------------------------------------------------
// The invariant check

async fn check(
    pool: &PgPool,
    scenario: Scenario,
    told: &Told,
    sample: &Sample,
) -> Result<(), String> {
    let (doubled,): (i64,) = sqlx::query_as(
        "select count(*) from (select 1 from seat_holds group by movie_id, seat_id having count(*) > 1) d",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    if doubled > 0 {
        return Err(format!("{doubled} seats have two holders"));
    }
    let rows = |list: &[(String, String, uuid::Uuid)]| {
        let movies: Vec<String> = list.iter().map(|(m, ..)| m.clone()).collect();
        let seats: Vec<String> = list.iter().map(|(_, s, _)| s.clone()).collect();
        let sessions: Vec<uuid::Uuid> = list.iter().map(|(.., id)| *id).collect();
        (movies, seats, sessions)
    };
    for (list, status) in [(&told.held, "held"), (&told.confirmed, "confirmed")] {
        let (movies, seats, sessions) = rows(list);
        let (found,): (i64,) = sqlx::query_as(
            "select count(*) from unnest($1::text[], $2::text[], $3::uuid[]) t(m, s, id)
             join seat_holds h on h.movie_id = t.m and h.seat_id = t.s and h.session_id = t.id
             where h.status = $4",
        )
        .bind(&movies)
        .bind(&seats)
        .bind(&sessions)
        .bind(status)
        .fetch_one(pool)
        .await
        .unwrap();
        if found != list.len() as i64 {
            return Err(format!(
                "{} acknowledged {status} seats, {found} found in seat_holds",
                list.len()
            ));
        }
    }
    let (lingering,): (i64,) =
        sqlx::query_as("select count(*) from seat_holds where session_id = any($1)")
            .bind(&told.released)
            .fetch_one(pool)
            .await
            .unwrap();
    if lingering > 0 {
        return Err(format!("{lingering} released seats are still taken"));
    }
    if scenario == Scenario::HotSeat {
        let winners = told.held.len();
        if winners != 1 || sample.ops != sample.outcomes.values().sum::<u64>() {
            return Err(format!(
                "hot seat: {winners} winners, outcomes {:?}",
                sample.outcomes
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Reporting

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("–".into(), |d| format!("{:.1}", d.as_secs_f64() * 1000.0))
}

struct Row {
    clients: usize,
    samples: BTreeMap<Kind, Vec<Sample>>,
}

fn report(scenario: Scenario, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n### {} — {}\n", scenario.name(), scenario.describe());
    let _ = writeln!(
        out,
        "| clients | HTTP/s | direct/s | raw/s | HTTP/direct | HTTP/raw | p50 ms | p90 ms | p99 ms | max ms | HTTP outcomes | server CPU s | peak RSS MB | runs (HTTP/s) |"
    );
    let _ = writeln!(
        out,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|"
    );
    for row in rows {
        let rate = |kind| {
            row.samples
                .get(&kind)
                .map(|s| median(s.iter().map(Sample::rate).collect()))
        };
        let (http, direct, raw) = (rate(Kind::Http), rate(Kind::Direct), rate(Kind::Raw));
        let https = &row.samples[&Kind::Http];
        // Latencies and resources from the run whose rate is the median.
        let mut order: Vec<&Sample> = https.iter().collect();
        order.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
        let mid = order[order.len() / 2];
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.0} %", a / b * 100.0),
            _ => "–".into(),
        };
        let fmt = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0}"));
        let raw_connections = row.samples.get(&Kind::Raw).and_then(|s| s[0].connections);
        let raw_text = match raw_connections {
            Some(n) if n < row.clients => format!("{} ({n} conns)", fmt(raw)),
            _ => fmt(raw),
        };
        let outcomes: Vec<String> = mid
            .outcomes
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let runs: Vec<String> = https.iter().map(|s| format!("{:.0}", s.rate())).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.clients,
            fmt(http),
            fmt(direct),
            raw_text,
            ratio(http, direct),
            ratio(http, raw),
            ms(mid.percentile(0.5)),
            ms(mid.percentile(0.9)),
            ms(mid.percentile(0.99)),
            ms(mid.percentile(1.0)),
            outcomes.join(", "),
            mid.server_cpu
                .map_or("–".into(), |d| format!("{:.1}", d.as_secs_f64())),
            mid.server_peak_rss
                .map_or("–".into(), |b| format!("{:.1}", b as f64 / 1_048_576.0)),
            runs.join(" / "),
        );
    }
    out
}

// ---------------------------------------------------------------------------------------

#[tokio::main]
async fn main() {
    let options = Options::parse();
    if std::env::var_os("DATABASE_URL").is_none() {
        // The tests' fallback cluster runs with fsync off: fine for tests, misleading here.
        usage("DATABASE_URL must name the PostgreSQL server to measure");
    }
    common::raise_open_files_limit();
    let db = TestDb::new().await;
    let server = Server::start(&db, options.pool);
    let admin = db.pool(2).await;
    prepare(&admin).await;
    prepare_history(&admin).await;
    sqlx::query("create sequence if not exists bench_seq")
        .execute(&admin)
        .await
        .unwrap();
    let scripts = tempfile::tempdir().unwrap();
    eprintln!(
        "boxoffice load benchmark: {} run(s) of {:?} per figure, clients {:?}, pool {}, {} hot-seat attempts",
        options.runs, options.duration, options.clients, options.pool, options.hot_attempts
    );

    let mut markdown = String::new();
    let mut broken = Vec::new();
    for &scenario in &options.scenarios {
        let mut rows = Vec::new();
        for &clients in &options.clients {
            let mut row = Row {
                clients,
                samples: BTreeMap::new(),
            };
            for run in 0..options.runs {
                for kind in [Kind::Http, Kind::Direct, Kind::Raw] {
                    reset(&admin, scenario).await;
                    sqlx::query("alter sequence bench_seq restart")
                        .execute(&admin)
                        .await
                        .unwrap();
                    let cpu_before = server.cpu();
                    let (stop, peak) = watch_memory(&server);
                    let (mut sample, told) = match kind {
                        Kind::Http => http_run(scenario, clients, &options, &server.base).await,
                        Kind::Direct => {
                            // A store of its own per run, closed after it, so its idle
                            // connections do not count against pgbench's.
                            let store = db.store(policy(TTL, 8), options.pool).await;
                            let result = direct_run(scenario, clients, &options, &store).await;
                            store.pool().close().await;
                            result
                        }
                        Kind::Raw => {
                            let connections = clients.min(free_connections(&admin).await);
                            (
                                raw_run(scenario, connections, &options, &db, scripts.path()),
                                Told::default(),
                            )
                        }
                    };
                    stop.store(true, Ordering::Relaxed);
                    let peak = peak.join().unwrap();
                    if kind == Kind::Http {
                        sample.server_cpu = Some(server.cpu() - cpu_before);
                        sample.server_peak_rss = Some(peak);
                    }
                    if kind == Kind::Raw && scenario == Scenario::Holds {
                        let (rows,): (i64,) =
                            sqlx::query_as("select count(*) from seat_holds where user_id = 'raw'")
                                .fetch_one(&admin)
                                .await
                                .unwrap();
                        assert_eq!(rows as u64, sample.ops, "every raw insert made a row");
                    }
                    if kind != Kind::Raw
                        && let Err(problem) = check(&admin, scenario, &told, &sample).await
                    {
                        eprintln!(
                            "INVARIANT BROKEN: {} {kind:?} {clients} clients: {problem}",
                            scenario.name()
                        );
                        broken.push(problem);
                    }
                    eprintln!(
                        "{:>9} {:>6?} {:>3} clients run {}: {:>8.0}/s {:?}",
                        scenario.name(),
                        kind,
                        clients,
                        run + 1,
                        sample.rate(),
                        sample.outcomes
                    );
                    row.samples.entry(kind).or_default().push(sample);
                }
            }
            rows.push(row);
        }
        let table = report(scenario, &rows);
        print!("{table}");
        markdown.push_str(&table);
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-report.md");
    std::fs::write(&out, &markdown).unwrap();
    eprintln!("\ntables written to {}", out.display());
    if !broken.is_empty() {
        eprintln!("FAILED: the invariant was broken {} time(s)", broken.len());
        std::process::exit(1);
    }
}
