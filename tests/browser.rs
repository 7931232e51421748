//! The seat-map page in headless Chromium: each scenario in `e2e/` runs against a server of
//! its own on a fresh database. Needs Node with `npm ci --prefix e2e` done and Chromium
//! (`/usr/bin/chromium`, or `CHROMIUM`), which `scripts/test` installs; without them these
//! tests fail, they never skip.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use boxoffice::Config;
use boxoffice::store::PgStore;
use common::{LONG_TTL, TestApp, TestDb, policy, test_config};
use sqlx::postgres::PgPoolOptions;
use tokio::sync::Mutex;

/// One browser at a time: two cores do not run several Chromiums and a server to deadlines.
static ONE_BROWSER: Mutex<()> = Mutex::const_new(());

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn check_prerequisites() {
    assert!(
        Path::new(ROOT)
            .join("e2e/node_modules/playwright-core")
            .is_dir(),
        "browser tests need their Node packages: run `scripts/test`, which installs them \
         (`npm ci --prefix e2e`)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).is_file(),
        "browser tests need Chromium at {chromium}: run `scripts/test`, which installs it \
         (`apt-get install chromium`), or set CHROMIUM"
    );
}

/// Runs `e2e/{scenario}.mjs` against `app`, failing with the script's output if it fails.
async fn run_scenario(scenario: &str, app: &TestApp, db: &TestDb, env: &[(&str, String)]) {
    check_prerequisites();
    let mut command = Command::new("node");
    command
        .arg(format!("e2e/{scenario}.mjs"))
        .current_dir(ROOT)
        .env("BASE_URL", app.url(""))
        .env("DATABASE_URL", &db.url)
        .env("ARTIFACTS", Path::new(ROOT).join("target/e2e-artifacts"));
    for (key, value) in env {
        command.env(key, value);
    }
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run node (is Node.js installed?)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "scenario {scenario} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    eprintln!("{scenario}: {:.1?} — {}", started.elapsed(), stdout.trim());
}

/// Whether the server offers event streams or refuses them, so that the page polls.
#[derive(Clone, Copy)]
enum Streams {
    On,
    Off,
}

async fn app_with_ttl(ttl: Duration) -> (TestApp, TestDb) {
    app_with(ttl, Streams::On, |_| {}).await
}

async fn app_with(
    ttl: Duration,
    streams: Streams,
    configure: impl FnOnce(&mut Config),
) -> (TestApp, TestDb) {
    let db = TestDb::new().await;
    let mut config = test_config();
    config.hold = policy(ttl, 8);
    if let Streams::Off = streams {
        config.max_event_streams = 0;
    }
    configure(&mut config);
    let app = TestApp::spawn(db.store(config.hold, 8).await, config).await;
    (app, db)
}

fn streams_env(streams: Streams) -> [(&'static str, String); 1] {
    let value = match streams {
        Streams::On => "on",
        Streams::Off => "off",
    };
    [("STREAMS", value.to_owned())]
}

async fn two_visitors(streams: Streams) {
    let _browser = ONE_BROWSER.lock().await;
    let (app, db) = app_with(LONG_TTL, streams, |_| {}).await;
    run_scenario("two_visitors", &app, &db, &streams_env(streams)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_visitors_see_each_others_holds_bookings_and_releases() {
    two_visitors(Streams::On).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_visitors_see_each_others_holds_bookings_and_releases_by_polling() {
    two_visitors(Streams::Off).await;
}

async fn expiry(streams: Streams) {
    let _browser = ONE_BROWSER.lock().await;
    // With streams, a holder whose clock estimate is off learns of the expiry from the
    // reaper's event: it runs often here, as the scenario gives it 1.5 s.
    let (app, db) = app_with(Duration::from_secs(4), streams, |config| {
        config.reaper_interval = Duration::from_millis(500);
    })
    .await;
    run_scenario("expiry", &app, &db, &streams_env(streams)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_hold_expires_on_every_screen() {
    expiry(Streams::On).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_hold_expires_on_every_screen_by_polling() {
    expiry(Streams::Off).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_held_together_picked_for_and_offered_seats_after_a_lost_race() {
    let _browser = ONE_BROWSER.lock().await;
    let (app, db) = app_with_ttl(LONG_TTL).await;
    run_scenario("group", &app, &db, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_holds_that_can_still_be_confirmed_or_released() {
    let _browser = ONE_BROWSER.lock().await;
    let (app, db) = app_with_ttl(LONG_TTL).await;
    run_scenario("reload", &app, &db, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seat_can_be_booked_with_the_keyboard_alone() {
    let _browser = ONE_BROWSER.lock().await;
    let (app, db) = app_with_ttl(LONG_TTL).await;
    run_scenario("keyboard", &app, &db, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_movie_list_counts_free_seats_without_reading_other_maps() {
    let _browser = ONE_BROWSER.lock().await;
    let (app, db) = app_with_ttl(LONG_TTL).await;
    run_scenario("movie_list", &app, &db, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seat_map_fits_desktop_and_phone_screens() {
    let _browser = ONE_BROWSER.lock().await;
    let (app, db) = app_with_ttl(LONG_TTL).await;
    run_scenario("screenshots", &app, &db, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_survives_a_database_outage() {
    let _browser = ONE_BROWSER.lock().await;
    let db = TestDb::new().await;
    let app_name = format!("boxoffice-e2e-{}", uuid::Uuid::new_v4().simple());
    let mut config = test_config();
    config.pool.acquire_timeout = Duration::from_millis(500);
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(config.pool.acquire_timeout)
        .connect_lazy_with(db.options().application_name(&app_name));
    let app = TestApp::spawn(PgStore::new(pool, config.hold), config).await;
    let env = [("ADMIN_URL", common::admin_url()), ("APP_NAME", app_name)];
    run_scenario("outage", &app, &db, &env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tutorials_own_page_runs_its_inline_script_and_style() {
    let _browser = ONE_BROWSER.lock().await;
    let (app, db) = app_with(LONG_TTL, Streams::On, |config| {
        config.static_dir = Path::new(ROOT).join("tests/fixtures/tutorial-page");
    })
    .await;
    run_scenario("tutorial", &app, &db, &[]).await;
}
