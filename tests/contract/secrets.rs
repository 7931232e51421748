//! `Secrets`: the secret API tokens are signed with, when `IDENTITY_SECRET` is not set.

use boxoffice::store::Secrets;

use crate::common::StoreUnderTest;
use crate::open;

/// Made once and kept: a token signed now is still good on the next read of the secret.
async fn the_identity_secret_is_made_once_and_kept<B: StoreUnderTest>()
where
    B::Store: Secrets,
{
    let s = open::<B>().await;
    let first = s.store.identity_secret().await.unwrap();
    assert!(first.len() >= 32, "{} bytes", first.len());
    assert_eq!(s.store.identity_secret().await.unwrap(), first);
}

contract!(
    [memory: Memory, postgres: Postgres, pooled: Pooled];
    the_identity_secret_is_made_once_and_kept,
);
