//! Commands (`execute`), sessions and idempotency keys: group holds under a race, best
//! available, extensions, replays, ownership.

use crate::*;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{LONG_TTL, Opened, StoreUnderTest, policy};
use boxoffice::booking::{Claim, Final, Kept, Keyed};
use boxoffice::booking::{Command, Effect, HoldPolicy, Refusal, Want};
use boxoffice::domain::SessionStatus;
use boxoffice::domain::{Movie, SeatId, UserId};
use boxoffice::events::{ChangeKind, Message};
use boxoffice::store::{ChangeFeed, Seats, Store, StoreError, StoreResult};
use tokio::sync::Barrier;

pub(crate) fn api_user() -> UserId {
    UserId::issue()
}

async fn open_with<B: StoreUnderTest>(policy: HoldPolicy) -> Opened<B::Store> {
    B::open(policy).await
}

pub(crate) fn roomy() -> HoldPolicy {
    policy(LONG_TTL, 100)
}

pub(crate) async fn hold_seats<S: Store>(
    store: &S,
    user: &UserId,
    movie: &Movie,
    want: Want,
) -> StoreResult<boxoffice::domain::Hold> {
    let command = Command::Hold {
        movie: movie.clone(),
        want,
        from: None,
    };
    match store.execute(user, command, None).await? {
        Keyed::Done(Effect::Held(hold)) => Ok(hold),
        other => panic!("a hold answered {other:?}"),
    }
}

pub(crate) fn claim<'a>(key: &'a str, fingerprint: &'a str) -> Claim<'a> {
    Claim {
        key,
        fingerprint,
        admit: &|_| Ok(()),
    }
}

/// Who holds each taken seat of a movie.
pub(crate) async fn holders<S: Store>(store: &S, movie_id: &str) -> BTreeMap<SeatId, UserId> {
    let map = store.seat_map(movie_id).await.unwrap();
    map.into_iter().map(|t| (t.seat_id, t.user_id)).collect()
}

/// A small deterministic generator: the same states on every run, many of them.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n
    }
}

/// Whether some row has `n` adjacent free seats; whether some such block strands no seat.
fn blocks(movie: &Movie, taken: &BTreeSet<SeatId>, n: usize) -> (bool, bool) {
    let (mut any, mut clean) = (false, false);
    for row in 0..movie.rows {
        let free: Vec<bool> = (1..=movie.seats_per_row)
            .map(|number| !taken.contains(&seat_at(row, number)))
            .collect();
        for start in 0..=free.len().saturating_sub(n) {
            if free[start..start + n].iter().all(|f| *f) {
                any = true;
                clean |= !strands(&free, start, n);
            }
        }
    }
    (any, clean)
}

fn seat_at(row: i32, number: i32) -> SeatId {
    SeatId::parse(&format!("{}{number}", char::from(b'A' + row as u8))).unwrap()
}

/// Whether the block of `n` from `start` leaves a single free seat beside it.
fn strands(free: &[bool], start: usize, n: usize) -> bool {
    let end = start + n;
    let left = start >= 1 && free[start - 1] && (start == 1 || !free[start - 2]);
    let right = end < free.len() && free[end] && (end + 1 == free.len() || !free[end + 1]);
    left || right
}

fn row_and_number(seat: &SeatId) -> (u8, i32) {
    let s = seat.as_str();
    (s.as_bytes()[0], s[1..].parse().unwrap())
}

pub(crate) async fn extend<S: Store>(
    store: &S,
    user: &UserId,
    session: boxoffice::domain::SessionId,
) -> StoreResult<boxoffice::domain::SessionInfo> {
    match store.execute(user, Command::Extend(session), None).await? {
        Keyed::Done(Effect::Extended(info)) => Ok(info),
        other => panic!("extend answered {other:?}"),
    }
}

