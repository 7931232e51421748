//! Hostile input, table-driven, on both stores: malformed, oversized, deeply nested, wrongly
//! typed, unicode-confusable and injection-shaped paths, headers and bodies on every route
//! that takes input. Each gets a 4xx JSON error with a stable code, and nothing changes.

mod common;

use boxoffice::store::{MemoryStore, PgStore};
use common::{LONG_TTL, TestApp, TestDb, json_of, policy, test_config};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const JSON: &str = "application/json";

struct Case {
    method: Method,
    path: String,
    /// `None`: the fixture's valid token; `Some("")`: no Authorization header at all.
    authorization: Option<String>,
    headers: Vec<(&'static str, Vec<u8>)>,
    content_type: Option<&'static str>,
    body: Option<Vec<u8>>,
}

fn case(method: Method, path: impl Into<String>) -> Case {
    Case {
        method,
        path: path.into(),
        authorization: None,
        headers: Vec::new(),
        content_type: None,
        body: None,
    }
}

impl Case {
    fn json(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.content_type = Some(JSON);
        self.body = Some(body.into());
        self
    }

    fn typed(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        self.content_type = Some(content_type);
        self.body = Some(body.into());
        self
    }

    fn auth(mut self, value: impl Into<String>) -> Self {
        self.authorization = Some(value.into());
        self
    }

