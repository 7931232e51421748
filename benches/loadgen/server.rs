//! The release server under test, as a process of its own (shared by the benchmarks).
// Each benchmark uses part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::{self, TestDb};

pub struct Server {
    child: Child,
    pub base: String,
}

impl Server {
    /// Starts the server on `db` with the settings in `env`, once it listens.
    pub fn start(db: &TestDb, env: &[(&str, String)]) -> Self {
        let port = common::free_port();
        let mut child = common::server_binary()
            .env("DATABASE_URL", &db.url)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn,boxoffice=info")
            // One load client stands for thousands of people: no per-client rate limits.
            .env("HOLD_SEATS_PER_MINUTE", "0")
            .env("HOLD_SEATS_PER_MINUTE_PER_IP", "0")
            .env("IDENTITIES_PER_MINUTE_PER_IP", "0")
            .envs(env.iter().map(|(name, value)| (name, value)))
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

    /// Resident memory now, in bytes.
    pub fn rss(&self) -> u64 {
        rss(&format!("/proc/{}/status", self.child.id()))
    }

    /// User plus system CPU time so far.
    pub fn cpu(&self) -> Duration {
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

    /// Samples the server's resident memory until the returned flag is set; the thread
    /// returns the peak.
    pub fn watch_memory(&self) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
        let stop = Arc::new(AtomicBool::new(false));
        let status = format!("/proc/{}/status", self.child.id());
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(rss(&status));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak.max(rss(&status))
        });
        (stop, handle)
    }
}

/// `VmRSS` of a `/proc/{pid}/status`, in bytes; 0 once the process is gone.
fn rss(status: &str) -> u64 {
    std::fs::read_to_string(status)
        .ok()
        .and_then(|text| {
            let kb = text.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
            kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
        })
        .unwrap_or(0)
        * 1024
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
