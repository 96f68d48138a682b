//! The store under test: the fixture's etcd, once it answers.

use lock_conformance::fixtures;
use lock_core::{LeaseStore, LockName};
use lock_etcd::EtcdStore;
use std::time::Duration;

/// Waits until etcd at `endpoints` answers a read.
pub(crate) async fn ready(endpoints: Vec<String>) -> Vec<String> {
    let store = EtcdStore::builder(&endpoints).build().expect("valid endpoints");
    let probe = LockName::new("conformance/probe").expect("valid");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match store.get(&probe).await {
            Ok(_) => return endpoints,
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(250)).await,
            Err(e) => panic!("etcd at {endpoints:?} never became ready: {e}"),
        }
    }
}

/// The harness: every client a new store on `endpoints`.
pub(crate) fn harness(endpoints: Vec<String>) -> impl lock_conformance::StoreHarness {
    lock_conformance::Harness::new(move || {
        let endpoints = endpoints.clone();
        async move { EtcdStore::builder(&endpoints).build() }
    })
}

/// The harness of `LOCK_TEST_ETCD_ENDPOINTS`, else of the fixture's container.
#[allow(dead_code, reason = "each test binary uses one of the two")]
pub(crate) async fn from_env() -> impl lock_conformance::StoreHarness {
    harness(ready(fixtures::etcd_endpoints().await.unwrap_or_else(|e| panic!("no etcd to test against: {e}"))).await)
}

/// The harness of the fixture's own container (for tests that stop and start it).
#[allow(dead_code, reason = "each test binary uses one of the two")]
pub(crate) async fn from_container() -> impl lock_conformance::StoreHarness {
    harness(ready(fixtures::etcd_container_endpoints().await.unwrap_or_else(|e| panic!("no etcd container: {e}"))).await)
}
