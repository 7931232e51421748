//! Test support: a fresh PostgreSQL database per test, and the real server on a free port.
//!
//! The database server is chosen once per test binary (`server`): `DATABASE_URL`, else a
//! container, else a throwaway cluster. If none works, tests fail with a message saying how
//! to provide one; they never skip.

#![allow(dead_code)] // each test crate uses its own part of this module

pub mod history;
pub mod pgbouncer;
pub mod process;
pub mod proxy;
pub mod server;
pub mod sse;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use boxoffice::Config;
use boxoffice::booking::HoldPolicy;
use boxoffice::domain::BookingReference;
use boxoffice::store::{Backend, MemoryStore, PgStore, Store};
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::oneshot;

pub const LONG_TTL: Duration = Duration::from_secs(120);
pub const SHORT_TTL: Duration = Duration::from_millis(400);

/// SQL for a booking reference that differs for each integer `n` below 25^6, for fixtures
/// that insert many confirmed sessions in one statement (where `new_booking_reference()`
/// could not see the references it gave out earlier in the statement).
#[allow(dead_code)]
pub fn reference_of(n: &str) -> String {
    let digit = |power: u32| {
        format!(
            "substr('{}', (({n}) / {} % {})::int + 1, 1)",
            BookingReference::ALPHABET,
            (BookingReference::ALPHABET.len() as i64).pow(power),
            BookingReference::ALPHABET.len()
        )
    };
    let digits: Vec<String> = (0..6).rev().map(digit).collect();
    format!(
        "{} || '-' || {}",
        digits[..3].join(" || "),
        digits[3..].join(" || ")
    )
}

pub fn policy(ttl: Duration, max_holds_per_user: u32) -> HoldPolicy {
    HoldPolicy {
        ttl,
        max_holds_per_user,
        ..Config::default().hold
    }
}

/// Sleeps until a hold granted at `server_time` and lasting until `expires_at` has lapsed.
/// Time has to pass here: there is no event to wait for.
pub async fn wait_until_lapsed(server_time: DateTime<Utc>, expires_at: DateTime<Utc>) {
    let ttl = (expires_at - server_time)
        .to_std()
        .expect("expires after it was granted");
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
}

// ---------------------------------------------------------------------------------------
// PostgreSQL

/// The server every test database lives on, as a URL naming its `postgres` database.
fn server_url() -> &'static str {
    &server::get().url
}

/// `url` with its database name replaced by `database`.
pub fn url_for_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    format!("{host_part}/{database}{query}")
}

/// A database of its own for one test, dropped when the value is.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let name = format!("boxoffice_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = admin_connection().await;
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let db = Self {
            url: url_for_database(server_url(), &name),
            name,
        };
        let pool = db.pool(2).await;
        PgStore::new(pool.clone(), policy(LONG_TTL, 8))
            .migrate()
            .await
            .expect("migrate test database");
        pool.close().await;
        db
    }

    /// Connection options as the store's own pool sets them.
    pub fn options(&self) -> PgConnectOptions {
        boxoffice::store::postgres::session_options(self.url.parse().expect("test database URL"))
    }

    pub async fn pool(&self, max_connections: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(self.options())
            .await
            .expect("connect to test database")
    }

    /// A store on a pool of its own, like one server process.
    pub async fn store(&self, policy: HoldPolicy, max_connections: u32) -> PgStore {
        PgStore::new(self.pool(max_connections).await, policy)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside the test's runtime; a thread with a runtime of its own may block.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async {
                    let mut admin = admin_connection().await;
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "drop database if exists {name} with (force)"
                    )))
                    .execute(&mut admin)
                    .await
                })
        })
        .join();
        if !matches!(dropped, Ok(Ok(_))) && !std::thread::panicking() {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}

/// The URL of the server's `postgres` database, for administration.
pub fn admin_url() -> String {
    url_for_database(server_url(), "postgres")
}

async fn admin_connection() -> PgConnection {
    let url = admin_url();
    PgConnection::connect(&url).await.unwrap_or_else(|error| {
        panic!(
            "cannot reach PostgreSQL at {url}: {error}\n\
             Tests need a PostgreSQL server where this user may create databases."
        )
    })
}

/// The server binary with none of this process's environment, run outside the checkout: the
/// binary reads a `.env` from its working directory or above, and a developer's own (as the
/// README suggests for running the server) must not change the tests' servers.
pub fn server_binary() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_boxoffice"));
    command
        .env_clear()
        .env(
            "STATIC_DIR",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("static"),
        )
        // Many servers run at once: each takes a free port for its metrics.
        .env("METRICS_ADDR", "127.0.0.1:0")
        // Their clients are crowds of people, all on 127.0.0.1.
        .env("MAX_CONNECTIONS_PER_IP", "0")
        .env("MAX_EVENT_STREAMS_PER_IP", "0")
        .env("MAX_HOLDS_PER_IP", "0")
        .current_dir(std::env::temp_dir());
    command
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

// ---------------------------------------------------------------------------------------
// Stores, for the contract suite

/// Runs each contract test named against each store listed, as `name: Type` (a module name
/// and a `StoreUnderTest`): `contract!([memory: Memory, postgres: Postgres]; a_test, another_test)`.
/// The test file holds `async fn a_test<B: StoreUnderTest>()` for each.
#[allow(unused_macros)]
macro_rules! contract {
    ([$store:ident: $backend:ident $(, $more:ident: $more_backend:ident)* $(,)?];
     $($name:ident),* $(,)?) => {
        contract!(@store $store $backend; $($name),*);
        contract!([$($more: $more_backend),*]; $($name),*);
    };
    ([]; $($name:ident),* $(,)?) => {};
    (@store $store:ident $backend:ident; $($name:ident),* $(,)?) => {
        mod $store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name::<crate::common::$backend>().await;
                }
            )*
        }
    };
}

