//! The live-updates benchmark: `cargo bench --bench events [-- options]`.
//!
//! * **Delay**: two release servers on one new database, a stream open on each; holds go
//!   through the first, one at a time and then from 16 clients at once, and every `held`
//!   event's arrival is set against the 201 of its hold: the delay on the same instance and
//!   on the other one.
//! * **Streams**: one server, N streams opened at once by a light client (raw sockets, no
//!   parsing beyond finding an event's name); the server's resident memory before and after
//!   gives the memory per stream, and one hold then gives the time until every stream has its
//!   event.
//!
//! `DATABASE_URL` names the PostgreSQL server; every run gets a new database on it. See
//! BENCHMARKS.md, "The cost of live updates".

#[path = "../../tests/common/mod.rs"]
mod common;
#[path = "../loadgen/server.rs"]
mod server;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use common::TestDb;
use common::sse::EventStream;
use server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, watch};

const ROOM_ROWS: usize = 26;
const ROOM_SEATS_PER_ROW: usize = 50;
/// Clients of the loaded delay phase, each holding seats one after another.
const BUSY_CLIENTS: usize = 16;
/// Streams being opened at once by the stream phase.
const OPENING: usize = 256;

struct Options {
    runs: usize,
    holds: usize,
    streams: Vec<usize>,
}

impl Options {
    fn parse() -> Self {
        let mut options = Self {
            runs: 3,
            holds: 300,
            streams: vec![1_000, 5_000, 18_000],
        };
        let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
            };
            match arg.as_str() {
                "--runs" => options.runs = number(&value()),
                "--holds" => options.holds = number(&value()),
                "--streams" => options.streams = value().split(',').map(number).collect(),
                "--help" | "-h" => usage(""),
                other => usage(&format!("unknown option {other}")),
            }
        }
        options
    }
}

fn number(text: &str) -> usize {
    text.parse()
        .unwrap_or_else(|_| usage(&format!("{text} is not a number")))
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("{problem}");
    }
    eprintln!(
        "usage: cargo bench --bench events -- [--runs 3] [--holds 300] [--streams 1000,5000,18000]\n\
         DATABASE_URL names the PostgreSQL server to measure; every run gets a new database on it."
    );
    std::process::exit(2);
}

#[tokio::main]
async fn main() {
    let options = Options::parse();
    if std::env::var_os("DATABASE_URL").is_none() {
        usage("DATABASE_URL must name the PostgreSQL server to measure");
    }
    common::raise_open_files_limit();
    let mut delays: HashMap<(&str, &str), Vec<Summary>> = HashMap::new();
    let mut streams: HashMap<usize, Vec<StreamRun>> = HashMap::new();
    for run in 1..=options.runs {
        for (phase, summaries) in delay_run(options.holds).await {
            for (instance, summary) in summaries {
                eprintln!("run {run}: {phase}, {instance} instance: {summary}");
                delays.entry((phase, instance)).or_default().push(summary);
            }
        }
        for &n in &options.streams {
            let result = stream_run(n).await;
            eprintln!("run {run}: {n} streams: {result}");
            streams.entry(n).or_default().push(result);
        }
    }

    println!(
        "\n#### Delay from a hold's 201 to its `held` event (ms; median of runs, all runs in brackets)\n"
    );
    println!("| holds | instance | median | p99 | max |");
    println!("|---|---|---:|---:|---:|");
    for phase in ["one at a time", "16 clients"] {
        for instance in ["same", "other"] {
            let runs = &delays[&(phase, instance)];
            let column = |f: fn(&Summary) -> f64| spread(runs.iter().map(f).collect());
            println!(
                "| {phase} | {instance} | {} | {} | {} |",
                column(|s| s.median),
                column(|s| s.p99),
                column(|s| s.max)
            );
        }
    }
    println!("\n#### Open streams on one server (median of runs, all runs in brackets)\n");
    println!(
        "| streams | memory per stream (KiB) | one hold reaches every stream (ms) | half of them (ms) |"
    );
    println!("|---:|---:|---:|---:|");
    let mut ns: Vec<_> = streams.keys().copied().collect();
    ns.sort_unstable();
    for n in ns {
        let runs = &streams[&n];
        let column = |f: fn(&StreamRun) -> f64| spread(runs.iter().map(f).collect());
        println!(
            "| {n} | {} | {} | {} |",
            column(|r| r.kib_per_stream),
            column(|r| r.all_ms),
            column(|r| r.half_ms)
        );
    }
}

