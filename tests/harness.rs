//! The test harness's choice of PostgreSQL server (`common::server`): `DATABASE_URL`, else a
//! container when a Docker engine answers, else a throwaway cluster, else a failure that says
//! how to provide one.
//!
//! Each case runs this test binary again as a child, with the environment under test, and
//! reads what its probe test printed. The Docker engine the child sees is a fake served here
//! on 127.0.0.1 (so the cases are the same on every machine, with or without Docker): it
//! records what it is asked and plays an engine that has the image, or one that has it
//! neither locally nor from a registry. Its "container" forwards to this binary's own server.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use common::TestDb;
use common::server::{self, Source};
use serde_json::{Value, json};
use sqlx::Connection;

const PROBE: &str = "the_chosen_server_answers_with_the_suites_settings";
/// Set in the probe's environment when it runs as a child of a case below.
const CHILD: &str = "HARNESS_PROBE_CHILD";

/// Run as a child by the cases below, and on its own as part of the suite: the server the
/// harness chose answers, and has the settings the suite needs (unless it is the user's own).
#[tokio::test]
async fn the_chosen_server_answers_with_the_suites_settings() {
    let server = server::get();
    let db = TestDb::new().await;
    let mut connection = sqlx::PgConnection::connect(&db.url)
        .await
        .expect("connect to the test database");
    let max_connections: String = sqlx::query_scalar("show max_connections")
        .fetch_one(&mut connection)
        .await
        .expect("show max_connections");
    println!(
        "probe: source={} max_connections={max_connections}",
        server.source.name()
    );
    // A child's parent judges what it printed: its "container" may forward to any server.
    if std::env::var_os(CHILD).is_none() && server.source != Source::DatabaseUrl {
        assert_eq!(max_connections, "300");
    }
}

#[test]
fn with_database_url_set_no_engine_is_asked() {
    let engine = FakeEngine::start(Images::Present);
    let child = probe(&[
        ("DATABASE_URL", &common::admin_url()),
        ("DOCKER_HOST", &engine.docker_host()),
    ]);
    assert_probe(&child, Source::DatabaseUrl);
    assert_eq!(engine.connections(), 0, "the engine was asked");
}

#[test]
fn with_an_engine_a_container_is_started_with_the_settings_and_removed_at_exit() {
    let engine = FakeEngine::start(Images::Present);
    let child = probe(&[("DOCKER_HOST", &engine.docker_host())]);
    assert_probe(&child, Source::Container);
    let created = engine.created();
    assert_eq!(created["Image"], "postgres:16", "the default image");
    assert_eq!(
        created["Cmd"],
        json!(["-c", "max_connections=300", "-c", "fsync=off"])
    );
    assert!(
        created["Env"]
            .as_array()
            .expect("an environment")
            .contains(&json!("POSTGRES_HOST_AUTH_METHOD=trust")),
        "{created}"
    );
    assert!(
        engine
            .requests()
            .contains(&format!("DELETE /containers/{CONTAINER_ID}")),
        "the container was not removed when the child exited: {:?}",
        engine.requests()
    );
}

#[test]
fn an_engine_without_the_image_falls_back_to_a_cluster_naming_the_image_script() {
    let engine = FakeEngine::start(Images::Unavailable);
    let child = probe(&[
        ("DOCKER_HOST", &engine.docker_host()),
        ("TEST_POSTGRES_IMAGE", "postgres:15"),
    ]);
    assert_probe(&child, Source::Cluster);
    assert_eq!(
        engine.created()["Image"],
        "postgres:15",
        "the image setting"
    );
    assert!(
        engine
            .requests()
            .iter()
            .any(|request| request.starts_with("POST /images/create")),
        "no pull was tried: {:?}",
        engine.requests()
    );
    let said = stderr(&child);
    assert!(
        said.contains("no image postgres:15") && said.contains("scripts/postgres-image"),
        "{said}"
    );
}

#[test]
fn without_an_engine_a_throwaway_cluster_is_started_and_removed_at_exit() {
    let child = probe(&[("DOCKER_HOST", &closed_port())]);
    assert_probe(&child, Source::Cluster);
    let said = stderr(&child);
    assert!(said.contains("no Docker engine answered"), "{said}");
    let dir = said
        .split("a throwaway cluster in ")
        .nth(1)
        .and_then(|rest| rest.split(": ").next())
        .unwrap_or_else(|| panic!("the cluster's directory is not named:\n{said}"));
    assert!(
        !std::path::Path::new(dir).exists(),
        "the cluster's directory {dir} is still there"
    );
}

