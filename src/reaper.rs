//! The background sweep that deletes expired holds, old idempotency keys, long-ended
//! sessions and runs of holds past their re-hold window. Garbage collection only: every read and
//! hold already treats an expired hold as gone, whether or not this has run.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::store::{Housekeeping, StoreResult};

/// Sweeps every `interval`, in batches of `batch` rows until a batch comes back short.
/// Safe to run in every server process at once: the stores skip rows another sweep holds.
pub fn spawn<S: Housekeeping + 'static>(
    store: S,
    interval: Duration,
    batch: u32,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            sweep(&store, batch).await;
        }
    })
}

async fn sweep<S: Housekeeping>(store: &S, batch: u32) {
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
    in_batches(batch, "idempotency keys", || store.forget_keys(batch)).await;
    in_batches(batch, "ended sessions", || store.forget_sessions(batch)).await;
    in_batches(batch, "runs of holds", || store.forget_runs(batch)).await;
}

/// Runs `forget` until a batch comes back short, or fails.
async fn in_batches<F: Future<Output = StoreResult<u64>>>(
    batch: u32,
    what: &str,
    mut forget: impl FnMut() -> F,
) {
    loop {
        match forget().await {
            Ok(n) if n == u64::from(batch) => continue,
            Ok(_) => break,
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "forgetting old {what} failed"
                );
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::booking::HoldPolicy;
    use crate::domain::{ScreeningId, SeatId, UserId};
    use crate::store::{Catalogue, MemoryStore, Seats, StoreError};

    #[tokio::test]
    async fn a_sweep_reaps_lapsed_holds_then_forgets_sessions_past_their_retention() {
        let store = MemoryStore::new(HoldPolicy {
            ttl: Duration::from_millis(20),
            session_retention: Duration::from_millis(1),
            ..HoldPolicy::default()
        });
        let movie = store
            .movie(&ScreeningId::parse("inception").unwrap())
            .await
            .unwrap();
        let alice = UserId::parse("alice".to_owned()).unwrap();
        let seats = vec![SeatId::parse("A1").unwrap()];
        let hold = store.hold(&movie, seats, &alice, None).await.unwrap();
        tokio::time::sleep((hold.expires_at - hold.server_time).to_std().unwrap() * 2).await;
        sweep(&store, 10).await;
        assert!(matches!(
            store.confirm(hold.session_id, &alice).await,
            Err(StoreError::SessionNotFound)
        ));
    }
}
