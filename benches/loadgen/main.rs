//! The load benchmark: `cargo bench --bench loadgen [-- options]`.
//!
//! Each run starts the release server on a new database on the PostgreSQL server that
//! `DATABASE_URL` names: by default a fresh one (migrations just run, never analysed, the rush
//! starting at once: opening night), or one with an analysed history (`--history analysed`).
//! `wrk` drives holds on distinct seats, then the hot seat (already held, after that rush),
//! then seat-map reads, with a Rust client beside it timing each of its own requests for the
//! latencies (`probe`); a Rust client drives the hold → confirm / release flow. After every
//! run the database is checked against what the clients were told. Beside each HTTP figure,
//! in the same run and at the same client count, `pgbench` measures three baselines, each on
//! a database of its own set up the same way (see `baselines`). See BENCHMARKS.md.

#[path = "../../tests/common/mod.rs"]
mod common;

mod baselines;
mod check;
mod fixtures;
mod flow;
mod options;
mod probe;
mod report;
mod server;
mod wrk;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use check::{Told, check};
use fixtures::{HOT_ROOM, HOT_SEAT};
use options::{Options, Pooler, Scenario};
use report::{Kind, Row, Sample};
use server::Server;

type Rows = BTreeMap<Scenario, Row>;

#[tokio::main]
async fn main() {
    let options = Options::parse();
    if std::env::var_os("DATABASE_URL").is_none() {
        // The tests' fallback cluster runs with fsync off: fine for tests, misleading here.
        eprintln!("DATABASE_URL must name the PostgreSQL server to measure (see --help)");
        std::process::exit(2);
    }
    for tool in ["wrk", "pgbench"] {
        let found = std::process::Command::new(tool)
            .arg("--version")
            .output()
            .is_ok();
        assert!(
            found,
            "the benchmark needs {tool} on PATH (Debian: apt-get install {tool})"
        );
    }
    common::raise_open_files_limit();
    let scripts = tempfile::tempdir().unwrap();
    eprintln!(
        "boxoffice load benchmark: {:?} history, {} run(s) of {:?} per figure, clients {:?}, pool {}, {:?}",
        options.history,
        options.runs,
        options.duration,
        options.clients,
        options.pool,
        options.pooler
    );

    let mut tables: BTreeMap<Scenario, Vec<Row>> = BTreeMap::new();
    let mut broken = Vec::new();
    for &clients in &options.clients {
        let mut rows: Rows = options
            .scenarios
            .iter()
            .map(|&s| {
                let row = Row {
                    clients,
                    samples: BTreeMap::new(),
                };
                (s, row)
            })
            .collect();
        for run in 1..=options.runs {
            http_runs(&options, clients, run, &mut rows, &mut broken).await;
            for kind in Kind::BASELINES {
                baseline_runs(&options, kind, clients, run, &mut rows, scripts.path()).await;
            }
        }
        for (scenario, row) in rows {
            tables.entry(scenario).or_default().push(row);
        }
    }

    let mut markdown = String::new();
    for (scenario, rows) in &tables {
        let table = report::table(*scenario, rows);
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

/// One server on one new database, each scenario in turn.
async fn http_runs(
    options: &Options,
    clients: usize,
    run: usize,
    rows: &mut Rows,
    broken: &mut Vec<String>,
) {
    let (db, admin) = fixtures::database(options.history).await;
    let mut env = vec![
        ("HOLD_TTL_SECS", fixtures::TTL.as_secs().to_string()),
        ("DB_MAX_CONNECTIONS", options.pool.to_string()),
        ("MAX_HOLDS_PER_USER", "8".into()),
        ("IDENTITY_SECRET", wrk::IDENTITY_SECRET.into()),
    ];
    if options.pooler == Pooler::PgBouncer {
        env.extend([
            ("DATABASE_URL", common::pgbouncer::PgBouncer::get().url(&db)),
            ("DATABASE_POOLER", "transaction".into()),
            ("DATABASE_DIRECT_URL", db.url.clone()),
        ]);
    }
    let server = Server::start(&db, &env);
    for &scenario in &options.scenarios {
        let mut before = Told::default();
        let mut tokens = Vec::new();
        match scenario {
            Scenario::HotSeat => before.held.push(take_hot_seat(&server.base).await),
            Scenario::SeatMap => fixtures::book_map_room(&admin, &[]).await,
            // A token per connection, each of a user with a seat of its own in the room, so
            // every answer is marked for its caller.
            Scenario::SeatMapV1 => {
                let identities = wrk::identities(clients);
                let owners: Vec<String> = identities.iter().map(|(u, _)| u.to_string()).collect();
                fixtures::book_map_room(&admin, &owners).await;
                tokens = identities.into_iter().map(|(_, token)| token).collect();
            }
            Scenario::Holds | Scenario::GroupHolds | Scenario::Flow => {}
        }
        let cpu_before = server.cpu();
        let (stop, peak) = server.watch_memory();
        let (mut sample, mut told) = match scenario {
            Scenario::Flow => flow::run(clients, options.duration, &server.base).await,
            _ => {
                let token = tokens.first().cloned();
                let probe = probe::run(scenario, options.duration, server.base.clone(), token);
                let probe = tokio::spawn(probe);
                let (mut sample, mut told) = tokio::task::block_in_place(|| {
                    wrk::run(scenario, clients, options.duration, &server.base, tokens)
                });
                let (latency, probed) = probe.await.unwrap();
                sample.latency = latency;
                told.merge(probed);
                (sample, told)
            }
        };
        stop.store(true, Ordering::Relaxed);
        sample.server_peak_rss = Some(peak.join().unwrap());
        sample.server_cpu = Some(server.cpu() - cpu_before);
        told.merge(before);
        if let Err(problem) = check(&admin, scenario, &told, &sample).await {
            eprintln!(
                "INVARIANT BROKEN: {} {clients} clients: {problem}",
                scenario.name()
            );
            broken.push(problem);
        }
        log(scenario, Kind::Http, clients, run, &sample);
        rows.get_mut(&scenario)
            .unwrap()
            .samples
            .entry(Kind::Http)
            .or_default()
            .push(sample);
    }
    admin.close().await;
}

/// One baseline on one new database, each scenario it has a figure for in turn.
async fn baseline_runs(
    options: &Options,
    kind: Kind,
    clients: usize,
    run: usize,
    rows: &mut Rows,
    scripts: &std::path::Path,
) {
    let scenarios: Vec<Scenario> = options
        .scenarios
        .iter()
        .copied()
        .filter(|&s| baselines::applies(kind, s))
        .collect();
    if scenarios.is_empty() {
        return;
    }
    let (db, admin) = fixtures::database(options.history).await;
    for scenario in scenarios {
        if matches!(scenario, Scenario::SeatMap | Scenario::SeatMapV1) {
            fixtures::book_map_room(&admin, &[]).await;
        }
        let sample = baselines::run(
            kind,
            scenario,
            clients,
            options.duration,
            &db,
            &admin,
            scripts,
        )
        .await;
        log(scenario, kind, clients, run, &sample);
        rows.get_mut(&scenario)
            .unwrap()
            .samples
            .entry(kind)
            .or_default()
            .push(sample);
    }
    admin.close().await;
}

/// Holds the hot seat, so that the rush that follows finds it taken.
async fn take_hot_seat(base: &str) -> (String, String, uuid::Uuid) {
    let hold: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/movies/{HOT_ROOM}/seats/{HOT_SEAT}/hold"))
        .json(&serde_json::json!({ "user_id": "first" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = hold["session_id"].as_str().expect("the hot seat was free");
    (HOT_ROOM.into(), HOT_SEAT.into(), session.parse().unwrap())
}

fn log(scenario: Scenario, kind: Kind, clients: usize, run: usize, sample: &Sample) {
    eprintln!(
        "{:>9} {:>9} {clients:>3} clients run {run}: {:>8.0}/s {:?}",
        scenario.name(),
        format!("{kind:?}"),
        sample.rate(),
        sample.outcomes
    );
}
