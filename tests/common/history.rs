//! A history checker: many users hold, group-hold, confirm, release and extend on a small
//! room through `/api/v1` for a bounded time; every request is recorded with its start, its
//! end and its outcome (done, refused, or unknown: cut off, timed out, or `outcome_unknown`);
//! then the history and the database's final state are checked against the promises:
//!
//! 1. no two sessions are ever both told they hold one seat at the same time, and no seat
//!    ends with two holders;
//! 2. every change acknowledged with a 2xx is in the database afterwards, ledger included;
//!    no change that was refused is, and one whose outcome is unknown happened at most once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Hold,
    Confirm,
    Release,
    Extend,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A 2xx: for a hold, its session; for a hold or an extension, its deadline.
    Done {
        session: Option<Uuid>,
        expires_at: Option<DateTime<Utc>>,
    },
    /// A 4xx, or a 503 other than `outcome_unknown`: nothing was done.
    Refused { status: u16, code: String },
    /// May or may not have taken effect.
    Unknown(String),
}

#[derive(Clone, Debug)]
pub struct Op {
    pub user: String,
    pub kind: Kind,
    /// The session acted on; for a hold, the one it made (if it was told).
    pub session: Option<Uuid>,
    pub seats: Vec<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub outcome: Outcome,
    /// The response's `Retry-After`, if it had one.
    pub retry_after: Option<String>,
}

impl Op {
    pub fn done(&self) -> bool {
        matches!(self.outcome, Outcome::Done { .. })
    }

    pub fn unknown(&self) -> bool {
        matches!(self.outcome, Outcome::Unknown(_))
    }
}

// ---------------------------------------------------------------------------------------
// The load

pub struct Load {
    /// Servers to spread the users over (user i talks to `bases[i % len]`).
    pub bases: Vec<String>,
    pub movie: String,
    /// The room's seats, in order: users go for the first few not yet known to be booked,
    /// so that they keep fighting over a handful of seats however many get booked.
    pub seats: Vec<String>,
    pub users: usize,
    pub duration: Duration,
    /// Longer than the server's request timeout: the server must answer first.
    pub client_timeout: Duration,
}

/// Runs the load and returns every request it made, in no particular order.
pub async fn run(load: Load) -> Vec<Op> {
    let load = Arc::new(load);
    let until = tokio::time::Instant::now() + load.duration;
    let booked = Arc::new(Mutex::new(HashSet::new()));
    let users: Vec<_> = (0..load.users)
        .map(|i| tokio::spawn(user(Arc::clone(&load), i, until, Arc::clone(&booked))))
        .collect();
    let mut history = Vec::new();
    for user in users {
        history.extend(user.await.expect("a user task"));
    }
    history
}

/// A small xorshift generator: a user's choices, reproducible from its number.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// How many of the first seats not known to be booked the users go for.
const HOT_SEATS: usize = 8;

