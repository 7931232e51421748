//! The one listening connection of a server process: it receives every seat change committed
//! on the database (migrations/0007 notifies on `boxoffice_seats`), by any process, and hands
//! it to the process's `Hub`.
//!
//! Notifications sent while no connection listens are lost for good, so the loss of the
//! connection is noticed (not reconnected behind our back, as `PgListener::recv` would), and
//! once listening again every subscriber is told to read afresh.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::task::JoinHandle;

use crate::events::{Change, Hub};

pub const CHANNEL: &str = "boxoffice_seats";

/// What `pg_stat_activity.application_name` shows for the listening connection.
pub const APPLICATION_NAME: &str = "boxoffice listener";

/// Reconnecting waits this long after a failure, doubling up to `MAX_PAUSE`.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Runs the listener until the handle is dropped.
pub struct Listener(JoinHandle<()>);

impl Drop for Listener {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Listener {
    pub fn start(options: PgConnectOptions, hub: Hub) -> Self {
        // A pool of one only to open the connection; it never lends it to anyone else.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(options.application_name(APPLICATION_NAME));
        Self(tokio::spawn(run(pool, hub)))
    }
}

async fn run(pool: PgPool, hub: Hub) {
    let mut pause = FIRST_PAUSE;
    loop {
        match listen(&pool).await {
            Ok(mut listener) => {
                pause = FIRST_PAUSE;
                // Listening again: whatever was committed while nobody listened is in a
                // fresh read.
                hub.resync();
                tracing::debug!("listening for seat changes");
                let why = forward(&mut listener, &hub).await;
                hub.lost();
                tracing::warn!(
                    error = %why,
                    "lost the connection that delivers seat changes; reconnecting, and every \
                     event stream reads its seat map afresh"
                );
                // Its connection, if it still has one, goes back to the pool, which checks it
                // before handing it out again.
                drop(listener);
            }
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    retry_in = ?pause,
                    "cannot listen for seat changes"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.eager_reconnect(false);
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Publishes every notification until the connection is lost; returns why it was.
async fn forward(listener: &mut PgListener, hub: &Hub) -> String {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                match serde_json::from_str::<Change>(notification.payload()) {
                    Ok(change) => hub.publish(change),
                    // {"kind": "resync"}, or anything this build cannot read.
                    Err(_) => {
                        tracing::debug!(payload = notification.payload(), "resync");
                        hub.resync();
                    }
                }
            }
            Ok(None) => return "the connection closed".to_owned(),
            Err(error) => return error.to_string(),
        }
    }
}
