//! The OpenAPI document against the server it describes: every documented operation is
//! called on a running server (PostgreSQL store), and every answer's status must be
//! documented for it and its JSON body must match the schema documented for that status.
//! The event streams are called but not validated: they never end.

mod common;

use std::collections::BTreeSet;

use common::{LONG_TTL, TestApp, TestDb, policy, test_config};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const REPORTS_TOKEN: &str = "a-reports-token-for-tests";

struct Checker {
    app: TestApp,
    doc: Value,
    /// (path template, method) of every operation called.
    called: BTreeSet<(String, String)>,
}

impl Checker {
    /// Calls `path` (an instance of `template`) and checks the answer against the document;
    /// returns the JSON body, if any.
    async fn call(
        &mut self,
        method: Method,
        template: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        expected: StatusCode,
    ) -> Value {
        let mut request = self.app.client.request(method.clone(), self.app.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        assert_eq!(status, expected, "{method} {path}");
        let verb = method.as_str().to_lowercase();
        let operation = &self.doc["paths"][template][&verb];
        assert!(operation.is_object(), "{verb} {template} is not documented");
        self.called.insert((template.to_owned(), verb.clone()));
        let documented = &operation["responses"][status.as_str()];
        assert!(
            documented.is_object(),
            "{verb} {template}: {status} is not documented"
        );
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        if content_type.as_deref() == Some("text/event-stream") {
            return Value::Null;
        }
        let text = response.text().await.unwrap();
        let Some(schema) = documented["content"]["application/json"].get("schema") else {
            assert!(
                !content_type.is_some_and(|c| c.starts_with("application/json")),
                "{verb} {template} {status}: a JSON body the document does not describe"
            );
            return Value::Null;
        };
        let body: Value = serde_json::from_str(&text).unwrap();
        let errors = self.mismatches(schema, &body);
        assert!(
            errors.is_empty(),
            "{verb} {template} {status}: {body} does not match: {errors:?}"
        );
        body
    }

    /// How `body` departs from `schema` (which may refer to the document's components).
    fn mismatches(&self, schema: &Value, body: &Value) -> Vec<String> {
        let mut root = schema.clone();
        root["components"] = self.doc["components"].clone();
        let validator = jsonschema::validator_for(&root).expect("a valid schema");
        validator.iter_errors(body).map(|e| e.to_string()).collect()
    }

    /// Every operation the document lists, as (path, method).
    fn documented(&self) -> BTreeSet<(String, String)> {
        let paths = self.doc["paths"].as_object().unwrap();
        paths
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(move |verb| (path.clone(), verb.clone()))
            })
            .collect()
    }
}

