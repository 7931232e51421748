//! `MemoryStore`: the same rules as `PgStore`, in process memory, for running without a
//! database. One mutex guards all state, so every operation is atomic; nothing persists.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{
    Backend, Catalogue, ChangeFeed, Health, Housekeeping, Seats, Secrets, StoreError, StoreResult,
    lock_order, to_keep,
};

use crate::booking::{Claim, Command, Effect, HoldPolicy, KEY_LIFETIME, Kept, Keyed, Want};

use crate::domain::seating::Room;
use crate::domain::{
    Booking, BookingReference, Hold, Movie, ScreeningId, SeatId, SessionId, TakenSeat, UserId,
    seed_movies,
};
use crate::domain::{SessionInfo, SessionStatus, Verdict, seat_is_live};
use crate::events::{Change, ChangeKind, Hub};

#[derive(Clone)]
pub struct MemoryStore {
    policy: HoldPolicy,
    state: Arc<Mutex<State>>,
    /// Changes are published under the state's lock, so in the order they were made.
    events: Hub,
}

#[derive(Default)]
struct State {
    movies: Vec<Movie>,
    /// Taken seats per movie, in seat order.
    seats: HashMap<String, BTreeMap<SeatId, SeatRow>>,
    sessions: HashMap<SessionId, Session>,
    /// Sessions still marked held (some may have lapsed), per user: the limit counts these.
    held_by_user: HashMap<UserId, HashSet<SessionId>>,
    /// The same per client address, for the cap per address.
    held_by_address: HashMap<IpAddr, HashSet<SessionId>>,
    runs: Runs,
    /// Every session of each user, by the order they were made: oldest first, and one is
    /// forgotten without looking at the others.
    by_user: HashMap<UserId, BTreeMap<u64, SessionId>>,
    /// Sessions made so far: the next one's place in `by_user`.
    sessions_made: u64,
    /// Released and expired sessions, about in the order they ended (an expired one ends when
    /// its hold lapsed, which may be a little before it is reaped), to forget.
    ended: VecDeque<(DateTime<Utc>, SessionId)>,
    keys: Keys,
    /// The signing secret of API tokens, random per process.
    identity_secret: Vec<u8>,
}

/// An outcome kept for an idempotency key.
struct KeptFor {
    fingerprint: String,
    outcome: Kept,
    at: DateTime<Utc>,
}

/// The idempotency keys per user and key, in the order they were kept, and how many each
/// user has: forgetting the old ones takes the oldest first, without looking at the rest.
#[derive(Default)]
struct Keys {
    kept: HashMap<(UserId, String), KeptFor>,
    /// When each key was kept, oldest first; an entry whose key was kept again since (past
    /// its lifetime) is skipped when its turn comes.
    order: VecDeque<(DateTime<Utc>, (UserId, String))>,
    per_user: HashMap<UserId, u64>,
}

impl Keys {
    fn get(&self, key: &(UserId, String)) -> Option<&KeptFor> {
        self.kept.get(key)
    }

    /// How many keys `user` has kept, old ones not yet forgotten included.
    fn count(&self, user: &UserId) -> u64 {
        self.per_user.get(user).copied().unwrap_or(0)
    }

    fn keep(&mut self, key: (UserId, String), kept: KeptFor) {
        self.order.push_back((kept.at, key.clone()));
        let user = key.0.clone();
        if self.kept.insert(key, kept).is_none() {
            *self.per_user.entry(user).or_default() += 1;
        }
    }

    /// Forgets up to `batch` keys past their lifetime, oldest first.
    fn forget(&mut self, now: DateTime<Utc>, batch: u32) -> u64 {
        let mut gone = 0;
        while gone < u64::from(batch)
            && let Some((at, _)) = self.order.front()
            && !fresh(*at, now)
        {
            let (at, key) = self.order.pop_front().expect("a front");
            if self.kept.get(&key).is_none_or(|kept| kept.at != at) {
                continue;
            }
            self.kept.remove(&key);
            if let Some(count) = self.per_user.get_mut(&key.0) {
                *count -= 1;
                if *count == 0 {
                    self.per_user.remove(&key.0);
                }
            }
            gone += 1;
        }
        gone
    }
}