async fn user(
    load: Arc<Load>,
    i: usize,
    until: tokio::time::Instant,
    booked: Arc<Mutex<HashSet<String>>>,
) -> Vec<Op> {
    let client = reqwest::Client::builder()
        .timeout(load.client_timeout)
        .build()
        .unwrap();
    let base = &load.bases[i % load.bases.len()];
    let mut dice = Dice(0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut history = Vec::new();
    // An identity first; the server may be down (that is the point), so until it answers.
    let (user, token) = loop {
        if tokio::time::Instant::now() >= until {
            return history;
        }
        match client
            .post(format!("{base}/api/v1/identities"))
            .send()
            .await
        {
            Ok(response) if response.status() == StatusCode::CREATED => {
                let body: Value = response.json().await.unwrap();
                break (
                    body["user_id"].as_str().unwrap().to_owned(),
                    body["token"].as_str().unwrap().to_owned(),
                );
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let mut held: Option<(Uuid, Vec<String>)> = None;
    while tokio::time::Instant::now() < until {
        let (kind, session, seats) = match &held {
            None => {
                let hot: Vec<&String> = {
                    let booked = booked.lock().unwrap();
                    load.seats
                        .iter()
                        .filter(|seat| !booked.contains(*seat))
                        .take(HOT_SEATS)
                        .collect()
                };
                if hot.len() < 3 {
                    break; // the room is all but sold out
                }
                let count = 1 + dice.below(3);
                let mut seats: Vec<String> = Vec::new();
                while seats.len() < count {
                    let seat = hot[dice.below(hot.len())];
                    if !seats.contains(seat) {
                        seats.push(seat.clone());
                    }
                }
                (Kind::Hold, None, seats)
            }
            Some((session, seats)) => {
                let kind = match dice.below(20) {
                    0 => Kind::Confirm,
                    1..=12 => Kind::Release,
                    _ => Kind::Extend,
                };
                (kind, Some(*session), seats.clone())
            }
        };
        let request = match (kind, session) {
            (Kind::Hold, _) => client
                .post(format!("{base}/api/v1/movies/{}/holds", load.movie))
                .json(&json!({ "seat_ids": seats })),
            (Kind::Confirm, Some(s)) => client.post(format!("{base}/api/v1/sessions/{s}/confirm")),
            (Kind::Release, Some(s)) => client.delete(format!("{base}/api/v1/sessions/{s}")),
            (Kind::Extend, Some(s)) => client.post(format!("{base}/api/v1/sessions/{s}/extend")),
            _ => unreachable!(),
        };
        let start = Utc::now();
        let response = request.bearer_auth(&token).send().await;
        let (outcome, retry_after) = outcome_of(response).await;
        let end = Utc::now();
        let op = Op {
            user: user.clone(),
            kind,
            session: match &outcome {
                Outcome::Done { session, .. } if kind == Kind::Hold => *session,
                _ => session,
            },
            seats,
            start,
            end,
            outcome,
            retry_after,
        };
        held = match (&op.outcome, kind) {
            (Outcome::Done { session, .. }, Kind::Hold) => {
                Some((session.unwrap(), op.seats.clone()))
            }
            (Outcome::Done { .. }, Kind::Extend) => held,
            // A refused extension (the limit, say) leaves the hold as it was.
            (Outcome::Refused { .. }, Kind::Extend) => held,
            // Done, refused (expired, say) or unknown: this session is over for this user.
            _ => None,
        };
        if op.kind == Kind::Confirm && op.done() {
            booked.lock().unwrap().extend(op.seats.iter().cloned());
        }
        let struggling = !op.done() && !matches!(op.outcome, Outcome::Refused { status: 409, .. });
        history.push(op);
        // A moment's thought, longer while the server is struggling or away.
        let pause = if struggling { 50 } else { 5 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    history
}

async fn outcome_of(
    response: Result<reqwest::Response, reqwest::Error>,
) -> (Outcome, Option<String>) {
    let response = match response {
        Ok(response) => response,
        // Never sent: the server was not there.
        Err(error) if error.is_connect() => {
            let refused = Outcome::Refused {
                status: 0,
                code: "cannot_connect".into(),
            };
            return (refused, None);
        }
        Err(error) => return (Outcome::Unknown(error.to_string()), None),
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap_or_default().to_owned());
    let body: Value = match response.bytes().await {
        Ok(bytes) if bytes.is_empty() => Value::Null,
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!("{status} with a body that is not JSON: {bytes:?}");
        }),
        Err(error) => return (Outcome::Unknown(error.to_string()), retry_after),
    };
    let outcome = if status.is_success() {
        Outcome::Done {
            session: body["session_id"].as_str().map(|s| s.parse().unwrap()),
            expires_at: body["expires_at"].as_str().map(|s| s.parse().unwrap()),
        }
    } else {
        let code = body["code"].as_str().unwrap_or_default().to_owned();
        if code == "outcome_unknown" {
            Outcome::Unknown(code)
        } else {
            assert!(
                status.is_client_error() || status == StatusCode::SERVICE_UNAVAILABLE,
                "{status} {body}"
            );
            Outcome::Refused {
                status: status.as_u16(),
                code,
            }
        }
    };
    (outcome, retry_after)
}

// ---------------------------------------------------------------------------------------
// The database afterwards

#[derive(Default, Debug)]
pub struct Snapshot {
    /// Session id → (user, status, seats).
    pub sessions: HashMap<Uuid, (String, String, Vec<String>)>,
    /// (seat, session, confirmed) of every seat row of the movie.
    pub seat_rows: Vec<(String, Uuid, bool)>,
    /// (session, kind, seat) of every ledger row of the movie.
    pub ledger: Vec<(Uuid, String, String)>,
}

impl Snapshot {
    pub async fn read(pool: &PgPool, movie: &str) -> Self {
        let sessions: Vec<(Uuid, String, String, Vec<String>)> = sqlx::query_as(
            "select id, user_id, status, seat_ids from hold_sessions where movie_id = $1",
        )
        .bind(movie)
        .fetch_all(pool)
        .await
        .unwrap();
        let seat_rows = sqlx::query_as(
            "select seat_id, session_id, status = 'confirmed' from seat_holds where movie_id = $1",
        )
        .bind(movie)
        .fetch_all(pool)
        .await
        .unwrap();
        let ledger = sqlx::query_as(
            "select session_id, kind, seat_id from booking_events where movie_id = $1",
        )
        .bind(movie)
        .fetch_all(pool)
        .await
        .unwrap();
        Self {
            sessions: sessions
                .into_iter()
                .map(|(id, user, status, seats)| (id, (user, status, seats)))
                .collect(),
            seat_rows,
            ledger,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The checker

/// Every broken promise found, described; empty when the history and the database agree.
pub fn check(history: &[Op], db: &Snapshot) -> Vec<String> {
    let mut broken = Vec::new();
    let by_session = |kind: Kind| {
        let mut map: HashMap<Uuid, Vec<&Op>> = HashMap::new();
        for op in history.iter().filter(|op| op.kind == kind) {
            if let Some(session) = op.session {
                map.entry(session).or_default().push(op);
            }
        }
        map
    };
    let holds: Vec<&Op> = history
        .iter()
        .filter(|op| op.kind == Kind::Hold && op.done())
        .collect();
    let confirms = by_session(Kind::Confirm);
    let releases = by_session(Kind::Release);
    let extends = by_session(Kind::Extend);
    let ledger_count = |session: Uuid, kind: &str| {
        db.ledger
            .iter()
            .filter(|(s, k, _)| *s == session && k == kind)
            .count()
    };

    // 1. Told at the same time: each acknowledged hold surely held its seats from its answer
    // until its last acknowledged deadline, the start of the first release that may have
    // happened, or for good once confirmed.
    let surely_held: Vec<(&Op, DateTime<Utc>, DateTime<Utc>)> = holds
        .iter()
        .map(|hold| {
            let session = hold.session.unwrap();
            let confirmed = confirms
                .get(&session)
                .is_some_and(|ops| ops.iter().any(|op| op.done()));
            let mut until = match &hold.outcome {
                Outcome::Done { expires_at, .. } => expires_at.expect("a hold's deadline"),
                _ => unreachable!(),
            };
            for extend in extends.get(&session).into_iter().flatten() {
                if let Outcome::Done {
                    expires_at: Some(at),
                    ..
                } = extend.outcome
                {
                    until = until.max(at);
                }
            }
            if confirmed {
                until = DateTime::<Utc>::MAX_UTC;
            }
            for release in releases.get(&session).into_iter().flatten() {
                if release.done() || release.unknown() {
                    until = until.min(release.start);
                }
            }
            (*hold, hold.end, until)
        })
        .collect();
    for (i, (a, a_from, a_until)) in surely_held.iter().enumerate() {
        for (b, b_from, b_until) in &surely_held[i + 1..] {
            let shared: Vec<_> = a.seats.iter().filter(|s| b.seats.contains(s)).collect();
            if !shared.is_empty() && a_from < b_until && b_from < a_until {
                broken.push(format!(
                    "seats {shared:?} told held by two sessions at once: {} ({a_from} to \
                     {a_until}) and {} ({b_from} to {b_until})",
                    a.session.unwrap(),
                    b.session.unwrap()
                ));
            }
        }
    }
    let mut holders: HashMap<&str, HashSet<Uuid>> = HashMap::new();
    for (seat, session, _) in &db.seat_rows {
        holders.entry(seat).or_default().insert(*session);
    }
    for (seat, sessions) in holders {
        if sessions.len() > 1 {
            broken.push(format!("seat {seat} ends with holders {sessions:?}"));
        }
    }

    // 2. Acknowledged changes are there; refused ones are not; unknown ones at most once.
    for hold in &holds {
        let session = hold.session.unwrap();
        match db.sessions.get(&session) {
            None => broken.push(format!(
                "acknowledged hold {session} is not in the database"
            )),
            Some((user, _, seats)) => {
                let mut told = hold.seats.clone();
                told.sort();
                let mut kept = seats.clone();
                kept.sort();
                if *user != hold.user || kept != told {
                    broken.push(format!(
                        "hold {session} was told {} {:?}, the database has {user} {seats:?}",
                        hold.user, hold.seats
                    ));
                }
            }
        }
        if ledger_count(session, "held") != hold.seats.len() {
            broken.push(format!(
                "acknowledged hold {session} has {} held ledger rows for {} seats",
                ledger_count(session, "held"),
                hold.seats.len()
            ));
        }
    }
    let told: HashSet<Uuid> = holds.iter().filter_map(|op| op.session).collect();
    let unknown_holds: HashMap<&str, usize> = history
        .iter()
        .filter(|op| op.kind == Kind::Hold && op.unknown())
        .fold(HashMap::new(), |mut counts, op| {
            *counts.entry(op.user.as_str()).or_default() += 1;
            counts
        });
    let mut untold: HashMap<&str, usize> = HashMap::new();
    for (session, (user, _, _)) in &db.sessions {
        if !told.contains(session) {
            *untold.entry(user.as_str()).or_default() += 1;
        }
    }
    for (user, count) in untold {
        let unknown = unknown_holds.get(user).copied().unwrap_or(0);
        if count > unknown {
            broken.push(format!(
                "{user} has {count} sessions it was never told of, after {unknown} holds of \
                 unknown outcome"
            ));
        }
    }
    for (kind, ops, status, ledger_kind) in [
        (Kind::Confirm, &confirms, "confirmed", "confirmed"),
        (Kind::Release, &releases, "released", "released"),
    ] {
        for (session, ops) in ops {
            let acked = ops.iter().any(|op| op.done());
            let maybe = ops.iter().any(|op| op.unknown());
            let seats = ops[0].seats.len();
            let rows = ledger_count(*session, ledger_kind);
            let now = db
                .sessions
                .get(session)
                .map(|(_, status, _)| status.as_str());
            if acked && (now != Some(status) || rows != seats) {
                broken.push(format!(
                    "{kind:?} of {session} was acknowledged; the session is {now:?} with {rows} \
                     {ledger_kind} ledger rows for {seats} seats"
                ));
            }
            if !acked && !maybe && (now == Some(status) || rows > 0) {
                broken.push(format!(
                    "every {kind:?} of {session} was refused, yet the session is {now:?} with \
                     {rows} {ledger_kind} ledger rows"
                ));
            }
            if rows > seats {
                broken.push(format!(
                    "{session} has {rows} {ledger_kind} ledger rows for {seats} seats"
                ));
            }
        }
    }
    for (session, ops) in &extends {
        let seats = ops[0].seats.len();
        let acked = ops.iter().filter(|op| op.done()).count();
        let maybe = ops.iter().filter(|op| op.unknown()).count();
        let rows = ledger_count(*session, "extended");
        if rows < acked * seats || rows > (acked + maybe) * seats {
            broken.push(format!(
                "{session} has {rows} extended ledger rows for {seats} seats after {acked} \
                 acknowledged and {maybe} unknown extensions"
            ));
        }
    }
    for (seat, session, confirmed) in &db.seat_rows {
        if *confirmed && !confirms.contains_key(session) {
            broken.push(format!(
                "seat {seat} is booked by {session}, which no one asked to confirm"
            ));
        }
    }
    broken
}

// ---------------------------------------------------------------------------------------
// What a run says

pub struct Summary {
    pub ops: usize,
    pub done: usize,
    pub unknown: usize,
    pub refused: usize,
    /// From when the fault ended until the first acknowledged request after it.
    pub recovery: Option<Duration>,
    pub longest: Duration,
}

impl Summary {
    pub fn of(history: &[Op], fault_ended: Option<DateTime<Utc>>) -> Self {
        let recovery = fault_ended.and_then(|ended| {
            history
                .iter()
                .filter(|op| op.done() && op.end >= ended)
                .map(|op| op.end)
                .min()
                .map(|first| (first - ended).to_std().unwrap_or_default())
        });
        Self {
            ops: history.len(),
            done: history.iter().filter(|op| op.done()).count(),
            unknown: history.iter().filter(|op| op.unknown()).count(),
            refused: history
                .iter()
                .filter(|op| matches!(op.outcome, Outcome::Refused { .. }))
                .count(),
            recovery,
            longest: history
                .iter()
                .map(|op| (op.end - op.start).to_std().unwrap_or_default())
                .max()
                .unwrap_or_default(),
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests: {} done, {} refused, {} unknown; longest {:.2} s; recovered in {}",
            self.ops,
            self.done,
            self.refused,
            self.unknown,
            self.longest.as_secs_f64(),
            self.recovery
                .map_or("-".to_owned(), |d| format!("{:.2} s", d.as_secs_f64()))
        )
    }
}