/// "median [each run]".
fn spread(mut values: Vec<f64>) -> String {
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    let each: Vec<String> = values.iter().map(|v| format!("{v:.2}")).collect();
    format!("{median:.2} [{}]", each.join(", "))
}

struct Summary {
    median: f64,
    p99: f64,
    max: f64,
    count: usize,
}

impl Summary {
    fn of(mut delays: Vec<f64>) -> Self {
        delays.sort_by(f64::total_cmp);
        let at = |q: f64| delays[((delays.len() - 1) as f64 * q).round() as usize];
        Self {
            median: at(0.5),
            p99: at(0.99),
            max: at(1.0),
            count: delays.len(),
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} events, median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.count, self.median, self.p99, self.max
        )
    }
}

/// A new database with one room per delay phase.
async fn database(rooms: &[&str]) -> TestDb {
    let db = TestDb::new().await;
    let admin = db.pool(1).await;
    let screenings: Vec<_> = rooms
        .iter()
        .map(|room| {
            common::Rectangle::new(*room, *room, ROOM_ROWS as i32, ROOM_SEATS_PER_ROW as i32)
        })
        .collect();
    common::rectangular_screenings(&admin, &screenings).await;
    db
}

fn seat(n: usize) -> String {
    let row = (b'A' + (n / ROOM_SEATS_PER_ROW) as u8) as char;
    format!("{row}{}", n % ROOM_SEATS_PER_ROW + 1)
}

fn server_env(max_streams: usize) -> [(&'static str, String); 3] {
    [
        ("HOLD_TTL_SECS", "3600".into()),
        ("MAX_HOLDS_PER_USER", "8".into()),
        ("MAX_EVENT_STREAMS", max_streams.to_string()),
    ]
}

/// Both delay phases on two servers sharing a new database.
async fn delay_run(holds: usize) -> Vec<(&'static str, Vec<(&'static str, Summary)>)> {
    let rooms = ["events-idle", "events-busy"];
    let db = database(&rooms).await;
    let servers = [
        Server::start(&db, &server_env(100)),
        Server::start(&db, &server_env(100)),
    ];
    let client = reqwest::Client::new();
    let mut results = Vec::new();
    for (room, phase, clients) in [
        (rooms[0], "one at a time", 1),
        (rooms[1], "16 clients", BUSY_CLIENTS),
    ] {
        let per_client = holds.div_ceil(clients);
        let total = per_client * clients;
        assert!(
            total <= ROOM_ROWS * ROOM_SEATS_PER_ROW,
            "more holds than seats"
        );
        let mut watchers = Vec::new();
        for server in &servers {
            let url = format!("{}/movies/{room}/events", server.base);
            let mut stream = EventStream::open(&client, &url, None).await;
            // The snapshot comes once the server listens for changes.
            assert_eq!(stream.next().await.unwrap().event, "snapshot");
            watchers.push(tokio::spawn(arrivals(stream, total)));
        }
        let answered = hold_all(&client, &servers[0].base, room, clients, per_client).await;
        let mut summaries = Vec::new();
        for (watcher, instance) in watchers.into_iter().zip(["same", "other"]) {
            let arrived = watcher.await.unwrap();
            let delays = answered
                .iter()
                .map(|(seat, at)| {
                    let event = arrived
                        .get(seat)
                        .unwrap_or_else(|| panic!("no event for {seat}"));
                    signed_ms(*event, *at)
                })
                .collect();
            summaries.push((instance, Summary::of(delays)));
        }
        results.push((phase, summaries));
    }
    results
}

/// When each seat's `held` event arrived, once `expected` seats have.
async fn arrivals(mut stream: EventStream, expected: usize) -> HashMap<String, Instant> {
    let mut arrived = HashMap::new();
    while arrived.len() < expected {
        let event = stream.next().await.expect("the stream ended");
        let at = Instant::now();
        if event.event == "held" {
            for seat in event.seats() {
                arrived.insert(seat, at);
            }
        }
    }
    arrived
}

/// `clients` clients each holding `per_client` distinct seats one after another; when each
/// hold's 201 came.
async fn hold_all(
    client: &reqwest::Client,
    base: &str,
    room: &str,
    clients: usize,
    per_client: usize,
) -> Vec<(String, Instant)> {
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (client, base, room) = (client.clone(), base.to_owned(), room.to_owned());
            tokio::spawn(async move {
                let mut answered = Vec::new();
                for i in 0..per_client {
                    let seat = seat(c * per_client + i);
                    let response = client
                        .post(format!("{base}/movies/{room}/seats/{seat}/hold"))
                        .json(&serde_json::json!({ "user_id": format!("u{c}-{i}") }))
                        .send()
                        .await
                        .unwrap();
                    let at = Instant::now();
                    assert_eq!(response.status(), 201, "{seat}");
                    answered.push((seat, at));
                }
                answered
            })
        })
        .collect();
    let mut answered = Vec::new();
    for task in tasks {
        answered.extend(task.await.unwrap());
    }
    answered
}

