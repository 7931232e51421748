//! What a run measured, and the tables made of the runs: medians, ratios, latencies.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::options::Scenario;

/// Who did the work: the server over HTTP, or one of `pgbench`'s baselines in the same run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Http,
    /// (a) The hold's own SQL as one transaction: one call of `hold_seats` per request.
    Function,
    /// (b) A one-row `insert … on conflict do nothing` into a table with only the primary key.
    Bare,
    /// (c) The minimal statement on the real tables.
    Raw,
}

impl Kind {
    pub const BASELINES: [Self; 3] = [Self::Function, Self::Bare, Self::Raw];
}

#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    pub fn of(mut micros: Vec<u64>) -> Option<Self> {
        if micros.is_empty() {
            return None;
        }
        micros.sort_unstable();
        let at = |p: f64| {
            Duration::from_micros(micros[((micros.len() - 1) as f64 * p).round() as usize])
        };
        Some(Self {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: at(1.0),
        })
    }
}

/// What one run measured.
#[derive(Default)]
pub struct Sample {
    /// Operations completed (requests, attempts or flows).
    pub ops: u64,
    pub elapsed: Duration,
    pub latency: Option<Latency>,
    pub outcomes: BTreeMap<String, u64>,
    pub server_cpu: Option<Duration>,
    pub server_peak_rss: Option<u64>,
    /// For pgbench: the connections it had (fewer than the clients when PostgreSQL's
    /// connection limit would be exceeded).
    pub connections: Option<usize>,
}

impl Sample {
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
}

pub struct Row {
    pub clients: usize,
    pub samples: BTreeMap<Kind, Vec<Sample>>,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

pub fn table(scenario: Scenario, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n### {} — {}\n", scenario.name(), scenario.describe());
    let _ = writeln!(
        out,
        "| clients | HTTP/s | (a) hold SQL/s | (b) bare table/s | (c) raw/s | HTTP/(a) | HTTP/(b) | HTTP/(c) | p50 ms | p90 ms | p99 ms | max ms | HTTP outcomes | server CPU s | peak RSS MB | runs (HTTP/s) |"
    );
    let _ = writeln!(
        out,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|"
    );
    for row in rows {
        let Some(https) = row.samples.get(&Kind::Http) else {
            continue;
        };
        let rate = |kind| {
            row.samples
                .get(&kind)
                .map(|s| median(s.iter().map(Sample::rate).collect()))
        };
        let http = rate(Kind::Http);
        let fmt = |kind: Kind| {
            let Some(value) = rate(kind) else {
                return "–".to_owned();
            };
            match row.samples[&kind][0].connections {
                Some(n) if n < row.clients => format!("{value:.0} ({n} conns)"),
                _ => format!("{value:.0}"),
            }
        };
        let ratio = |kind| match (http, rate(kind)) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.0} %", a / b * 100.0),
            _ => "–".into(),
        };
        // Latencies and resources from the HTTP run whose rate is the median.
        let mut order: Vec<&Sample> = https.iter().collect();
        order.sort_by(|a, b| a.rate().total_cmp(&b.rate()));
        let mid = order[order.len() / 2];
        let latency = |pick: fn(&Latency) -> Duration| {
            mid.latency.as_ref().map_or("–".into(), |l| ms(pick(l)))
        };
        let outcomes: Vec<String> = mid
            .outcomes
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let runs: Vec<String> = https.iter().map(|s| format!("{:.0}", s.rate())).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.clients,
            fmt(Kind::Http),
            fmt(Kind::Function),
            fmt(Kind::Bare),
            fmt(Kind::Raw),
            ratio(Kind::Function),
            ratio(Kind::Bare),
            ratio(Kind::Raw),
            latency(|l| l.p50),
            latency(|l| l.p90),
            latency(|l| l.p99),
            latency(|l| l.max),
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
