//! The HTTP API over the real router and a real client, backed by PostgreSQL: every route,
//! every status code, and every kind of bad input.

mod common;

use std::time::Duration;

use boxoffice::store::PgStore;
use boxoffice::store::postgres::Pooler;
use common::pgbouncer::PgBouncer;
use common::{LONG_TTL, SHORT_TTL, TestApp, TestDb, assert_error, metric, policy, test_config};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};
use sqlx::Connection;

struct Fixture {
    app: TestApp,
    db: TestDb,
}

async fn fixture_with(ttl: Duration, limit: u32) -> Fixture {
    let db = TestDb::new().await;
    let store = db.store(policy(ttl, limit), 8).await;
    let mut config = test_config();
    config.hold = policy(ttl, limit);
    Fixture {
        app: TestApp::spawn(store, config).await,
        db,
    }
}

async fn fixture() -> Fixture {
    fixture_with(LONG_TTL, 8).await
}

impl Fixture {
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self.app.client.request(method, self.app.url(path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request")
    }

    async fn hold(&self, movie: &str, seat: &str, user: &str) -> reqwest::Response {
        let path = format!("/movies/{movie}/seats/{seat}/hold");
        self.send(Method::POST, &path, Some(json!({ "user_id": user })))
            .await
    }

    async fn held(&self, movie: &str, seat: &str, user: &str) -> Value {
        let response = self.hold(movie, seat, user).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        response.json().await.unwrap()
    }

    async fn confirm(&self, session: &str, user: &str) -> reqwest::Response {
        let path = format!("/sessions/{session}/confirm");
        self.send(Method::PUT, &path, Some(json!({ "user_id": user })))
            .await
    }

    async fn release(&self, session: &str, user: &str) -> reqwest::Response {
        let path = format!("/sessions/{session}");
        self.send(Method::DELETE, &path, Some(json!({ "user_id": user })))
            .await
    }

    async fn seat_map(&self, movie: &str) -> Value {
        let response = self
            .send(Method::GET, &format!("/movies/{movie}/seats"), None)
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    /// `body` as JSON with extra `headers`, sent as is.
    async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(header::HeaderName, &str)],
        body: &str,
    ) -> reqwest::Response {
        let mut request = self
            .app
            .client
            .request(method, self.app.url(path))
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_owned());
        for (name, value) in headers {
            request = request.header(name, *value);
        }
        request.send().await.expect("request")
    }

    /// A new API identity's token.
    async fn api_token(&self) -> String {
        let response = self.send(Method::POST, "/api/v1/identities", None).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let identity: Value = response.json().await.unwrap();
        identity["token"].as_str().unwrap().to_owned()
    }

    /// Rows in both booking tables: bad input must leave both untouched.
    async fn row_counts(&self) -> (i64, i64) {
        let pool = self.db.pool(1).await;
        sqlx::query_as(
            "select (select count(*) from seat_holds), (select count(*) from hold_sessions)",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    }
}

fn session_id(hold: &Value) -> &str {
    hold["session_id"].as_str().unwrap()
}

#[tokio::test]
async fn movies_are_listed_with_their_room_size() {
    let f = fixture().await;
    let response = f.send(Method::GET, "/movies", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let movies: Value = response.json().await.unwrap();
    let inception = movies
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "inception")
        .expect("inception is seeded");
    assert_eq!(
        inception,
        &json!({"id": "inception", "title": "Inception", "rows": 5, "seats_per_row": 8})
    );
    assert_eq!(movies.as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_hold_answers_201_with_the_session_and_its_deadline() {
    let f = fixture().await;
    let response = f.hold("inception", "C7", "alice").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 5, "{body}");
    for key in [
        "session_id",
        "movie_id",
        "seat_id",
        "expires_at",
        "server_time",
    ] {
        assert!(keys.contains(&key), "{key} missing from {body}");
    }
    assert_eq!(body["movie_id"], "inception");
    assert_eq!(body["seat_id"], "C7");
    uuid::Uuid::parse_str(session_id(&body)).unwrap();
    let at = |key: &str| chrono::DateTime::parse_from_rfc3339(body[key].as_str().unwrap()).unwrap();
    assert_eq!(
        (at("expires_at") - at("server_time")).to_std().unwrap(),
        LONG_TTL
    );

    // The map shows the seat, without the session id.
    assert_eq!(
        f.seat_map("inception").await,
        json!([{"seat_id": "C7", "user_id": "alice", "booked": true, "confirmed": false}])
    );
}

#[tokio::test]
async fn a_held_seat_answers_409_seat_taken() {
    let f = fixture().await;
    f.held("inception", "A1", "alice").await;
    let body = assert_error(
        f.hold("inception", "A1", "bob").await,
        StatusCode::CONFLICT,
        "seat_taken",
    )
    .await;
    assert_eq!(body["seats"], json!(["A1"]));
    assert_eq!(body["error"], "seat A1 is already taken");
}

#[tokio::test]
async fn confirm_answers_200_and_again_200() {
    let f = fixture().await;
    let hold = f.held("inception", "B2", "alice").await;
    let expected = json!({
        "session_id": session_id(&hold), "movie_id": "inception", "seat_id": "B2",
        "user_id": "alice", "status": "confirmed",
    });
    for _ in 0..2 {
        let response = f.confirm(session_id(&hold), "alice").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.json::<Value>().await.unwrap(), expected);
    }
    assert_eq!(
        f.seat_map("inception").await,
        json!([{"seat_id": "B2", "user_id": "alice", "booked": true, "confirmed": true}])
    );
    assert_error(
        f.hold("inception", "B2", "bob").await,
        StatusCode::CONFLICT,
        "seat_taken",
    )
    .await;
    assert_error(
        f.release(session_id(&hold), "alice").await,
        StatusCode::CONFLICT,
        "already_confirmed",
    )
    .await;
}