/// `later - earlier` in milliseconds, negative when the event came before the answer.
fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(after) => after.as_secs_f64() * 1e3,
        None => -(earlier - later).as_secs_f64() * 1e3,
    }
}

struct StreamRun {
    kib_per_stream: f64,
    all_ms: f64,
    half_ms: f64,
}

impl std::fmt::Display for StreamRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} KiB per stream, every stream has the event after {:.1} ms, half after {:.1} ms",
            self.kib_per_stream, self.all_ms, self.half_ms
        )
    }
}

/// `n` streams on one server: memory per stream, and how long one hold takes to reach them.
async fn stream_run(n: usize) -> StreamRun {
    let room = "events-many";
    let db = database(&[room]).await;
    let server = Server::start(&db, &server_env(n + 10));
    let addr = server.base.trim_start_matches("http://").to_owned();
    let client = reqwest::Client::new();
    // One stream first, so the listener is up and the first snapshot's allocations are made.
    let url = format!("{}/movies/{room}/events", server.base);
    let mut first = EventStream::open(&client, &url, None).await;
    assert_eq!(first.next().await.unwrap().event, "snapshot");
    let before = server.rss();

    let (close, closed) = watch::channel(false);
    let opening = Arc::new(Semaphore::new(OPENING));
    let (ready, mut readied) = tokio::sync::mpsc::unbounded_channel();
    let streams: Vec<_> = (0..n)
        .map(|_| {
            let (addr, opening, ready, closed) =
                (addr.clone(), opening.clone(), ready.clone(), closed.clone());
            tokio::spawn(raw_stream(addr, room, opening, ready, closed))
        })
        .collect();
    for _ in 0..n {
        readied.recv().await.expect("a stream failed to open");
    }
    let after = server.rss();

    let sent = Instant::now();
    let response = client
        .post(format!("{}/movies/{room}/seats/A1/hold", server.base))
        .json(&serde_json::json!({ "user_id": "fan-out" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let mut arrived = Vec::with_capacity(n);
    for _ in 0..n {
        arrived.push(readied.recv().await.expect("a stream ended early"));
    }
    close.send(true).unwrap();
    for stream in streams {
        stream.await.unwrap();
    }
    arrived.sort_unstable();
    StreamRun {
        kib_per_stream: after.saturating_sub(before) as f64 / n as f64 / 1024.0,
        all_ms: (arrived[n - 1] - sent).as_secs_f64() * 1e3,
        half_ms: (arrived[n / 2] - sent).as_secs_f64() * 1e3,
    }
}

/// One stream over a plain socket: reports when its snapshot is in and when the first `held`
/// event is, then stays open until told to close.
async fn raw_stream(
    addr: String,
    room: &'static str,
    opening: Arc<Semaphore>,
    ready: tokio::sync::mpsc::UnboundedSender<Instant>,
    mut closed: watch::Receiver<bool>,
) {
    let mut socket = {
        let _permit = opening.acquire().await.unwrap();
        let mut socket = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let request = format!(
            "GET /movies/{room}/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        );
        socket.write_all(request.as_bytes()).await.unwrap();
        wait_for(&mut socket, b"event: snapshot").await;
        socket
    };
    ready.send(Instant::now()).unwrap();
    wait_for(&mut socket, b"event: held").await;
    ready.send(Instant::now()).unwrap();
    let _ = closed.wait_for(|closed| *closed).await;
}

/// Reads until `marker` has gone by; fails if the stream ends first.
async fn wait_for(socket: &mut tokio::net::TcpStream, marker: &[u8]) {
    let mut window = Vec::with_capacity(4096);
    let mut buffer = [0u8; 2048];
    loop {
        let read = socket.read(&mut buffer).await.unwrap();
        assert!(read > 0, "the stream ended before {marker:?}");
        window.extend_from_slice(&buffer[..read]);
        if window.windows(marker.len()).any(|w| w == marker) {
            return;
        }
        // Keep only what a marker split across reads could start in.
        let keep = window.len().saturating_sub(marker.len());
        window.drain(..keep);
    }
}
