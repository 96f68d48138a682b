//! The object-store recipe of docs/fencing.md, against a real S3 API (moto or MinIO):
//! writes keyed by fencing token, read by the highest token.

#[allow(dead_code, unreachable_pub, reason = "the recipe is documentation code, used here")]
mod recipe {
    include!("../../../docs/fencing/s3_by_token.rs");
}

use lock_conformance::fixtures;
use lock_core::StoreUrl;
use lock_s3::S3StoreBuilder;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_by_token_keys_never_lets_a_deposed_leaders_late_object_be_current() {
    let url = fixtures::s3_url().await.expect("an S3 endpoint");
    fixtures::ready(&lock_s3::BACKEND, &url).await.expect("bucket");
    let store = S3StoreBuilder::from_url(&StoreUrl::parse(&url).expect("url")).expect("builder").connect().await.expect("store");
    let (client, bucket) = (store.client(), store.bucket());
    let prefix = format!("reports/{}/", lock_conformance::unique_lock("fence"));
    recipe::write(client, bucket, &prefix, "daily", 7, b"from term 7".to_vec()).await.expect("the current term writes");
    // A deposed leader (term 5) wakes up and writes late: it lands, under its own token.
    recipe::write(client, bucket, &prefix, "daily", 5, b"late, from term 5".to_vec()).await.expect("a late write lands");
    let (token, body) = recipe::read_current(client, bucket, &prefix, "daily").await.expect("read").expect("something");
    assert_eq!((token, body.as_slice()), (7, &b"from term 7"[..]), "readers see the newest term's object");
    // No term writes twice under one token: a replayed write is refused.
    let err = recipe::write(client, bucket, &prefix, "daily", 7, b"again".to_vec()).await.expect_err("If-None-Match");
    assert!(err.contains("PreconditionFailed") || err.contains("412"), "{err}");
    assert!(recipe::key_for(&prefix, "daily", 5) < recipe::key_for(&prefix, "daily", 7), "keys sort as tokens do");
    assert!(recipe::key_for(&prefix, "daily", 9) < recipe::key_for(&prefix, "daily", 10), "zero-padded: 9 before 10");
}
