//! Seat changes as they happen, for the live event streams: the `Hub` each server process
//! keeps, which numbers changes in the order they arrive (commit order: the memory store
//! publishes under its lock, PostgreSQL delivers notifications in commit order), keeps the
//! last few for streams that reconnect, and fans them out to every subscriber.

use std::collections::VecDeque;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::domain::SeatId;

/// What happened to some seats of one movie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Held,
    Confirmed,
    Released,
    Expired,
    /// A hold's deadline moved later; `expires_at` is the new one.
    Extended,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Confirmed => "confirmed",
            Self::Released => "released",
            Self::Expired => "expired",
            Self::Extended => "extended",
        }
    }
}

/// One change: its seats, in seat order, and for a hold or an extension the deadline they
/// share.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Change {
    pub kind: ChangeKind,
    pub movie_id: String,
    pub seat_ids: Vec<SeatId>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What a subscriber receives, numbered by the hub.
#[derive(Debug, Clone)]
pub enum Message {
    Change {
        seq: u64,
        change: Arc<Change>,
    },
    /// Changes may have been missed (the database connection that delivers them was lost, or
    /// one was too large to deliver): read the seat map afresh.
    Resync {
        seq: u64,
    },
}

impl Message {
    pub fn seq(&self) -> u64 {
        match self {
            Self::Change { seq, .. } | Self::Resync { seq } => *seq,
        }
    }
}

/// How many changes the hub keeps for streams that reconnect, and how many a subscriber may
/// fall behind before it is given a fresh snapshot instead.
const REPLAY: usize = 1024;

/// The fan-out of one server process. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    /// Random per process: an event id from another process (or an earlier run of this one)
    /// is never mistaken for one of ours.
    instance: String,
    state: Mutex<State>,
    sender: broadcast::Sender<Message>,
}

struct State {
    /// The last number given out.
    seq: u64,
    /// The last `REPLAY` messages, oldest first.
    recent: VecDeque<Message>,
    /// Whether changes are being delivered: a hub fed by a database connection is not until
    /// that connection listens, nor while it is lost.
    live: bool,
}

/// Where a new subscriber starts.
pub enum Start {
    /// Read a snapshot: it reflects every message numbered up to `version`.
    Snapshot { version: u64 },
    /// Resume: these messages (of the movie asked for, after the id given) were missed.
    Resume(Vec<Message>),
    /// Changes are not being delivered yet: a `Resync` will come once they are.
    Wait,
}

pub struct Subscription {
    pub start: Start,
    /// Every message after the ones `start` accounts for.
    pub receiver: broadcast::Receiver<Message>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// A hub whose changes are published in-process: live from the start.
    pub fn new() -> Self {
        Self::with_live(true)
    }

    /// A hub fed from elsewhere, live from its first `resync`.
    pub fn waiting() -> Self {
        Self::with_live(false)
    }

    fn with_live(live: bool) -> Self {
        let (sender, _) = broadcast::channel(REPLAY);
        Self {
            inner: Arc::new(Inner {
                instance: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
                state: Mutex::new(State {
                    seq: 0,
                    recent: VecDeque::with_capacity(REPLAY),
                    live,
                }),
                sender,
            }),
        }
    }

    /// Numbers `change` and sends it to every subscriber.
    pub fn publish(&self, change: Change) {
        self.send(|seq| Message::Change {
            seq,
            change: Arc::new(change),
        });
    }

    /// Changes have stopped arriving (the connection that delivers them was lost): until the
    /// next `resync`, new subscribers wait rather than read a snapshot that could not be kept
    /// up to date.
    pub fn lost(&self) {
        self.lock().live = false;
    }

    /// Tells every subscriber to read afresh, and forgets what could be replayed: a stream
    /// that reconnects from before this point gets a snapshot. The hub is live from here on.
    pub fn resync(&self) {
        let mut state = self.lock();
        state.live = true;
        state.recent.clear();
        state.seq += 1;
        let _ = self.inner.sender.send(Message::Resync { seq: state.seq });
    }

    fn send(&self, message: impl FnOnce(u64) -> Message) {
        let mut state = self.lock();
        state.seq += 1;
        let message = message(state.seq);
        if state.recent.len() == REPLAY {
            state.recent.pop_front();
        }
        state.recent.push_back(message.clone());
        // No subscriber is not an error.
        let _ = self.inner.sender.send(message);
    }

    /// Subscribes to `movie_id`'s changes, resuming after `last_event_id` when this process
    /// gave that id and still has every change since; otherwise starting from a snapshot.
    pub fn subscribe(&self, movie_id: &str, last_event_id: Option<&str>) -> Subscription {
        let state = self.lock();
        // Under the lock, so no message falls between the start and the receiver.
        let receiver = self.inner.sender.subscribe();
        let resumable = last_event_id
            .and_then(|id| self.parse_id(movie_id, id))
            .filter(|&last| {
                let oldest = state.recent.front().map_or(state.seq + 1, Message::seq);
                last <= state.seq && last + 1 >= oldest
            });
        let start = match resumable {
            _ if !state.live => Start::Wait,
            Some(last) => Start::Resume(
                state
                    .recent
                    .iter()
                    .filter(|m| m.seq() > last && concerns(m, movie_id))
                    .cloned()
                    .collect(),
            ),
            None => Start::Snapshot { version: state.seq },
        };
        Subscription { start, receiver }
    }