async fn overlapping_group_holds_are_all_or_nothing<B: StoreUnderTest>() {
    let s = open_with::<B>(roomy()).await;
    let store = Arc::new(s.store.clone());
    // 24 seats, 40 groups of 2 to 4 seats from the same 10: most must lose.
    let dune = movie(&s.store, "dune-part-two").await;
    let pool: Vec<&str> = vec!["A1", "A2", "A3", "A4", "A5", "B1", "B2", "B3", "B4", "B5"];
    let mut rng = Lcg(7);
    let requests: Vec<Vec<SeatId>> = (0..40)
        .map(|_| {
            let size = 2 + rng.below(3);
            let mut picked = BTreeSet::new();
            while picked.len() < size {
                picked.insert(pool[rng.below(pool.len())]);
            }
            seats(&picked.into_iter().collect::<Vec<_>>())
        })
        .collect();
    let barrier = Arc::new(Barrier::new(requests.len()));
    let tasks: Vec<_> = requests
        .iter()
        .cloned()
        .map(|wanted| {
            let (store, barrier, dune) = (store.clone(), barrier.clone(), dune.clone());
            tokio::spawn(async move {
                let user = api_user();
                barrier.wait().await;
                let answer = hold_seats(&*store, &user, &dune, Want::Seats(wanted.clone())).await;
                (user, wanted, answer)
            })
        })
        .collect();
    let mut won: BTreeMap<SeatId, UserId> = BTreeMap::new();
    let mut refusals = Vec::new();
    for task in tasks {
        let (user, wanted, answer) = task.await.unwrap();
        match answer {
            Ok(hold) => {
                assert_eq!(hold.seats, wanted, "a hold has exactly the seats asked for");
                for seat in hold.seats {
                    assert!(
                        won.insert(seat.clone(), user.clone()).is_none(),
                        "{seat} twice"
                    );
                }
            }
            Err(StoreError::SeatTaken(taken)) => refusals.push((wanted, taken)),
            Err(other) => panic!("only seat_taken may refuse a group: {other:?}"),
        }
    }
    assert_eq!(
        holders(&s.store, "dune-part-two").await,
        won,
        "every winner has all its seats, and nobody else any"
    );
    assert!(!won.is_empty());
    for (wanted, taken) in refusals {
        assert!(!taken.is_empty());
        for seat in &taken {
            assert!(
                wanted.contains(seat),
                "a refusal names only seats asked for"
            );
            assert!(
                won.contains_key(seat),
                "{seat}: refused for a seat nobody holds"
            );
        }
    }
}

async fn best_available_seats_together_without_stranding_when_it_can<B: StoreUnderTest>() {
    let s = open_with::<B>(roomy()).await;
    let dune = movie(&s.store, "dune-part-two").await;
    let filler = api_user();
    let mut rng = Lcg(42);
    for state in 0..25 {
        // A random room state: some seats held by someone, then a group of 1 to 5.
        let all: Vec<SeatId> = dune.seat_ids().collect();
        let wanted_taken = rng.below(all.len() - 4);
        let mut taken = BTreeSet::new();
        while taken.len() < wanted_taken {
            taken.insert(all[rng.below(all.len())].clone());
        }
        let mut fill = Vec::new();
        for seat in &taken {
            fill.push(
                hold_seats(&s.store, &filler, &dune, Want::Seats(vec![seat.clone()]))
                    .await
                    .unwrap(),
            );
        }
        let n = 1 + rng.below(5.min(all.len() - taken.len()));
        let (together, clean) = blocks(&dune, &taken, n);
        let user = api_user();
        let hold = hold_seats(&s.store, &user, &dune, Want::Best(n))
            .await
            .unwrap();
        assert_eq!(hold.seats.len(), n, "state {state}");
        assert!(
            hold.seats.iter().all(|seat| !taken.contains(seat)),
            "state {state}: gave a taken seat"
        );
        let places: Vec<(u8, i32)> = hold.seats.iter().map(row_and_number).collect();
        let one_row = places.iter().all(|p| p.0 == places[0].0);
        let mut numbers: Vec<i32> = places.iter().map(|p| p.1).collect();
        numbers.sort();
        let adjacent = one_row && numbers.windows(2).all(|w| w[1] == w[0] + 1);
        assert_eq!(
            adjacent, together,
            "state {state}: {taken:?} + {n} gave {:?}",
            hold.seats
        );
        if adjacent {
            let row = i32::from(places[0].0 - b'A');
            let free: Vec<bool> = (1..=dune.seats_per_row)
                .map(|number| !taken.contains(&seat_at(row, number)))
                .collect();
            let stranded = strands(&free, (numbers[0] - 1) as usize, n);
            assert!(
                !(clean && stranded),
                "state {state}: {taken:?} + {n} stranded a seat: {:?}",
                hold.seats
            );
        }
        // Back to an empty room.
        s.store.release(hold.session_id, &user).await.unwrap();
        for h in fill {
            s.store.release(h.session_id, &filler).await.unwrap();
        }
    }
}

