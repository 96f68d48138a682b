//! The store under test: the fixture's Postgres, by URL, with the lease table created;
//! and, in `server`, Postgres servers the tests run as processes of their own.

pub(crate) mod server;

use lock_conformance::{Connect, Harness, fixtures};

/// Waits until Postgres at `url` accepts connections and the table exists.
pub(crate) async fn ready(url: String) -> String {
    fixtures::ready(&lock_postgres::BACKEND, &url).await.unwrap_or_else(|e| panic!("Postgres: {e}"));
    url
}

/// The harness of `LOCK_TEST_POSTGRES_URL`, else of the fixture's container.
pub(crate) async fn from_env() -> Harness<Connect> {
    fixtures::harness(&lock_postgres::BACKEND, fixtures::postgres_url().await).await
}

/// Locks `lock`'s lease row on the server at `url` in an open transaction, so that
/// updates of it wait; `ROLLBACK` on the returned connection releases it.
pub(crate) async fn lock_row(url: &str, lock: &lock_core::LockName) -> deadpool_postgres::Client {
    let direct = lock_postgres::PostgresStore::builder(url).expect("url").build().expect("builds");
    let holder = direct.connection().await.expect("direct connection");
    holder.batch_execute("BEGIN").await.expect("begin");
    holder.execute("SELECT 1 FROM highlander_leases WHERE name = $1 FOR UPDATE", &[&lock.as_str()]).await.expect("row lock");
    holder
}
