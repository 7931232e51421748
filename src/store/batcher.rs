//! Requests decided in batches by a few worker tasks: a bounded queue that refuses at once
//! when full, requests dropped before they are decided when their caller has gone or their
//! time to start has run out, and workers that are started again when they die.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::time::Instant;

/// Why a request was not answered by the decider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue was full; nothing was done.
    QueueFull,
    /// Its time to start ran out while it was queued; nothing was done.
    NotStarted,
    /// No worker runs (the batcher is shutting down); nothing was done.
    Stopped,
    /// Its worker died while deciding it: it may or may not have been carried out.
    Lost,
}

/// A request's place in the queue. The worker that takes it and a caller that gives up race
/// for it; exactly one of them wins, so a request is either decided or answered as not
/// started, never both.
const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const ABANDONED: u8 = 2;

struct Job<Req, Res> {
    request: Req,
    ticket: Arc<AtomicU8>,
    reply: oneshot::Sender<Res>,
}

/// How many workers run, and how often they were started again.
#[derive(Default)]
struct Health {
    running: AtomicUsize,
    restarts: AtomicUsize,
}

pub struct Batcher<Req, Res> {
    queue: mpsc::Sender<Job<Req, Res>>,
    health: Arc<Health>,
}

impl<Req, Res> Clone for Batcher<Req, Res> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            health: self.health.clone(),
        }
    }
}

/// A worker that dies is started again at once; one that dies again within `SETTLED` of that
/// start waits first, the pause doubling up to `MAX_PAUSE`, so that requests that kill every
/// worker cannot keep them spinning.
const SETTLED: Duration = Duration::from_secs(1);
const MAX_PAUSE: Duration = Duration::from_secs(30);

impl<Req: Send + 'static, Res: Send + 'static> Batcher<Req, Res> {
    /// Starts `workers` tasks. Each takes whatever is queued when it becomes free (at most
    /// `max_batch`) and gives it to `decide`, which answers each request in order.
    pub fn start<F, Fut>(workers: usize, capacity: usize, max_batch: usize, decide: F) -> Self
    where
        F: Fn(Vec<Req>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Vec<Res>> + Send + 'static,
    {
        let (queue, receiver) = mpsc::channel(capacity.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        let health = Arc::new(Health::default());
        for _ in 0..workers.max(1) {
            // Running from now: a worker spawned is one that will take requests, so the store
            // is ready before the runtime first polls it.
            health.running.fetch_add(1, Ordering::SeqCst);
            let (receiver, health, decide) = (receiver.clone(), health.clone(), decide.clone());
            tokio::spawn(supervise(health, move || {
                work(receiver.clone(), max_batch.max(1), decide.clone())
            }));
        }
        Self { queue, health }
    }

    /// Queues `request` and waits for its answer. If no worker has taken it by `start_by`,
    /// it is dropped unanswered; so it is if this future is dropped first.
    pub async fn submit(&self, request: Req, start_by: Instant) -> Result<Res, Refused> {
        let ticket = Arc::new(AtomicU8::new(QUEUED));
        let (reply, answer) = oneshot::channel();
        let job = Job {
            request,
            ticket: ticket.clone(),
            reply,
        };
        self.queue.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Refused::QueueFull,
            mpsc::error::TrySendError::Closed(_) => Refused::Stopped,
        })?;
        let mut gone = Abandon(ticket.clone());
        let mut answer = answer;
        let outcome = tokio::select! {
            outcome = &mut answer => outcome,
            () = tokio::time::sleep_until(start_by) => {
                if gone.abandon() {
                    return Err(Refused::NotStarted);
                }
                // Taken just in time: the answer comes, within the database's deadlines.
                answer.await
            }
        };
        outcome.map_err(|_| match ticket.load(Ordering::SeqCst) {
            STARTED => Refused::Lost,
            _ => Refused::Stopped,
        })
    }

    /// Whether requests can be served now: some worker runs and the queue has room.
    pub fn ready(&self) -> bool {
        self.health.running.load(Ordering::SeqCst) > 0 && self.queue.capacity() > 0
    }

