//! Fenced writes on DynamoDB: a deposed leader's `TransactWriteItems` never commits,
//! against a real endpoint (moto or DynamoDB Local).

use crate::support;
use lock_conformance::fencing;
use lock_core::{FencingTerm, SharedStore};
use lock_dynamodb::aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_writes_of_a_deposed_leader_never_commit() {
    let url = support::ready().await;
    let data = support::store(&url).await.expect("store");
    let key = format!("fenced-data/{}", lock_conformance::unique_lock("k"));
    let write: fencing::Write = {
        let (store, key) = (data.clone(), key.clone());
        Arc::new(move |term: Option<FencingTerm>, value: String| {
            let (store, key) = (store.clone(), key.clone());
            Box::pin(async move {
                let put = Put::builder()
                    .table_name(store.table())
                    .item("lock_name", AttributeValue::S(key.clone()))
                    .item("value", AttributeValue::S(value))
                    .build()
                    .map_err(|e| lock_core::Error::Config(e.to_string()))?;
                let item = TransactWriteItem::builder().put(put).build();
                match &term {
                    Some(t) => store.fenced_write(t, vec![item]).await,
                    None => store
                        .client()
                        .transact_write_items()
                        .transact_items(item)
                        .send()
                        .await
                        .map(drop)
                        .map_err(|e| lock_core::Error::Backend { store: store.to_string(), source: e.to_string().into() }),
                }
            })
        })
    };
    let read: fencing::Read = {
        let (store, key) = (data.clone(), key.clone());
        Arc::new(move || {
            let (store, key) = (store.clone(), key.clone());
            Box::pin(async move {
                let out = store
                    .client()
                    .get_item()
                    .table_name(store.table())
                    .key("lock_name", AttributeValue::S(key))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| lock_core::Error::Backend { store: store.to_string(), source: e.to_string().into() })?;
                Ok(out.item.and_then(|i| i.get("value").and_then(|v| v.as_s().ok().cloned())))
            })
        })
    };
    let connect = || {
        let url = url.clone();
        async move { Ok(Arc::new(support::store(&url).await?) as SharedStore) }
    };
    match fencing::deposed_leaders_fenced_writes_never_commit(connect, write, read).await {
        Ok(report) => println!("dynamodb fenced writes: {report:?}"),
        Err(f) => panic!("{f}"),
    }
}