#[test]
fn with_no_postgresql_at_all_the_tests_fail_saying_how_to_provide_one() {
    let no_binaries = tempfile::tempdir().expect("temp dir");
    let child = probe(&[
        ("DOCKER_HOST", &closed_port()),
        (
            "TEST_POSTGRES_BIN",
            &no_binaries.path().display().to_string(),
        ),
    ]);
    assert!(
        !child.status.success(),
        "the probe passed without PostgreSQL"
    );
    let said = stderr(&child);
    for way in [
        "set DATABASE_URL",
        "start a Docker engine",
        "scripts/postgres-image",
        "apt-get install postgresql",
    ] {
        assert!(
            said.contains(way),
            "the failure does not say {way:?}:\n{said}"
        );
    }
}

#[test]
fn insisting_on_a_container_fails_rather_than_falling_back() {
    let child = probe(&[
        ("DOCKER_HOST", &closed_port()),
        ("TEST_POSTGRES", "container"),
    ]);
    assert!(
        !child.status.success(),
        "the probe passed without a container"
    );
    let said = stderr(&child);
    assert!(
        said.contains("TEST_POSTGRES=container") && said.contains("no Docker engine answered"),
        "{said}"
    );
}

#[test]
fn insisting_on_a_cluster_asks_no_engine() {
    let engine = FakeEngine::start(Images::Present);
    let child = probe(&[
        ("DOCKER_HOST", &engine.docker_host()),
        ("TEST_POSTGRES", "cluster"),
    ]);
    assert_probe(&child, Source::Cluster);
    assert_eq!(engine.connections(), 0, "the engine was asked");
}

// ---------------------------------------------------------------------------------------
// The child

/// Runs the probe in a child of this binary with only `settings` of the harness's own.
fn probe(settings: &[(&str, &str)]) -> Output {
    let mut command = Command::new(std::env::current_exe().expect("this test binary"));
    command.args(["--exact", PROBE, "--nocapture", "--test-threads=1"]);
    for name in [
        "DATABASE_URL",
        "TEST_POSTGRES",
        "TEST_POSTGRES_IMAGE",
        "TEST_POSTGRES_BIN",
        "DOCKER_HOST",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
        "TESTCONTAINERS_COMMAND",
    ] {
        command.env_remove(name);
    }
    command.env(CHILD, "1").envs(settings.iter().copied());
    command.output().expect("run the probe")
}

fn assert_probe(child: &Output, source: Source) {
    let printed = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success(),
        "the probe failed:\n{printed}\n{}",
        stderr(child)
    );
    let expected = match source {
        // A cluster is the harness's own: it has the suite's settings.
        Source::Cluster => format!("probe: source={} max_connections=300", source.name()),
        _ => format!("probe: source={} ", source.name()),
    };
    assert!(
        printed.contains(&expected),
        "the probe did not use the {} server:\n{printed}\n{}",
        source.name(),
        stderr(child)
    );
}

fn stderr(child: &Output) -> String {
    String::from_utf8_lossy(&child.stderr).into_owned()
}

/// A `DOCKER_HOST` where nothing listens.
fn closed_port() -> String {
    format!("tcp://127.0.0.1:{}", common::free_port())
}

// ---------------------------------------------------------------------------------------
// A fake Docker engine

const CONTAINER_ID: &str = "0123456789ab";

#[derive(Clone, Copy)]
enum Images {
    /// The image is here: containers start.
    Present,
    /// Not here, and the pull fails as it does with no registry.
    Unavailable,
}

#[derive(Default)]
struct Seen {
    connections: usize,
    requests: Vec<String>,
    created: Option<Value>,
}

struct FakeEngine {
    port: u16,
    seen: Arc<Mutex<Seen>>,
}

impl FakeEngine {
    fn start(images: Images) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake engine");
        let port = listener.local_addr().expect("local addr").port();
        let seen = Arc::new(Mutex::new(Seen::default()));
        // The container's port: a forward to this binary's own PostgreSQL server.
        let postgres = forward_to(&common::admin_url());
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                record.lock().unwrap().connections += 1;
                let record = Arc::clone(&record);
                std::thread::spawn(move || serve(stream, images, postgres, &record));
            }
        });
        Self { port, seen }
    }

    fn docker_host(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    fn connections(&self) -> usize {
        self.seen.lock().unwrap().connections
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().requests.clone()
    }

    fn created(&self) -> Value {
        let seen = self.seen.lock().unwrap();
        seen.created.clone().expect("no container was created")
    }
}

