//! Seat-map reads of one movie, shared: a request waits for a read that starts after it
//! arrived and takes that read's outcome, so a rush of polling clients costs one query per
//! round instead of one per request, and no client is ever shown a map older than its request
//! (a hold acknowledged before the request is in it). Each round is rendered at most once for
//! each format (the tutorial's map, the API's, a stream's snapshot), whoever asks for it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use chrono::{DateTime, Utc};

use super::AppError;
use crate::domain::{Movie, TakenSeat, UserId};
use crate::store::Store;
use crate::telemetry;

/// The seat maps of every movie, read in shared rounds.
pub type SeatMaps = SharedReads<Arc<Round>>;

impl SeatMaps {
    /// A round of `movie`'s taken seats read after this call.
    pub async fn round<S: Store>(&self, store: &S, movie: &Movie) -> Result<Arc<Round>, AppError> {
        self.read(&movie.id, || async {
            let taken = store.seat_map(&movie.id).await?;
            Ok(Arc::new(Round {
                taken,
                read_at: Utc::now(),
                tutorial: OnceLock::new(),
                api: OnceLock::new(),
                snapshot: OnceLock::new(),
            }))
        })
        .await
    }
}

/// One read of a movie's taken seats, and its renderings, each made by the first request
/// that needs it.
pub struct Round {
    /// In seat order.
    pub taken: Vec<TakenSeat>,
    /// When the read ended, on this server's clock.
    pub read_at: DateTime<Utc>,
    tutorial: OnceLock<Rendered>,
    api: OnceLock<Marked>,
    snapshot: OnceLock<Bytes>,
}

impl Round {
    /// The tutorial's map, rendered by `render` the first time.
    pub fn tutorial(&self, render: impl FnOnce(&Self) -> Rendered) -> &Rendered {
        self.tutorial.get_or_init(|| render(self))
    }

    /// The API's map, rendered by `render` the first time.
    pub fn api(&self, render: impl FnOnce(&Self) -> Marked) -> &Marked {
        self.api.get_or_init(|| render(self))
    }

    /// A stream's snapshot, rendered by `render` the first time.
    pub fn snapshot(&self, render: impl FnOnce(&Self) -> Bytes) -> &Bytes {
        self.snapshot.get_or_init(|| render(self))
    }
}

/// A seat map as sent: the JSON body and its entity tag.
#[derive(Clone)]
pub struct Rendered {
    pub body: Bytes,
    pub etag: String,
}

/// A body shared by every caller that says `"yours":false` of every seat, and where that
/// `false` stands for the seats of each user.
pub struct Marked {
    body: Bytes,
    marks: HashMap<UserId, Vec<usize>>,
}

impl Marked {
    /// What `yours` says when it is not `false`: `true` and a space, as long, so marking a
    /// seat moves nothing else in the body.
    const YOURS: &[u8; 5] = b"true ";

    /// `body`, where `false` begins at each of `marks[user]` for the seats of `user`.
    pub fn new(body: Vec<u8>, marks: HashMap<UserId, Vec<usize>>) -> Self {
        debug_assert!(
            marks
                .values()
                .flatten()
                .all(|&at| body[at..].starts_with(b"false"))
        );
        Self {
            body: body.into(),
            marks,
        }
    }

    /// The body as `user` sees it: the shared one, or, if they have seats here, a copy with
    /// those seats marked theirs.
    pub fn for_user(&self, user: &UserId) -> Bytes {
        let Some(marks) = self.marks.get(user) else {
            return self.body.clone();
        };
        let mut body = self.body.to_vec();
        for &at in marks {
            body[at..at + Self::YOURS.len()].copy_from_slice(Self::YOURS);
        }
        body.into()
    }
}

/// Reads of one key at a time, each shared by the requests that arrived before it started.
pub struct SharedReads<T> {
    /// One entry per movie that was read; movies are checked to exist first, so this stays
    /// as small as the programme.
    movies: Mutex<HashMap<String, Slot<T>>>,
    /// Orders arrivals and read starts: a read serves the requests whose arrival it follows.
    clock: AtomicU64,
    /// The metrics' handles, looked up once rather than on every request.
    reads: metrics::Counter,
    waiting: metrics::Gauge,
}

impl<T> Default for SharedReads<T> {
    fn default() -> Self {
        Self {
            movies: Mutex::default(),
            clock: AtomicU64::default(),
            reads: metrics::counter!(telemetry::SEAT_MAP_READS),
            waiting: metrics::gauge!(telemetry::SEAT_MAP_WAITING),
        }
    }
}

/// A movie's last read, locked while the next one runs.
type Slot<T> = Arc<tokio::sync::Mutex<Option<Latest<T>>>>;