async fn concurrent_best_available_requests_all_succeed_while_seats_remain<B: StoreUnderTest>() {
    let s = open_with::<B>(roomy()).await;
    let store = Arc::new(s.store.clone());
    let dune = movie(&s.store, "dune-part-two").await;
    let barrier = Arc::new(Barrier::new(12));
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let (store, barrier, dune) = (store.clone(), barrier.clone(), dune.clone());
            tokio::spawn(async move {
                let user = api_user();
                barrier.wait().await;
                hold_seats(&*store, &user, &dune, Want::Best(2)).await
            })
        })
        .collect();
    let mut held = BTreeSet::new();
    for task in tasks {
        let hold = task
            .await
            .unwrap()
            .expect("24 seats for 12 pairs: none may be refused");
        for seat in hold.seats {
            assert!(held.insert(seat));
        }
    }
    assert_eq!(held.len(), 24);
    let late = hold_seats(&s.store, &api_user(), &dune, Want::Best(1)).await;
    assert!(
        matches!(late, Err(StoreError::NotEnoughSeats { free: 0 })),
        "{late:?}"
    );
}

async fn a_hold_is_extended_at_most_the_allowed_times_and_tells_the_streams<B: StoreUnderTest>() {
    let s = open_with::<B>(HoldPolicy {
        max_extensions: 2,
        max_lifetime: Duration::from_secs(3600),
        ..roomy()
    })
    .await;
    let inception = movie(&s.store, "inception").await;
    let user = api_user();
    let hold = hold_seats(
        &s.store,
        &user,
        &inception,
        Want::Seats(seats(&["A1", "A2"])),
    )
    .await
    .unwrap();
    let mut events = s.store.events().subscribe("inception", None).receiver;
    let mut deadline = hold.expires_at;
    for n in 1..=2 {
        let info = extend(&s.store, &user, hold.session_id).await.unwrap();
        assert!(
            info.expires_at > deadline,
            "extension {n} moved the deadline later"
        );
        assert_eq!(info.extensions, n);
        assert_eq!(info.status, SessionStatus::Held);
        deadline = info.expires_at;
        let message = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Message::Change { change, .. } = events.recv().await.unwrap()
                    && change.kind == ChangeKind::Extended
                {
                    return change;
                }
            }
        })
        .await
        .expect("an extension is published");
        assert_eq!(message.seat_ids, seats(&["A1", "A2"]));
        assert_eq!(message.expires_at, Some(deadline));
    }
    assert!(matches!(
        extend(&s.store, &user, hold.session_id).await,
        Err(StoreError::ExtensionLimit)
    ));
    let info = s.store.session(hold.session_id, &user).await.unwrap();
    assert_eq!(
        (info.expires_at, info.extensions),
        (deadline, 2),
        "a refused extension changes nothing"
    );
    let map = s.store.seat_map("inception").await.unwrap();
    assert!(
        map.iter().all(|t| t.expires_at == Some(deadline)),
        "the seats carry the new deadline"
    );
}

