//! The server binary as a process of its own, on a free port, and its log.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

pub struct ServerProcess {
    pub child: Child,
    pub base: String,
    log: Receiver<String>,
    /// What it logged up to "listening".
    pub startup: Vec<String>,
}

impl ServerProcess {
    /// Starts the binary on a free port, with `DATABASE_URL` if given and `env` besides, and
    /// waits until it logs that it is listening.
    pub fn start(database_url: Option<&str>, env: &[(&str, &str)]) -> Self {
        Self::try_start(database_url, env)
            .unwrap_or_else(|log| panic!("the server did not start; its log: {log:#?}"))
    }

    /// `start`, or the lines it logged before it exited without listening.
    pub fn try_start(
        database_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<Self, Vec<String>> {
        Self::try_start_on(super::free_port(), database_url, env)
    }

    /// `start` on `port`, say that of a server that was killed.
    pub fn start_on(port: u16, database_url: Option<&str>, env: &[(&str, &str)]) -> Self {
        Self::try_start_on(port, database_url, env)
            .unwrap_or_else(|log| panic!("the server did not start; its log: {log:#?}"))
    }

    fn try_start_on(
        port: u16,
        database_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<Self, Vec<String>> {
        let mut command = super::server_binary();
        command
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped());
        if let Some(url) = database_url {
            command.env("DATABASE_URL", url);
        }
        let mut child = command.spawn().expect("start the server binary");
        let (lines, log) = mpsc::channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
            startup: Vec::new(),
        };
        server.startup = server.try_wait_for_log("listening")?;
        Ok(server)
    }

    /// Blocks until the server logs a line containing `needle`; returns the lines up to it.
    pub fn wait_for_log(&self, needle: &str) -> Vec<String> {
        self.try_wait_for_log(needle)
            .unwrap_or_else(|seen| panic!("no log line with {needle:?}; log so far: {seen:#?}"))
    }

    /// `wait_for_log`, or every line logged, if the log ends (the process exited) or stays
    /// silent for 30 s first.
    fn try_wait_for_log(&self, needle: &str) -> Result<Vec<String>, Vec<String>> {
        let mut seen = Vec::new();
        while let Ok(line) = self.log.recv_timeout(Duration::from_secs(30)) {
            let found = line.contains(needle);
            seen.push(line);
            if found {
                return Ok(seen);
            }
        }
        Err(seen)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Its resident memory, in KiB (`VmRSS`).
    pub fn resident_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
