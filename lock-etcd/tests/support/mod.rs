//! The etcd harness: the store under test plus a back door to its keys.

use async_trait::async_trait;
use lock_conformance::{StoreHarness, fixtures};
use lock_core::{LockName, SharedStore};
use lock_etcd::{DEFAULT_PREFIX, EtcdStore};
use std::{sync::Arc, time::Duration};

pub(crate) struct EtcdHarness {
    endpoints: Vec<String>,
}

/// Resolves the fixture's etcd and waits until it answers.
pub(crate) async fn harness() -> EtcdHarness {
    let endpoints = fixtures::etcd_endpoints().await.unwrap_or_else(|e| panic!("no etcd to test against: {e}"));
    let h = EtcdHarness { endpoints };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let probe = LockName::new("conformance/probe").expect("valid");
        let ready = match h.backdoor().await {
            Ok(mut c) => c.get(format!("{DEFAULT_PREFIX}{probe}"), None).await.map(drop).map_err(backdoor_error),
            Err(e) => Err(e),
        };
        match ready {
            Ok(()) => return h,
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(250)).await,
            Err(e) => panic!("etcd at {:?} never became ready: {e}", h.endpoints),
        }
    }
}

fn backdoor_error(e: etcd_client::Error) -> lock_core::Error {
    lock_core::Error::Unavailable { store: "etcd back door".into(), source: Box::new(e) }
}

impl EtcdHarness {
    async fn backdoor(&self) -> lock_core::Result<etcd_client::Client> {
        etcd_client::Client::connect(&self.endpoints, None).await.map_err(backdoor_error)
    }

    pub(crate) fn store(&self) -> EtcdStore {
        EtcdStore::builder(&self.endpoints).build().expect("valid endpoints")
    }
}

#[async_trait]
impl StoreHarness for EtcdHarness {
    async fn connect(&self) -> lock_core::Result<SharedStore> {
        Ok(Arc::new(self.store()))
    }

    async fn put_raw(&self, lock: &LockName, raw: &[u8]) -> lock_core::Result<()> {
        self.backdoor().await?.put(format!("{DEFAULT_PREFIX}{lock}"), raw.to_vec(), None).await.map_err(backdoor_error)?;
        Ok(())
    }

    async fn raw(&self, lock: &LockName) -> lock_core::Result<Option<Vec<u8>>> {
        let resp = self.backdoor().await?.get(format!("{DEFAULT_PREFIX}{lock}"), None).await.map_err(backdoor_error)?;
        Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
    }
}
