//! `ChangeFeed`: every change reaches the streams, in the order it was made.

use std::time::Duration;

use boxoffice::events::{ChangeKind, Message};
use boxoffice::store::{ChangeFeed, Seats};

use crate::common::StoreUnderTest;
use crate::{hold, open, seats, user};

/// A hold, a confirm and a release, each on the feed with its seats, in the order made, by
/// the same store that made them (in PostgreSQL, back through `LISTEN`).
async fn every_change_reaches_the_feed_in_the_order_it_was_made<B: StoreUnderTest>() {
    let s = open::<B>().await;
    let mut feed = s.store.events().subscribe("inception", None).receiver;
    let ann = hold(&s.store, "inception", &["B1", "B2"], "ann")
        .await
        .unwrap();
    let bob = hold(&s.store, "inception", &["C1"], "bob").await.unwrap();
    s.store.confirm(ann.session_id, &user("ann")).await.unwrap();
    s.store.release(bob.session_id, &user("bob")).await.unwrap();
    let mut changes = Vec::new();
    while changes.len() < 4 {
        let message = tokio::time::timeout(Duration::from_secs(10), feed.recv())
            .await
            .expect("the change arrives")
            .expect("the feed is open");
        if let Message::Change { change, .. } = message {
            changes.push((change.kind, change.seat_ids.clone()));
        }
    }
    assert_eq!(
        changes,
        [
            (ChangeKind::Held, seats(&["B1", "B2"])),
            (ChangeKind::Held, seats(&["C1"])),
            (ChangeKind::Confirmed, seats(&["B1", "B2"])),
            (ChangeKind::Released, seats(&["C1"])),
        ]
    );
}

contract!(
    [memory: Memory, postgres: Postgres, pooled: Pooled];
    every_change_reaches_the_feed_in_the_order_it_was_made,
);
