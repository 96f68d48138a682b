//! Items written by someone else with missing or mistyped attributes are reported as
//! corrupt, naming the lock and the store, and are never overwritten.

use crate::support;
use aws_sdk_dynamodb::types::AttributeValue;
use lock_core::{Error, LeaderElectionRecord, LeaseStore, Version};
use std::collections::HashMap;

const TABLE: &str = "highlander-leases";

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: &str) -> AttributeValue {
    AttributeValue::N(v.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_with_missing_or_mistyped_attributes_are_corrupt_and_untouched() {
    let url = support::ready().await;
    let store = support::store(&url).await.expect("store");
    let valid = LeaderElectionRecord::new("stalin", 15, chrono::Utc::now()).to_json().expect("encodes");
    let valid = String::from_utf8(valid).expect("utf-8");
    let raw = store.client().clone();
    let cases: Vec<(&str, HashMap<String, AttributeValue>)> = vec![
        ("record is a number", HashMap::from([("record".into(), n("5")), ("version".into(), n("1"))])),
        ("record is missing", HashMap::from([("version".into(), n("1"))])),
        ("version is missing", HashMap::from([("record".into(), s(&valid))])),
        ("version is a string", HashMap::from([("record".into(), s(&valid)), ("version".into(), s("one"))])),
        ("version is not an integer", HashMap::from([("record".into(), s(&valid)), ("version".into(), n("1.5"))])),
        ("record is not a lease record", HashMap::from([("record".into(), s("{\"holderIdentity\": 7}")), ("version".into(), n("1"))])),
    ];
    for (what, mut item) in cases {
        let lock = lock_conformance::unique_lock("dynamodb-items");
        item.insert("lock_name".into(), s(lock.as_str()));
        raw.put_item().table_name(TABLE).set_item(Some(item.clone())).send().await.expect("plant item");

        let err = store.get(&lock).await.expect_err(what);
        assert!(matches!(err, Error::Corrupt { .. }), "{what}: {err:?}");
        let text = err.to_string();
        assert!(text.contains(lock.as_str()) && text.contains(TABLE), "{what}: {text}");

        let rec = LeaderElectionRecord::new("clobberer", 15, chrono::Utc::now());
        assert!(store.create(&lock, &rec).await.is_err(), "{what}: create replaced it");
        assert!(store.update(&lock, &Version::new("0"), &rec).await.is_err(), "{what}: update replaced it");
        let after = raw
            .get_item()
            .table_name(TABLE)
            .key("lock_name", s(lock.as_str()))
            .consistent_read(true)
            .send()
            .await
            .expect("read back")
            .item
            .expect("still there");
        assert_eq!(after, item, "{what}: the item changed");
    }
}