    fn header(mut self, name: &'static str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn describe(&self) -> String {
        let body = self
            .body
            .as_ref()
            .map(|b| String::from_utf8_lossy(&b[..b.len().min(60)]).into_owned());
        format!(
            "{} {} auth={:?} headers={:?} body={body:?}",
            self.method,
            &self.path[..self.path.len().min(80)],
            self.authorization.as_deref().map(|a| &a[..a.len().min(40)]),
            self.headers
                .iter()
                .map(|(n, v)| (n, String::from_utf8_lossy(&v[..v.len().min(40)])))
                .collect::<Vec<_>>()
        )
    }
}

/// Every hostile request, given a live session of the token's user.
fn table(session: &str) -> Vec<Case> {
    use Method as M;
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let deep_object = format!(
        "{{\"seat_ids\": {}}}",
        "{\"a\":".repeat(2000) + "1" + &"}".repeat(2000)
    );
    let holds = "/api/v1/movies/inception/holds";
    let seed_hold = "/movies/inception/seats/A1/hold";
    let mut cases = vec![
        // Path parameters: control characters, confusables, injection, traversal, size.
        case(M::GET, "/movies/inception%00/seats"),
        case(M::GET, "/api/v1/movies/%00/seats"),
        case(M::GET, "/movies/%EF%BC%A9NCEPTION/seats"), // fullwidth I
        case(M::GET, "/api/v1/movies/incepti%D0%BEn/seats"), // Cyrillic o
        case(M::GET, "/movies/inception'%20OR%20'1'='1/seats"),
        case(
            M::GET,
            "/api/v1/movies/inception;drop%20table%20movies/seats",
        ),
        case(M::GET, format!("/movies/{}/seats", "a".repeat(4000))),
        case(M::GET, "/movies/%C0%AE%C0%AE/seats"), // overlong UTF-8
        case(M::GET, "/movies/inception/events/../../../etc/passwd"),
        case(M::POST, "/movies/inception/seats/A1%00/hold").json(r#"{"user_id":"alice"}"#),
        case(M::POST, "/movies/inception/seats/%EF%BC%A11/hold").json(r#"{"user_id":"alice"}"#),
        case(
            M::POST,
            "/movies/inception/seats/A99999999999999999999/hold",
        )
        .json(r#"{"user_id":"alice"}"#),
        case(M::POST, "/movies/inception/seats/A-1/hold").json(r#"{"user_id":"alice"}"#),
        case(M::POST, "/movies/inception/seats/A1'--/hold").json(r#"{"user_id":"alice"}"#),
        case(M::PUT, "/sessions/not-a-uuid/confirm").json(r#"{"user_id":"alice"}"#),
        case(M::PUT, format!("/sessions/{session}%00/confirm")).json(r#"{"user_id":"alice"}"#),
        case(M::DELETE, "/sessions/'%20or%201=1--").json(r#"{"user_id":"alice"}"#),
        case(
            M::GET,
            "/api/v1/sessions/00000000-0000-0000-0000-000000000000",
        ),
        case(M::POST, format!("/api/v1/sessions/{session}x/confirm")),
        case(M::DELETE, format!("/api/v1/sessions/{}", "9".repeat(5000))),
        case(M::POST, "/api/v1/sessions/%E2%80%AE/extend"),
        case(M::GET, "/reports/..%2F..%2Fetc%2Fpasswd"),
        case(M::GET, "/reports/ledger?movie=inception%00"),
        case(M::GET, "/reports/ledger?movie[]=a&movie[]=b"),
        case(M::GET, "/nope%00"),
        // Tokens.
        case(M::GET, "/api/v1/me/sessions").auth(""),
        case(M::GET, "/api/v1/me/sessions").auth("Bearer"),
        case(M::GET, "/api/v1/me/sessions").auth("Bearer "),
        case(M::GET, "/api/v1/me/sessions").auth("Basic YWxpY2U6c2VjcmV0"),
        case(M::GET, "/api/v1/me/sessions").auth("Bearer v1.x.y"),
        case(M::GET, "/api/v1/me/sessions").auth(format!("Bearer v1.{}.AAAA", "0".repeat(32))),
        case(M::GET, "/api/v1/me/sessions").auth(format!("Bearer {}", "A".repeat(8000))),
        case(M::GET, "/api/v1/me/sessions").auth("Bearer v1.'or'1'='1.x"),
        case(M::POST, holds)
            .auth("Bearer v1.\u{0430}\u{0430}.\u{202e}")
            .json(r#"{"quantity":1}"#),
        // Idempotency keys.
        case(M::POST, holds)
            .header("idempotency-key", "")
            .json(r#"{"quantity":1}"#),
        case(M::POST, holds)
            .header("idempotency-key", "k".repeat(300))
            .json(r#"{"quantity":1}"#),
        case(M::POST, holds)
            .header("idempotency-key", "two words")
            .json(r#"{"quantity":1}"#),
        case(M::POST, holds)
            .header("idempotency-key", "k\u{e9}y".as_bytes())
            .json(r#"{"quantity":1}"#),
        case(M::POST, holds)
            .header("idempotency-key", b"tab\tkey".to_vec())
            .json(r#"{"quantity":1}"#),
        // Content types.
        case(M::POST, holds).typed("text/plain", r#"{"quantity":1}"#),
        case(M::POST, holds).typed("application/jsonx", r#"{"quantity":1}"#),
        case(M::POST, holds).typed("application/x-www-form-urlencoded", "quantity=1"),
        case(M::POST, seed_hold).typed("multipart/form-data; boundary=x", "--x--"),
        case(M::POST, seed_hold),
        // Content codings the server does not decode, with a body that is plain.
        case(M::POST, seed_hold)
            .header("content-encoding", "gzip")
            .json(r#"{"user_id":"alice"}"#),
        case(M::POST, holds)
            .header("content-encoding", "br")
            .json(r#"{"seat_ids":["A3"]}"#),
        // Headers that must come once, twice: which one counts would be a guess.
        case(M::POST, holds)
            .header("authorization", "Bearer not-a-token")
            .json(r#"{"seat_ids":["A3"]}"#),
        case(M::POST, holds)
            .header("content-type", "text/plain")
            .json(r#"{"seat_ids":["A3"]}"#),
        case(M::POST, holds)
            .header("idempotency-key", "one")
            .header("idempotency-key", "two")
            .json(r#"{"seat_ids":["A3"]}"#),
        case(M::POST, seed_hold)
            .header("host", "127.0.0.1")
            .header("host", "elsewhere.example")
            .json(r#"{"user_id":"alice"}"#),
        // A body declared over the limit, refused before it is read.
        case(M::POST, seed_hold)
            .header("expect", "100-continue")
            .json(format!(r#"{{"user_id":"{}"}}"#, "a".repeat(20_000))),
    ];
    // Bodies, on both hold routes.
    let bodies: Vec<Vec<u8>> = [
        "",
        "{",
        "null",
        "[]",
        r#"["alice"]"#,
        r#"[["A3"]]"#,
        r#"[2]"#,
        "\"str\"",
        "123",
        "{\"quantity\":1,}",
        "\u{feff}{\"quantity\":1}",
        r#"{"seat_ids":"A1"}"#,
        r#"{"seat_ids":[1,2]}"#,
        r#"{"seat_ids":[]}"#,
        r#"{"seat_ids":null}"#,
        r#"{"seat_ids":["A1","A1"]}"#,
        r#"{"seat_ids":["A1"],"quantity":1}"#,
        r#"{"seat_ids":["A1"],"admin":true}"#,
        r#"{"seat_ids":["\uff211"]}"#,
        r#"{"seat_ids":["A1\u0000"]}"#,
        r#"{"seat_ids":["A1'; drop table seat_holds;--"]}"#,
        r#"{"seat_ids":["Z1"]}"#,
        r#"{"quantity":"2"}"#,
        r#"{"quantity":-1}"#,
        r#"{"quantity":0}"#,
        r#"{"quantity":1e100}"#,
        r#"{"quantity":18446744073709551616}"#,
        r#"{"quantity":1,"quantity":8}"#,
        r#"{"quantity":1.5}"#,
        r#"{"user_id":""}"#,
        r#"{"user_id":5}"#,
        r#"{"user_id":["alice"]}"#,
        r#"{"user_id":"al\u0000ice"}"#,
        r#"{"user_id":"alice\u202e"}"#,
        r#"{"user_id":"\uff21lice"}"#,
        r#"{"user_id":"alice' OR '1'='1"}"#,
    ]
    .iter()
    .map(|body| body.as_bytes().to_vec())
    .chain([
        format!("{{\"user_id\":\"{}\"}}", "a".repeat(65)).into_bytes(),
        nested(5000).into_bytes(),
        format!("{{\"seat_ids\":{}}}", nested(3000)).into_bytes(),
        deep_object.into_bytes(),
        format!("{{\"seat_ids\":[{}]}}", vec!["\"A1\""; 4000].join(",")).into_bytes(),
        vec![0xff, 0xfe, 0x00, 0x7b],
    ])
    .collect();
    for body in bodies {
        cases.push(case(M::POST, holds).json(body.clone()));
        cases.push(case(M::POST, seed_hold).json(body));
    }
    cases
}

async fn send(app: &TestApp, token: &str, case: &Case) -> reqwest::Response {
    let mut request = app.client.request(case.method.clone(), app.url(&case.path));
    match case.authorization.as_deref() {
        None => request = request.bearer_auth(token),
        Some("") => {}
        Some(value) => {
            let value = reqwest::header::HeaderValue::from_bytes(value.as_bytes()).unwrap();
            request = request.header("authorization", value);
        }
    }
    for (name, value) in &case.headers {
        let value = reqwest::header::HeaderValue::from_bytes(value).unwrap();
        request = request.header(*name, value);
    }
    if let Some(content_type) = case.content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(body) = &case.body {
        request = request.body(body.clone());
    }
    request.send().await.expect("an answer")
}

/// What a hostile request must leave as it was: every movie's seat map, the user's sessions,
/// and, on PostgreSQL, every table a change writes.
async fn state(app: &TestApp, token: &str, db: Option<&TestDb>) -> Value {
    let mut maps = Vec::new();
    for movie in ["inception", "dune-part-two", "the-grand-budapest-hotel"] {
        maps.push(json_of(app.client.get(app.url(&format!("/movies/{movie}/seats")))).await);
    }
    let sessions = json_of(
        app.client
            .get(app.url("/api/v1/me/sessions"))
            .bearer_auth(token),
    )
    .await;
    let rows = match db {
        Some(db) => {
            let pool = db.pool(1).await;
            let counts: (i64, i64, i64, i64) = sqlx::query_as(
                "select (select count(*) from seat_holds), (select count(*) from hold_sessions),
                        (select count(*) from idempotency_keys),
                        (select count(*) from booking_events)",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            json!([counts.0, counts.1, counts.2, counts.3])
        }
        None => Value::Null,
    };
    json!({ "maps": maps, "sessions": sessions, "rows": rows })
}

async fn hostile_input_changes_nothing(app: TestApp, db: Option<TestDb>) {
    let identity = json_of(app.client.post(app.url("/api/v1/identities"))).await;
    let token = identity["token"].as_str().unwrap().to_owned();
    let hold = json_of(
        app.client
            .post(app.url("/api/v1/movies/inception/holds"))
            .bearer_auth(&token)
            .json(&json!({ "seat_ids": ["C3", "C4"] })),
    )
    .await;
    let session = hold["session_id"].as_str().unwrap().to_owned();
    let before = state(&app, &token, db.as_ref()).await;
    let cases = table(&session);
    let mut failures = Vec::new();
    for case in &cases {
        let response = send(&app, &token, case).await;
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or_default().to_owned());
        let body: Option<Value> = response.json().await.ok();
        let code = body
            .as_ref()
            .and_then(|b| b["code"].as_str())
            .unwrap_or_default()
            .to_owned();
        let stable = !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        if !status.is_client_error() || content_type.as_deref() != Some(JSON) || !stable {
            failures.push(format!(
                "{} → {status} {content_type:?} {body:?}",
                case.describe()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(
        state(&app, &token, db.as_ref()).await,
        before,
        "hostile input changed something"
    );
    // And the session is still its owner's to confirm.
    let confirmed = app
        .client
        .post(app.url(&format!("/api/v1/sessions/{session}/confirm")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), StatusCode::OK);
}

fn config() -> boxoffice::Config {
    let mut config = test_config();
    config.reports_token = Some(boxoffice::config::Secret::new(
        "reports-token-0123456789".into(),
    ));
    config
}

#[tokio::test]
async fn on_the_memory_store_hostile_input_gets_a_json_4xx_and_changes_nothing() {
    let app = TestApp::spawn(MemoryStore::new(policy(LONG_TTL, 8)), config()).await;
    hostile_input_changes_nothing(app, None).await;
}

#[tokio::test]
async fn on_postgres_hostile_input_gets_a_json_4xx_and_changes_nothing() {
    let db = TestDb::new().await;
    let store: PgStore = db.store(policy(LONG_TTL, 8), 8).await;
    let app = TestApp::spawn(store, config()).await;
    hostile_input_changes_nothing(app, Some(db)).await;
}