/// A store under test, and whatever must live as long as it.
pub struct Opened<S> {
    pub store: S,
    pub db: Option<TestDb>,
}

pub trait StoreUnderTest {
    type Store: Store;
    fn open(policy: HoldPolicy) -> impl Future<Output = Opened<Self::Store>>;
}

pub struct Memory;
pub struct Postgres;
/// PostgreSQL through PgBouncer in transaction mode (`DATABASE_POOLER=transaction`).
pub struct Pooled;

impl StoreUnderTest for Memory {
    type Store = MemoryStore;
    async fn open(policy: HoldPolicy) -> Opened<MemoryStore> {
        Opened {
            store: MemoryStore::new(policy),
            db: None,
        }
    }
}

impl StoreUnderTest for Postgres {
    type Store = PgStore;
    async fn open(policy: HoldPolicy) -> Opened<PgStore> {
        let db = TestDb::new().await;
        Opened {
            store: db.store(policy, 8).await,
            db: Some(db),
        }
    }
}

impl StoreUnderTest for Pooled {
    type Store = PgStore;
    async fn open(policy: HoldPolicy) -> Opened<PgStore> {
        let db = TestDb::new().await;
        let url = pgbouncer::PgBouncer::get().url(&db);
        // No start-up options: the pooler refuses them.
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_lazy_with(url.parse().expect("pooler URL"));
        let store = PgStore::behind_pooler(pool, db.options(), Duration::from_secs(5), policy);
        Opened {
            store,
            db: Some(db),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The server

/// The defaults, on free ports of 127.0.0.1, without the per-address shares: the tests'
/// clients stand for crowds of people, all on 127.0.0.1 (the tests of the shares set them).
pub fn test_config() -> Config {
    let mut config = Config {
        bind_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        metrics_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        static_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("static"),
        max_event_streams_per_ip: 0,
        ..Config::default()
    };
    config.connections.max_connections_per_ip = 0;
    config
}

/// The real router served on a free port of 127.0.0.1 until dropped.
pub struct TestApp {
    pub addr: SocketAddr,
    metrics_addr: SocketAddr,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
}

impl TestApp {
    /// `store` with the cold-path capabilities it has (a `Backend`).
    pub async fn spawn<S: Store>(store: impl Into<Backend<S>>, config: Config) -> Self {
        let backend = store.into();
        let listeners = boxoffice::Listeners::bind(&config).await.expect("bind");
        let addr = listeners.public.local_addr().expect("local addr");
        let metrics_addr = listeners.metrics.local_addr().expect("local addr");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            boxoffice::serve(listeners, backend, &config, async {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
        });
        Self {
            addr,
            metrics_addr,
            client: reqwest::Client::new(),
            stop: Some(stop),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The metrics listener's `/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics_addr)
    }

    /// One scrape of the metrics listener.
    pub async fn metrics(&self) -> String {
        let response = self.client.get(self.metrics_url()).send().await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK);
        response.text().await.unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The sum of the samples of `name` whose labels include every one of `labels`.
pub fn metric(body: &str, name: &str, labels: &[&str]) -> f64 {
    body.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let (series_name, rest) = series.split_once('{').unwrap_or((series, ""));
            series_name == name && labels.iter().all(|label| rest.contains(label))
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

/// A screening whose room is a rectangle of `rows` rows of `seats_per_row` seats, for the tests,
/// fault runs and benchmarks to set up. Today it is a row of `movies`; when the programme
/// makes screenings of films in auditoria with seat layouts, this is the one place to change.
#[allow(dead_code)]
pub struct Rectangle {
    pub id: String,
    pub title: String,
    pub rows: i32,
    pub seats_per_row: i32,
}

#[allow(dead_code)]
impl Rectangle {
    pub fn new(
        id: impl Into<String>,
        title: impl Into<String>,
        rows: i32,
        seats_per_row: i32,
    ) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            rows,
            seats_per_row,
        }
    }
}

/// Sets up `screenings`, all in one statement.
#[allow(dead_code)]
pub async fn rectangular_screenings(pool: &PgPool, screenings: &[Rectangle]) {
    let column = |f: fn(&Rectangle) -> String| screenings.iter().map(f).collect::<Vec<_>>();
    let number = |f: fn(&Rectangle) -> i32| screenings.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "insert into movies (id, title, rows, seats_per_row)
         select * from unnest($1::text[], $2::text[], $3::int[], $4::int[])",
    )
    .bind(column(|s| s.id.clone()))
    .bind(column(|s| s.title.clone()))
    .bind(number(|s| s.rows))
    .bind(number(|s| s.seats_per_row))
    .execute(pool)
    .await
    .expect("set up rectangular screenings");
}

/// The id of a screening a test names.
#[allow(dead_code)]
pub fn screening(id: &str) -> boxoffice::domain::ScreeningId {
    boxoffice::domain::ScreeningId::parse(id).expect("a screening id")
}

/// Asserts a JSON error body with a human message and the stable `code`.
#[allow(dead_code)]
pub async fn assert_error(
    response: reqwest::Response,
    status: reqwest::StatusCode,
    code: &str,
) -> serde_json::Value {
    assert_eq!(response.status(), status, "status for {code}");
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .cloned();
    assert_eq!(
        content_type.as_ref().map(|v| v.to_str().unwrap()),
        Some("application/json"),
        "content type for {code}"
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], code, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    body
}

/// Sends `request` and returns its body as JSON.
pub async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    let response = request.send().await.expect("request");
    response.json().await.expect("a JSON body")
}

/// Raises this process's open-files limit to its hard limit, for tests that open many sockets.
pub fn raise_open_files_limit() {
    unsafe {
        let mut limit = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