/// The last read of a movie, when it started, and how it ended.
struct Latest<T> {
    started: u64,
    finished: u64,
    outcome: Result<T, AppError>,
}

impl<T> Latest<T> {
    /// Whether this read answers a request that arrived at `arrived`: it started later (so it
    /// shows everything acknowledged before), or it failed after (an outage is no older map,
    /// and reading again would make the request wait for two reads to fail).
    fn answers(&self, arrived: u64) -> bool {
        self.started > arrived || (self.outcome.is_err() && self.finished > arrived)
    }
}

impl<T: Clone> SharedReads<T> {
    /// The outcome of a `read` of `movie_id` started after this call: either one this call
    /// runs or one a concurrent call started later and already finished. Reads of one movie
    /// run one at a time. A failed read is shared too, with every request that arrived before
    /// it failed, so that while the database is down a queue of requests is answered 503
    /// together, each within one read's time, rather than one timeout after another.
    pub async fn read<F, Fut>(&self, movie_id: &str, read: F) -> Result<T, AppError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, AppError>>,
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
        let waiting = Waiting::start(&self.waiting);
        let mut latest = latest.lock().await;
        drop(waiting);
        if let Some(last) = latest.as_ref()
            && last.answers(arrived)
        {
            return last.outcome.clone();
        }
        let started = self.clock.fetch_add(1, Ordering::SeqCst);
        self.reads.increment(1);
        let outcome = read().await;
        *latest = Some(Latest {
            started,
            finished: self.clock.fetch_add(1, Ordering::SeqCst),
            outcome: outcome.clone(),
        });
        outcome
    }
}

/// A request counted in the waiting gauge until dropped, however it ends.
struct Waiting<'a>(&'a metrics::Gauge);

impl<'a> Waiting<'a> {
    fn start(gauge: &'a metrics::Gauge) -> Self {
        gauge.increment(1);
        Self(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.decrement(1);
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

        async fn render(&self) -> Result<Bytes, AppError> {
            let n = self.renders.fetch_add(1, Ordering::SeqCst) + 1;
            self.permits.acquire().await.expect("open").forget();
            if n >= self.failing_from {
                return Err(AppError::Unavailable);
            }
            Ok(Bytes::from(n.to_string()))
        }
    }

    /// What a request was given: the body, or the error code.
    type Answer = Result<Bytes, &'static str>;

    type Reads = SharedReads<Bytes>;

    async fn read(maps: &Reads, gate: &Gate) -> Answer {
        let outcome = maps.read("inception", || gate.render()).await;
        outcome.map_err(|e| match e {
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
        let maps = Arc::new(Reads::default());
        let spawn = |maps: Arc<Reads>, gate: Arc<Gate>| {
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

    /// An outage is no older map: those who arrived while a read was failing get its failure
    /// at once rather than waiting for a read of their own to fail too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_read_that_fails_answers_those_who_arrived_while_it_ran() {
        let maps = Arc::new(Reads::default());
        let gate = Gate::new(0, 1);
        let spawn = || {
            let (maps, gate) = (maps.clone(), gate.clone());
            tokio::spawn(async move { read(&maps, &gate).await })
        };
        let first = spawn();
        until("the first read started", || gate.renders() == 1).await;
        let later: Vec<_> = (0..10).map(|_| spawn()).collect();
        until("the ten arrived", || {
            maps.clock.load(Ordering::SeqCst) == 12
        })
        .await;
        gate.permits.add_permits(1);
        assert_eq!(first.await.unwrap(), Err("unavailable"));
        for request in later {
            assert_eq!(request.await.unwrap(), Err("unavailable"));
        }
        assert_eq!(gate.renders(), 1, "one failed read for eleven requests");
    }

    #[test]
    fn a_shared_body_is_marked_for_its_holders_only_and_stays_json() {
        let body = br#"[{"yours":false},{"yours":false},{"yours":false}]"#.to_vec();
        let (alice, bob) = (
            UserId::parse("alice".into()).unwrap(),
            UserId::parse("bob".into()).unwrap(),
        );
        let marked = Marked::new(body.clone(), HashMap::from([(alice.clone(), vec![10, 42])]));
        let parse = |b: Bytes| serde_json::from_slice::<serde_json::Value>(&b).unwrap();
        assert_eq!(
            parse(marked.for_user(&alice)),
            serde_json::json!([{"yours": true}, {"yours": false}, {"yours": true}])
        );
        let shared = marked.for_user(&bob);
        assert_eq!(shared, Bytes::from(body));
        assert_eq!(
            shared.as_ptr(),
            marked.for_user(&bob).as_ptr(),
            "not copied"
        );
    }

    #[tokio::test]
    async fn a_request_after_a_finished_read_reads_again() {
        let maps = Reads::default();
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
