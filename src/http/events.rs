//! The seat map, live, as server-sent events: the streams both APIs' routes open
//! (`/movies/{movie_id}/events`, `/api/v1/movies/{movie_id}/events`), and their caps.
//!
//! A stream opens with a `snapshot` (the taken seats and a version), then sends one event per
//! change (`held`, `confirmed`, `released`, `expired`) with the seats and the new version.
//! Event ids come from this process's hub, so a browser that reconnects with `Last-Event-ID`
//! resumes where it left off when this process still has every change since; otherwise it gets
//! a fresh snapshot. Nothing in a stream names a user: it is public.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};
use tokio_util::sync::CancellationToken;

/// One server-sent event, as the stream's schema describes each (README, "Live updates").
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // only ever described, never built
pub struct SseEvent {
    /// `snapshot`, `held`, `confirmed`, `released`, `expired`, `extended` or `resync`.
    event: String,
    /// Where a reconnecting client resumes (`Last-Event-ID`).
    id: Option<String>,
    /// How long a client waits before reconnecting, in milliseconds.
    retry: Option<u64>,
    /// The event's JSON, as text.
    data: String,
}
use super::limits::ClientIp;
use super::seat_maps::Round;
use super::shares::{Share, Shares};
use super::wire::optional_rfc3339;
use super::{AppError, AppState};
use crate::domain::{Movie, ScreeningId, SeatId, SeatState};
use crate::events::{Change, Message, Start, Subscription};
use crate::store::Store;

/// A comment this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How long a browser waits before reconnecting a stream that ended.
const RETRY: Duration = Duration::from_secs(2);

/// What every stream of this process shares: the cap on how many are open, each address's
/// share of them, and the signal that ends them all (graceful shutdown). Their snapshots are
/// read in the seat maps' rounds.
pub struct Streams {
    open: Arc<Semaphore>,
    per_ip: Shares,
    stop: CancellationToken,
    refusals: Refusals,
}

impl Streams {
    /// At most `max_open` at once, `per_ip` of them from one address (`0`: no share).
    pub fn new(max_open: usize, per_ip: usize, stop: CancellationToken) -> Self {
        Self {
            open: Arc::new(Semaphore::new(max_open)),
            per_ip: Shares::new(per_ip, Vec::new()),
            stop,
            refusals: Refusals::default(),
        }
    }

    /// A place for a stream from `client`: its address's share, then one of the process's.
    fn place(&self, client: ClientIp) -> Result<Place, AppError> {
        let share = match client.0 {
            Some(ip) => Some(
                self.per_ip
                    .take(ip)
                    .ok_or_else(|| self.refuse("address_share"))?,
            ),
            None => None,
        };
        let permit = (self.open.clone().try_acquire_owned()).map_err(|_| self.refuse("cap"))?;
        Ok(Place {
            _permit: permit,
            _share: share,
        })
    }

    /// A stream refused by choice, not by fault: counted, and logged at most every
    /// `REFUSALS_LOGGED_EVERY` with how many there were (a client retrying in a loop must
    /// not fill the log).
    fn refuse(&self, reason: &'static str) -> AppError {
        metrics::counter!(crate::telemetry::EVENT_STREAMS_REFUSED, "reason" => reason).increment(1);
        self.refusals.count(|refused| {
            tracing::warn!(
                refused,
                "event streams refused (MAX_EVENT_STREAMS or MAX_EVENT_STREAMS_PER_IP): \
                 those clients poll instead"
            );
        });
        AppError::TooManyStreams
    }
}

/// How often refused streams are logged, at most.
const REFUSALS_LOGGED_EVERY: Duration = Duration::from_secs(10);

/// Refusals since the last log line, and when that was.
#[derive(Default)]
struct Refusals(Mutex<(u64, Option<std::time::Instant>)>);

impl Refusals {
    /// Counts one, and calls `log` with the count if the last line is old enough.
    fn count(&self, log: impl FnOnce(u64)) {
        let mut state = self.0.lock().expect("refusals poisoned");
        let (count, last) = &mut *state;
        *count += 1;
        if last.is_none_or(|at| at.elapsed() >= REFUSALS_LOGGED_EVERY) {
            log(*count);
            *count = 0;
            *last = Some(std::time::Instant::now());
        }
    }
}

/// An open stream's place: one of the process's, and one of its address's share.
struct Place {
    _permit: OwnedSemaphorePermit,
    _share: Option<Share>,
}

/// One seat of a snapshot.
#[derive(Serialize)]
struct SnapshotSeat {
    seat_id: SeatId,
    /// `held` or `booked`; free seats are not listed.
    state: &'static str,
    #[serde(
        serialize_with = "optional_rfc3339",
        skip_serializing_if = "Option::is_none"
    )]
    expires_at: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct ChangeData<'a> {
    version: u64,
    seat_ids: &'a [SeatId],
    #[serde(
        serialize_with = "optional_rfc3339",
        skip_serializing_if = "Option::is_none"
    )]
    expires_at: Option<DateTime<Utc>>,
}