async fn no_extension_goes_past_the_hold_lifetime<B: StoreUnderTest>() {
    // The lifetime is the TTL: any extension would end later than it.
    let s = open_with::<B>(HoldPolicy {
        max_lifetime: LONG_TTL,
        ..roomy()
    })
    .await;
    let inception = movie(&s.store, "inception").await;
    let user = api_user();
    let hold = hold_seats(&s.store, &user, &inception, Want::Best(1))
        .await
        .unwrap();
    assert!(matches!(
        extend(&s.store, &user, hold.session_id).await,
        Err(StoreError::ExtensionLimit)
    ));
    s.store.confirm(hold.session_id, &user).await.unwrap();
    assert!(matches!(
        extend(&s.store, &user, hold.session_id).await,
        Err(StoreError::AlreadyConfirmed)
    ));
}

async fn a_key_replays_its_first_answer_and_refuses_another_request<B: StoreUnderTest>() {
    let s = open_with::<B>(roomy()).await;
    let inception = movie(&s.store, "inception").await;
    let user = api_user();
    let command = || Command::Hold {
        movie: inception.clone(),
        want: Want::Best(2),
        from: None,
    };
    let first = s
        .store
        .execute(&user, command(), Some(claim("k-1", "best 2")))
        .await
        .unwrap();
    let Keyed::Done(Effect::Held(hold)) = &first else {
        panic!("{first:?}")
    };
    let again = s
        .store
        .execute(&user, command(), Some(claim("k-1", "best 2")))
        .await
        .unwrap();
    let Keyed::Replayed(replay) = again else {
        panic!("a retry is replayed: {again:?}")
    };
    assert_eq!(replay, Kept::Done(Effect::Held(hold.clone())));
    assert_eq!(
        holders(&s.store, "inception").await.len(),
        2,
        "the retry held nothing more"
    );

    let other = s
        .store
        .execute(&user, command(), Some(claim("k-1", "best 3")))
        .await;
    assert!(matches!(other, Err(StoreError::KeyReused)), "{other:?}");
    // The same key of another user is another key.
    let stranger = api_user();
    let theirs = s
        .store
        .execute(&stranger, command(), Some(claim("k-1", "best 3")))
        .await
        .unwrap();
    assert!(matches!(theirs, Keyed::Done(_)));
    assert_eq!(holders(&s.store, "inception").await.len(), 4);
}

async fn an_answer_not_kept_lets_a_retry_do_the_work<B: StoreUnderTest>() {
    let s = open_with::<B>(roomy()).await;
    let inception = movie(&s.store, "inception").await;
    let (alice, bob) = (api_user(), api_user());
    let a1 = hold_seats(&s.store, &alice, &inception, Want::Seats(seats(&["A1"])))
        .await
        .unwrap();
    let command = || Command::Hold {
        movie: inception.clone(),
        want: Want::Seats(seats(&["A1"])),
        from: None,
    };
    let lost = s
        .store
        .execute(&bob, command(), Some(claim("retry", "A1")))
        .await;
    assert!(matches!(lost, Err(StoreError::SeatTaken(_))), "{lost:?}");
    s.store.release(a1.session_id, &alice).await.unwrap();
    let retried = s
        .store
        .execute(&bob, command(), Some(claim("retry", "A1")))
        .await
        .unwrap();
    assert!(
        matches!(retried, Keyed::Done(Effect::Held(_))),
        "{retried:?}"
    );
}

