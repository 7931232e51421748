//! `Catalogue`: the programme, read.

use crate::common::StoreUnderTest;
use crate::*;
use boxoffice::domain::seed_movies;
use boxoffice::store::{Catalogue, StoreError};

async fn both_stores_serve_the_seeded_movies<B: StoreUnderTest>() {
    let s = open::<B>().await;
    let mut expected = seed_movies();
    expected.sort_by(|a, b| a.title.cmp(&b.title));
    assert_eq!(s.store.movies().await.unwrap(), expected);
    assert!(matches!(
        s.store
            .movie(&crate::common::screening("no-such-film"))
            .await,
        Err(StoreError::MovieNotFound)
    ));
}

contract!(
    [memory: Memory, postgres: Postgres, pooled: Pooled];
    both_stores_serve_the_seeded_movies,
);
