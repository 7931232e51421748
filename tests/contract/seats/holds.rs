//! Holds of named seats, confirms, releases, expiry, and the caps per user and per address.

use crate::common::{LONG_TTL, SHORT_TTL, StoreUnderTest, policy, wait_until_lapsed};
use crate::*;
use boxoffice::booking::HoldPolicy;
use boxoffice::store::{Housekeeping, Seats, StoreError};

async fn holding_a_free_seat_starts_a_live_session<B: StoreUnderTest>() {
    let s = open::<B>().await;
    let h = hold(&s.store, "inception", &["C7"], "alice").await.unwrap();
    assert_eq!(h.seats, seats(&["C7"]));
    assert_eq!(h.movie_id, "inception");
    assert_eq!((h.expires_at - h.server_time).to_std().unwrap(), LONG_TTL);
    assert_eq!(
        taken(&s.store, "inception").await,
        [row("C7", "alice", false)]
    );
    assert_eq!(taken(&s.store, "dune-part-two").await, []);
}

async fn a_second_hold_on_a_held_seat_is_rejected<B: StoreUnderTest>() {
    let s = open::<B>().await;
    hold(&s.store, "inception", &["A1"], "alice").await.unwrap();
    for who in ["bob", "alice"] {
        match hold(&s.store, "inception", &["A1"], who).await {
            Err(StoreError::SeatTaken(seats_taken)) => assert_eq!(seats_taken, seats(&["A1"])),
            other => panic!("expected SeatTaken, got {other:?}"),
        }
    }
    // The same seat id in another movie is another seat.
    hold(&s.store, "dune-part-two", &["A1"], "bob")
        .await
        .unwrap();
    assert_eq!(
        taken(&s.store, "inception").await,
        [row("A1", "alice", false)]
    );
}

async fn a_group_hold_is_all_or_nothing<B: StoreUnderTest>() {
    let s = open::<B>().await;
    hold(&s.store, "the-grand-budapest-hotel", &["A2"], "alice")
        .await
        .unwrap();
    match hold(
        &s.store,
        "the-grand-budapest-hotel",
        &["A3", "A2", "A1"],
        "bob",
    )
    .await
    {
        Err(StoreError::SeatTaken(seats_taken)) => assert_eq!(seats_taken, seats(&["A2"])),
        other => panic!("expected SeatTaken, got {other:?}"),
    }
    assert_eq!(
        taken(&s.store, "the-grand-budapest-hotel").await,
        [row("A2", "alice", false)]
    );
    let group = hold(
        &s.store,
        "the-grand-budapest-hotel",
        &["A3", "A10", "A1"],
        "bob",
    )
    .await;
    // Seats come back in lock order: byte order, so A10 sorts before A3.
    assert_eq!(group.unwrap().seats, seats(&["A1", "A10", "A3"]));
}

async fn a_seat_listed_twice_is_refused<B: StoreUnderTest>() {
    let s = open::<B>().await;
    assert!(matches!(
        hold(&s.store, "inception", &["B1", "B2", "B1"], "alice").await,
        Err(StoreError::DuplicateSeat(seat)) if seat.as_str() == "B1"
    ));
    assert_eq!(taken(&s.store, "inception").await, []);
}

async fn confirming_books_the_seat_for_good<B: StoreUnderTest>() {
    let s = B::open(policy(SHORT_TTL, 8)).await;
    let h = hold(&s.store, "inception", &["B4"], "alice").await.unwrap();
    let booking = s.store.confirm(h.session_id, &user("alice")).await.unwrap();
    assert_eq!(booking.seats, seats(&["B4"]));
    assert_eq!(booking.movie_id, "inception");
    assert_eq!(booking.user_id, user("alice"));
    assert_eq!(
        taken(&s.store, "inception").await,
        [row("B4", "alice", true)]
    );

    // Long after the hold would have lapsed, and after a reaper run, it is still booked.
    wait_until_lapsed(h.server_time, h.expires_at).await;
    s.store.reap_expired(100).await.unwrap();
    assert!(matches!(
        hold(&s.store, "inception", &["B4"], "bob").await,
        Err(StoreError::SeatTaken(_))
    ));
    assert_eq!(
        taken(&s.store, "inception").await,
        [row("B4", "alice", true)]
    );
    // Confirming again answers the same booking.
    assert_eq!(
        s.store.confirm(h.session_id, &user("alice")).await.unwrap(),
        booking
    );
}