/// A refusal the same request meets again is kept too, and replayed without a second try.
async fn a_final_refusal_is_kept_and_replayed<B: StoreUnderTest>() {
    let s = open_with::<B>(roomy()).await;
    let inception = movie(&s.store, "inception").await;
    let user = api_user();
    let command = || Command::Hold {
        movie: inception.clone(),
        want: Want::Seats(seats(&["A1", "A1"])),
        from: None,
    };
    let first = s
        .store
        .execute(&user, command(), Some(claim("twice", "A1 A1")))
        .await;
    assert!(
        matches!(&first, Err(StoreError::DuplicateSeat(seat)) if seat.as_str() == "A1"),
        "{first:?}"
    );
    let again = s
        .store
        .execute(&user, command(), Some(claim("twice", "A1 A1")))
        .await
        .unwrap();
    let Keyed::Replayed(kept) = again else {
        panic!("a retry is replayed: {again:?}")
    };
    assert_eq!(
        kept,
        Kept::Refused(Final::DuplicateSeat(seats(&["A1"])[0].clone()))
    );
}

async fn one_key_sent_at_once_many_times_acts_once<B: StoreUnderTest>() {
    let s = open_with::<B>(roomy()).await;
    let store = Arc::new(s.store.clone());
    let inception = movie(&s.store, "inception").await;
    let user = api_user();
    let barrier = Arc::new(Barrier::new(10));
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let (store, barrier, inception, user) = (
                store.clone(),
                barrier.clone(),
                inception.clone(),
                user.clone(),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                let command = Command::Hold {
                    movie: inception,
                    want: Want::Best(2),
                    from: None,
                };
                store
                    .execute(&user, command, Some(claim("once", "best 2")))
                    .await
            })
        })
        .collect();
    let mut done = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(Keyed::Done(_)) => done += 1,
            Ok(Keyed::Replayed(_)) | Err(StoreError::KeyInFlight) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(done, 1, "one request did the work");
    assert_eq!(holders(&s.store, "inception").await.len(), 2);
}

async fn every_session_command_refuses_everyone_but_the_owner<B: StoreUnderTest>() {
    let s = open_with::<B>(roomy()).await;
    let inception = movie(&s.store, "inception").await;
    let (owner, stranger) = (api_user(), api_user());
    let hold = hold_seats(
        &s.store,
        &owner,
        &inception,
        Want::Seats(seats(&["B2", "B3"])),
    )
    .await
    .unwrap();
    let before = s.store.session(hold.session_id, &owner).await.unwrap();
    let guessed = boxoffice::domain::SessionId::new();
    for (who, session) in [(&stranger, hold.session_id), (&owner, guessed)] {
        assert!(matches!(
            s.store.session(session, who).await,
            Err(StoreError::SessionNotFound)
        ));
        for command in [Command::Extend(session), Command::Confirm(session)] {
            let answer = s.store.execute(who, command, None).await;
            assert!(
                matches!(answer, Err(StoreError::SessionNotFound)),
                "{answer:?}"
            );
        }
        assert!(matches!(
            s.store.release(session, who).await,
            Err(StoreError::SessionNotFound)
        ));
    }
    assert!(s.store.user_sessions(&stranger).await.unwrap().is_empty());
    assert_eq!(
        s.store.session(hold.session_id, &owner).await.unwrap(),
        before,
        "nothing changed"
    );
}

async fn a_confirmed_session_has_a_booking_reference_that_stays<B: StoreUnderTest>() {
    let s = open_with::<B>(roomy()).await;
    let inception = movie(&s.store, "inception").await;
    let user = api_user();
    let hold = hold_seats(
        &s.store,
        &user,
        &inception,
        Want::Seats(seats(&["C1", "C2"])),
    )
    .await
    .unwrap();
    let confirm = || {
        s.store.execute(
            &user,
            Command::Confirm(hold.session_id),
            Some(claim("c", "confirm")),
        )
    };
    let Keyed::Done(Effect::Confirmed(booking)) = confirm().await.unwrap() else {
        panic!("confirmed")
    };
    let again = s.store.confirm(hold.session_id, &user).await.unwrap();
    assert_eq!(
        again.reference, booking.reference,
        "confirming again answers the same reference"
    );
    let info = s.store.session(hold.session_id, &user).await.unwrap();
    assert_eq!(info.reference, Some(booking.reference.clone()));
    assert_eq!(info.status, SessionStatus::Confirmed);
    assert_eq!(info.seats, seats(&["C1", "C2"]));
    let mine = s.store.user_sessions(&user).await.unwrap();
    assert_eq!(mine, [info]);
}