/// Answers the engine API requests testcontainers makes, on one keep-alive connection.
fn serve(stream: TcpStream, images: Images, postgres_port: u16, seen: &Mutex<Seen>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).expect("a header");
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                content_length = value.trim().parse().expect("a content length");
            }
        }
        let mut body = vec![0; content_length];
        reader.read_exact(&mut body).expect("the body");

        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        // Without the API version prefix (/v1.41/containers/create) or the query.
        let path = target.split('?').next().unwrap_or_default();
        let path = match path.strip_prefix("/v") {
            Some(rest) => rest.find('/').map_or(path, |slash| &rest[slash..]),
            None => path,
        }
        .to_owned();
        let query = target.split_once('?').map_or("", |(_, query)| query);
        seen.lock()
            .unwrap()
            .requests
            .push(format!("{method} {path}"));

        let container = format!("/containers/{CONTAINER_ID}");
        let (status, content) = match (method.as_str(), path.as_str()) {
            ("GET" | "HEAD", "/_ping") => (200, Content::Text("OK")),
            ("GET", "/version") => (200, Content::Json(json!({"ApiVersion": "1.41"}))),
            ("POST", "/containers/create") => {
                seen.lock().unwrap().created =
                    Some(serde_json::from_slice(&body).expect("a JSON container config"));
                match images {
                    Images::Present => (
                        201,
                        Content::Json(json!({"Id": CONTAINER_ID, "Warnings": []})),
                    ),
                    Images::Unavailable => (
                        404,
                        Content::Json(json!({"message": "No such image: postgres"})),
                    ),
                }
            }
            ("POST", "/images/create") => (
                500,
                Content::Json(json!({
                    "message": "Get \"https://registry-1.docker.io/v2/\": dial tcp: lookup registry-1.docker.io: no such host"
                })),
            ),
            ("POST", p) if p == format!("{container}/start") => (204, Content::Empty),
            ("POST", p) if p == format!("{container}/stop") => (204, Content::Empty),
            ("GET", p) if p == format!("{container}/json") => {
                (200, Content::Json(inspect(postgres_port)))
            }
            ("GET", p) if p == format!("{container}/logs") => (200, Content::Logs(logs(query))),
            ("DELETE", p) if p == container => (204, Content::Empty),
            _ => (
                404,
                Content::Json(
                    json!({"message": format!("the fake engine has no {method} {path}")}),
                ),
            ),
        };
        let (content_type, bytes) = match content {
            Content::Empty => ("text/plain", Vec::new()),
            Content::Text(text) => ("text/plain", text.as_bytes().to_vec()),
            Content::Json(value) => ("application/json", value.to_string().into_bytes()),
            Content::Logs(frames) => ("application/vnd.docker.raw-stream", frames),
        };
        let head = format!(
            "HTTP/1.1 {status} Fake\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
             api-version: 1.41\r\n\r\n",
            bytes.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(&bytes).is_err() {
            return;
        }
    }
}

enum Content {
    Empty,
    Text(&'static str),
    Json(Value),
    Logs(Vec<u8>),
}

fn inspect(postgres_port: u16) -> Value {
    json!({
        "Id": CONTAINER_ID,
        "State": {"Status": "running", "Running": true, "ExitCode": 0},
        "Config": {"Image": "postgres", "ExposedPorts": {"5432/tcp": {}}},
        "HostConfig": {},
        "NetworkSettings": {
            "Ports": {"5432/tcp": [{"HostIp": "127.0.0.1", "HostPort": postgres_port.to_string()}]}
        }
    })
}

/// The log lines the Postgres image's readiness waits for, in Docker's multiplexed framing
/// (a byte for the stream, three zero bytes, the length), on the streams asked for.
fn logs(query: &str) -> Vec<u8> {
    let asked: HashMap<&str, &str> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let line = b"LOG:  database system is ready to accept connections\n";
    let mut frames = Vec::new();
    for (stream, name) in [(1u8, "stdout"), (2, "stderr")] {
        if asked.get(name) == Some(&"true") {
            frames.extend([stream, 0, 0, 0]);
            frames.extend((line.len() as u32).to_be_bytes());
            frames.extend(line);
        }
    }
    frames
}

/// A port on 127.0.0.1 that forwards every connection to the server `url` names.
fn forward_to(url: &str) -> u16 {
    let options: sqlx::postgres::PgConnectOptions = url.parse().expect("the server's URL");
    let target = format!("{}:{}", options.get_host(), options.get_port());
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the forward");
    let port = listener.local_addr().expect("local addr").port();
    std::thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            let Ok(server) = TcpStream::connect(&target) else {
                continue;
            };
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Both);
                });
            }
        }
    });
    port
}