#[tokio::test]
async fn every_documented_operation_answers_as_documented() {
    let db = TestDb::new().await;
    let store = db.store(policy(LONG_TTL, 8), 8).await;
    let config = boxoffice::Config {
        reports_token: Some(boxoffice::config::Secret::new(REPORTS_TOKEN.into())),
        ..test_config()
    };
    let app = TestApp::spawn(store, config).await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut c = Checker {
        app,
        doc,
        called: BTreeSet::new(),
    };
    // The checker can fail: a body the document does not allow is caught.
    let session_body = json!({ "$ref": "#/components/schemas/SessionBody" });
    assert!(
        !c.mismatches(&session_body, &json!({ "session_id": "x" }))
            .is_empty()
    );
    let error_body = json!({ "$ref": "#/components/schemas/ErrorBody" });
    assert!(
        !c.mismatches(&error_body, &json!({ "code": "seat_taken" }))
            .is_empty()
    );
    assert!(
        c.mismatches(
            &error_body,
            &json!({ "code": "seat_taken", "error": "taken" })
        )
        .is_empty()
    );

    use Method as M;
    use StatusCode as S;

    // Operations.
    c.call(M::GET, "/openapi.json", "/openapi.json", None, None, S::OK)
        .await;
    c.call(M::GET, "/healthz", "/healthz", None, None, S::OK)
        .await;
    c.call(M::GET, "/readyz", "/readyz", None, None, S::OK)
        .await;
    let report = "/reports/{name}";
    c.call(
        M::GET,
        report,
        "/reports/occupancy",
        Some(REPORTS_TOKEN),
        None,
        S::OK,
    )
    .await;
    c.call(
        M::GET,
        report,
        "/reports/bookings",
        Some(REPORTS_TOKEN),
        None,
        S::OK,
    )
    .await;
    c.call(
        M::GET,
        report,
        "/reports/occupancy",
        None,
        None,
        S::UNAUTHORIZED,
    )
    .await;
    c.call(
        M::GET,
        report,
        "/reports/nope",
        Some(REPORTS_TOKEN),
        None,
        S::NOT_FOUND,
    )
    .await;
    c.call(
        M::GET,
        report,
        "/reports/occupancy?film=x",
        Some(REPORTS_TOKEN),
        None,
        S::BAD_REQUEST,
    )
    .await;

    // The seed routes.
    let user = |name: &str| Some(json!({ "user_id": name }));
    c.call(M::GET, "/movies", "/movies", None, None, S::OK)
        .await;
    let seats = "/movies/{movie_id}/seats";
    c.call(M::GET, seats, "/movies/inception/seats", None, None, S::OK)
        .await;
    c.call(
        M::GET,
        seats,
        "/movies/nope/seats",
        None,
        None,
        S::NOT_FOUND,
    )
    .await;
    c.call(
        M::GET,
        "/movies/{movie_id}/events",
        "/movies/inception/events",
        None,
        None,
        S::OK,
    )
    .await;
    let hold = "/movies/{movie_id}/seats/{seat_id}/hold";
    let held = c
        .call(
            M::POST,
            hold,
            "/movies/inception/seats/A1/hold",
            None,
            user("alice"),
            S::CREATED,
        )
        .await;
    c.call(
        M::POST,
        hold,
        "/movies/inception/seats/A1/hold",
        None,
        user("bob"),
        S::CONFLICT,
    )
    .await;
    c.call(
        M::POST,
        hold,
        "/movies/inception/seats/A2/hold",
        None,
        user("no one"),
        S::UNPROCESSABLE_ENTITY,
    )
    .await;
    c.call(
        M::POST,
        hold,
        "/movies/inception/seats/Z9/hold",
        None,
        user("bob"),
        S::NOT_FOUND,
    )
    .await;
    let session = held["session_id"].as_str().unwrap().to_owned();
    let confirm = "/sessions/{session_id}/confirm";
    c.call(
        M::PUT,
        confirm,
        &format!("/sessions/{session}/confirm"),
        None,
        user("alice"),
        S::OK,
    )
    .await;
    c.call(
        M::PUT,
        confirm,
        &format!("/sessions/{session}/confirm"),
        None,
        user("bob"),
        S::NOT_FOUND,
    )
    .await;
    let release = "/sessions/{session_id}";
    c.call(
        M::DELETE,
        release,
        &format!("/sessions/{session}"),
        None,
        user("alice"),
        S::CONFLICT,
    )
    .await;
    let other = c
        .call(
            M::POST,
            hold,
            "/movies/inception/seats/A3/hold",
            None,
            user("alice"),
            S::CREATED,
        )
        .await;
    let other = other["session_id"].as_str().unwrap().to_owned();
    c.call(
        M::DELETE,
        release,
        &format!("/sessions/{other}"),
        None,
        user("alice"),
        S::NO_CONTENT,
    )
    .await;

    // The API.
    let identity = c
        .call(
            M::POST,
            "/api/v1/identities",
            "/api/v1/identities",
            None,
            None,
            S::CREATED,
        )
        .await;
    let token = identity["token"].as_str().unwrap().to_owned();
    let t = Some(token.as_str());
    c.call(M::GET, "/api/v1/movies", "/api/v1/movies", t, None, S::OK)
        .await;
    c.call(
        M::GET,
        "/api/v1/movies",
        "/api/v1/movies",
        None,
        None,
        S::UNAUTHORIZED,
    )
    .await;
    let map = "/api/v1/movies/{movie_id}/seats";
    c.call(
        M::GET,
        map,
        "/api/v1/movies/inception/seats",
        t,
        None,
        S::OK,
    )
    .await;
    c.call(
        M::GET,
        map,
        "/api/v1/movies/nope/seats",
        t,
        None,
        S::NOT_FOUND,
    )
    .await;
    c.call(
        M::GET,
        "/api/v1/movies/{movie_id}/events",
        "/api/v1/movies/inception/events",
        None,
        None,
        S::OK,
    )
    .await;
    let holds = "/api/v1/movies/{movie_id}/holds";
    let path = "/api/v1/movies/inception/holds";
    let group = c
        .call(
            M::POST,
            holds,
            path,
            t,
            Some(json!({ "seat_ids": ["C4", "C5"] })),
            S::CREATED,
        )
        .await;
    let best = c
        .call(
            M::POST,
            holds,
            path,
            t,
            Some(json!({ "quantity": 3 })),
            S::CREATED,
        )
        .await;
    let lost = c
        .call(
            M::POST,
            holds,
            path,
            t,
            Some(json!({ "seat_ids": ["C5", "C6"] })),
            S::CONFLICT,
        )
        .await;
    assert!(lost["suggestion"]["seat_ids"].is_array(), "{lost}");
    c.call(
        M::POST,
        holds,
        path,
        t,
        Some(json!({ "quantity": 9 })),
        S::UNPROCESSABLE_ENTITY,
    )
    .await;
    c.call(
        M::POST,
        holds,
        path,
        t,
        Some(json!({ "quantity": 4 })),
        S::TOO_MANY_REQUESTS,
    )
    .await;
    c.call(
        M::POST,
        holds,
        path,
        None,
        Some(json!({ "quantity": 1 })),
        S::UNAUTHORIZED,
    )
    .await;
    c.call(
        M::GET,
        "/api/v1/me/sessions",
        "/api/v1/me/sessions",
        t,
        None,
        S::OK,
    )
    .await;
    let group = group["session_id"].as_str().unwrap().to_owned();
    let best = best["session_id"].as_str().unwrap().to_owned();
    let one = "/api/v1/sessions/{session_id}";
    c.call(
        M::GET,
        one,
        &format!("/api/v1/sessions/{group}"),
        t,
        None,
        S::OK,
    )
    .await;
    c.call(
        M::GET,
        one,
        &format!("/api/v1/sessions/{}", uuid::Uuid::new_v4()),
        t,
        None,
        S::NOT_FOUND,
    )
    .await;
    let extend = "/api/v1/sessions/{session_id}/extend";
    c.call(
        M::POST,
        extend,
        &format!("/api/v1/sessions/{group}/extend"),
        t,
        None,
        S::OK,
    )
    .await;
    let confirm = "/api/v1/sessions/{session_id}/confirm";
    c.call(
        M::POST,
        confirm,
        &format!("/api/v1/sessions/{group}/confirm"),
        t,
        None,
        S::OK,
    )
    .await;
    c.call(
        M::POST,
        extend,
        &format!("/api/v1/sessions/{group}/extend"),
        t,
        None,
        S::CONFLICT,
    )
    .await;
    c.call(
        M::DELETE,
        one,
        &format!("/api/v1/sessions/{group}"),
        t,
        None,
        S::CONFLICT,
    )
    .await;
    c.call(
        M::DELETE,
        one,
        &format!("/api/v1/sessions/{best}"),
        t,
        None,
        S::NO_CONTENT,
    )
    .await;
    c.call(
        M::POST,
        confirm,
        &format!("/api/v1/sessions/{best}/confirm"),
        t,
        None,
        S::GONE,
    )
    .await;
    c.call(
        M::GET,
        "/api/v1/me/sessions",
        "/api/v1/me/sessions",
        t,
        None,
        S::OK,
    )
    .await;

    let missed: Vec<_> = c.documented().difference(&c.called).cloned().collect();
    assert!(missed.is_empty(), "documented but never called: {missed:?}");
}
