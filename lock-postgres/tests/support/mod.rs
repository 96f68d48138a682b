//! The store under test: the fixture's Postgres, with the lease table created.

use lock_conformance::fixtures;
use lock_postgres::PostgresStore;
use std::time::Duration;

/// Waits until Postgres at `url` accepts connections and the table exists.
pub(crate) async fn ready(url: String) -> String {
    let store = PostgresStore::builder(&url).expect("fixture URL parses").build().expect("store builds");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match store.ensure_schema().await {
            Ok(()) => return url,
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(250)).await,
            Err(e) => panic!("Postgres at the fixture never became ready: {e}"),
        }
    }
}

/// The harness: every client a new store (and pool) on `url`.
pub(crate) fn harness(url: String) -> impl lock_conformance::StoreHarness {
    lock_conformance::Harness::new(move || {
        let url = url.clone();
        async move { PostgresStore::builder(&url)?.build() }
    })
}

/// The harness of `LOCK_TEST_POSTGRES_URL`, else of the fixture's container.
#[allow(dead_code, reason = "each test binary uses one of the two")]
pub(crate) async fn from_env() -> impl lock_conformance::StoreHarness {
    harness(ready(fixtures::postgres_url().await.unwrap_or_else(|e| panic!("no Postgres to test against: {e}"))).await)
}

/// The harness of the fixture's own container (for tests that stop and start it).
#[allow(dead_code, reason = "each test binary uses one of the two")]
pub(crate) async fn from_container() -> impl lock_conformance::StoreHarness {
    harness(ready(fixtures::postgres_container_url().await.unwrap_or_else(|e| panic!("no Postgres container: {e}"))).await)
}