    /// How many times a dead worker was started again.
    pub fn restarts(&self) -> usize {
        self.health.restarts.load(Ordering::SeqCst)
    }

    /// Requests waiting for a worker.
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }
}

/// Gives up a queued request when the caller stops waiting for it.
struct Abandon(Arc<AtomicU8>);

impl Abandon {
    /// True if the request had not been taken, and now never will be.
    fn abandon(&mut self) -> bool {
        self.0
            .compare_exchange(QUEUED, ABANDONED, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

impl Drop for Abandon {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// Runs the worker `make` builds, and builds another when one dies; returns once a worker
/// ends by itself (every sender is gone). Counted in `running` from before it starts, until
/// it dies, and again from its restart.
async fn supervise<W, Fut>(health: Arc<Health>, make: W)
where
    W: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut pause = Duration::ZERO;
    let mut died_soon_before = false;
    loop {
        let started = Instant::now();
        let ended = tokio::spawn(make()).await;
        health.running.fetch_sub(1, Ordering::SeqCst);
        match ended {
            Err(error) if error.is_panic() => {
                health.restarts.fetch_add(1, Ordering::SeqCst);
                let soon = started.elapsed() < SETTLED;
                pause = if soon && died_soon_before {
                    (pause * 2).clamp(SETTLED, MAX_PAUSE)
                } else {
                    Duration::ZERO
                };
                died_soon_before = soon;
                tracing::error!(
                    restart_in = ?pause,
                    "a hold worker died; its requests were answered 503 outcome_unknown"
                );
                tokio::time::sleep(pause).await;
                health.running.fetch_add(1, Ordering::SeqCst);
            }
            _ => return,
        }
    }
}

async fn work<Req, Res, F, Fut>(
    receiver: Arc<Mutex<mpsc::Receiver<Job<Req, Res>>>>,
    max_batch: usize,
    decide: F,
) where
    F: Fn(Vec<Req>) -> Fut,
    Fut: Future<Output = Vec<Res>>,
{
    loop {
        let mut jobs = Vec::new();
        {
            let mut receiver = receiver.lock().await;
            match receiver.recv().await {
                Some(first) => jobs.push(first),
                None => return,
            }
            while jobs.len() < max_batch {
                match receiver.try_recv() {
                    Ok(next) => jobs.push(next),
                    Err(_) => break,
                }
            }
        }
        // Only requests still waiting are decided; the others are dropped unanswered.
        jobs.retain(|job| {
            job.ticket
                .compare_exchange(QUEUED, STARTED, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        });
        if jobs.is_empty() {
            continue;
        }
        metrics::histogram!(crate::telemetry::HOLD_BATCH_SIZE).record(jobs.len() as f64);
        let (requests, replies): (Vec<Req>, Vec<oneshot::Sender<Res>>) =
            jobs.into_iter().map(|job| (job.request, job.reply)).unzip();
        let answers = decide(requests).await;
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;
    use std::sync::atomic::AtomicBool;
    use tokio::sync::Semaphore;

    /// A decider that records what it was given, waits for a permit per batch, and panics on
    /// request 666 while `deadly` is set.
    #[derive(Clone)]
    struct Probe {
        seen: Arc<StdMutex<Vec<u32>>>,
        permits: Arc<Semaphore>,
        deadly: Arc<AtomicBool>,
    }

    impl Probe {
        fn new(permits: usize) -> Self {
            Self {
                seen: Arc::default(),
                permits: Arc::new(Semaphore::new(permits)),
                deadly: Arc::new(AtomicBool::new(true)),
            }
        }

        fn batcher(&self, workers: usize, capacity: usize) -> Batcher<u32, u32> {
            let probe = self.clone();
            Batcher::start(workers, capacity, 64, move |batch: Vec<u32>| {
                let probe = probe.clone();
                async move {
                    probe.seen.lock().unwrap().extend(&batch);
                    probe.permits.acquire().await.unwrap().forget();
                    if batch.contains(&666) && probe.deadly.load(Ordering::SeqCst) {
                        panic!("a deadly request");
                    }
                    batch.iter().map(|n| n * 10).collect()
                }
            })
        }

        fn seen(&self) -> Vec<u32> {
            self.seen.lock().unwrap().clone()
        }
    }

    /// Ready as soon as it is made, before the runtime has polled any worker (here, a
    /// single-threaded runtime that has not yielded): a new store is not refused a moment.
    #[tokio::test]
    async fn a_new_batcher_is_ready_before_its_workers_first_run() {
        let batcher = Probe::new(1).batcher(2, 4);
        assert!(batcher.ready());
    }

    /// Request 1, which the worker takes and holds on to until the probe gets permits.
    async fn keep_busy(
        probe: &Probe,
        batcher: &Batcher<u32, u32>,
    ) -> tokio::task::JoinHandle<Result<u32, Refused>> {
        let b = batcher.clone();
        let first = tokio::spawn(async move { b.submit(1, later()).await });
        until("the worker took the first", || probe.seen() == [1]).await;
        first
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    async fn until(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn requests_are_answered_in_order_of_their_batch() {
        let probe = Probe::new(100);
        let batcher = probe.batcher(2, 16);
        assert_eq!(batcher.submit(4, later()).await, Ok(40));
        assert!(batcher.ready());
    }

    #[tokio::test]
    async fn a_full_queue_refuses_at_once() {
        let probe = Probe::new(0);
        let batcher = probe.batcher(1, 2);
        let first = keep_busy(&probe, &batcher).await;
        let queued: Vec<_> = (2..=3)
            .map(|n| {
                let b = batcher.clone();
                tokio::spawn(async move { b.submit(n, later()).await })
            })
            .collect();
        until("two are queued", || batcher.queued() == 2).await;
        assert!(!batcher.ready(), "a full queue is not ready");
        assert_eq!(batcher.submit(4, later()).await, Err(Refused::QueueFull));
        probe.permits.add_permits(2);
        assert_eq!(first.await.unwrap(), Ok(10));
        for (n, request) in (2..).zip(queued) {
            assert_eq!(request.await.unwrap(), Ok(n * 10));
        }
    }

    #[tokio::test]
    async fn a_request_whose_caller_left_is_never_decided() {
        let probe = Probe::new(0);
        let batcher = probe.batcher(1, 16);
        let first = keep_busy(&probe, &batcher).await;
        let left = tokio::spawn({
            let b = batcher.clone();
            async move { b.submit(2, later()).await }
        });
        until("the second is queued", || batcher.queued() == 1).await;
        left.abort();
        let _ = left.await;
        probe.permits.add_permits(2);
        assert_eq!(first.await.unwrap(), Ok(10));
        assert_eq!(batcher.submit(3, later()).await, Ok(30));
        assert_eq!(probe.seen(), [1, 3], "request 2 was never decided");
    }

    #[tokio::test]
    async fn a_request_not_started_in_time_is_refused_and_never_decided() {
        let probe = Probe::new(0);
        let batcher = probe.batcher(1, 16);
        let first = keep_busy(&probe, &batcher).await;
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(batcher.submit(2, soon).await, Err(Refused::NotStarted));
        probe.permits.add_permits(2);
        assert_eq!(first.await.unwrap(), Ok(10));
        assert_eq!(batcher.submit(3, later()).await, Ok(30));
        assert_eq!(probe.seen(), [1, 3], "request 2 was never decided");
    }

    #[tokio::test]
    async fn a_dead_worker_is_started_again_and_readiness_says_so_meanwhile() {
        let probe = Probe::new(100);
        let batcher = probe.batcher(1, 16);
        // Its callers cannot know what happened to their requests.
        assert_eq!(batcher.submit(666, later()).await, Err(Refused::Lost));
        until("restarted", || batcher.restarts() == 1).await;
        assert_eq!(batcher.submit(5, later()).await, Ok(50));
        // Dying again at once: the next start waits, and meanwhile nothing is ready.
        assert_eq!(batcher.submit(666, later()).await, Err(Refused::Lost));
        until("not ready while no worker runs", || !batcher.ready()).await;
        probe.deadly.store(false, Ordering::SeqCst);
        until("ready again", || batcher.ready()).await;
        assert_eq!(batcher.submit(6, later()).await, Ok(60));
    }
}