#[tokio::test]
async fn release_answers_204_and_frees_the_seat() {
    let f = fixture().await;
    let hold = f.held("inception", "B3", "alice").await;
    let response = f.release(session_id(&hold), "alice").await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(f.seat_map("inception").await, json!([]));
    assert_error(
        f.confirm(session_id(&hold), "alice").await,
        StatusCode::GONE,
        "hold_released",
    )
    .await;
    f.held("inception", "B3", "bob").await;
}

#[tokio::test]
async fn someone_elses_session_answers_404_and_changes_nothing() {
    let f = fixture().await;
    let hold = f.held("inception", "D4", "alice").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for response in [
        f.confirm(session_id(&hold), "mallory").await,
        f.release(session_id(&hold), "mallory").await,
        f.confirm(&unknown, "alice").await,
        f.release(&unknown, "alice").await,
    ] {
        assert_error(response, StatusCode::NOT_FOUND, "session_not_found").await;
    }
    assert_eq!(
        f.seat_map("inception").await,
        json!([{"seat_id": "D4", "user_id": "alice", "booked": true, "confirmed": false}])
    );
    assert_eq!(
        f.confirm(session_id(&hold), "alice").await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_expired_hold_answers_410_and_the_seat_is_free() {
    let f = fixture_with(SHORT_TTL, 8).await;
    let hold = f.held("inception", "E1", "alice").await;
    let at = |key: &str| chrono::DateTime::parse_from_rfc3339(hold[key].as_str().unwrap()).unwrap();
    common::wait_until_lapsed(at("server_time").to_utc(), at("expires_at").to_utc()).await;
    assert_eq!(f.seat_map("inception").await, json!([]));
    assert_error(
        f.confirm(session_id(&hold), "alice").await,
        StatusCode::GONE,
        "hold_expired",
    )
    .await;
    assert_error(
        f.release(session_id(&hold), "alice").await,
        StatusCode::GONE,
        "hold_expired",
    )
    .await;
    f.held("inception", "E1", "bob").await;
}

#[tokio::test]
async fn the_hold_limit_answers_429() {
    let f = fixture_with(LONG_TTL, 2).await;
    f.held("inception", "A1", "alice").await;
    f.held("dune-part-two", "A1", "alice").await;
    let body = assert_error(
        f.hold("inception", "A2", "alice").await,
        StatusCode::TOO_MANY_REQUESTS,
        "hold_limit",
    )
    .await;
    assert_eq!(body["error"], "you can hold at most 2 seats at once");
    f.held("inception", "A2", "bob").await;
}

#[tokio::test]
async fn an_unchanged_seat_map_answers_304_until_a_hold_comes_or_goes() {
    let f = fixture_with(SHORT_TTL, 8).await;
    let get = |tag: Option<String>| {
        let mut request = f.app.client.get(f.app.url("/movies/inception/seats"));
        if let Some(tag) = tag {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        request.send()
    };
    let etag = |response: &reqwest::Response| {
        response.headers()[header::ETAG]
            .to_str()
            .unwrap()
            .to_owned()
    };

    let empty = get(None).await.unwrap();
    assert_eq!(empty.status(), StatusCode::OK);
    let empty_tag = etag(&empty);
    let again = get(Some(empty_tag.clone())).await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(etag(&again), empty_tag);
    assert!(again.bytes().await.unwrap().is_empty());

    // A hold changes the map, and so the tag.
    let hold = f.held("inception", "A1", "alice").await;
    let held = get(Some(empty_tag.clone())).await.unwrap();
    assert_eq!(held.status(), StatusCode::OK);
    let held_tag = etag(&held);
    assert_ne!(held_tag, empty_tag);
    assert_eq!(
        held.json::<Value>()
            .await
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let list = format!("\"other\", {held_tag}");
    assert_eq!(
        get(Some(list)).await.unwrap().status(),
        StatusCode::NOT_MODIFIED
    );

    // When the hold expires, nothing is written, yet the map and its tag change back.
    let at = |key: &str| chrono::DateTime::parse_from_rfc3339(hold[key].as_str().unwrap()).unwrap();
    common::wait_until_lapsed(at("server_time").to_utc(), at("expires_at").to_utc()).await;
    let lapsed = get(Some(held_tag)).await.unwrap();
    assert_eq!(lapsed.status(), StatusCode::OK);
    assert_eq!(etag(&lapsed), empty_tag);
}

#[tokio::test]
async fn unknown_movies_and_seats_answer_404() {
    let f = fixture().await;
    assert_error(
        f.send(Method::GET, "/movies/no-such-film/seats", None)
            .await,
        StatusCode::NOT_FOUND,
        "movie_not_found",
    )
    .await;
    assert_error(
        f.hold("no-such-film", "A1", "alice").await,
        StatusCode::NOT_FOUND,
        "movie_not_found",
    )
    .await;
    for outside in ["Z9", "F1", "A9", "E10"] {
        assert_error(
            f.hold("inception", outside, "alice").await,
            StatusCode::NOT_FOUND,
            "seat_not_found",
        )
        .await;
    }
    assert_eq!(f.row_counts().await, (0, 0));
}

#[tokio::test]
async fn a_control_character_in_a_path_or_query_answers_400_before_reaching_postgres() {
    let f = fixture().await;
    for path in [
        "/movies/inception%00/seats",
        "/api/v1/movies/inception%00/seats",
        "/movies/inception/seats/A1%00/hold",
        "/movies/inception%0a/events",
        "/reports/ledger?movie=inception%00",
        "/a%7f",
    ] {
        assert_error(
            f.send(Method::GET, path, None).await,
            StatusCode::BAD_REQUEST,
            "invalid_target",
        )
        .await;
    }
    let hold = f
        .send(
            Method::POST,
            "/movies/inc%00eption/seats/A1/hold",
            Some(json!({ "user_id": "alice" })),
        )
        .await;
    assert_error(hold, StatusCode::BAD_REQUEST, "invalid_target").await;
    assert_eq!(f.row_counts().await, (0, 0));
}

#[tokio::test]
async fn bad_input_answers_a_json_error_and_changes_nothing() {
    let f = fixture().await;
    let hold_a1 = "/movies/inception/seats/A1/hold";
    let post_raw = |path: &str, content_type: Option<&str>, body: &str| {
        let mut request = f.app.client.post(f.app.url(path)).body(body.to_owned());
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        request.send()
    };
    let json = Some("application/json");

    for malformed in ["{", "{\"user_id\": }", "user_id=alice", ""] {
        let response = post_raw(hold_a1, json, malformed).await.unwrap();
        assert_error(response, StatusCode::BAD_REQUEST, "malformed_json").await;
    }
    for (body, code) in [
        (json!({}), "invalid_body"),
        (json!({"user_id": "alice", "admin": true}), "invalid_body"),
        (json!({"user_id": 7}), "invalid_body"),
        (json!({"user_id": null}), "invalid_body"),
        (json!({"user_id": ""}), "invalid_user_id"),
        (json!({"user_id": "a".repeat(65)}), "invalid_user_id"),
        (json!({"user_id": "alice smith"}), "invalid_user_id"),
        (
            json!({"user_id": "x'; drop table seat_holds; --"}),
            "invalid_user_id",
        ),
    ] {
        let response = f.send(Method::POST, hold_a1, Some(body)).await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, code).await;
    }
    for seat in [
        "A0",
        "A01",
        "a1",
        "A1;--",
        "A1%27%20or%201=1",
        "AA",
        "%C3%841",
    ] {
        let response = f.hold("inception", seat, "alice").await;
        assert_error(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_seat_id",
        )
        .await;
    }
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let response = post_raw(hold_a1, content_type, r#"{"user_id":"alice"}"#)
            .await
            .unwrap();
        assert_error(
            response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
    }
    let huge = format!(r#"{{"user_id":"{}"}}"#, "a".repeat(64 * 1024));
    let response = post_raw(hold_a1, json, &huge).await.unwrap();
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;

    for session in ["not-a-uuid", "1234", "00000000-0000-0000-0000-00000000000g"] {
        assert_error(
            f.confirm(session, "alice").await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_session_id",
        )
        .await;
        assert_error(
            f.release(session, "alice").await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_session_id",
        )
        .await;
    }
    assert_eq!(f.row_counts().await, (0, 0));
    assert_eq!(f.seat_map("inception").await, json!([]));
}

/// serde's derived structs take a sequence field by field: `["alice"]` would be
/// `{"user_id": "alice"}`, `[["A3"]]` `{"seat_ids": ["A3"]}`.
#[tokio::test]
async fn json_that_is_not_an_object_answers_422_on_every_route_with_a_body() {
    let f = fixture().await;
    let hold = f.held("inception", "A2", "alice").await;
    let session = session_id(&hold).to_owned();
    let token = f.api_token().await;
    let routes = [
        (Method::POST, "/movies/inception/seats/A1/hold".to_owned()),
        (Method::PUT, format!("/sessions/{session}/confirm")),
        (Method::DELETE, format!("/sessions/{session}")),
    ];
    for (method, path) in &routes {
        for body in [
            r#"["alice"]"#,
            r#"[["A3"]]"#,
            "[]",
            r#""alice""#,
            "null",
            "7",
        ] {
            let response = f.raw(method.clone(), path, &[], body).await;
            assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
        }
        let response = f.raw(method.clone(), path, &[], r#"["alice""#).await;
        assert_error(response, StatusCode::BAD_REQUEST, "malformed_json").await;
    }
    let bearer = format!("Bearer {token}");
    let auth = [(header::AUTHORIZATION, bearer.as_str())];
    for body in [r#"[["A3"]]"#, r#"[null, 2]"#, "[]"] {
        let response = f
            .raw(Method::POST, "/api/v1/movies/inception/holds", &auth, body)
            .await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    }
    assert_eq!(f.row_counts().await, (1, 1), "only alice's hold of A2");
    assert_eq!(f.seat_map("inception").await.as_array().unwrap().len(), 1);
}

/// The server decodes no content coding: a body sent as gzip (or anything but identity) is
/// refused rather than read as if it were plain.
#[tokio::test]
async fn a_body_in_a_content_coding_answers_415_and_changes_nothing() {
    let f = fixture().await;
    let hold = f.held("inception", "A2", "alice").await;
    let session = session_id(&hold).to_owned();
    let token = format!("Bearer {}", f.api_token().await);
    let user = r#"{"user_id":"alice"}"#;
    let cases = [
        (
            Method::POST,
            "/movies/inception/seats/A1/hold".to_owned(),
            user,
            None,
        ),
        (
            Method::PUT,
            format!("/sessions/{session}/confirm"),
            user,
            None,
        ),
        (Method::DELETE, format!("/sessions/{session}"), user, None),
        (
            Method::POST,
            "/api/v1/movies/inception/holds".to_owned(),
            r#"{"seat_ids":["A3"]}"#,
            Some(token.as_str()),
        ),
    ];
    for (method, path, body, auth) in &cases {
        for coding in ["gzip", "br", "deflate, gzip", "identity, gzip", "x-custom"] {
            let mut headers = vec![(header::CONTENT_ENCODING, coding)];
            headers.extend(auth.map(|a| (header::AUTHORIZATION, a)));
            let response = f.raw(method.clone(), path, &headers, body).await;
            assert_eq!(
                response.headers().get(header::ACCEPT_ENCODING).unwrap(),
                "identity",
                "{method} {path} {coding}"
            );
            assert_error(
                response,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_content_encoding",
            )
            .await;
        }
    }
    assert_eq!(f.row_counts().await, (1, 1), "only alice's hold of A2");
    // Identity is no coding at all.
    let identity = [(header::CONTENT_ENCODING, "identity")];
    let path = "/movies/inception/seats/A1/hold";
    let response = f.raw(Method::POST, path, &identity, user).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_json() {
    let f = fixture().await;
    for path in [
        "/nope",
        "/movies/inception/seats/A1",
        "/sessions",
        "/static/../Cargo.toml",
    ] {
        assert_error(
            f.send(Method::GET, path, None).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
    for (method, path) in [
        (Method::GET, "/movies/inception/seats/A1/hold"),
        (Method::DELETE, "/movies"),
        (
            Method::POST,
            "/sessions/00000000-0000-0000-0000-000000000000/confirm",
        ),
        (Method::PUT, "/healthz"),
    ] {
        assert_error(
            f.send(method, path, None).await,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        )
        .await;
    }
}

#[tokio::test]
async fn the_page_is_served_at_the_root() {
    let f = fixture().await;
    let response = f.send(Method::GET, "/", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let headers = response.headers().clone();
    assert!(response.text().await.unwrap().contains("<title>boxoffice"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let policy = headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self';"), "{policy}");
    assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    for asset in ["/app.js", "/style.css"] {
        assert_eq!(
            f.send(Method::GET, asset, None).await.status(),
            StatusCode::OK,
            "{asset}"
        );
    }
}

/// The tutorial's page, served from STATIC_DIR, runs its inline `<script>` and `<style>`:
/// its policy lists their hashes (never `'unsafe-inline'`), while our page keeps the strict
/// one (`the_page_is_served_at_the_root`). The browser test drives it.
#[tokio::test]
async fn a_page_with_inline_blocks_is_allowed_exactly_those_blocks() {
    use base64::Engine;
    use sha2::Digest;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tutorial-page");
    let page = std::fs::read_to_string(dir.join("index.html")).unwrap();
    let between = |open: &str, close: &str| {
        let start = page.find(open).unwrap() + open.len();
        let hash = sha2::Sha256::digest(&page.as_bytes()[start..page.find(close).unwrap()]);
        format!(
            "'sha256-{}'",
            base64::engine::general_purpose::STANDARD.encode(hash)
        )
    };
    let (script, style) = (
        between("<script>", "</script>"),
        between("<style>", "</style>"),
    );
    let db = TestDb::new().await;
    let mut config = test_config();
    config.static_dir = dir;
    let app = TestApp::spawn(db.store(policy(LONG_TTL, 8), 8).await, config).await;

    // Even asked as a cache would revalidate it: a 304 would carry a policy made without the page.
    for revalidate in [false, true] {
        let mut request = app.client.get(app.url("/"));
        if revalidate {
            request = request
                .header(header::IF_MODIFIED_SINCE, "Wed, 01 Jan 2099 00:00:00 GMT")
                .header(header::RANGE, "bytes=0-9");
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let policy = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            policy.contains(&format!("script-src 'self' {script};")),
            "{policy}"
        );
        assert!(
            policy.contains(&format!("style-src 'self' {style};")),
            "{policy}"
        );
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        assert!(!policy.contains("unsafe"), "{policy}");
        assert_eq!(response.text().await.unwrap(), page);
    }
    // Anything else from the folder keeps the strict policy.
    let response = app.client.get(app.url("/missing.js")).send().await.unwrap();
    let policy = response.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(policy.contains("script-src 'self';"), "{policy}");
}

#[tokio::test]
async fn health_and_readiness_answer_when_the_database_is_up() {
    let f = fixture().await;
    for (path, status) in [("/healthz", "ok"), ("/readyz", "ready")] {
        let response = f.send(Method::GET, path, None).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.json::<Value>().await.unwrap(),
            json!({ "status": status })
        );
    }
}

/// A server whose database is not there at all (nothing listens on its port).
async fn app_without_database() -> TestApp {
    let port = common::free_port();
    let mut config = test_config();
    config.pool.acquire_timeout = Duration::from_millis(300);
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(config.pool.acquire_timeout)
        .connect_lazy(&url)
        .unwrap();
    let store = PgStore::new(pool, config.hold);
    TestApp::spawn(store, config).await
}

async fn assert_unavailable(response: reqwest::Response, code: &str) {
    let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
    assert_error(response, StatusCode::SERVICE_UNAVAILABLE, code).await;
    assert_eq!(retry_after.unwrap(), "1");
}

#[tokio::test]
async fn an_unreachable_database_answers_503_with_retry_after() {
    let app = app_without_database().await;
    let hold = app
        .client
        .post(app.url("/movies/inception/seats/A1/hold"))
        .json(&json!({"user_id": "alice"}))
        .send()
        .await
        .unwrap();
    assert_unavailable(hold, "service_unavailable").await;
    for path in ["/movies", "/readyz"] {
        assert_unavailable(
            app.client.get(app.url(path)).send().await.unwrap(),
            "service_unavailable",
        )
        .await;
    }
    let live = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
}

/// The server on `db` as it connects in production (`PgStore::connect`), with `config`'s pool.
async fn connected_app(db: &TestDb, config: boxoffice::Config) -> TestApp {
    let store = PgStore::connect(
        &db.url,
        None,
        &config.pool,
        config.hold,
        config.hold_queue(),
    )
    .await
    .unwrap();
    TestApp::spawn(store, config).await
}

/// The pool hands out a connection in use a moment ago unchecked, but checks one that sat
/// idle: one the database ended meanwhile (a restart, an idle timeout) is replaced, and the
/// request it would have served is answered, not refused.
#[tokio::test]
async fn a_connection_ended_while_idle_is_replaced_not_a_503() {
    let db = TestDb::new().await;
    let mut config = test_config();
    config.pool.max_connections = 1;
    let app = connected_app(&db, config).await;
    let map = || app.client.get(app.url("/movies/inception/seats")).send();
    assert_eq!(map().await.unwrap().status(), StatusCode::OK);
    let mut admin = sqlx::PgConnection::connect(&common::admin_url())
        .await
        .unwrap();
    let ended: Vec<bool> = sqlx::query_scalar(
        "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1",
    )
    .bind(&db.name)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    // The pool's one connection, and the change feed's.
    assert!(ended.iter().all(|&e| e) && !ended.is_empty(), "{ended:?}");
    // What is awaited is time itself: the connection has to have been idle long enough to be
    // checked (`CHECK_IDLE_AFTER` in the store).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let response = map().await.unwrap();
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        response.text().await.unwrap()
    );
}

#[tokio::test]
async fn a_database_refusing_connections_answers_503() {
    let db = TestDb::new().await;
    let mut config = test_config();
    config.pool.acquire_timeout = Duration::from_millis(300);
    let app = connected_app(&db, config).await;
    let mut admin = sqlx::PgConnection::connect(&common::admin_url())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "alter database {} allow_connections false",
        db.name
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    // The server's pool may already hold a connection (migrations used one): end it.
    sqlx::query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1")
        .bind(&db.name)
        .execute(&mut admin)
        .await
        .unwrap();
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_unavailable(response, "service_unavailable").await;
}

#[tokio::test]
async fn an_exhausted_pool_answers_503_with_retry_after() {
    let db = TestDb::new().await;
    let mut config = test_config();
    config.pool.acquire_timeout = Duration::from_millis(300);
    let response = seat_map_with_the_only_connection_taken(&db, config).await;
    assert_unavailable(response, "service_unavailable").await;
}

/// Asks for a seat map from a server whose pool has one connection, taken meanwhile.
async fn seat_map_with_the_only_connection_taken(
    db: &TestDb,
    config: boxoffice::Config,
) -> reqwest::Response {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(config.pool.acquire_timeout)
        .connect_with(db.options())
        .await
        .unwrap();
    let app = TestApp::spawn(PgStore::new(pool.clone(), config.hold), config).await;
    let _taken = pool.acquire().await.unwrap();
    app.client
        .get(app.url("/movies/inception/seats"))
        .send()
        .await
        .unwrap()
}

/// Opens a transaction that has inserted seat A1 of inception and not committed, so a hold
/// on A1 waits for it.
async fn block_seat_a1(db: &TestDb) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let pool = db.pool(2).await;
    let mut blocker = pool.begin().await.unwrap();
    let session = uuid::Uuid::new_v4();
    sqlx::query(
        "insert into hold_sessions (id, movie_id, user_id, seat_count, expires_at)
         values ($1, 'inception', 'blocker', 1, now() + interval '1 minute')",
    )
    .bind(session)
    .execute(&mut *blocker)
    .await
    .unwrap();
    sqlx::query(
        "insert into seat_holds (movie_id, seat_id, session_id, user_id, expires_at)
         values ('inception', 'A1', $1, 'blocker', now() + interval '1 minute')",
    )
    .bind(session)
    .execute(&mut *blocker)
    .await
    .unwrap();
    blocker
}

/// Its requests time out after 300 ms; the database's deadlines are longer, as they would be
/// only if set wrong, so that the request timeout is what ends a request.
fn impatient_config() -> boxoffice::Config {
    let mut config = test_config();
    config.request_timeout = Duration::from_millis(300);
    config
}

#[tokio::test]
async fn a_change_cut_short_by_the_request_timeout_answers_503_outcome_unknown() {
    let db = TestDb::new().await;
    let config = impatient_config();
    let app = TestApp::spawn(db.store(config.hold, 4).await, config).await;
    let blocker = block_seat_a1(&db).await;
    let response = app
        .client
        .post(app.url("/movies/inception/seats/A1/hold"))
        .json(&json!({"user_id": "alice"}))
        .send()
        .await
        .unwrap();
    // The hold was under way, waiting for the seat: once the blocker gives up it gets it, so
    // "it failed" would have been a lie.
    assert_unavailable(response, "outcome_unknown").await;
    blocker.rollback().await.unwrap();
}

#[tokio::test]
async fn a_read_that_runs_too_long_answers_503_timeout() {
    let db = TestDb::new().await;
    let mut config = impatient_config();
    config.pool.acquire_timeout = Duration::from_secs(30);
    let response = seat_map_with_the_only_connection_taken(&db, config).await;
    assert_unavailable(response, "timeout").await;
}

/// `behind_pgbouncer`: the pool goes through PgBouncer in transaction mode, where the
/// timeout is set in every transaction rather than at connection start-up.
async fn a_statement_that_waits_too_long(behind_pgbouncer: bool) {
    let db = TestDb::new().await;
    let mut config = test_config();
    config.pool.statement_timeout = Duration::from_millis(300);
    let (url, direct_url) = if behind_pgbouncer {
        config.pool.pooler = Pooler::Transaction;
        (PgBouncer::get().url(&db), Some(db.url.as_str()))
    } else {
        (db.url.clone(), None)
    };
    let store = PgStore::connect(
        &url,
        direct_url,
        &config.pool,
        config.hold,
        config.hold_queue(),
    )
    .await
    .unwrap();
    let app = TestApp::spawn(store, config).await;
    let blocker = block_seat_a1(&db).await;
    let response = app
        .client
        .post(app.url("/movies/inception/seats/A1/hold"))
        .json(&json!({"user_id": "alice"}))
        .send()
        .await
        .unwrap();
    assert_unavailable(response, "service_unavailable").await;
    // Once the blocker gives up, the seat is free again.
    blocker.rollback().await.unwrap();
    let response = app
        .client
        .post(app.url("/movies/inception/seats/A1/hold"))
        .json(&json!({"user_id": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn connections_run_with_a_statement_a_lock_and_an_idle_transaction_timeout() {
    let db = TestDb::new().await;
    let options = boxoffice::store::postgres::bounded(db.options(), Duration::from_millis(1500));
    let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
    for name in [
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
    ] {
        let value: String = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("show {name}")))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(value, "1500ms", "{name}");
    }
}

#[tokio::test]
async fn a_statement_that_waits_too_long_answers_503() {
    a_statement_that_waits_too_long(false).await;
}

#[tokio::test]
async fn behind_pgbouncer_a_statement_that_waits_too_long_answers_503() {
    a_statement_that_waits_too_long(true).await;
}

#[tokio::test]
async fn metrics_count_requests_holds_batches_and_connections() {
    let db = TestDb::new().await;
    let mut config = test_config();
    config.reaper_interval = Duration::from_millis(10);
    let f = Fixture {
        app: TestApp::spawn(db.store(config.hold, 8).await, config).await,
        db,
    };
    let scrape = || async {
        let response = f.app.client.get(f.app.metrics_url()).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let kind = response.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(kind.starts_with("text/plain"), "{kind}");
        response.text().await.unwrap()
    };
    // Other tests of this process record into the same registry: count what this one adds.
    let before = scrape().await;
    f.held("inception", "A1", "alice").await;
    assert_eq!(
        f.hold("inception", "A1", "bob").await.status(),
        StatusCode::CONFLICT
    );
    f.seat_map("inception").await;
    let after = scrape().await;

    let hold_route = r#"route="/movies/{movie_id}/seats/{seat_id}/hold""#;
    let rose =
        |name: &str, labels: &[&str]| metric(&after, name, labels) - metric(&before, name, labels);
    for (name, labels, at_least) in [
        (
            "boxoffice_http_requests_total",
            vec![hold_route, r#"status="201""#],
            1.0,
        ),
        (
            "boxoffice_http_requests_total",
            vec![hold_route, r#"status="409""#],
            1.0,
        ),
        (
            "boxoffice_http_requests_total",
            vec![
                r#"route="/movies/{movie_id}/seats""#,
                r#"method="GET""#,
                r#"status="200""#,
            ],
            1.0,
        ),
        (
            "boxoffice_http_request_duration_seconds_count",
            vec![hold_route],
            2.0,
        ),
        (
            "boxoffice_holds_total",
            vec![r#"api="seed""#, r#"outcome="held""#],
            1.0,
        ),
        (
            "boxoffice_holds_total",
            vec![r#"api="seed""#, r#"outcome="taken""#],
            1.0,
        ),
        ("boxoffice_hold_batch_size_count", vec![], 2.0),
    ] {
        assert!(
            rose(name, &labels) >= at_least,
            "{name} {labels:?} in:\n{after}"
        );
    }
    for name in [
        r#"boxoffice_db_pool_connections{state="idle"}"#,
        r#"boxoffice_db_pool_connections{state="in_use"}"#,
        "boxoffice_hold_queue_depth",
        "boxoffice_http_request_duration_seconds_bucket{",
    ] {
        assert!(after.contains(name), "{name} in:\n{after}");
    }
    // The reaper sweeps every 10 ms here.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric(&scrape().await, "boxoffice_reaper_runs_total", &[])
        <= metric(&after, "boxoffice_reaper_runs_total", &[])
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the reaper runs are not counted"
        );
    }
    assert!(scrape().await.contains("boxoffice_reaper_rows_total"));
}

// ---------------------------------------------------------------------------------------
// GET /reports/{name}

const REPORTS_TOKEN: &str = "reports-token-for-tests";

async fn reports_app<S: boxoffice::store::Store>(
    store: impl Into<boxoffice::store::Backend<S>>,
    token: Option<&str>,
) -> TestApp {
    let mut config = test_config();
    config.reports_token = token.map(|t| boxoffice::config::Secret::new(t.to_owned()));
    TestApp::spawn(store, config).await
}

async fn get_report(app: &TestApp, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(app.url(path));
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    request.send().await.expect("request")
}

#[tokio::test]
async fn a_report_answers_json_rows_to_the_bearer_of_the_token() {
    let db = TestDb::new().await;
    let app = reports_app(db.store(policy(LONG_TTL, 8), 4).await, Some(REPORTS_TOKEN)).await;

    let response = get_report(&app, "/reports/occupancy", Some(REPORTS_TOKEN)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let rows: Value = response.json().await.unwrap();
    assert_eq!(
        rows[1],
        json!({"movie_id": "inception", "title": "Inception", "capacity": 40, "booked": 0,
               "held_now": 0, "free": 40, "occupancy_pct": 0.0})
    );
    assert_eq!(rows.as_array().unwrap().len(), 3);

    let one = get_report(
        &app,
        "/reports/seat-popularity?movie=dune-part-two",
        Some(REPORTS_TOKEN),
    )
    .await;
    assert_eq!(one.status(), StatusCode::OK);
    let rows: Value = one.json().await.unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 24);

    for (path, status, code) in [
        (
            "/reports/revenue",
            StatusCode::NOT_FOUND,
            "report_not_found",
        ),
        (
            "/reports/occupancy?movie=nope",
            StatusCode::NOT_FOUND,
            "movie_not_found",
        ),
        (
            "/reports/occupancy?film=inception",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
    ] {
        assert_error(
            get_report(&app, path, Some(REPORTS_TOKEN)).await,
            status,
            code,
        )
        .await;
    }
}

#[tokio::test]
async fn a_report_without_the_right_token_answers_401_whatever_the_report() {
    let db = TestDb::new().await;
    let app = reports_app(db.store(policy(LONG_TTL, 8), 4).await, Some(REPORTS_TOKEN)).await;
    let wrong = format!("{REPORTS_TOKEN}x");
    let almost = &REPORTS_TOKEN[..REPORTS_TOKEN.len() - 1];
    for path in ["/reports/occupancy", "/reports/revenue"] {
        for token in [None, Some(wrong.as_str()), Some(almost), Some("")] {
            let response = get_report(&app, path, token).await;
            assert_eq!(
                response.headers()[header::WWW_AUTHENTICATE],
                "Bearer realm=\"reports\""
            );
            assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
        }
    }
    let basic = app
        .client
        .get(app.url("/reports/occupancy"))
        .header(header::AUTHORIZATION, format!("Basic {REPORTS_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_error(basic, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn without_a_token_set_the_reports_route_is_off() {
    let db = TestDb::new().await;
    let app = reports_app(db.store(policy(LONG_TTL, 8), 4).await, None).await;
    for token in [None, Some(REPORTS_TOKEN)] {
        let response = get_report(&app, "/reports/occupancy", token).await;
        assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn with_the_memory_store_reports_answer_501() {
    let store = boxoffice::store::MemoryStore::new(policy(LONG_TTL, 8));
    let app = reports_app(store, Some(REPORTS_TOKEN)).await;
    let response = get_report(&app, "/reports/occupancy", Some(REPORTS_TOKEN)).await;
    assert_error(
        response,
        StatusCode::NOT_IMPLEMENTED,
        "reports_need_postgres",
    )
    .await;
    // The token is still checked first.
    let response = get_report(&app, "/reports/occupancy", None).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}