async fn someone_elses_session_looks_unknown_and_stays_unchanged<B: StoreUnderTest>() {
    let s = open::<B>().await;
    let h = hold(&s.store, "inception", &["D1"], "alice").await.unwrap();
    assert!(matches!(
        s.store.confirm(h.session_id, &user("mallory")).await,
        Err(StoreError::SessionNotFound)
    ));
    assert!(matches!(
        s.store.release(h.session_id, &user("mallory")).await,
        Err(StoreError::SessionNotFound)
    ));
    assert!(matches!(
        s.store
            .confirm(boxoffice::domain::SessionId::new(), &user("alice"))
            .await,
        Err(StoreError::SessionNotFound)
    ));
    assert_eq!(
        taken(&s.store, "inception").await,
        [row("D1", "alice", false)]
    );
    s.store.confirm(h.session_id, &user("alice")).await.unwrap();
    assert!(matches!(
        s.store.confirm(h.session_id, &user("mallory")).await,
        Err(StoreError::SessionNotFound)
    ));
}

async fn releasing_frees_the_seat<B: StoreUnderTest>() {
    let s = open::<B>().await;
    let h = hold(&s.store, "inception", &["E8"], "alice").await.unwrap();
    s.store.release(h.session_id, &user("alice")).await.unwrap();
    assert_eq!(taken(&s.store, "inception").await, []);
    // Releasing twice is harmless; confirming a released hold is not possible.
    s.store.release(h.session_id, &user("alice")).await.unwrap();
    assert!(matches!(
        s.store.confirm(h.session_id, &user("alice")).await,
        Err(StoreError::Released)
    ));
    hold(&s.store, "inception", &["E8"], "bob").await.unwrap();
    assert_eq!(
        taken(&s.store, "inception").await,
        [row("E8", "bob", false)]
    );
}

async fn a_confirmed_booking_cannot_be_released<B: StoreUnderTest>() {
    let s = open::<B>().await;
    let h = hold(&s.store, "inception", &["C3"], "alice").await.unwrap();
    s.store.confirm(h.session_id, &user("alice")).await.unwrap();
    assert!(matches!(
        s.store.release(h.session_id, &user("alice")).await,
        Err(StoreError::AlreadyConfirmed)
    ));
    assert_eq!(
        taken(&s.store, "inception").await,
        [row("C3", "alice", true)]
    );
}

async fn an_expired_hold_frees_the_seat_before_any_reaper_run<B: StoreUnderTest>() {
    let s = B::open(policy(SHORT_TTL, 8)).await;
    let h = hold(&s.store, "inception", &["A5"], "alice").await.unwrap();
    assert_eq!((h.expires_at - h.server_time).to_std().unwrap(), SHORT_TTL);
    wait_until_lapsed(h.server_time, h.expires_at).await;

    assert_eq!(taken(&s.store, "inception").await, []);
    let next = hold(&s.store, "inception", &["A5"], "bob").await.unwrap();
    assert_eq!(
        taken(&s.store, "inception").await,
        [row("A5", "bob", false)]
    );
    assert!(matches!(
        s.store.confirm(h.session_id, &user("alice")).await,
        Err(StoreError::Expired)
    ));
    assert!(matches!(
        s.store.release(h.session_id, &user("alice")).await,
        Err(StoreError::Expired)
    ));
    // Alice's late attempts changed nothing of Bob's.
    s.store
        .confirm(next.session_id, &user("bob"))
        .await
        .unwrap();
    assert_eq!(taken(&s.store, "inception").await, [row("A5", "bob", true)]);
}

