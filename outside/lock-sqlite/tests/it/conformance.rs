//! The whole conformance suite: one `#[tokio::test]` per check, each on a database of
//! its own (the harness expression is evaluated by every test).

use lock_conformance::{Connect, Harness, SUITE_TIMING, conformance_tests};

async fn harness() -> Harness<Connect> {
    let url = crate::fresh_database("conformance").await;
    // Each connect opens the file again: a new connection, as another process would have.
    Harness::for_url(&lock_sqlite::BACKEND, &url, SUITE_TIMING).await.expect("the backend takes the URL")
}

conformance_tests!(harness().await);
