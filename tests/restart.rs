//! The real binary, killed and restarted: what it acknowledged is still there.

mod common;

use common::process::ServerProcess;
use common::{TestDb, json_of};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_confirmed_booking_survives_a_crash_and_a_restart() {
    let db = TestDb::new().await;
    let client = reqwest::Client::new();
    let body = json!({ "user_id": "alice" });

    let mut first = ServerProcess::start(Some(&db.url), &[]);
    let hold = json_of(
        client
            .post(format!("{}/movies/inception/seats/C3/hold", first.base))
            .json(&body),
    )
    .await;
    let session = hold["session_id"].as_str().unwrap().to_owned();
    let confirm = |base: &str| {
        client
            .put(format!("{base}/sessions/{session}/confirm"))
            .json(&body)
            .send()
    };
    assert_eq!(confirm(&first.base).await.unwrap().status(), StatusCode::OK);

    // No chance to clean up: SIGKILL right after the acknowledgement.
    first.signal("-KILL");
    first.child.wait().unwrap();

    let mut second = ServerProcess::start(Some(&db.url), &[]);
    let map = json_of(client.get(format!("{}/movies/inception/seats", second.base))).await;
    assert_eq!(
        map,
        json!([{ "seat_id": "C3", "user_id": "alice", "booked": true, "confirmed": true }])
    );
    assert_eq!(
        confirm(&second.base).await.unwrap().status(),
        StatusCode::OK
    );

    // SIGTERM is a clean stop.
    second.signal("-TERM");
    let status = second.child.wait().unwrap();
    assert!(status.success(), "graceful shutdown exits 0, got {status}");
}

#[tokio::test]
async fn without_a_database_url_the_server_runs_in_memory() {
    let mut server = ServerProcess::start(None, &[]);
    let response = reqwest::Client::new()
        .post(format!("{}/movies/inception/seats/A1/hold", server.base))
        .json(&json!({"user_id": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    server.signal("-TERM");
    server.wait_for_log("stopped");
    assert!(server.child.wait().unwrap().success());
    let startup = &server.startup;
    assert!(
        startup
            .iter()
            .any(|line| line.contains("in-memory store. Nothing persists")),
        "{startup:#?}"
    );
}

fn run_binary(args: &[&str]) -> std::process::Output {
    common::server_binary()
        .args(args)
        // Were it to start serving, it would fail to bind this rather than run on.
        .env("BIND_ADDR", "256.0.0.1:1")
        .output()
        .expect("run the binary")
}

#[test]
fn help_and_version_print_and_exit_without_serving() {
    let help = run_binary(&["--help"]);
    assert!(help.status.success(), "{help:?}");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("Usage: boxoffice"), "{text}");
    assert!(text.contains("DATABASE_URL"), "{text}");

    let version = run_binary(&["--version"]);
    assert!(version.status.success(), "{version:?}");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("boxoffice {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_unknown_argument_is_a_usage_error() {
    let output = run_binary(&["--port", "9000"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains("unexpected argument '--port'"), "{text}");
}
