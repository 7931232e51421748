//! `MemoryStore`: the same rules as `PgStore`, in process memory, for running without a
//! database. One mutex guards all state, so every operation is atomic; nothing persists.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};

use super::{HoldPolicy, SeatStore, SessionStatus, StoreError, StoreResult, Verdict, lock_order};
use crate::domain::{Booking, Hold, Movie, SeatId, SessionId, TakenSeat, UserId, seed_movies};
use crate::events::{Change, ChangeKind, Hub};
use crate::reports::{Report, Rows};

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
}

struct SeatRow {
    session: SessionId,
    user: UserId,
    /// `None` once confirmed.
    expires_at: Option<DateTime<Utc>>,
}

impl SeatRow {
    fn live(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

struct Session {
    movie_id: String,
    user: UserId,
    seats: Vec<SeatId>,
    status: SessionStatus,
    expires_at: DateTime<Utc>,
}

impl Session {
    fn lapsed(&self, now: DateTime<Utc>) -> bool {
        self.status == SessionStatus::Held && self.expires_at <= now
    }
}

impl MemoryStore {
    pub fn new(policy: HoldPolicy) -> Self {
        let state = State {
            movies: seed_movies(),
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

impl State {
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
        if let Some(live) = self.held_by_user.get_mut(&s.user) {
            live.remove(&session);
            if live.is_empty() {
                self.held_by_user.remove(&s.user);
            }
        }
    }

    fn live_holds(&self, user: &UserId, now: DateTime<Utc>) -> usize {
        self.held_by_user.get(user).map_or(0, |sessions| {
            sessions
                .iter()
                .filter_map(|id| self.sessions.get(id))
                .filter(|s| !s.lapsed(now))
                .map(|s| s.seats.len())
                .sum()
        })
    }
}

impl SeatStore for MemoryStore {
    async fn movies(&self) -> StoreResult<Vec<Movie>> {
        let mut movies = self.lock().movies.clone();
        movies.sort_by(|a, b| (&a.title, &a.id).cmp(&(&b.title, &b.id)));
        Ok(movies)
    }

    async fn movie(&self, movie_id: &str) -> StoreResult<Movie> {
        self.lock()
            .movies
            .iter()
            .find(|m| m.id == movie_id)
            .cloned()
            .ok_or(StoreError::MovieNotFound)
    }

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

    async fn hold(&self, movie: &Movie, seats: Vec<SeatId>, user: &UserId) -> StoreResult<Hold> {
        let seats = lock_order(seats)?;
        let now = Utc::now();
        let mut state = self.lock();

        let taken: Vec<SeatId> = match state.seats.get(&movie.id) {
            Some(map) => seats
                .iter()
                .filter(|seat| map.get(*seat).is_some_and(|row| row.live(now)))
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        if !taken.is_empty() {
            return Err(StoreError::SeatTaken(taken));
        }
        let limit = self.policy.max_holds_per_user;
        if state.live_holds(user, now) + seats.len() > limit as usize {
            return Err(StoreError::LimitReached { limit });
        }

        // Lapsed holds on these seats are taken over.
        let lapsed: Vec<(SeatId, SessionId)> =
            state.seats.get(&movie.id).map_or_else(Vec::new, |map| {
                seats
                    .iter()
                    .filter_map(|seat| map.get(seat).map(|row| (seat.clone(), row.session)))
                    .collect()
            });
        let mut expired = Vec::new();
        for (seat, session) in lapsed {
            state.end_hold(session, SessionStatus::Expired);
            expired.push(seat);
        }
        self.publish(ChangeKind::Expired, &movie.id, expired, None);

        let session = SessionId::new();
        let expires_at = now + self.policy.ttl;
        let map = state.seats.entry(movie.id.clone()).or_default();
        for seat in &seats {
            map.insert(
                seat.clone(),
                SeatRow {
                    session,
                    user: user.clone(),
                    expires_at: Some(expires_at),
                },
            );
        }
        state.sessions.insert(
            session,
            Session {
                movie_id: movie.id.clone(),
                user: user.clone(),
                seats: seats.clone(),
                status: SessionStatus::Held,
                expires_at,
            },
        );
        state
            .held_by_user
            .entry(user.clone())
            .or_default()
            .insert(session);
        self.publish(ChangeKind::Held, &movie.id, seats.clone(), Some(expires_at));

        Ok(Hold {
            session_id: session,
            movie_id: movie.id.clone(),
            seats,
            user_id: user.clone(),
            expires_at,
            server_time: now,
        })
    }

    async fn confirm(&self, session: SessionId, user: &UserId) -> StoreResult<Booking> {
        let now = Utc::now();
        let mut state = self.lock();
        let s = state.own_session(session, user)?;
        let verdict = s.status.confirm(s.lapsed(now))?;
        let booking = Booking {
            session_id: session,
            movie_id: s.movie_id.clone(),
            seats: s.seats.clone(),
            user_id: user.clone(),
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

    async fn report(&self, _: Report, _: Option<&str>) -> StoreResult<Rows> {
        Err(StoreError::ReportsNeedPostgres)
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

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }

    fn events(&self) -> &Hub {
        &self.events
    }
}