/// A movie's live seat map for `client`, resumed after `Last-Event-ID` if `headers` name one:
/// what both APIs' stream routes answer.
pub async fn open<S: Store>(
    app: AppState<S>,
    client: ClientIp,
    movie_id: &str,
    headers: &HeaderMap,
) -> Result<Response, AppError> {
    let place = app.streams.place(client)?;
    let movie = app.store.movie(&ScreeningId::parse(movie_id)?).await?;
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok());
    // Subscribed before the snapshot is read, so nothing falls between the two.
    let Subscription { start, receiver } = app.store.events().subscribe(&movie.id, last_event_id);
    let mut feed = Feed::new(app, movie, receiver, place);
    match start {
        Start::Snapshot { version } => {
            let snapshot = feed.snapshot(version).await?;
            feed.pending.push_back(snapshot);
        }
        // The snapshot comes with the resync.
        Start::Wait => {}
        Start::Resume(missed) => {
            for message in missed {
                feed.pending.extend(feed.event(&message));
            }
        }
    }
    let stop = feed.app.streams.stop.clone();
    let events = futures_util::stream::unfold(feed, Feed::next);
    let events = futures_util::StreamExt::take_until(events, stop.cancelled_owned());
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// One open stream.
struct Feed<S> {
    app: AppState<S>,
    movie: Movie,
    receiver: broadcast::Receiver<Message>,
    /// Events to send before waiting for more.
    pending: VecDeque<Event>,
    /// Messages numbered up to this are in the last snapshot sent.
    seen: u64,
    _place: Place,
}

impl<S> Feed<S> {
    /// Counted in the open-streams gauge from here until dropped, whether or not it got as far
    /// as being sent.
    fn new(
        app: AppState<S>,
        movie: Movie,
        receiver: broadcast::Receiver<Message>,
        place: Place,
    ) -> Self {
        metrics::gauge!(crate::telemetry::EVENT_STREAMS).increment(1);
        Self {
            app,
            movie,
            receiver,
            pending: VecDeque::new(),
            seen: 0,
            _place: place,
        }
    }
}

impl<S> Drop for Feed<S> {
    fn drop(&mut self) {
        metrics::gauge!(crate::telemetry::EVENT_STREAMS).decrement(1);
    }
}

impl<S: Store> Feed<S> {
    /// The next event, or `None` to end the stream: the hub is gone, or a snapshot it needed
    /// could not be read (the browser reconnects, and is given one then).
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            let version = match self.receiver.recv().await {
                Ok(message) => match self.event(&message) {
                    Some(event) => return Some((Ok(event), self)),
                    None if matches!(message, Message::Resync { .. }) => message.seq(),
                    None => continue,
                },
                // Fallen too far behind to be sent every change: a snapshot instead, of
                // everything numbered so far (later messages may be in it too, and are
                // applied again; they change nothing).
                Err(RecvError::Lagged(_)) => self.app.store.events().version(),
                Err(RecvError::Closed) => return None,
            };
            // Boxed: an open stream keeps this future between events, and the read's is
            // large (the store's connection handling); only while reading need it be there.
            match Box::pin(self.snapshot(version)).await {
                Ok(snapshot) => return Some((Ok(snapshot), self)),
                Err(_) => return None,
            }
        }
    }

    /// The event for `message`, if this stream sends it as it is: a change of this movie
    /// that the last snapshot does not already show.
    fn event(&self, message: &Message) -> Option<Event> {
        let Message::Change { seq, change } = message else {
            return None;
        };
        if *seq <= self.seen || change.movie_id != self.movie.id {
            return None;
        }
        let Change {
            kind,
            seat_ids,
            expires_at,
            ..
        } = &**change;
        let data = ChangeData {
            version: *seq,
            seat_ids,
            expires_at: *expires_at,
        };
        let event = self.numbered(kind.as_str(), *seq);
        Some(event.json_data(&data).expect("event data serialises"))
    }

    /// A `snapshot` event reflecting every message numbered up to `version`, from a read
    /// started after this call.
    async fn snapshot(&mut self, version: u64) -> Result<Event, AppError> {
        let round = self
            .app
            .seat_maps
            .round(&self.app.store, &self.movie)
            .await?;
        self.seen = version;
        let seats = std::str::from_utf8(round.snapshot(render)).map_err(|_| AppError::Internal)?;
        let server_time = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        // The seats are rendered once for every stream that reads them together.
        let data =
            format!(r#"{{"version":{version},"server_time":"{server_time}","seats":{seats}}}"#);
        Ok(self.numbered("snapshot", version).retry(RETRY).data(data))
    }

    fn numbered(&self, kind: &str, seq: u64) -> Event {
        let id = self.app.store.events().event_id(&self.movie.id, seq);
        Event::default().event(kind).id(id)
    }
}

fn render(round: &Round) -> axum::body::Bytes {
    let seats: Vec<SnapshotSeat> = round
        .taken
        .iter()
        .map(|seat| SnapshotSeat {
            seat_id: seat.seat_id.clone(),
            state: SeatState::of(Some(seat)).as_str(),
            expires_at: seat.expires_at,
        })
        .collect();
    serde_json::to_vec(&seats)
        .expect("our bodies serialize")
        .into()
}