async fn an_untouched_expired_hold_cannot_be_confirmed_or_released<B: StoreUnderTest>() {
    let s = B::open(policy(SHORT_TTL, 8)).await;
    let h = hold(&s.store, "inception", &["A6"], "alice").await.unwrap();
    wait_until_lapsed(h.server_time, h.expires_at).await;
    assert!(matches!(
        s.store.confirm(h.session_id, &user("alice")).await,
        Err(StoreError::Expired)
    ));
    assert!(matches!(
        s.store.release(h.session_id, &user("alice")).await,
        Err(StoreError::Expired)
    ));
    // Ownership is still checked first: to anyone else it is unknown.
    assert!(matches!(
        s.store.confirm(h.session_id, &user("bob")).await,
        Err(StoreError::SessionNotFound)
    ));
    assert_eq!(taken(&s.store, "inception").await, []);
}

async fn the_per_user_limit_counts_live_holds_across_movies<B: StoreUnderTest>() {
    let s = B::open(policy(LONG_TTL, 3)).await;
    let first = hold(&s.store, "inception", &["A1", "A2"], "alice")
        .await
        .unwrap();
    let third = hold(&s.store, "dune-part-two", &["A1"], "alice")
        .await
        .unwrap();
    assert!(matches!(
        hold(&s.store, "inception", &["A3"], "alice").await,
        Err(StoreError::LimitReached { limit: 3 })
    ));
    // A group that would cross the limit is refused whole.
    s.store
        .release(third.session_id, &user("alice"))
        .await
        .unwrap();
    assert!(matches!(
        hold(&s.store, "inception", &["B1", "B2"], "alice").await,
        Err(StoreError::LimitReached { limit: 3 })
    ));
    assert_eq!(
        taken(&s.store, "inception").await,
        [row("A1", "alice", false), row("A2", "alice", false)]
    );
    // Other users are not affected, and confirmed seats do not count.
    hold(&s.store, "inception", &["C1"], "bob").await.unwrap();
    s.store
        .confirm(first.session_id, &user("alice"))
        .await
        .unwrap();
    hold(&s.store, "inception", &["D1", "D2", "D3"], "alice")
        .await
        .unwrap();
}

async fn expired_holds_do_not_count_toward_the_limit<B: StoreUnderTest>() {
    let s = B::open(policy(SHORT_TTL, 1)).await;
    let h = hold(&s.store, "inception", &["A1"], "alice").await.unwrap();
    assert!(matches!(
        hold(&s.store, "inception", &["A2"], "alice").await,
        Err(StoreError::LimitReached { limit: 1 })
    ));
    wait_until_lapsed(h.server_time, h.expires_at).await;
    hold(&s.store, "inception", &["A2"], "alice").await.unwrap();
}

async fn concurrent_holds_by_one_user_stop_at_the_limit<B: StoreUnderTest>() {
    let s = B::open(policy(LONG_TTL, 3)).await;
    let room = movie(&s.store, "the-grand-budapest-hotel").await;
    let attempts = (1..=16).map(|n| {
        let (store, room) = (s.store.clone(), room.clone());
        tokio::spawn(async move {
            store
                .hold(&room, seats(&[&format!("A{n}")]), &user("greedy"), None)
                .await
        })
    });
    let mut won = 0;
    for attempt in futures::future::join_all(attempts).await {
        match attempt.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::LimitReached { limit: 3 }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 3);
    assert_eq!(taken(&s.store, "the-grand-budapest-hotel").await.len(), 3);
}

