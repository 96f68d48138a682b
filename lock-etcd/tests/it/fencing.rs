//! Fenced transactions on etcd: a deposed leader's operations never apply, against a
//! real member (`LOCK_TEST_ETCD_ENDPOINTS` or a container).

use lock_conformance::{fencing, fixtures};
use lock_core::{FencingTerm, SharedStore, StoreUrl};
use lock_etcd::{EtcdStore, EtcdStoreBuilder, Txn, TxnOp};
use std::sync::Arc;

async fn store(url: &str) -> lock_core::Result<EtcdStore> {
    EtcdStoreBuilder::from_url(&StoreUrl::parse(url)?)?.build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_transactions_of_a_deposed_leader_never_apply() {
    let url = fixtures::etcd_url().await.expect("an etcd");
    fixtures::ready(&lock_etcd::BACKEND, &url).await.expect("etcd ready");
    let data = store(&url).await.expect("store");
    let key = format!("fenced-data/{}", lock_conformance::unique_lock("k"));
    let write: fencing::Write = {
        let (store, key) = (data.clone(), key.clone());
        Arc::new(move |term: Option<FencingTerm>, value: String| {
            let (store, key) = (store.clone(), key.clone());
            Box::pin(async move {
                let txn = Txn::new().and_then([TxnOp::put(key.clone(), value.clone(), None)]);
                match &term {
                    Some(t) => store.fenced_txn(t, txn).await.map(drop),
                    None => {
                        let mut kv = store.client().await?.kv_client();
                        kv.txn(txn).await.map(drop).map_err(|e| lock_core::Error::Backend { store: store.to_string(), source: Box::new(e) })
                    }
                }
            })
        })
    };
    let read: fencing::Read = {
        let (store, key) = (data.clone(), key.clone());
        Arc::new(move || {
            let (store, key) = (store.clone(), key.clone());
            Box::pin(async move {
                let mut kv = store.client().await?.kv_client();
                let got =
                    kv.get(key, None).await.map_err(|e| lock_core::Error::Backend { store: store.to_string(), source: Box::new(e) })?;
                Ok(got.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
            })
        })
    };
    let connect = || {
        let url = url.clone();
        async move { Ok(Arc::new(store(&url).await?) as SharedStore) }
    };
    match fencing::deposed_leaders_fenced_writes_never_commit(connect, write, read).await {
        Ok(report) => println!("etcd fenced transactions: {report:?}"),
        Err(f) => panic!("{f}"),
    }
}
