//! The background sweep that deletes expired holds and old idempotency keys. Garbage collection only: every read and
//! hold already treats an expired hold as gone, whether or not this has run.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::store::SeatStore;

/// Sweeps every `interval`, in batches of `batch` rows until a batch comes back short.
/// Safe to run in every server process at once: the stores skip rows another sweep holds.
pub fn spawn<S: SeatStore>(store: S, interval: Duration, batch: u32) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            sweep(&store, batch).await;
        }
    })
}

async fn sweep<S: SeatStore>(store: &S, batch: u32) {
    metrics::counter!(crate::telemetry::REAPER_RUNS).increment(1);
    let mut total = 0;
    loop {
        match store.reap_expired(batch).await {
            Ok(n) => {
                total += n;
                if n < u64::from(batch) {
                    break;
                }
            }
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "reaper sweep failed"
                );
                break;
            }
        }
    }
    metrics::counter!(crate::telemetry::REAPER_ROWS).increment(total);
    if total > 0 {
        tracing::debug!(expired = total, "reaper removed expired holds");
    }
    forget_keys(store, batch).await;
}

/// Deletes idempotency keys past their lifetime, in batches.
async fn forget_keys<S: SeatStore>(store: &S, batch: u32) {
    loop {
        match store.forget_keys(batch).await {
            Ok(n) if n == u64::from(batch) => continue,
            Ok(_) => break,
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "forgetting old idempotency keys failed"
                );
                break;
            }
        }
    }
}