/// Concurrent holds are decided together (in PostgreSQL, in shared transactions); a request
/// that loses its seat must not use up its user's quota for a request that wins.
async fn losing_a_seat_race_leaves_the_quota_for_another_seat<B: StoreUnderTest>() {
    let s = B::open(policy(LONG_TTL, 1)).await;
    let room = movie(&s.store, "the-grand-budapest-hotel").await;
    let attempts: Vec<_> = (1..=16)
        .flat_map(|n| {
            // A rival and a fan both want A{n}; the fan also wants B{n}, and may hold one.
            [
                ("rival", format!("A{n}")),
                ("fan", format!("A{n}")),
                ("fan", format!("B{n}")),
            ]
            .map(|(who, seat)| (format!("{who}-{n}"), seat))
        })
        .map(|(who, seat)| {
            let (store, room) = (s.store.clone(), room.clone());
            tokio::spawn(async move {
                let result = store.hold(&room, seats(&[&seat]), &user(&who), None).await;
                (who, result)
            })
        })
        .collect();
    let mut holds_per_fan: std::collections::HashMap<String, u32> = Default::default();
    for attempt in futures::future::join_all(attempts).await {
        let (who, result) = attempt.unwrap();
        match result {
            Ok(_) => *holds_per_fan.entry(who).or_default() += 1,
            Err(StoreError::SeatTaken(_) | StoreError::LimitReached { limit: 1 }) => {
                holds_per_fan.entry(who).or_default();
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    for (who, holds) in holds_per_fan {
        if who.starts_with("fan") {
            assert_eq!(holds, 1, "{who} lost A but was refused B");
        }
    }
}

const OFFICE: Option<&str> = Some("192.0.2.1");

const HOME: Option<&str> = Some("2001:db8::");

async fn one_address_holds_at_most_its_cap_across_users<B: StoreUnderTest>() {
    let s = B::open(HoldPolicy {
        max_holds_per_address: 3,
        ..policy(LONG_TTL, 8)
    })
    .await;
    let first = hold_from(&s.store, "inception", &["A1", "A2"], "ann", OFFICE)
        .await
        .unwrap();
    hold_from(&s.store, "dune-part-two", &["A1"], "bea", OFFICE)
        .await
        .unwrap();
    for (seats, who) in [
        (&["B1"][..], "cal"),
        (&["B1"][..], "ann"),
        (&["B1", "B2"], "dan"),
    ] {
        assert!(matches!(
            hold_from(&s.store, "inception", seats, who, OFFICE).await,
            Err(StoreError::AddressLimitReached { limit: 3 })
        ));
    }
    // Another address, or none known, is not held back by this one.
    hold_from(&s.store, "inception", &["C1"], "cal", HOME)
        .await
        .unwrap();
    hold(&s.store, "inception", &["C2"], "dan").await.unwrap();
    // A booked seat no longer counts, and neither does a released one.
    s.store
        .confirm(first.session_id, &user("ann"))
        .await
        .unwrap();
    let again = hold_from(&s.store, "inception", &["D1", "D2"], "cal", OFFICE)
        .await
        .unwrap();
    s.store
        .release(again.session_id, &user("cal"))
        .await
        .unwrap();
    hold_from(&s.store, "inception", &["E1", "E2"], "eve", OFFICE)
        .await
        .unwrap();
    assert_eq!(taken(&s.store, "inception").await.len(), 6);
}

async fn concurrent_holds_from_one_address_stop_at_its_cap<B: StoreUnderTest>() {
    let s = B::open(HoldPolicy {
        max_holds_per_address: 5,
        ..policy(LONG_TTL, 8)
    })
    .await;
    let room = movie(&s.store, "the-grand-budapest-hotel").await;
    let attempts = (1..=24).map(|n| {
        let (store, room) = (s.store.clone(), room.clone());
        tokio::spawn(async move {
            let who = user(&format!("user-{n}"));
            let from = Some(OFFICE.unwrap().parse().unwrap());
            store
                .hold(&room, seats(&[&format!("A{n}")]), &who, from)
                .await
        })
    });
    let mut won = 0;
    for attempt in futures::future::join_all(attempts).await {
        match attempt.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::AddressLimitReached { limit: 5 }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 5);
    assert_eq!(taken(&s.store, "the-grand-budapest-hotel").await.len(), 5);
}

/// Letting a seat go and taking it again continues the run of holds: the new hold ends when
/// the first one would have (its lifetime, here as long as a hold, counts from the first),
/// for the same user from anywhere and for anyone from the same address; an extension
/// cannot take it further.
async fn letting_a_seat_go_and_taking_it_again_keeps_its_clock<B: StoreUnderTest>() {
    let s = B::open(HoldPolicy {
        max_lifetime: LONG_TTL,
        ..policy(LONG_TTL, 8)
    })
    .await;
    let first = hold_from(&s.store, "inception", &["A1"], "ann", OFFICE)
        .await
        .unwrap();
    let mut last = first.clone();
    for (who, from) in [("ann", OFFICE), ("ann", HOME), ("bea", OFFICE)] {
        s.store
            .release(last.session_id, &last.user_id)
            .await
            .unwrap();
        last = hold_from(&s.store, "inception", &["A1", "A2"], who, from)
            .await
            .unwrap();
        assert_eq!(last.expires_at, first.expires_at, "{who} from {from:?}");
    }
    assert!(matches!(
        s.store
            .execute(
                &user("bea"),
                boxoffice::booking::Command::Extend(last.session_id),
                None
            )
            .await,
        Err(StoreError::ExtensionLimit)
    ));
    // Someone else, from elsewhere, starts a run of their own.
    s.store
        .release(last.session_id, &user("bea"))
        .await
        .unwrap();
    let elsewhere = Some("198.51.100.9");
    let fresh = hold_from(&s.store, "inception", &["A1"], "cal", elsewhere)
        .await
        .unwrap();
    assert_eq!(
        (fresh.expires_at - fresh.server_time).to_std().unwrap(),
        LONG_TTL
    );
}

/// A run that has lasted as long as a hold may is refused until the window after its last
/// deadline has passed; then the seat starts a new run, and the reaper forgets the old one.
async fn a_run_past_its_lifetime_waits_out_the_window<B: StoreUnderTest>() {
    let window = SHORT_TTL;
    let s = B::open(HoldPolicy {
        max_lifetime: SHORT_TTL,
        rehold_window: window,
        ..policy(SHORT_TTL, 8)
    })
    .await;
    let first = hold_from(&s.store, "inception", &["A1"], "ann", OFFICE)
        .await
        .unwrap();
    wait_until_lapsed(first.server_time, first.expires_at).await;
    for (who, from) in [("ann", HOME), ("bea", OFFICE)] {
        match hold_from(&s.store, "inception", &["A1", "A2"], who, from).await {
            Err(StoreError::HeldTooLong { retry_at }) => {
                assert_eq!(retry_at, first.expires_at + window, "{who}");
            }
            other => panic!("{who}: {other:?}"),
        }
    }
    hold_from(&s.store, "inception", &["A2"], "cal", HOME)
        .await
        .unwrap();
    assert_eq!(
        s.store.forget_runs(10).await.unwrap(),
        0,
        "within the window"
    );
    wait_until_lapsed(first.server_time, first.expires_at + window).await;
    let again = hold_from(&s.store, "inception", &["A1"], "ann", OFFICE)
        .await
        .unwrap();
    assert_eq!(
        (again.expires_at - again.server_time).to_std().unwrap(),
        SHORT_TTL
    );
    // The first run's two marks (ann's and the office's) were written over by the new one;
    // cal's two are past their window now too.
    wait_until_lapsed(again.server_time, again.expires_at + window).await;
    assert_eq!(s.store.forget_runs(3).await.unwrap(), 3, "in batches");
    assert_eq!(s.store.forget_runs(10).await.unwrap(), 1);
    assert_eq!(s.store.forget_runs(10).await.unwrap(), 0);
}

seats_contract!(
    holding_a_free_seat_starts_a_live_session,
    a_second_hold_on_a_held_seat_is_rejected,
    a_group_hold_is_all_or_nothing,
    a_seat_listed_twice_is_refused,
    confirming_books_the_seat_for_good,
    someone_elses_session_looks_unknown_and_stays_unchanged,
    releasing_frees_the_seat,
    a_confirmed_booking_cannot_be_released,
    an_expired_hold_frees_the_seat_before_any_reaper_run,
    an_untouched_expired_hold_cannot_be_confirmed_or_released,
    the_per_user_limit_counts_live_holds_across_movies,
    expired_holds_do_not_count_toward_the_limit,
    concurrent_holds_by_one_user_stop_at_the_limit,
    losing_a_seat_race_leaves_the_quota_for_another_seat,
    one_address_holds_at_most_its_cap_across_users,
    concurrent_holds_from_one_address_stop_at_its_cap,
    letting_a_seat_go_and_taking_it_again_keeps_its_clock,
    a_run_past_its_lifetime_waits_out_the_window,
);
