//! Property tests of what parses client input: seat ids, user ids, session ids, tokens, and
//! the bodies of the hold routes. A failing case proptest finds is to be kept here as a plain
//! test (none has been found so far).

mod common;

use std::sync::OnceLock;

use boxoffice::domain::{SeatId, SessionId, UserId};
use boxoffice::identity::Identities;
use boxoffice::store::MemoryStore;
use common::{LONG_TTL, TestApp, json_of, policy, test_config};
use proptest::prelude::*;
use serde_json::{Value, json};

const SECRET: &[u8] = b"a secret of at least thirty-two bytes, for tests";

fn seat_id_model(raw: &str) -> bool {
    let b = raw.as_bytes();
    matches!(b.len(), 2 | 3)
        && b[0].is_ascii_uppercase()
        && (b'1'..=b'9').contains(&b[1])
        && b[2..].iter().all(u8::is_ascii_digit)
}

proptest! {
    #[test]
    fn a_seat_id_is_a_row_letter_and_a_number_and_nothing_else(raw in "\\PC{0,6}|[A-Z][0-9]{1,3}") {
        let parsed = SeatId::parse(&raw);
        prop_assert_eq!(parsed.is_ok(), seat_id_model(&raw));
        if let Ok(seat) = parsed {
            prop_assert_eq!(seat.as_str(), raw.as_str());
        }
    }

    #[test]
    fn a_user_id_is_short_plain_ascii(raw in "\\PC{0,70}|[A-Za-z0-9_-]{60,70}") {
        let model = (1..=64).contains(&raw.len())
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let parsed = UserId::parse(raw.clone());
        prop_assert_eq!(parsed.is_ok(), model);
        if let Ok(user) = parsed {
            prop_assert_eq!(user.as_str(), raw.as_str());
        }
    }

    #[test]
    fn a_session_id_is_only_what_a_uuid_parser_takes(raw in "\\PC{0,40}|[0-9a-f-]{36}") {
        if let Ok(id) = SessionId::parse(&raw) {
            let uuid = uuid::Uuid::parse_str(&raw).expect("only what a UUID parser takes");
            prop_assert_eq!(id.0, uuid);
        }
    }

    #[test]
    fn no_string_but_an_issued_token_proves_a_user(raw in "\\PC{0,120}|v1\\.[0-9a-f]{32}\\.[A-Za-z0-9_-]{43}") {
        let ids = Identities::new(SECRET, None);
        prop_assert_eq!(ids.verify(&raw), None);
    }

    #[test]
    fn any_change_to_a_token_breaks_it(at in 0usize..80, with in proptest::char::range('!', '~')) {
        let ids = Identities::new(SECRET, None);
        let (_, token) = ids.issue();
        let at = at % token.len();
        let mut changed: Vec<char> = token.chars().collect();
        prop_assume!(changed[at] != with);
        changed[at] = with;
        let changed: String = changed.into_iter().collect();
        prop_assert_eq!(ids.verify(&changed), None, "{} from {}", changed, token);
    }
}

// ---------------------------------------------------------------------------------------
// Bodies, through the real router: whatever JSON comes, a 201 or a 4xx, never a 5xx.

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[A-Z][0-9]{1,2}|\\PC{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("seat_ids".to_owned()),
                    Just("quantity".to_owned()),
                    Just("user_id".to_owned()),
                    "\\PC{0,6}"
                ],
                inner,
                0..4
            )
            .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

struct Server {
    runtime: tokio::runtime::Runtime,
    app: TestApp,
    token: String,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let (app, token) = runtime.block_on(async {
            let mut config = test_config();
            config.rate_limits.seats_per_user = 0;
            config.rate_limits.seats_per_ip = 0;
            let app = TestApp::spawn(MemoryStore::new(policy(LONG_TTL, 1000)), config).await;
            let identity = json_of(app.client.post(app.url("/api/v1/identities"))).await;
            (app, identity["token"].as_str().unwrap().to_owned())
        });
        Server {
            runtime,
            app,
            token,
        }
    })
}

/// The status a hold route answers `body` with.
fn post(path: &str, body: &Value) -> u16 {
    let server = server();
    server.runtime.block_on(async {
        server
            .app
            .client
            .post(server.app.url(path))
            .bearer_auth(&server.token)
            .json(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_json_body_of_a_hold_is_answered_201_or_4xx(body in json_value()) {
        for path in ["/api/v1/movies/the-grand-budapest-hotel/holds", "/movies/the-grand-budapest-hotel/seats/J16/hold"] {
            let status = post(path, &body);
            prop_assert!(status == 201 || (400..500).contains(&status), "{path} {body} → {status}");
        }
    }
}
