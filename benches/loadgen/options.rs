//! The benchmark's command line: what to run, how often and how long.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    Holds,
    GroupHolds,
    HotSeat,
    SeatMap,
    SeatMapV1,
    Flow,
}

impl Scenario {
    /// In the order a run drives them: the hot seat comes after the rush of holds.
    pub const ALL: [Self; 6] = [
        Self::Holds,
        Self::GroupHolds,
        Self::HotSeat,
        Self::SeatMap,
        Self::SeatMapV1,
        Self::Flow,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Holds => "holds",
            Self::GroupHolds => "group-holds",
            Self::HotSeat => "hot-seat",
            Self::SeatMap => "seat-map",
            Self::SeatMapV1 => "seat-map-v1",
            Self::Flow => "flow",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Holds => "holds on distinct seats (requests/s)",
            Self::GroupHolds => {
                "4-seat holds on distinct seats, /api/v1 (requests/s; each holds 4 seats)"
            }
            Self::HotSeat => "one hot seat, already held, after the rush of holds (attempts/s)",
            Self::SeatMap => "seat-map reads, 300 seats, 100 taken (requests/s)",
            Self::SeatMapV1 => {
                "/api/v1 seat-map reads (the page's), 300 seats, 100 taken, one of them each \
                 caller's (requests/s)"
            }
            Self::Flow => "full flow: hold → confirm, hold → release (flows/s, 2 requests each)",
        }
    }
}

/// What the database looks like when a run starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum History {
    /// A new database, migrations just run, never analysed: opening night.
    Fresh,
    /// 20,000 bookings of the past, analysed: a cinema in use.
    Analysed,
}

/// How the server reaches the database (pgbench's baselines always go straight to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooler {
    Direct,
    /// PgBouncer in transaction mode, started by the benchmark (`DATABASE_POOLER=transaction`).
    PgBouncer,
}

pub struct Options {
    pub runs: usize,
    pub duration: Duration,
    pub clients: Vec<usize>,
    pub scenarios: Vec<Scenario>,
    pub history: History,
    pub pool: u32,
    pub pooler: Pooler,
}

impl Options {
    pub fn parse() -> Self {
        let mut options = Self {
            runs: 3,
            duration: Duration::from_secs(5),
            clients: vec![1, 8, 32, 128],
            scenarios: Scenario::ALL.to_vec(),
            history: History::Fresh,
            pool: 32,
            pooler: Pooler::Direct,
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
                "--secs" => options.duration = Duration::from_secs(number(&value())),
                "--clients" => options.clients = value().split(',').map(number).collect(),
                "--pool" => options.pool = number(&value()),
                "--pooler" => {
                    options.pooler = match value().as_str() {
                        "direct" => Pooler::Direct,
                        "pgbouncer" => Pooler::PgBouncer,
                        other => usage(&format!("unknown pooler {other}")),
                    }
                }
                "--history" => {
                    options.history = match value().as_str() {
                        "fresh" => History::Fresh,
                        "analysed" => History::Analysed,
                        other => usage(&format!("unknown history {other}")),
                    }
                }
                "--scenarios" => {
                    let wanted: Vec<String> = value().split(',').map(str::to_owned).collect();
                    if let Some(unknown) = wanted
                        .iter()
                        .find(|w| !Scenario::ALL.iter().any(|s| s.name() == w.as_str()))
                    {
                        usage(&format!("unknown scenario {unknown}"));
                    }
                    options.scenarios = Scenario::ALL
                        .into_iter()
                        .filter(|s| wanted.iter().any(|w| w == s.name()))
                        .collect();
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
         [--clients 1,8,32,128] [--scenarios holds,group-holds,hot-seat,seat-map,seat-map-v1,flow] \
         [--history fresh|analysed] [--pool 32] [--pooler direct|pgbouncer]\n\
         DATABASE_URL names the PostgreSQL server to measure; every run gets a new database on \
         it. Needs wrk and pgbench on PATH."
    );
    std::process::exit(if problem.is_empty() { 0 } else { 2 })
}