/// Who a run of holds is counted for: the user, and the address they asked from.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Holder {
    User(UserId),
    Address(IpAddr),
}

impl Holder {
    fn of(user: &UserId, from: Option<IpAddr>) -> impl Iterator<Item = Holder> {
        std::iter::once(Holder::User(user.clone())).chain(from.map(Holder::Address))
    }
}

/// A holder's run of holds of one seat (`HoldPolicy::rehold_window`).
#[derive(Clone, Copy)]
struct Run {
    first_at: DateTime<Utc>,
    /// The deadline of its last hold.
    until: DateTime<Utc>,
}

type RunKey = (String, SeatId, Holder);

/// The runs of holds per movie, seat and holder, and the order their deadlines were set in,
/// to forget them without looking at the rest (as `Keys`).
#[derive(Default)]
struct Runs {
    runs: HashMap<RunKey, Run>,
    /// An entry whose run was continued since is skipped when its turn comes.
    order: VecDeque<(DateTime<Utc>, RunKey)>,
}

impl Runs {
    /// When a hold of `seats` by `holders` at `now` begins and ends, as `hold_seats` decides
    /// it (migrations/0011): one that continues runs ends by the earliest of their lifetime
    /// and of their deadlines still to come; one past the lifetime is refused.
    fn clock(
        &self,
        policy: HoldPolicy,
        movie: &str,
        seats: &[SeatId],
        holders: &[Holder],
        now: DateTime<Utc>,
    ) -> StoreResult<Run> {
        let window = policy.rehold_window;
        let runs = if window.is_zero() {
            Vec::new()
        } else {
            self.current(movie, seats, holders, window, now)
        };
        let first_at = runs.iter().map(|run| run.first_at).fold(now, DateTime::min);
        let until = runs
            .iter()
            .map(|run| run.until)
            .filter(|&until| until > now)
            .fold(
                (now + policy.ttl).min(first_at + policy.max_lifetime),
                DateTime::min,
            );
        if until <= now {
            let last = runs.iter().map(|run| run.until).max().unwrap_or(now);
            return Err(StoreError::HeldTooLong {
                retry_at: last + window,
            });
        }
        Ok(Run { first_at, until })
    }

    /// The runs `holders` have of `seats` that a hold at `now` would continue.
    fn current(
        &self,
        movie: &str,
        seats: &[SeatId],
        holders: &[Holder],
        window: Duration,
        now: DateTime<Utc>,
    ) -> Vec<Run> {
        seats
            .iter()
            .flat_map(|seat| holders.iter().map(move |holder| (seat, holder)))
            .filter_map(|(seat, holder)| {
                self.runs
                    .get(&(movie.to_owned(), seat.clone(), holder.clone()))
            })
            .filter(|run| run.until + window > now)
            .copied()
            .collect()
    }

    /// Starts or continues the run of each seat and holder: from `first_at`, to `until`.
    fn record(&mut self, movie: &str, seats: &[SeatId], holders: &[Holder], run: Run) {
        for seat in seats {
            for holder in holders {
                let key = (movie.to_owned(), seat.clone(), holder.clone());
                let kept = self.runs.entry(key.clone()).or_insert(run);
                kept.first_at = run.first_at;
                kept.until = kept.until.max(run.until);
                self.order.push_back((kept.until, key));
            }
        }
    }

    /// Moves the deadline of runs on to `until`, as an extension does.
    fn extend(&mut self, movie: &str, seats: &[SeatId], holders: &[Holder], until: DateTime<Utc>) {
        for seat in seats {
            for holder in holders {
                let key = (movie.to_owned(), seat.clone(), holder.clone());
                if let Some(run) = self.runs.get_mut(&key)
                    && run.until < until
                {
                    run.until = until;
                    self.order.push_back((until, key));
                }
            }
        }
    }

    /// Forgets up to `batch` runs whose window has passed, about oldest first.
    fn forget(&mut self, window: Duration, now: DateTime<Utc>, batch: u32) -> u64 {
        let mut gone = 0;
        while gone < u64::from(batch)
            && let Some((until, _)) = self.order.front()
            && *until + window <= now
        {
            let (until, key) = self.order.pop_front().expect("a front");
            if self.runs.get(&key).is_none_or(|run| run.until != until) {
                continue;
            }
            self.runs.remove(&key);
            gone += 1;
        }
        gone
    }
}

