//! `/api/v1` over the real router and a real client, backed by PostgreSQL: tokens, the seat
//! map, group holds and their refusals, idempotency, ownership, and the seed routes' blindness
//! to API users.

mod common;

use boxoffice::config::Secret;
use boxoffice::store::{Backend, MemoryStore, Secrets};
use common::{LONG_TTL, SHORT_TTL, TestApp, TestDb, assert_error, metric, policy, test_config};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

struct Fixture {
    app: TestApp,
    db: TestDb,
}

async fn fixture() -> Fixture {
    fixture_with(test_config()).await
}

async fn fixture_with(config: boxoffice::Config) -> Fixture {
    let db = TestDb::new().await;
    let store = db.store(policy(LONG_TTL, 8), 8).await;
    Fixture {
        app: TestApp::spawn(store, config).await,
        db,
    }
}

/// An API user of `app`: its id and token.
async fn identity(app: &TestApp) -> (String, String) {
    let response = app
        .client
        .post(app.url("/api/v1/identities"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    // A credential: no cache on the way may keep it.
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap().to_owned();
    (body["user_id"].as_str().unwrap().to_owned(), token)
}

async fn call(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app.client.request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn hold(app: &TestApp, token: &str, body: Value) -> reqwest::Response {
    call(
        app,
        Method::POST,
        "/api/v1/movies/inception/holds",
        Some(token),
        Some(body),
    )
    .await
}

async fn held(app: &TestApp, token: &str, body: Value) -> Value {
    let response = hold(app, token, body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    response.json().await.unwrap()
}

impl Fixture {
    /// Seats, sessions and kept keys: what a refused request must leave as it was.
    async fn rows(&self) -> (i64, i64, i64) {
        let pool = self.db.pool(1).await;
        sqlx::query_as(
            "select (select count(*) from seat_holds), (select count(*) from hold_sessions),
                    (select count(*) from idempotency_keys)",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn every_api_route_needs_a_token_that_is_ours() {
    let f = fixture().await;
    let (_, token) = identity(&f.app).await;
    let session = held(&f.app, &token, json!({ "seat_ids": ["A1"] })).await;
    let id = session["session_id"].as_str().unwrap();
    let rows = f.rows().await;
    let (_, signature) = token.rsplit_once('.').unwrap();
    let forged = format!("v1.{}.{signature}", "0".repeat(32));
    let routes = [
        (Method::GET, "/api/v1/movies".to_owned(), None),
        (
            Method::GET,
            "/api/v1/movies/inception/seats".to_owned(),
            None,
        ),
        (
            Method::POST,
            "/api/v1/movies/inception/holds".to_owned(),
            Some(json!({ "quantity": 1 })),
        ),
        (Method::GET, "/api/v1/me/sessions".to_owned(), None),
        (Method::GET, format!("/api/v1/sessions/{id}"), None),
        (Method::POST, format!("/api/v1/sessions/{id}/extend"), None),
        (Method::POST, format!("/api/v1/sessions/{id}/confirm"), None),
        (Method::DELETE, format!("/api/v1/sessions/{id}"), None),
    ];
    for (method, path, body) in routes {
        for bad in [None, Some("garbage"), Some(forged.as_str()), Some("alice")] {
            let response = call(&f.app, method.clone(), &path, bad, body.clone()).await;
            let challenge = response.headers().get(header::WWW_AUTHENTICATE).cloned();
            assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
            assert_eq!(
                challenge.unwrap(),
                "Bearer realm=\"api\"",
                "{method} {path}"
            );
        }
    }
    assert_eq!(f.rows().await, rows, "nothing changed");
}

#[tokio::test]
async fn a_seed_request_can_neither_see_nor_name_an_api_user() {
    let f = fixture().await;
    let (user, token) = identity(&f.app).await;
    assert!(user.contains('.'), "{user}");
    let hold = held(&f.app, &token, json!({ "seat_ids": ["A1", "A2"] })).await;
    let session = hold["session_id"].as_str().unwrap();

    let map: Value = call(&f.app, Method::GET, "/movies/inception/seats", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        map,
        json!([
            { "seat_id": "A1", "user_id": "(hidden)", "booked": true, "confirmed": false },
            { "seat_id": "A2", "user_id": "(hidden)", "booked": true, "confirmed": false },
        ])
    );
    let rows = f.rows().await;
    for name in [user.as_str(), "(hidden)"] {
        let body = Some(json!({ "user_id": name }));
        let attempts = [
            (Method::POST, "/movies/inception/seats/B1/hold".to_owned()),
            (Method::PUT, format!("/sessions/{session}/confirm")),
            (Method::DELETE, format!("/sessions/{session}")),
        ];
        for (method, path) in attempts {
            let response = call(&f.app, method, &path, None, body.clone()).await;
            assert_error(
                response,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_user_id",
            )
            .await;
        }
    }
    assert_eq!(f.rows().await, rows, "nothing changed");
}

#[tokio::test]
async fn the_api_seat_map_marks_the_callers_seats_and_names_nobody() {
    let f = fixture().await;
    let (_, mine) = identity(&f.app).await;
    let (_, theirs) = identity(&f.app).await;
    held(&f.app, &mine, json!({ "seat_ids": ["B1"] })).await;
    held(&f.app, &theirs, json!({ "seat_ids": ["B2"] })).await;
    let response = call(
        &f.app,
        Method::GET,
        "/api/v1/movies/inception/seats",
        Some(&mine),
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let map: Value = response.json().await.unwrap();
    assert!(!map.to_string().contains("v1."), "no user id: {map}");
    let seats = map["seats"].as_array().unwrap();
    assert_eq!(seats.len(), 40, "every seat of the room");
    let seat = |id: &str| seats.iter().find(|s| s["seat_id"] == id).unwrap().clone();
    assert_eq!(
        (seat("B1")["state"].clone(), seat("B1")["yours"].clone()),
        (json!("held"), json!(true))
    );
    assert_eq!(
        (seat("B2")["state"].clone(), seat("B2")["yours"].clone()),
        (json!("held"), json!(false))
    );
    assert_eq!(
        (seat("B3")["state"].clone(), seat("B3")["yours"].clone()),
        (json!("free"), json!(false))
    );
    assert!(seat("B2")["expires_at"].is_string());
}

#[tokio::test]
async fn a_lost_group_hold_lists_the_taken_seats_and_offers_a_block_nearby() {
    let f = fixture().await;
    let (_, alice) = identity(&f.app).await;
    let (_, bob) = identity(&f.app).await;
    held(&f.app, &alice, json!({ "seat_ids": ["C5"] })).await;
    let rows = f.rows().await;
    let response = hold(&f.app, &bob, json!({ "seat_ids": ["C4", "C5", "C6"] })).await;
    let body = assert_error(response, StatusCode::CONFLICT, "seat_taken").await;
    assert_eq!(body["seats"], json!(["C5"]));
    let offer = body["suggestion"]["seat_ids"]
        .as_array()
        .expect("a counter-offer")
        .clone();
    assert_eq!(offer.len(), 3);
    assert_eq!(f.rows().await, rows, "nothing held, the offer included");
    // Accepting the offer is a new hold.
    let accepted = held(&f.app, &bob, json!({ "seat_ids": offer })).await;
    assert_eq!(accepted["seat_ids"], json!(offer));
}

#[tokio::test]
async fn malformed_holds_answer_422_and_change_nothing() {
    let f = fixture().await;
    let (_, token) = identity(&f.app).await;
    let rows = f.rows().await;
    let nine: Vec<String> = (1..=8)
        .map(|n| format!("A{n}"))
        .chain(["B1".to_owned()])
        .collect();
    for (body, code) in [
        (json!({ "seat_ids": nine }), "too_many_seats"),
        (json!({ "seat_ids": [] }), "too_many_seats"),
        (json!({ "quantity": 9 }), "too_many_seats"),
        (json!({ "quantity": 0 }), "too_many_seats"),
        (json!({ "seat_ids": ["A1", "A1"] }), "duplicate_seat"),
        (json!({ "seat_ids": ["A1"], "quantity": 1 }), "invalid_body"),
        (json!({}), "invalid_body"),
        (json!({ "seat_ids": ["a1"] }), "invalid_seat_id"),
        (json!({ "quantity": -1 }), "invalid_body"),
        (json!({ "seats": ["A1"] }), "invalid_body"),
    ] {
        let response = hold(&f.app, &token, body.clone()).await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, code).await;
    }
    let response = hold(&f.app, &token, json!({ "seat_ids": ["Z1"] })).await;
    assert_error(response, StatusCode::NOT_FOUND, "seat_not_found").await;
    assert_eq!(f.rows().await, rows);
}

#[tokio::test]
async fn a_retry_with_the_same_key_gets_the_first_response_again() {
    let f = fixture().await;
    let (_, token) = identity(&f.app).await;
    let send = |body: Value, key: &str| {
        f.app
            .client
            .post(f.app.url("/api/v1/movies/inception/holds"))
            .bearer_auth(&token)
            .header("idempotency-key", key.to_owned())
            .json(&body)
            .send()
    };
    let first = send(json!({ "quantity": 2 }), "order-17").await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = first.text().await.unwrap();
    let again = send(json!({ "quantity": 2 }), "order-17").await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotency-replayed"], "true");
    assert_eq!(
        again.text().await.unwrap(),
        first,
        "the same body, byte for byte"
    );
    let rows = f.rows().await;
    assert_eq!(rows, (2, 1, 1));

    let other = send(json!({ "quantity": 3 }), "order-17").await.unwrap();
    assert_error(
        other,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    for bad in ["x".repeat(256), "with space".to_owned(), "é".to_owned()] {
        let response = f
            .app
            .client
            .post(f.app.url("/api/v1/movies/inception/holds"))
            .bearer_auth(&token)
            .header("idempotency-key", bad.as_bytes())
            .json(&json!({ "quantity": 1 }))
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_idempotency_key").await;
    }
    assert_eq!(f.rows().await, rows);
}

#[tokio::test]
async fn session_routes_answer_only_their_owner() {
    let f = fixture().await;
    let (_, owner) = identity(&f.app).await;
    let (_, stranger) = identity(&f.app).await;
    let hold = held(&f.app, &owner, json!({ "seat_ids": ["D1", "D2"] })).await;
    let id = hold["session_id"].as_str().unwrap();
    let before: Value = call(
        &f.app,
        Method::GET,
        &format!("/api/v1/sessions/{id}"),
        Some(&owner),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let rows = f.rows().await;
    let guessed = uuid::Uuid::new_v4().to_string();
    for (token, session) in [
        (&stranger, id),
        (&owner, guessed.as_str()),
        (&owner, "not-a-uuid"),
    ] {
        for (method, path) in [
            (Method::GET, format!("/api/v1/sessions/{session}")),
            (Method::POST, format!("/api/v1/sessions/{session}/extend")),
            (Method::POST, format!("/api/v1/sessions/{session}/confirm")),
            (Method::DELETE, format!("/api/v1/sessions/{session}")),
        ] {
            let response = call(&f.app, method, &path, Some(token), None).await;
            assert_error(response, StatusCode::NOT_FOUND, "session_not_found").await;
        }
    }
    let stranger_sessions: Value = call(
        &f.app,
        Method::GET,
        "/api/v1/me/sessions",
        Some(&stranger),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(stranger_sessions, json!({ "sessions": [] }));
    assert_eq!(f.rows().await, rows);
    let after: Value = call(
        &f.app,
        Method::GET,
        &format!("/api/v1/sessions/{id}"),
        Some(&owner),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(after, before, "nothing changed");
}

#[tokio::test]
async fn an_expired_session_is_refused_to_its_owner_and_unknown_to_anyone_else() {
    let db = TestDb::new().await;
    let mut config = test_config();
    config.hold = policy(SHORT_TTL, 8);
    let app = TestApp::spawn(db.store(config.hold, 8).await, config).await;
    let (_, owner) = identity(&app).await;
    let (_, stranger) = identity(&app).await;
    let hold = held(&app, &owner, json!({ "seat_ids": ["B1", "B2"] })).await;
    let id = hold["session_id"].as_str().unwrap().to_owned();
    let seed = call(
        &app,
        Method::POST,
        "/movies/inception/seats/C1/hold",
        None,
        Some(json!({ "user_id": "walk-in" })),
    )
    .await;
    assert_eq!(seed.status(), StatusCode::CREATED);
    let seed: Value = seed.json().await.unwrap();
    let seed_id = seed["session_id"].as_str().unwrap().to_owned();
    common::wait_until_lapsed(
        hold["server_time"].as_str().unwrap().parse().unwrap(),
        seed["expires_at"].as_str().unwrap().parse().unwrap(),
    )
    .await;

    let session = format!("/api/v1/sessions/{id}");
    for (method, path, owner_answer) in [
        (Method::POST, format!("{session}/extend"), "hold_expired"),
        (Method::POST, format!("{session}/confirm"), "hold_expired"),
        (Method::DELETE, session.clone(), "hold_expired"),
    ] {
        let theirs = call(&app, method.clone(), &path, Some(&stranger), None).await;
        assert_error(theirs, StatusCode::NOT_FOUND, "session_not_found").await;
        let mine = call(&app, method, &path, Some(&owner), None).await;
        assert_error(mine, StatusCode::GONE, owner_answer).await;
    }
    let theirs = call(&app, Method::GET, &session, Some(&stranger), None).await;
    assert_error(theirs, StatusCode::NOT_FOUND, "session_not_found").await;
    let mine: Value = call(&app, Method::GET, &session, Some(&owner), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mine["status"], "expired", "{mine}");
    for user in ["mallory", "walk-in"] {
        let body = Some(json!({ "user_id": user }));
        let confirm = call(
            &app,
            Method::PUT,
            &format!("/sessions/{seed_id}/confirm"),
            None,
            body.clone(),
        )
        .await;
        let release = call(
            &app,
            Method::DELETE,
            &format!("/sessions/{seed_id}"),
            None,
            body,
        )
        .await;
        let (status, code) = if user == "walk-in" {
            (StatusCode::GONE, "hold_expired")
        } else {
            (StatusCode::NOT_FOUND, "session_not_found")
        };
        assert_error(confirm, status, code).await;
        assert_error(release, status, code).await;
    }
    // Nothing was booked or held by any of it.
    let pool = db.pool(1).await;
    let (booked, live): (i64, i64) = sqlx::query_as(
        "select count(*) filter (where status = 'confirmed'),
                count(*) filter (where expires_at > now()) from seat_holds",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((booked, live), (0, 0));
}

#[tokio::test]
async fn a_session_is_extended_confirmed_with_a_reference_and_listed() {
    let f = fixture().await;
    let (_, token) = identity(&f.app).await;
    let hold = held(&f.app, &token, json!({ "quantity": 3 })).await;
    let id = hold["session_id"].as_str().unwrap();
    let extended: Value = call(
        &f.app,
        Method::POST,
        &format!("/api/v1/sessions/{id}/extend"),
        Some(&token),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(extended["extensions"], 1);
    assert!(extended["expires_at"].as_str().unwrap() >= hold["expires_at"].as_str().unwrap());
    let confirmed = call(
        &f.app,
        Method::POST,
        &format!("/api/v1/sessions/{id}/confirm"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    let confirmed: Value = confirmed.json().await.unwrap();
    let reference = confirmed["booking_reference"].as_str().unwrap();
    assert_eq!(reference.len(), 7, "{reference}");
    let mine: Value = call(
        &f.app,
        Method::GET,
        "/api/v1/me/sessions",
        Some(&token),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(mine["sessions"][0]["booking_reference"], reference);
    assert_eq!(mine["sessions"][0]["status"], "confirmed");
    let release = call(
        &f.app,
        Method::DELETE,
        &format!("/api/v1/sessions/{id}"),
        Some(&token),
        None,
    )
    .await;
    assert_error(release, StatusCode::CONFLICT, "already_confirmed").await;
}

#[tokio::test]
async fn instances_on_one_database_share_the_kept_secret_and_memory_stores_do_not() {
    let db = TestDb::new().await;
    let one = TestApp::spawn(db.store(policy(LONG_TTL, 8), 4).await, test_config()).await;
    let two = TestApp::spawn(db.store(policy(LONG_TTL, 8), 4).await, test_config()).await;
    let (_, token) = identity(&one).await;
    let response = call(&two, Method::GET, "/api/v1/me/sessions", Some(&token), None).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "a token of one instance works on the other"
    );

    let memory = |_| TestApp::spawn(MemoryStore::new(policy(LONG_TTL, 8)), test_config());
    let (a, b) = (memory(1).await, memory(2).await);
    let (_, token) = identity(&a).await;
    let response = call(&b, Method::GET, "/api/v1/me/sessions", Some(&token), None).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

#[tokio::test]
async fn a_rotated_secret_still_accepts_tokens_of_the_previous_one() {
    let store = || MemoryStore::new(policy(LONG_TTL, 8));
    let secret = |s: &str| Some(Secret::new(s.repeat(32)));
    let config = |current: &str, previous: Option<&str>| boxoffice::Config {
        identity_secret: secret(current),
        identity_secret_previous: previous.and_then(secret),
        ..test_config()
    };
    let old = TestApp::spawn(store(), config("a", None)).await;
    let (_, token) = identity(&old).await;
    let rotated = TestApp::spawn(store(), config("b", Some("a"))).await;
    let after = TestApp::spawn(store(), config("b", None)).await;
    let response = call(
        &rotated,
        Method::GET,
        "/api/v1/me/sessions",
        Some(&token),
        None,
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = call(
        &after,
        Method::GET,
        "/api/v1/me/sessions",
        Some(&token),
        None,
    )
    .await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    // Stores keep a secret of their own, which a set one overrides.
    assert_ne!(
        store().identity_secret().await.unwrap(),
        "a".repeat(32).into_bytes()
    );
}

/// A store that keeps no secret (as a Redis store without persistence would not) serves only
/// with `IDENTITY_SECRET` set: tokens must not die with a restart unannounced.
#[tokio::test]
async fn a_store_without_a_secret_needs_identity_secret_set() {
    let backend = || Backend {
        store: MemoryStore::new(policy(LONG_TTL, 8)),
        secrets: None,
        reports: None,
    };
    let stop = tokio_util::sync::CancellationToken::new;
    let refused = boxoffice::app(backend(), &test_config(), stop()).map(drop);
    assert_eq!(
        refused.map_err(|e| e.to_string()),
        Err(
            "IDENTITY_SECRET must be set: this store keeps no secret to sign API tokens with"
                .to_owned()
        )
    );
    let config = boxoffice::Config {
        identity_secret: Some(Secret::new("a".repeat(32))),
        ..test_config()
    };
    assert!(boxoffice::app(backend(), &config, stop()).is_ok());
}

/// Holds through the API are counted as the seed routes' are, told apart by `api`.
#[tokio::test]
async fn api_holds_are_counted_by_api_and_outcome() {
    let f = fixture().await;
    let (_, first) = identity(&f.app).await;
    let (_, second) = identity(&f.app).await;
    let count = |scrape: &str, outcome: &str| {
        let outcome = format!(r#"outcome="{outcome}""#);
        metric(scrape, "boxoffice_holds_total", &[r#"api="v1""#, &outcome])
    };
    let before = f.app.metrics().await;
    held(&f.app, &first, json!({"seat_ids": ["D1"]})).await;
    let taken = hold(&f.app, &second, json!({"seat_ids": ["D1"]})).await;
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    let after = f.app.metrics().await;
    for outcome in ["held", "taken"] {
        assert!(
            count(&after, outcome) - count(&before, outcome) >= 1.0,
            "{outcome} in:\n{after}"
        );
    }
}

#[tokio::test]
async fn without_the_seed_api_only_v1_is_served() {
    let f = fixture_with(boxoffice::Config {
        seed_api: false,
        ..test_config()
    })
    .await;
    for path in ["/movies", "/movies/inception/seats"] {
        let response = call(&f.app, Method::GET, path, None, None).await;
        assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let (_, token) = identity(&f.app).await;
    let movies: Value = call(&f.app, Method::GET, "/api/v1/movies", Some(&token), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(movies.as_array().unwrap().len(), 3);
}
