//! Rate limits against one client taking a whole room: by cycling hold and release, or by
//! minting identities; the client's address taken from `X-Forwarded-For` only behind a
//! trusted proxy.

mod common;

use boxoffice::booking::HoldPolicy;
use boxoffice::config::RateLimits;
use boxoffice::store::MemoryStore;
use common::{LONG_TTL, TestApp, assert_error, json_of, policy, test_config};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// `inception` has 40 seats. An address may ask for 30 a minute and make 3 identities.
async fn limited_app(trusted_proxy: bool) -> TestApp {
    let mut config = test_config();
    config.rate_limits = RateLimits {
        seats_per_user: 0,
        seats_per_ip: 30,
        identities_per_ip: 3,
        trusted_proxies: if trusted_proxy {
            vec!["127.0.0.1".parse().unwrap()]
        } else {
            Vec::new()
        },
    };
    TestApp::spawn(MemoryStore::new(policy(LONG_TTL, 8)), config).await
}

struct Client<'a> {
    app: &'a TestApp,
    forwarded_for: &'a str,
}

impl Client<'_> {
    async fn identity(&self) -> reqwest::Response {
        self.app
            .client
            .post(self.app.url("/api/v1/identities"))
            .header("x-forwarded-for", self.forwarded_for)
            .send()
            .await
            .unwrap()
    }

    async fn token(&self) -> String {
        let response = self.identity().await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    async fn hold(&self, token: &str, quantity: usize) -> reqwest::Response {
        self.app
            .client
            .post(self.app.url("/api/v1/movies/inception/holds"))
            .header("x-forwarded-for", self.forwarded_for)
            .bearer_auth(token)
            .json(&json!({ "quantity": quantity }))
            .send()
            .await
            .unwrap()
    }

    async fn release(&self, token: &str, hold: &Value) {
        let session = hold["session_id"].as_str().unwrap();
        let response = self
            .app
            .client
            .delete(self.app.url(&format!("/api/v1/sessions/{session}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
}

async fn assert_rate_limited(response: reqwest::Response) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited", "{body}");
}

async fn held_seats(app: &TestApp) -> usize {
    let body = json_of(app.client.get(app.url("/movies/inception/seats"))).await;
    body.as_array().unwrap().len()
}

#[tokio::test]
async fn cycling_hold_and_release_or_minting_identities_cannot_take_the_whole_room() {
    let app = limited_app(true).await;
    let attacker = Client {
        app: &app,
        forwarded_for: "203.0.113.5",
    };
    // Cycling: releasing gives nothing back.
    let token = attacker.token().await;
    let mut cycles = 0;
    loop {
        let response = attacker.hold(&token, 8).await;
        if response.status() != StatusCode::CREATED {
            assert_rate_limited(response).await;
            break;
        }
        let hold: Value = response.json().await.unwrap();
        attacker.release(&token, &hold).await;
        cycles += 1;
        assert!(cycles <= 3, "30 seats a minute is 3 holds of 8");
    }
    assert_eq!(cycles, 3);
    // Minting: more identities share the address's allowance, and few are made.
    let mut tokens = vec![token];
    loop {
        let response = attacker.identity().await;
        if response.status() != StatusCode::CREATED {
            assert_rate_limited(response).await;
            break;
        }
        let body: Value = response.json().await.unwrap();
        tokens.push(body["token"].as_str().unwrap().to_owned());
    }
    assert_eq!(tokens.len(), 3, "3 identities a minute");
    for token in &tokens {
        for quantity in [8, 1] {
            let response = attacker.hold(token, quantity).await;
            if response.status() != StatusCode::CREATED {
                assert_rate_limited(response).await;
            }
        }
    }
    let taken = held_seats(&app).await;
    assert!(taken <= 6, "the attacker holds {taken} of 40 seats");

    // Someone else, behind the same proxy, is not held back.
    let other = Client {
        app: &app,
        forwarded_for: "198.51.100.7",
    };
    let token = other.token().await;
    assert_eq!(other.hold(&token, 8).await.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
    let app = limited_app(false).await;
    // Each request claims another address; all come from 127.0.0.1, which is what counts.
    let mut made = 0;
    for n in 1..=5 {
        let claimed = format!("203.0.113.{n}");
        let client = Client {
            app: &app,
            forwarded_for: &claimed,
        };
        let response = client.identity().await;
        if response.status() == StatusCode::CREATED {
            made += 1;
        } else {
            assert_rate_limited(response).await;
        }
    }
    assert_eq!(made, 3);
}

#[tokio::test]
async fn one_identity_is_limited_on_its_own_whatever_its_address() {
    let mut config = test_config();
    config.rate_limits = RateLimits {
        seats_per_user: 4,
        seats_per_ip: 0,
        identities_per_ip: 0,
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
    };
    let app = TestApp::spawn(MemoryStore::new(policy(LONG_TTL, 8)), config).await;
    let first = Client {
        app: &app,
        forwarded_for: "203.0.113.1",
    };
    let token = first.token().await;
    assert_eq!(first.hold(&token, 3).await.status(), StatusCode::CREATED);
    let elsewhere = Client {
        app: &app,
        forwarded_for: "198.51.100.1",
    };
    assert_rate_limited(elsewhere.hold(&token, 2).await).await;
    // The seed route counts its user_id the same way.
    let expected = [StatusCode::CREATED; 4]
        .into_iter()
        .chain([StatusCode::TOO_MANY_REQUESTS]);
    for (n, expected) in (1..).zip(expected) {
        // Row A: the best available seats are mid-room.
        let seat = format!("A{n}");
        let response = app
            .client
            .post(app.url(&format!("/movies/inception/seats/{seat}/hold")))
            .json(&json!({ "user_id": "walk-in" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "{seat}");
    }
}

/// The sum of `boxoffice_http_requests_total` over the series whose labels include `label`.
fn requests_labelled(metrics: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("boxoffice_http_requests_total{") && line.contains(label))
        .filter_map(|line| line.rsplit_once(' '))
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

/// Every method a client makes up once became a metrics label, kept for good: 12,000 of
/// 8,000 characters made one scrape 1.46 GB. Now they are all `other`, and the metrics are on
/// a listener of their own, not the public one.
#[tokio::test]
async fn made_up_methods_add_no_metrics_series_and_metrics_are_off_the_public_listener() {
    let app = TestApp::spawn(MemoryStore::new(policy(LONG_TTL, 8)), test_config()).await;
    let before = app.metrics().await;
    for n in 0..50 {
        let method = format!("X{n:06}{}", "A".repeat(2000));
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = app
            .client
            .request(method, app.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    }
    let after = app.metrics().await;
    assert!(!after.contains("X000"), "a made-up method is a label");
    let others = requests_labelled(&after, r#"method="other""#)
        - requests_labelled(&before, r#"method="other""#);
    assert_eq!(others, 50.0, "{after}");

    let public = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_error(public, StatusCode::NOT_FOUND, "not_found").await;
}

/// An app whose users may each spend `per_user` units a minute and keep `keys` idempotency
/// keys; addresses are not limited.
async fn keyed_app(per_user: u32, keys: u64) -> TestApp {
    let mut config = test_config();
    config.rate_limits = RateLimits {
        seats_per_user: per_user,
        seats_per_ip: 0,
        identities_per_ip: 0,
        trusted_proxies: Vec::new(),
    };
    config.max_idempotency_keys_per_user = keys;
    TestApp::spawn(MemoryStore::new(policy(LONG_TTL, 8)), config).await
}

async fn api_token(app: &TestApp) -> String {
    let body = json_of(app.client.post(app.url("/api/v1/identities"))).await;
    body["token"].as_str().unwrap().to_owned()
}

async fn keyed_post(
    app: &TestApp,
    token: &str,
    path: &str,
    key: &str,
    body: Value,
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// A keyed confirm of a session that was never the caller's was kept for 24 hours as a 404:
/// 600,000 of them added 367 MB. A 404 is no longer kept: its retry is answered afresh, and
/// a confirm spends the caller's allowance like a hold.
#[tokio::test]
async fn keyed_confirms_of_unknown_sessions_keep_nothing_and_spend_the_allowance() {
    let app = keyed_app(3, 1000).await;
    let token = api_token(&app).await;
    let path = format!("/api/v1/sessions/{}/confirm", uuid::Uuid::new_v4());
    for _ in 0..3 {
        let response = keyed_post(&app, &token, &path, "k", json!({})).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert!(
            response.headers().get("idempotency-replayed").is_none(),
            "a 404 was kept and replayed"
        );
    }
    assert_rate_limited(keyed_post(&app, &token, &path, "k", json!({})).await).await;
}

/// Replaying a kept answer spent the allowance as if the change were made again: after 120
/// replays the kept 201 came back as 429. A replay is now free.
#[tokio::test]
async fn replaying_a_kept_answer_spends_no_allowance() {
    let app = keyed_app(2, 1000).await;
    let token = api_token(&app).await;
    let hold = || {
        keyed_post(
            &app,
            &token,
            "/api/v1/movies/inception/holds",
            "h",
            json!({"quantity": 2}),
        )
    };
    let first = hold().await;
    assert_eq!(first.status(), StatusCode::CREATED);
    for _ in 0..5 {
        let again = hold().await;
        assert_eq!(again.status(), StatusCode::CREATED);
        assert_eq!(again.headers()["idempotency-replayed"], "true");
    }
    // The allowance is spent by the one hold made.
    let other = keyed_post(
        &app,
        &token,
        "/api/v1/movies/inception/holds",
        "h2",
        json!({"quantity": 1}),
    )
    .await;
    assert_rate_limited(other).await;
}

/// One identity keeps at most `MAX_IDEMPOTENCY_KEYS_PER_USER` keys; past it a keyed change is
/// refused 429 `idempotency_key_limit` and does nothing, while one without a key still works.
#[tokio::test]
async fn keys_kept_per_identity_are_bounded() {
    let app = keyed_app(0, 2).await;
    let token = api_token(&app).await;
    let holds = "/api/v1/movies/inception/holds";
    for key in ["a", "b"] {
        let response = keyed_post(&app, &token, holds, key, json!({"quantity": 1})).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let refused = keyed_post(&app, &token, holds, "c", json!({"quantity": 1})).await;
    assert_error(
        refused,
        StatusCode::TOO_MANY_REQUESTS,
        "idempotency_key_limit",
    )
    .await;
    assert_eq!(held_seats(&app).await, 2, "the refused hold held nothing");
    let unkeyed = app
        .client
        .post(app.url(holds))
        .bearer_auth(&token)
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(unkeyed.status(), StatusCode::CREATED);
}

/// Item 4 of the second abuse round: identities from one address together hold at most
/// `MAX_HOLDS_PER_IP` seats, on both APIs, and letting seats go and taking them again at once
/// gets no new clock.
#[tokio::test]
async fn one_address_cannot_hoard_seats_or_reset_their_clock() {
    let mut config = test_config();
    config.rate_limits = RateLimits {
        seats_per_user: 0,
        seats_per_ip: 0,
        identities_per_ip: 0,
        trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
    };
    let store = MemoryStore::new(HoldPolicy {
        max_holds_per_address: 12,
        ..policy(LONG_TTL, 8)
    });
    let app = TestApp::spawn(store, config).await;
    let attacker = Client {
        app: &app,
        forwarded_for: "203.0.113.5",
    };
    let tokens = [attacker.token().await, attacker.token().await];
    let first = attacker.hold(&tokens[0], 8).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    assert_eq!(
        attacker.hold(&tokens[1], 4).await.status(),
        StatusCode::CREATED
    );
    let third = attacker.token().await;
    assert_address_limited(attacker.hold(&third, 1).await).await;
    let walk_in = |from: &'static str, seat: &str| {
        app.client
            .post(app.url(&format!("/movies/inception/seats/{seat}/hold")))
            .header("x-forwarded-for", from)
            .json(&json!({ "user_id": "walk-in" }))
    };
    assert_address_limited(walk_in("203.0.113.5", "E1").send().await.unwrap()).await;
    assert_eq!(held_seats(&app).await, 12);

    // Released and taken again at once: the same deadline, not a fresh one.
    attacker.release(&tokens[0], &first).await;
    let again = app
        .client
        .post(app.url("/api/v1/movies/inception/holds"))
        .header("x-forwarded-for", "203.0.113.5")
        .bearer_auth(&tokens[0])
        .json(&json!({ "seat_ids": first["seat_ids"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["seat_ids"], first["seat_ids"]);
    assert_eq!(again["expires_at"], first["expires_at"]);

    // Another address behind the same proxy is not held back, and its clock is its own; the
    // tutorial's routes keep the same clock.
    let held = json_of(walk_in("198.51.100.7", "E1")).await;
    let release = app
        .client
        .delete(app.url(&format!(
            "/sessions/{}",
            held["session_id"].as_str().unwrap()
        )))
        .json(&json!({ "user_id": "walk-in" }))
        .send()
        .await
        .unwrap();
    assert_eq!(release.status(), StatusCode::NO_CONTENT);
    let held_again = json_of(walk_in("198.51.100.7", "E1")).await;
    assert_eq!(held_again["expires_at"], held["expires_at"]);
    assert_ne!(held["expires_at"], first["expires_at"]);
}

async fn assert_address_limited(response: reqwest::Response) {
    assert_error(
        response,
        StatusCode::TOO_MANY_REQUESTS,
        "address_hold_limit",
    )
    .await;
}