    /// The last number given out.
    pub fn version(&self) -> u64 {
        self.lock().seq
    }

    /// The `id:` of `movie_id`'s event numbered `seq`: this process, the movie (so that an
    /// id is only resumed on the stream that gave it) and the number.
    pub fn event_id(&self, movie_id: &str, seq: u64) -> String {
        format!("{}-{:08x}-{seq}", self.inner.instance, movie_tag(movie_id))
    }

    fn parse_id(&self, movie_id: &str, id: &str) -> Option<u64> {
        let rest = id.strip_prefix(self.inner.instance.as_str())?;
        let rest = rest.strip_prefix(&format!("-{:08x}-", movie_tag(movie_id)))?;
        rest.parse().ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every change to the state is complete before anything can panic.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Whether a subscriber of `movie_id` needs `message`.
pub fn concerns(message: &Message, movie_id: &str) -> bool {
    match message {
        Message::Change { change, .. } => change.movie_id == movie_id,
        Message::Resync { .. } => true,
    }
}

fn movie_tag(movie_id: &str) -> u32 {
    let mut hasher = DefaultHasher::new();
    movie_id.hash(&mut hasher);
    hasher.finish() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(movie: &str, seat: &str) -> Change {
        Change {
            kind: ChangeKind::Held,
            movie_id: movie.into(),
            seat_ids: vec![SeatId::parse(seat).unwrap()],
            expires_at: None,
        }
    }

    fn seqs(start: &Start) -> Vec<u64> {
        match start {
            Start::Resume(messages) => messages.iter().map(Message::seq).collect(),
            Start::Snapshot { .. } | Start::Wait => panic!("expected to resume"),
        }
    }

    #[test]
    fn a_subscriber_resumes_after_its_last_id_with_only_its_movies_changes() {
        let hub = Hub::new();
        hub.publish(held("inception", "A1"));
        let last = hub.event_id("inception", hub.version());
        hub.publish(held("dune-part-two", "A1"));
        hub.publish(held("inception", "A2"));
        let sub = hub.subscribe("inception", Some(&last));
        assert_eq!(seqs(&sub.start), [3]);
    }

    #[test]
    fn unknown_foreign_and_too_old_ids_get_a_snapshot() {
        let hub = Hub::new();
        hub.publish(held("inception", "A1"));
        let first = hub.event_id("inception", 1);
        let other = Hub::new().event_id("inception", 1);
        let other_movie = hub.event_id("dune-part-two", 1);
        for id in [other.as_str(), other_movie.as_str(), "garbage", "", "x-1"] {
            let sub = hub.subscribe("inception", Some(id));
            assert!(
                matches!(sub.start, Start::Snapshot { version: 1 }),
                "{id:?}"
            );
        }
        // Changes 2 to REPLAY + 2: the buffer keeps the last REPLAY, from 3 on.
        for n in 0..=REPLAY {
            hub.publish(held("inception", if n % 2 == 0 { "A2" } else { "A3" }));
        }
        // Change 2 fell out of the buffer: resuming after 1 would leave a gap.
        let sub = hub.subscribe("inception", Some(&first));
        assert!(matches!(sub.start, Start::Snapshot { .. }));
        // Resuming after 2 needs only what is still kept.
        let second = hub.event_id("inception", 2);
        let sub = hub.subscribe("inception", Some(&second));
        assert_eq!(seqs(&sub.start).len(), REPLAY);
    }

    #[test]
    fn an_id_from_the_future_gets_a_snapshot() {
        let hub = Hub::new();
        hub.publish(held("inception", "A1"));
        let ahead = hub.event_id("inception", 5);
        assert!(matches!(
            hub.subscribe("inception", Some(&ahead)).start,
            Start::Snapshot { version: 1 }
        ));
    }

    #[test]
    fn until_changes_arrive_a_subscriber_waits_for_the_resync() {
        let hub = Hub::waiting();
        let mut sub = hub.subscribe("inception", None);
        assert!(matches!(sub.start, Start::Wait));
        hub.resync();
        assert!(matches!(
            sub.receiver.try_recv(),
            Ok(Message::Resync { seq: 1 })
        ));
        assert!(matches!(
            hub.subscribe("inception", None).start,
            Start::Snapshot { version: 1 }
        ));
        hub.lost();
        assert!(matches!(
            hub.subscribe("inception", None).start,
            Start::Wait
        ));
    }

    #[test]
    fn after_a_resync_nothing_from_before_is_resumed() {
        let hub = Hub::new();
        hub.publish(held("inception", "A1"));
        let before = hub.event_id("inception", 1);
        let mut live = hub.subscribe("inception", None).receiver;
        hub.resync();
        assert!(matches!(live.try_recv(), Ok(Message::Resync { seq: 2 })));
        assert!(matches!(
            hub.subscribe("inception", Some(&before)).start,
            Start::Snapshot { version: 2 }
        ));
        // The resync's own id resumes: nothing after it was missed.
        let resync = hub.event_id("inception", 2);
        assert_eq!(
            seqs(&hub.subscribe("inception", Some(&resync)).start),
            Vec::<u64>::new()
        );
    }
}
