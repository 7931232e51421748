//! `Health`: a store that can serve says so.

use boxoffice::store::Health;

use crate::common::StoreUnderTest;
use crate::open;

/// Readiness asks what serving needs: PostgreSQL answering, and its hold workers running.
async fn a_store_that_can_serve_is_ready<B: StoreUnderTest>() {
    let s = open::<B>().await;
    s.store.ping().await.expect("ready");
    s.store.observe();
}

contract!(
    [memory: Memory, postgres: Postgres, pooled: Pooled];
    a_store_that_can_serve_is_ready,
);
