//! `Housekeeping`: the reaper's work, on which no answer depends.

use crate::common::{SHORT_TTL, StoreUnderTest, policy, wait_until_lapsed};
use crate::*;
use boxoffice::booking::HoldPolicy;
use boxoffice::store::{Housekeeping, Seats, StoreError};

async fn the_reaper_removes_expired_holds_in_batches<B: StoreUnderTest>() {
    let s = B::open(policy(SHORT_TTL, 8)).await;
    let mut last = None;
    for seat in ["A1", "A2", "A3"] {
        last = Some(hold(&s.store, "inception", &[seat], "alice").await.unwrap());
    }
    let kept = hold(&s.store, "inception", &["B1"], "bob").await.unwrap();
    s.store
        .confirm(kept.session_id, &user("bob"))
        .await
        .unwrap();
    assert_eq!(
        s.store.reap_expired(10).await.unwrap(),
        0,
        "nothing has expired yet"
    );

    let last = last.unwrap();
    wait_until_lapsed(last.server_time, last.expires_at).await;
    assert_eq!(s.store.reap_expired(2).await.unwrap(), 2);
    assert_eq!(s.store.reap_expired(2).await.unwrap(), 1);
    assert_eq!(s.store.reap_expired(2).await.unwrap(), 0);
    assert_eq!(taken(&s.store, "inception").await, [row("B1", "bob", true)]);
    assert!(matches!(
        s.store.confirm(last.session_id, &user("alice")).await,
        Err(StoreError::Expired)
    ));
}

async fn ended_sessions_are_forgotten_after_their_retention_and_bookings_never<
    B: StoreUnderTest,
>() {
    // Longer than the holds last, so that the released session is still remembered when the
    // lapsed one has ended.
    let retention = SHORT_TTL * 2;
    let s = B::open(HoldPolicy {
        session_retention: retention,
        ..policy(SHORT_TTL, 8)
    })
    .await;
    let alice = user("alice");
    let released = hold(&s.store, "inception", &["A1"], "alice").await.unwrap();
    s.store.release(released.session_id, &alice).await.unwrap();
    let booked = hold(&s.store, "inception", &["A2"], "alice").await.unwrap();
    s.store.confirm(booked.session_id, &alice).await.unwrap();
    let lapsed = hold(&s.store, "inception", &["A3", "A4"], "alice")
        .await
        .unwrap();
    wait_until_lapsed(lapsed.server_time, lapsed.expires_at).await;
    assert_eq!(s.store.reap_expired(10).await.unwrap(), 2);

    // Within the retention, an ended session is still told from an unknown one.
    assert_eq!(s.store.forget_sessions(10).await.unwrap(), 0);
    assert!(matches!(
        s.store.confirm(released.session_id, &alice).await,
        Err(StoreError::Released)
    ));
    assert!(matches!(
        s.store.confirm(lapsed.session_id, &alice).await,
        Err(StoreError::Expired)
    ));

    wait_until_lapsed(lapsed.server_time, lapsed.expires_at + retention).await;
    assert_eq!(s.store.forget_sessions(1).await.unwrap(), 1, "in batches");
    assert_eq!(s.store.forget_sessions(10).await.unwrap(), 1);
    assert_eq!(s.store.forget_sessions(10).await.unwrap(), 0);
    for gone in [released.session_id, lapsed.session_id] {
        assert!(matches!(
            s.store.confirm(gone, &alice).await,
            Err(StoreError::SessionNotFound)
        ));
        assert!(matches!(
            s.store.release(gone, &alice).await,
            Err(StoreError::SessionNotFound)
        ));
    }
    // The booking stays, and so does its seat.
    s.store.confirm(booked.session_id, &alice).await.unwrap();
    assert_eq!(
        taken(&s.store, "inception").await,
        [row("A2", "alice", true)]
    );
    let sessions = s.store.user_sessions(&alice).await.unwrap();
    let ids: Vec<_> = sessions.iter().map(|info| info.session_id).collect();
    assert_eq!(ids, [booked.session_id]);
}

contract!(
    [memory: Memory, postgres: Postgres, pooled: Pooled];
    the_reaper_removes_expired_holds_in_batches,
    ended_sessions_are_forgotten_after_their_retention_and_bookings_never,
);
