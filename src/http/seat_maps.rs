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

/// The last read of a movie, when it started, and how it ended.
struct Latest {
    started: u64,
    outcome: Result<Rendered, AppError>,
}

impl SeatMaps {
    /// The seat map of `movie_id`, from a `render` started after this call: either one this
    /// call runs or one a concurrent call started later and already finished. Reads of one
    /// movie run one at a time. A failed read is shared too, so that while the database is
    /// down a queue of requests is answered 503 together rather than one timeout after
    /// another.
    pub async fn read<F, Fut>(&self, movie_id: &str, render: F) -> Result<Rendered, AppError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Rendered, AppError>>,
    {
        let latest = {
            let mut movies = self.movies.lock().expect("seat-map table poisoned");
            match movies.get(movie_id) {
                Some(latest) => latest.clone(),
                // The id is copied only the first time a movie is read.
                None => movies.entry(movie_id.to_owned()).or_default().clone(),
            }
        };
        let arrived = self.clock.fetch_add(1, Ordering::SeqCst);
        let mut latest = latest.lock().await;
        if let Some(last) = latest.as_ref()
            && last.started > arrived
        {
            return last.outcome.clone();
        }
        let started = self.clock.fetch_add(1, Ordering::SeqCst);
        let outcome = render().await;
        *latest = Some(Latest {
            started,
            outcome: outcome.clone(),
        });
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;
    use tokio::sync::Semaphore;

    /// A render that counts itself and waits for a permit, so the test decides when each
    /// read finishes; reads from `failing_from` on fail as an outage would.
    struct Gate {
        renders: AtomicUsize,
        permits: Semaphore,
        failing_from: usize,
    }

    impl Gate {
        fn new(permits: usize, failing_from: usize) -> Arc<Self> {
            Arc::new(Self {
                renders: AtomicUsize::new(0),
                permits: Semaphore::new(permits),
                failing_from,
            })
        }

        fn renders(&self) -> usize {
            self.renders.load(Ordering::SeqCst)
        }

        async fn render(&self) -> Result<Rendered, AppError> {
            let n = self.renders.fetch_add(1, Ordering::SeqCst) + 1;
            self.permits.acquire().await.expect("open").forget();
            if n >= self.failing_from {
                return Err(AppError::Unavailable);
            }
            Ok(Rendered {
                body: Bytes::from(n.to_string()),
                etag: format!("\"{n}\""),
            })
        }
    }

    /// What a request was given: the body, or the error code.
    type Answer = Result<Bytes, &'static str>;

    async fn read(maps: &SeatMaps, gate: &Gate) -> Answer {
        let outcome = maps.read("inception", || gate.render()).await;
        outcome.map(|r| r.body).map_err(|e| match e {
            AppError::Unavailable => "unavailable",
            _ => "other",
        })
    }

    async fn until(what: &str, condition: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::task::yield_now().await;
        }
    }

    /// A first read is under way when ten more requests arrive; then the reads finish one
    /// by one. Returns the first request's answer and the ten's.
    async fn ten_arrive_during_a_read(gate: Arc<Gate>) -> (Answer, Vec<Answer>) {
        let maps = Arc::new(SeatMaps::default());
        let spawn = |maps: Arc<SeatMaps>, gate: Arc<Gate>| {
            tokio::spawn(async move { read(&maps, &gate).await })
        };
        let first = spawn(maps.clone(), gate.clone());
        until("the first read started", || gate.renders() == 1).await;
        let later: Vec<_> = (0..10).map(|_| spawn(maps.clone(), gate.clone())).collect();
        // One tick for the first arrival, one for its read, one for each of the ten.
        until("the ten arrived", || {
            maps.clock.load(Ordering::SeqCst) == 12
        })
        .await;

        gate.permits.add_permits(1);
        let first = first.await.expect("first request");
        // The first read began before they arrived, so one of them reads again for all.
        until("the second read started", || gate.renders() == 2).await;
        gate.permits.add_permits(1);
        let mut answers = Vec::new();
        for request in later {
            let answer = tokio::time::timeout(Duration::from_secs(10), request).await;
            let renders = gate.renders();
            assert!(
                answer.is_ok(),
                "the ten did not share one read: {renders} reads"
            );
            answers.push(answer.unwrap().expect("later request"));
        }
        assert_eq!(gate.renders(), 2, "two reads for eleven requests");
        (first, answers)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_arriving_during_a_read_share_the_next_read_not_that_one() {
        let (first, later) = ten_arrive_during_a_read(Gate::new(0, usize::MAX)).await;
        assert_eq!(first, Ok(Bytes::from("1")));
        assert_eq!(later, vec![Ok(Bytes::from("2")); 10]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_read_answers_everyone_who_waited_for_it() {
        let (first, later) = ten_arrive_during_a_read(Gate::new(0, 2)).await;
        assert_eq!(first, Ok(Bytes::from("1")));
        assert_eq!(later, vec![Err("unavailable"); 10]);
    }

    #[tokio::test]
    async fn a_request_after_a_finished_read_reads_again() {
        let maps = SeatMaps::default();
        let gate = Gate::new(3, 2);
        assert_eq!(read(&maps, &gate).await, Ok(Bytes::from("1")));
        assert_eq!(read(&maps, &gate).await, Err("unavailable"));
        assert_eq!(gate.renders(), 2);
        assert_eq!(read(&maps, &gate).await, Err("unavailable"));
        assert_eq!(
            gate.renders(),
            3,
            "a failure is not kept for later requests"
        );
    }
}
