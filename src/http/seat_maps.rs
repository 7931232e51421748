//! Seat-map reads of one movie, shared: a request waits for a read that starts after it
//! arrived and takes that read's rendered body, so a rush of polling clients costs one query
//! and one JSON encoding per round instead of one per request, and no client is ever shown a
//! map older than its request (a hold acknowledged before the request is in it).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;

use super::AppError;

/// A seat map as sent: the JSON body and its entity tag.
#[derive(Clone)]
pub struct Rendered {
    pub body: Bytes,
    pub etag: String,
}

#[derive(Default)]
pub struct SeatMaps {
    /// One entry per movie that was read; movies are checked to exist first, so this stays
    /// as small as the programme.
    movies: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Latest>>>>>,
    /// Orders arrivals and read starts: a read serves the requests whose arrival it follows.
    clock: AtomicU64,
}

/// The last read of a movie and when it started.
struct Latest {
    started: u64,
    rendered: Rendered,
}

impl SeatMaps {
    /// The seat map of `movie_id`, from a `render` started after this call: either one this
    /// call runs or one a concurrent call started later and already finished. Reads of one
    /// movie run one at a time; failed reads are not shared.
    pub async fn read<F, Fut>(&self, movie_id: &str, render: F) -> Result<Rendered, AppError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Rendered, AppError>>,
    {
        let latest = self
            .movies
            .lock()
            .expect("seat-map table poisoned")
            .entry(movie_id.to_owned())
            .or_default()
            .clone();
        let arrived = self.clock.fetch_add(1, Ordering::SeqCst);
        let mut latest = latest.lock().await;
        if let Some(last) = latest.as_ref()
            && last.started > arrived
        {
            return Ok(last.rendered.clone());
        }
        let started = self.clock.fetch_add(1, Ordering::SeqCst);
        let rendered = render().await?;
        *latest = Some(Latest {
            started,
            rendered: rendered.clone(),
        });
        Ok(rendered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::Semaphore;

    /// A render that counts itself and waits for a permit, so the test decides when each
    /// read finishes.
    struct Gate {
        renders: AtomicUsize,
        permits: Semaphore,
    }

    impl Gate {
        async fn render(&self) -> Result<Rendered, AppError> {
            let n = self.renders.fetch_add(1, Ordering::SeqCst) + 1;
            self.permits.acquire().await.expect("open").forget();
            Ok(Rendered {
                body: Bytes::from(n.to_string()),
                etag: format!("\"{n}\""),
            })
        }
    }

    async fn until(what: &str, condition: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !condition() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_arriving_during_a_read_share_the_next_read_not_that_one() {
        let maps = Arc::new(SeatMaps::default());
        let gate = Arc::new(Gate {
            renders: AtomicUsize::new(0),
            permits: Semaphore::new(0),
        });
        let read = |maps: Arc<SeatMaps>, gate: Arc<Gate>| {
            tokio::spawn(async move {
                let rendered = maps.read("inception", || gate.render()).await;
                rendered.map(|r| r.body).ok()
            })
        };

        // A first read is under way…
        let first = read(maps.clone(), gate.clone());
        until("the first read started", || {
            gate.renders.load(Ordering::SeqCst) == 1
        })
        .await;
        // …when ten more requests arrive (one tick each on the clock).
        let later: Vec<_> = (0..10).map(|_| read(maps.clone(), gate.clone())).collect();
        until("the ten arrived", || {
            maps.clock.load(Ordering::SeqCst) == 12
        })
        .await;

        gate.permits.add_permits(1);
        assert_eq!(first.await.unwrap(), Some(Bytes::from("1")));
        // The first read began before they arrived, so one of them reads again for all.
        until("the second read started", || {
            gate.renders.load(Ordering::SeqCst) == 2
        })
        .await;
        gate.permits.add_permits(1);
        for request in later {
            let answer = tokio::time::timeout(std::time::Duration::from_secs(10), request).await;
            let renders = gate.renders.load(Ordering::SeqCst);
            assert!(
                answer.is_ok(),
                "the ten did not share one read: {renders} reads"
            );
            assert_eq!(answer.unwrap().unwrap(), Some(Bytes::from("2")));
        }
        assert_eq!(
            gate.renders.load(Ordering::SeqCst),
            2,
            "two reads for eleven requests"
        );
    }

    #[tokio::test]
    async fn a_request_after_a_finished_read_reads_again() {
        let maps = SeatMaps::default();
        let gate = Gate {
            renders: AtomicUsize::new(0),
            permits: Semaphore::new(2),
        };
        let first = maps.read("inception", || gate.render()).await.ok();
        let second = maps.read("inception", || gate.render()).await.ok();
        assert_eq!(first.map(|r| r.body), Some(Bytes::from("1")));
        assert_eq!(second.map(|r| r.body), Some(Bytes::from("2")));
    }
}