struct SeatRow {
    session: SessionId,
    user: UserId,
    /// `None` once confirmed.
    expires_at: Option<DateTime<Utc>>,
}

impl SeatRow {
    fn live(&self, now: DateTime<Utc>) -> bool {
        seat_is_live(self.expires_at, now)
    }
}

struct Session {
    movie_id: String,
    user: UserId,
    /// The client's address, when known.
    from: Option<IpAddr>,
    /// When the run of holds it continues began (`HoldPolicy::rehold_window`): its lifetime
    /// counts from here.
    began_at: DateTime<Utc>,
    seats: Vec<SeatId>,
    status: SessionStatus,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    extensions: u32,
    reference: Option<BookingReference>,
    /// Its place among its user's (`State::by_user`).
    made: u64,
}

impl Session {
    fn lapsed(&self, now: DateTime<Utc>) -> bool {
        self.status.lapsed(self.expires_at, now)
    }

    fn info(&self, session_id: SessionId, now: DateTime<Utc>) -> SessionInfo {
        SessionInfo {
            session_id,
            movie_id: self.movie_id.clone(),
            seats: self.seats.clone(),
            status: if self.lapsed(now) {
                SessionStatus::Expired
            } else {
                self.status
            },
            created_at: self.created_at,
            expires_at: self.expires_at,
            extensions: self.extensions,
            reference: self.reference.clone(),
        }
    }
}

impl MemoryStore {
    pub fn new(policy: HoldPolicy) -> Self {
        let state = State {
            movies: seed_movies(),
            identity_secret: crate::identity::random_secret(),
            ..State::default()
        };
        Self {
            policy,
            state: Arc::new(Mutex::new(state)),
            events: Hub::new(),
        }
    }