async fn a_released_session_still_shows_its_seats_to_its_owner<B: StoreUnderTest>() {
    let s = open_with::<B>(roomy()).await;
    let inception = movie(&s.store, "inception").await;
    let user = api_user();
    let hold = hold_seats(
        &s.store,
        &user,
        &inception,
        Want::Seats(seats(&["D1", "D2"])),
    )
    .await
    .unwrap();
    s.store.release(hold.session_id, &user).await.unwrap();
    let info = s.store.session(hold.session_id, &user).await.unwrap();
    assert_eq!(
        (info.status, info.seats),
        (SessionStatus::Released, seats(&["D1", "D2"]))
    );
    assert!(
        s.store.user_sessions(&user).await.unwrap().is_empty(),
        "not live"
    );
}

/// The caller's gate (`Claim::admit`) is asked about every new key, told how many the user
/// keeps, and not asked about a retry answered with its kept response; its refusal does
/// nothing and keeps nothing.
async fn a_new_key_passes_the_gate_with_the_users_key_count_and_a_replay_does_not<
    B: StoreUnderTest,
>() {
    use std::sync::Mutex;
    let s = open_with::<B>(roomy()).await;
    let inception = movie(&s.store, "inception").await;
    let user = api_user();
    let asked = Mutex::new(Vec::new());
    let gate = |kept: u64| {
        asked.lock().unwrap().push(kept);
        if kept >= 2 {
            return Err(Refusal::TooManyKeys { limit: 2 });
        }
        Ok(())
    };
    let keyed = |key: &'static str| Claim {
        key,
        fingerprint: "best 1",
        admit: &gate,
    };
    let command = || Command::Hold {
        movie: inception.clone(),
        want: Want::Best(1),
        from: None,
    };
    for key in ["g-1", "g-2"] {
        let done = s.store.execute(&user, command(), Some(keyed(key))).await;
        assert!(matches!(done, Ok(Keyed::Done(_))), "{done:?}");
    }
    let replayed = s.store.execute(&user, command(), Some(keyed("g-1"))).await;
    assert!(matches!(replayed, Ok(Keyed::Replayed(_))), "{replayed:?}");
    let refused = s.store.execute(&user, command(), Some(keyed("g-3"))).await;
    assert!(
        matches!(
            refused,
            Err(StoreError::Refused(Refusal::TooManyKeys { limit: 2 }))
        ),
        "{refused:?}"
    );
    assert_eq!(*asked.lock().unwrap(), [0, 1, 2], "asked for new keys only");
    assert_eq!(
        holders(&s.store, "inception").await.len(),
        2,
        "the refusal held nothing"
    );
    // Nothing was kept for the refused key: with the gate open, it acts.
    let later = s
        .store
        .execute(&user, command(), Some(claim("g-3", "best 1")))
        .await;
    assert!(matches!(later, Ok(Keyed::Done(_))), "{later:?}");
}

seats_contract!(
    overlapping_group_holds_are_all_or_nothing,
    best_available_seats_together_without_stranding_when_it_can,
    concurrent_best_available_requests_all_succeed_while_seats_remain,
    a_hold_is_extended_at_most_the_allowed_times_and_tells_the_streams,
    no_extension_goes_past_the_hold_lifetime,
    a_key_replays_its_first_answer_and_refuses_another_request,
    an_answer_not_kept_lets_a_retry_do_the_work,
    one_key_sent_at_once_many_times_acts_once,
    a_final_refusal_is_kept_and_replayed,
    every_session_command_refuses_everyone_but_the_owner,
    a_confirmed_session_has_a_booking_reference_that_stays,
    a_released_session_still_shows_its_seats_to_its_owner,
    a_new_key_passes_the_gate_with_the_users_key_count_and_a_replay_does_not,
);
