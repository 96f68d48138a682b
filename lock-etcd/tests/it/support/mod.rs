//! The store under test: the fixture's etcd, by URL, once it answers.

use lock_conformance::{Connect, Harness, fixtures};

/// The harness of `LOCK_TEST_ETCD_ENDPOINTS`, else of the fixture's container.
pub(crate) async fn from_env() -> Harness<Connect> {
    fixtures::harness(&lock_etcd::BACKEND, fixtures::etcd_url().await).await
}