    /// Publishes a change of `seats` (in seat order) of `movie_id`, if there are any.
    fn publish(
        &self,
        kind: ChangeKind,
        movie_id: &str,
        seat_ids: Vec<SeatId>,
        expires_at: Option<DateTime<Utc>>,
    ) {
        if !seat_ids.is_empty() {
            self.events.publish(Change {
                kind,
                movie_id: movie_id.to_owned(),
                seat_ids,
                expires_at,
            });
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves no half-done change behind (every operation
        // checks before it writes), so the state is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl MemoryStore {
    fn hold_in(
        &self,
        state: &mut State,
        movie: &Movie,
        seats: Vec<SeatId>,
        user: &UserId,
        from: Option<IpAddr>,
        now: DateTime<Utc>,
    ) -> StoreResult<Hold> {
        let seats = lock_order(seats)?;
        let taken = state.taken(&movie.id, &seats, now);
        if !taken.is_empty() {
            return Err(StoreError::SeatTaken(taken));
        }
        let holders: Vec<Holder> = Holder::of(user, from).collect();
        let clock = state
            .runs
            .clock(self.policy, &movie.id, &seats, &holders, now)?;
        state.check_quotas(&self.policy, user, from, seats.len(), now)?;
        let expired = state.take_over_lapsed(&movie.id, &seats);
        self.publish(ChangeKind::Expired, &movie.id, expired, None);
        let session = SessionId::new();
        state.insert_hold(
            session,
            Session {
                movie_id: movie.id.clone(),
                user: user.clone(),
                from,
                began_at: clock.first_at,
                seats: seats.clone(),
                status: SessionStatus::Held,
                created_at: now,
                expires_at: clock.until,
                extensions: 0,
                reference: None,
                made: state.sessions_made,
            },
        );
        if !self.policy.rehold_window.is_zero() {
            state.runs.record(&movie.id, &seats, &holders, clock);
        }
        self.publish(
            ChangeKind::Held,
            &movie.id,
            seats.clone(),
            Some(clock.until),
        );
        Ok(Hold {
            session_id: session,
            movie_id: movie.id.clone(),
            seats,
            user_id: user.clone(),
            expires_at: clock.until,
            server_time: now,
        })
    }

    fn confirm_in(
        &self,
        state: &mut State,
        session: SessionId,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<Booking> {
        let s = state.own_session(session, user)?;
        let verdict = s.status.confirm(s.lapsed(now))?;
        let reference = s
            .reference
            .get_or_insert_with(BookingReference::random)
            .clone();
        let booking = Booking {
            session_id: session,
            movie_id: s.movie_id.clone(),
            seats: s.seats.clone(),
            user_id: user.clone(),
            reference,
        };
        if verdict == Verdict::Apply {
            state.end_hold(session, SessionStatus::Confirmed);
            let map = state
                .seats
                .get_mut(&booking.movie_id)
                .expect("held seats have rows");
            for seat in &booking.seats {
                map.get_mut(seat).expect("held seats have rows").expires_at = None;
            }
            self.publish(
                ChangeKind::Confirmed,
                &booking.movie_id,
                booking.seats.clone(),
                None,
            );
        }
        Ok(booking)
    }

    fn extend_in(
        &self,
        state: &mut State,
        session: SessionId,
        user: &UserId,
        now: DateTime<Utc>,
    ) -> StoreResult<SessionInfo> {
        let policy = self.policy;
        let s = state.own_session(session, user)?;
        s.status.extend(s.lapsed(now))?;
        let deadline = (now + policy.ttl).min(s.began_at + policy.max_lifetime);
        if s.extensions >= policy.max_extensions || deadline <= s.expires_at {
            return Err(StoreError::ExtensionLimit);
        }
        s.expires_at = deadline;
        s.extensions += 1;
        let info = s.info(session, now);
        let holders: Vec<Holder> = Holder::of(user, s.from).collect();
        state
            .runs
            .extend(&info.movie_id, &info.seats, &holders, deadline);
        let map = state
            .seats
            .get_mut(&info.movie_id)
            .expect("held seats have rows");
        for seat in &info.seats {
            map.get_mut(seat).expect("held seats have rows").expires_at = Some(deadline);
        }
        self.publish(
            ChangeKind::Extended,
            &info.movie_id,
            info.seats.clone(),
            Some(deadline),
        );
        Ok(info)
    }
}

/// Whether an idempotency key kept `at` is still in force.
fn fresh(at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    // A clock read before another request's lock may be earlier than the key: fresh.
    (now - at)
        .to_std()
        .ok()
        .is_none_or(|age| age < KEY_LIFETIME)
}

impl State {
    /// Which of `seats` of `movie` someone holds or has booked at `now`.
    fn taken(&self, movie: &str, seats: &[SeatId], now: DateTime<Utc>) -> Vec<SeatId> {
        let Some(map) = self.seats.get(movie) else {
            return Vec::new();
        };
        seats
            .iter()
            .filter(|seat| map.get(*seat).is_some_and(|row| row.live(now)))
            .cloned()
            .collect()
    }

    /// Refuses `asked` more seats past the user's quota or their address's.
    fn check_quotas(
        &self,
        policy: &HoldPolicy,
        user: &UserId,
        from: Option<IpAddr>,
        asked: usize,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        if !policy.user_may_hold(self.live_holds(self.held_by_user.get(user), now), asked) {
            let limit = policy.max_holds_per_user;
            return Err(StoreError::LimitReached { limit });
        }
        if let Some(address) = from
            && !policy.address_may_hold(
                self.live_holds(self.held_by_address.get(&address), now),
                asked,
            )
        {
            let limit = policy.max_holds_per_address;
            return Err(StoreError::AddressLimitReached { limit });
        }
        Ok(())
    }

    /// Ends the lapsed holds on `seats` (none is live: `taken` said so), and returns their
    /// seats, which expired.
    fn take_over_lapsed(&mut self, movie: &str, seats: &[SeatId]) -> Vec<SeatId> {
        let lapsed: Vec<(SeatId, SessionId)> = self.seats.get(movie).map_or_else(Vec::new, |map| {
            seats
                .iter()
                .filter_map(|seat| map.get(seat).map(|row| (seat.clone(), row.session)))
                .collect()
        });
        let mut expired = Vec::new();
        for (seat, session) in lapsed {
            self.end_hold(session, SessionStatus::Expired);
            expired.push(seat);
        }
        expired
    }

    /// Records a new hold: its seats' rows, the session, and the indexes by user and address.
    fn insert_hold(&mut self, id: SessionId, session: Session) {
        let map = self.seats.entry(session.movie_id.clone()).or_default();
        for seat in &session.seats {
            map.insert(
                seat.clone(),
                SeatRow {
                    session: id,
                    user: session.user.clone(),
                    expires_at: Some(session.expires_at),
                },
            );
        }
        self.held_by_user
            .entry(session.user.clone())
            .or_default()
            .insert(id);
        if let Some(address) = session.from {
            self.held_by_address.entry(address).or_default().insert(id);
        }
        self.by_user
            .entry(session.user.clone())
            .or_default()
            .insert(self.sessions_made, id);
        self.sessions_made += 1;
        self.sessions.insert(id, session);
    }

    /// The best available seats for a group (`seating`).
    fn best(&self, movie: &Movie, quantity: usize, now: DateTime<Utc>) -> StoreResult<Vec<SeatId>> {
        let taken = self
            .seats
            .get(&movie.id)
            .into_iter()
            .flatten()
            .filter(|(_, row)| row.live(now))
            .map(|(seat, _)| seat);
        let room = Room::new(movie, taken);
        room.best(quantity)
            .ok_or(StoreError::NotEnoughSeats { free: room.free() })
    }
    /// The session if it is `user`'s; someone else's looks exactly like an unknown one.
    fn own_session(&mut self, session: SessionId, user: &UserId) -> StoreResult<&mut Session> {
        self.sessions
            .get_mut(&session)
            .filter(|s| s.user == *user)
            .ok_or(StoreError::SessionNotFound)
    }

    /// Moves a held session to `status` and drops it from its user's live set.
    fn end_hold(&mut self, session: SessionId, status: SessionStatus) {
        let Some(s) = self.sessions.get_mut(&session) else {
            return;
        };
        if s.status != SessionStatus::Held {
            return;
        }
        s.status = status;
        match status {
            SessionStatus::Expired => self.ended.push_back((s.expires_at, session)),
            SessionStatus::Released => self.ended.push_back((Utc::now(), session)),
            SessionStatus::Held | SessionStatus::Confirmed => {}
        }
        if let Some(live) = self.held_by_user.get_mut(&s.user) {
            live.remove(&session);
            if live.is_empty() {
                self.held_by_user.remove(&s.user);
            }
        }
        if let Some(address) = s.from
            && let Some(live) = self.held_by_address.get_mut(&address)
        {
            live.remove(&session);
            if live.is_empty() {
                self.held_by_address.remove(&address);
            }
        }
    }

    /// Removes an ended session and every trace of it but the events already published.
    fn forget(&mut self, session: SessionId) {
        let Some(s) = self.sessions.remove(&session) else {
            return;
        };
        if let Some(ids) = self.by_user.get_mut(&s.user) {
            ids.remove(&s.made);
            if ids.is_empty() {
                self.by_user.remove(&s.user);
            }
        }
    }

    /// How many seats of `sessions` are held and live.
    fn live_holds(&self, sessions: Option<&HashSet<SessionId>>, now: DateTime<Utc>) -> usize {
        sessions.map_or(0, |sessions| {
            sessions
                .iter()
                .filter_map(|id| self.sessions.get(id))
                .filter(|s| !s.lapsed(now))
                .map(|s| s.seats.len())
                .sum()
        })
    }
}

impl Catalogue for MemoryStore {
    async fn movies(&self) -> StoreResult<Vec<Movie>> {
        let mut movies = self.lock().movies.clone();
        movies.sort_by(|a, b| (&a.title, &a.id).cmp(&(&b.title, &b.id)));
        Ok(movies)
    }

    async fn movie(&self, movie_id: &ScreeningId) -> StoreResult<Movie> {
        self.lock()
            .movies
            .iter()
            .find(|m| m.id == movie_id.as_str())
            .cloned()
            .ok_or(StoreError::MovieNotFound)
    }
}

impl Seats for MemoryStore {
    async fn seat_map(&self, movie_id: &str) -> StoreResult<Vec<TakenSeat>> {
        let now = Utc::now();
        let state = self.lock();
        let Some(seats) = state.seats.get(movie_id) else {
            return Ok(Vec::new());
        };
        Ok(seats
            .iter()
            .filter(|(_, row)| row.live(now))
            .map(|(seat, row)| TakenSeat {
                seat_id: seat.clone(),
                user_id: row.user.clone(),
                confirmed: row.expires_at.is_none(),
                expires_at: row.expires_at,
            })
            .collect())
    }

    async fn hold(
        &self,
        movie: &Movie,
        seats: Vec<SeatId>,
        user: &UserId,
        from: Option<IpAddr>,
    ) -> StoreResult<Hold> {
        self.hold_in(&mut self.lock(), movie, seats, user, from, Utc::now())
    }

    async fn confirm(&self, session: SessionId, user: &UserId) -> StoreResult<Booking> {
        self.confirm_in(&mut self.lock(), session, user, Utc::now())
    }

    async fn release(&self, session: SessionId, user: &UserId) -> StoreResult<()> {
        let now = Utc::now();
        let mut state = self.lock();
        let s = state.own_session(session, user)?;
        if s.status.release(s.lapsed(now))? == Verdict::AlreadyDone {
            return Ok(());
        }
        let (movie_id, seats) = (s.movie_id.clone(), s.seats.clone());
        state.end_hold(session, SessionStatus::Released);
        if let Some(map) = state.seats.get_mut(&movie_id) {
            for seat in &seats {
                map.remove(seat);
            }
        }
        self.publish(ChangeKind::Released, &movie_id, seats, None);
        Ok(())
    }

    async fn execute(
        &self,
        user: &UserId,
        command: Command,
        claim: Option<Claim<'_>>,
    ) -> StoreResult<Keyed> {
        // One lock for the lookup, the change and the key: no request is ever seen in flight.
        let mut state = self.lock();
        let now = Utc::now();
        if let Some(claim) = &claim {
            let key = (user.clone(), claim.key.to_owned());
            if let Some(kept) = state.keys.get(&key).filter(|k| fresh(k.at, now)) {
                return if kept.fingerprint == claim.fingerprint {
                    Ok(Keyed::Replayed(kept.outcome.clone()))
                } else {
                    Err(StoreError::KeyReused)
                };
            }
            (claim.admit)(state.keys.count(user)).map_err(StoreError::Refused)?;
        }
        let outcome = match command {
            Command::Hold { movie, want, from } => {
                let seats = match want {
                    Want::Seats(seats) => Ok(seats),
                    Want::Best(quantity) => state.best(&movie, quantity, now),
                };
                seats
                    .and_then(|seats| self.hold_in(&mut state, &movie, seats, user, from, now))
                    .map(Effect::Held)
            }
            Command::Confirm(session) => self
                .confirm_in(&mut state, session, user, now)
                .map(Effect::Confirmed),
            Command::Extend(session) => self
                .extend_in(&mut state, session, user, now)
                .map(Effect::Extended),
        };
        if let Some(claim) = claim
            && let Some(outcome) = to_keep(&outcome)
        {
            let kept = KeptFor {
                fingerprint: claim.fingerprint.to_owned(),
                outcome,
                at: now,
            };
            state.keys.keep((user.clone(), claim.key.to_owned()), kept);
        }
        outcome.map(Keyed::Done)
    }

    async fn session(&self, session: SessionId, user: &UserId) -> StoreResult<SessionInfo> {
        let now = Utc::now();
        Ok(self.lock().own_session(session, user)?.info(session, now))
    }

    async fn user_sessions(&self, user: &UserId) -> StoreResult<Vec<SessionInfo>> {
        let now = Utc::now();
        let state = self.lock();
        let Some(ids) = state.by_user.get(user) else {
            return Ok(Vec::new());
        };
        Ok(ids
            .values()
            .filter_map(|id| Some(state.sessions.get(id)?.info(*id, now)))
            .filter(|info| matches!(info.status, SessionStatus::Held | SessionStatus::Confirmed))
            .collect())
    }
}

impl Secrets for MemoryStore {
    fn identity_secret(&self) -> Pin<Box<dyn Future<Output = StoreResult<Vec<u8>>> + Send + '_>> {
        let secret = self.lock().identity_secret.clone();
        Box::pin(std::future::ready(Ok(secret)))
    }
}

/// Without reports: they read PostgreSQL's views.
impl From<MemoryStore> for Backend<MemoryStore> {
    fn from(store: MemoryStore) -> Self {
        Self {
            secrets: Some(Arc::new(store.clone())),
            reports: None,
            store,
        }
    }
}

impl Housekeeping for MemoryStore {
    async fn forget_keys(&self, batch: u32) -> StoreResult<u64> {
        let now = Utc::now();
        Ok(self.lock().keys.forget(now, batch))
    }

    async fn forget_sessions(&self, batch: u32) -> StoreResult<u64> {
        let cutoff = Utc::now() - self.policy.session_retention;
        let mut state = self.lock();
        let mut gone = 0;
        while gone < u64::from(batch)
            && let Some(&(ended_at, session)) = state.ended.front()
            && ended_at < cutoff
        {
            state.ended.pop_front();
            state.forget(session);
            gone += 1;
        }
        Ok(gone)
    }

    async fn forget_runs(&self, batch: u32) -> StoreResult<u64> {
        let now = Utc::now();
        let window = self.policy.rehold_window;
        Ok(self.lock().runs.forget(window, now, batch))
    }

    async fn reap_expired(&self, batch: u32) -> StoreResult<u64> {
        let now = Utc::now();
        let mut state = self.lock();
        let mut doomed = Vec::new();
        'movies: for (movie, map) in &state.seats {
            for (seat, row) in map {
                if doomed.len() == batch as usize {
                    break 'movies;
                }
                if !row.live(now) {
                    doomed.push((movie.clone(), seat.clone(), row.session));
                }
            }
        }
        let reaped = doomed.len() as u64;
        let mut by_movie: BTreeMap<String, Vec<SeatId>> = BTreeMap::new();
        for (movie, seat, session) in doomed {
            state
                .seats
                .get_mut(&movie)
                .expect("found above")
                .remove(&seat);
            state.end_hold(session, SessionStatus::Expired);
            by_movie.entry(movie).or_default().push(seat);
        }
        for (movie, seats) in by_movie {
            self.publish(ChangeKind::Expired, &movie, seats, None);
        }
        Ok(reaped)
    }
}

impl Health for MemoryStore {
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}

impl ChangeFeed for MemoryStore {
    fn events(&self) -> &Hub {
        &self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(at: DateTime<Utc>) -> KeptFor {
        KeptFor {
            fingerprint: String::new(),
            outcome: Kept::Refused(crate::booking::Final::Expired),
            at,
        }
    }

    fn key(user: &str, key: &str) -> (UserId, String) {
        (UserId::parse(user.into()).unwrap(), key.into())
    }

    /// Forgetting takes the oldest keys first, a batch at a time, and stops at the first
    /// fresh one: it never looks at the rest. A key kept again since is not forgotten by its
    /// old entry, and each user's count follows.
    #[test]
    fn keys_are_forgotten_oldest_first_a_batch_at_a_time() {
        let now = Utc::now();
        let old = now - chrono::Duration::from_std(KEY_LIFETIME).unwrap();
        let mut keys = Keys::default();
        for (n, name) in ["a", "b", "c", "d"].into_iter().enumerate() {
            keys.keep(
                key("alice", name),
                kept(old - chrono::Duration::seconds(10 - n as i64)),
            );
        }
        keys.keep(key("bob", "a"), kept(old));
        // Kept again, fresh, past its lifetime: the old entry must not forget it.
        keys.keep(key("alice", "b"), kept(now));
        keys.keep(key("bob", "fresh"), kept(now));
        assert_eq!(keys.count(&key("alice", "").0), 4);
        assert_eq!(keys.count(&key("bob", "").0), 2);

        assert_eq!(keys.forget(now, 2), 2, "a and c, b's old entry skipped");
        assert!(keys.get(&key("alice", "a")).is_none());
        assert!(keys.get(&key("alice", "b")).is_some());
        assert!(keys.get(&key("alice", "c")).is_none());
        assert_eq!(keys.forget(now, 10), 2, "d and bob's a; then a fresh one");
        assert_eq!(keys.count(&key("alice", "").0), 1);
        assert_eq!(keys.count(&key("bob", "").0), 1);
        assert_eq!(keys.forget(now, 10), 0);
        assert_eq!(keys.order.len(), 2, "only the fresh entries are left");
    }
}
