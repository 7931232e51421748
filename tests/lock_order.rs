//! One lock order for every transaction: confirms, releases, takeovers of lapsed seats and the
//! reaper all meet at the deadline of many holds, from two pools as two server processes
//! would, and PostgreSQL never has to break a deadlock (which would answer someone 503).

mod common;

use std::sync::Arc;
use std::time::Duration;

use boxoffice::domain::{Hold, Movie, UserId};
use boxoffice::store::{Catalogue, Housekeeping, PgStore, Seats, StoreError};
use common::{TestDb, policy};
use sqlx::PgPool;
use tokio::sync::Barrier;

/// Long enough to set up a round of holds, short enough to run several rounds.
const TTL: Duration = Duration::from_millis(600);
const ROUNDS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirms_releases_takeovers_and_reapers_at_the_deadline_never_deadlock() {
    let db = TestDb::new().await;
    let admin = db.pool(2).await;
    let stores = [
        db.store(policy(TTL, 8), 8).await,
        db.store(policy(TTL, 8), 8).await,
    ];
    let room = stores[0]
        .movie(&common::screening("the-grand-budapest-hotel"))
        .await
        .unwrap();
    let deadlocks_before = deadlocks(&admin).await;

    for round in 0..ROUNDS {
        // Groups of two seats, so that confirms and releases lock several seat rows.
        let mut holds = Vec::new();
        for pair in 0..40 {
            let store = &stores[pair % 2];
            let user = user(&format!("r{round}-holder-{pair}"));
            let row = (b'A' + (pair / 8) as u8) as char;
            let first = (pair % 8) * 2 + 1;
            let seats = vec![
                room.seat(&format!("{row}{first}")).unwrap(),
                room.seat(&format!("{row}{}", first + 1)).unwrap(),
            ];
            holds.push((
                user.clone(),
                store.hold(&room, seats, &user, None).await.unwrap(),
            ));
        }
        let last = holds.iter().map(|(_, h)| h.expires_at).max().unwrap();
        let first = holds.iter().map(|(_, h)| h.expires_at).min().unwrap();
        // Start everything a moment before the first deadline, so each race is decided on
        // both sides of it.
        let wait = (first - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait.saturating_sub(Duration::from_millis(20))).await;
        let outcomes = at_the_deadline(&stores, &room, holds, round).await;
        for outcome in outcomes {
            if let Err(error) = outcome {
                panic!("round {round}: {error}");
            }
        }
        // Whatever lapsed is gone by the next round.
        let wait = (last - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        while stores[0].reap_expired(1_000).await.unwrap() > 0 {}
        sqlx::query("delete from seat_holds where movie_id = $1")
            .bind(&room.id)
            .execute(&admin)
            .await
            .unwrap();
    }

    assert_eq!(
        deadlocks(&admin).await,
        deadlocks_before,
        "PostgreSQL broke a deadlock"
    );
}

/// For each hold, at once: its holder confirms (or releases) it, someone else tries to take
/// its seats, and both stores' reapers sweep. Returns what went wrong, if anything did.
async fn at_the_deadline(
    stores: &[PgStore; 2],
    room: &Movie,
    holds: Vec<(UserId, Hold)>,
    round: usize,
) -> Vec<Result<(), String>> {
    let start = Arc::new(Barrier::new(holds.len() * 2 + 2));
    let mut tasks = Vec::new();
    for (i, (holder, hold)) in holds.into_iter().enumerate() {
        let (store, other) = (stores[i % 2].clone(), stores[(i + 1) % 2].clone());
        let (owner_start, taker_start, room) = (start.clone(), start.clone(), room.clone());
        let session = hold.session_id;
        let seats = hold.seats.clone();
        let owner = tokio::spawn(async move {
            owner_start.wait().await;
            let answer = if i % 3 == 0 {
                store.release(session, &holder).await
            } else {
                store.confirm(session, &holder).await.map(drop)
            };
            match answer {
                Ok(()) | Err(StoreError::Expired) => Ok(()),
                Err(error) => Err(format!("the holder was told {error:?}")),
            }
        });
        let taker = tokio::spawn(async move {
            let user = user(&format!("r{round}-taker-{i}"));
            taker_start.wait().await;
            match other.hold(&room, seats, &user, None).await {
                Ok(_) | Err(StoreError::SeatTaken(_)) => Ok(()),
                Err(error) => Err(format!("a takeover was told {error:?}")),
            }
        });
        tasks.extend([owner, taker]);
    }
    for store in stores {
        let (store, start) = (store.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            for _ in 0..20 {
                if let Err(error) = store.reap_expired(3).await {
                    return Err(format!("the reaper failed: {error:?}"));
                }
                tokio::task::yield_now().await;
            }
            Ok(())
        }));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

async fn deadlocks(admin: &PgPool) -> i64 {
    sqlx::query_scalar("select deadlocks from pg_stat_database where datname = current_database()")
        .fetch_one(admin)
        .await
        .unwrap()
}

fn user(name: &str) -> UserId {
    UserId::parse(name.to_owned()).unwrap()
}
