//! HTTP load from `wrk` (Debian's package), a client light enough not to be the bottleneck:
//! holds on distinct seats, the hot seat and seat-map reads, scripted by `wrk.lua`. It gives
//! the rate; `probe` times requests beside it for the latencies.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::check::Told;
use crate::options::Scenario;
use crate::report::Sample;

/// How many API users group holds spread over: two groups each, more than a run makes.
const GROUP_USERS: usize = 100_000;

/// The secret the server signs API tokens with, so that the benchmark can make its users'
/// tokens itself rather than asking the server for each.
pub const IDENTITY_SECRET: &str = "the benchmark's identity secret, not a real one";

/// `n` API users of the benchmark's server: each user's id and token.
pub fn identities(n: usize) -> Vec<(boxoffice::domain::UserId, String)> {
    let identities = boxoffice::identity::Identities::new(IDENTITY_SECRET.as_bytes(), None);
    (0..n).map(|_| identities.issue()).collect()
}

/// Drives `scenario` with wrk. `tokens`: the API tokens its requests take in turn; group holds
/// make their own.
pub fn run(
    scenario: Scenario,
    clients: usize,
    duration: Duration,
    base: &str,
    mut tokens: Vec<String>,
) -> (Sample, Told) {
    let told_file = tempfile::NamedTempFile::new().unwrap();
    let tokens_file = tempfile::NamedTempFile::new().unwrap();
    if scenario == Scenario::GroupHolds {
        tokens = identities(GROUP_USERS)
            .into_iter()
            .map(|(_, token)| token)
            .collect();
    }
    std::fs::write(tokens_file.path(), tokens.join("\n")).unwrap();
    let threads = clients.min(2);
    let output = Command::new("wrk")
        .args(["-t", &threads.to_string(), "-c", &clients.to_string()])
        .args(["-d", &format!("{}s", duration.as_secs().max(1))])
        .args(["--timeout", "10s", "-s"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/loadgen/wrk.lua"
        ))
        .arg(base)
        .env("SCENARIO", scenario.name())
        .env("THREADS", threads.to_string())
        .env("TOLD", told_file.path())
        .env("TOKENS", tokens_file.path())
        .output()
        .expect("run wrk (Debian: apt-get install wrk)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "wrk failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let mut outcomes = BTreeMap::new();
    let mut told = Told::default();
    for line in std::fs::read_to_string(told_file.path()).unwrap().lines() {
        if let Some(rest) = line.strip_prefix("status ") {
            let (status, count) = rest.split_once(' ').unwrap();
            *outcomes.entry(status.to_owned()).or_default() += count.parse::<u64>().unwrap();
        } else if let Some(body) = line.strip_prefix("held ") {
            told.hold(&serde_json::from_str(body).unwrap());
        }
    }
    for error in ["connect", "read", "write", "timeout"] {
        if let Some(n) = socket_errors(&stdout, error) {
            outcomes.insert(format!("{error} errors"), n);
        }
    }
    let ops: u64 = outcomes
        .iter()
        .filter(|(k, _)| !k.ends_with("errors"))
        .map(|(_, v)| v)
        .sum();
    let rate: f64 = stdout
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|rest| rest.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rate in wrk's output:\n{stdout}"));
    // Its rate only: the latencies come from `probe`.
    let sample = Sample {
        ops,
        elapsed: Duration::from_secs_f64(ops as f64 / rate),
        outcomes,
        ..Sample::default()
    };
    (sample, told)
}

/// "Socket errors: connect 0, read 0, write 0, timeout 3"
fn socket_errors(stdout: &str, kind: &str) -> Option<u64> {
    let line = stdout.lines().find(|l| l.contains("Socket errors:"))?;
    let after = line.split(&format!("{kind} ")).nth(1)?;
    let n: u64 = after.split(',').next()?.trim().parse().ok()?;
    (n > 0).then_some(n)
}
