//! The store under test: the fixture's DynamoDB (DynamoDB Local or moto), with the table created.

use lock_conformance::fixtures::{self, AwsEndpoint};
use lock_dynamodb::DynamoDbStore;
use std::time::Duration;

pub(crate) const TABLE: &str = "highlander-leases";

pub(crate) async fn store(endpoint: &AwsEndpoint) -> lock_core::Result<DynamoDbStore> {
    DynamoDbStore::builder(TABLE)
        .endpoint(&endpoint.url)
        .region(&endpoint.region)
        .static_credentials(&endpoint.access_key_id, &endpoint.secret_access_key)
        .connect()
        .await
}

/// The fixture's endpoint, once the table exists.
pub(crate) async fn ready() -> AwsEndpoint {
    let endpoint = fixtures::dynamodb_endpoint().await.unwrap_or_else(|e| panic!("no DynamoDB to test against: {e}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = match store(&endpoint).await {
            Ok(s) => s.ensure_table().await,
            Err(e) => Err(e),
        };
        match attempt {
            Ok(()) => return endpoint,
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(250)).await,
            Err(e) => panic!("DynamoDB at {} never became ready: {e}", endpoint.url),
        }
    }
}

/// The harness: every client a new store on the fixture's endpoint.
#[allow(dead_code, reason = "not every test binary uses it")]
pub(crate) async fn harness() -> impl lock_conformance::StoreHarness {
    let endpoint = ready().await;
    lock_conformance::Harness::new(move || {
        let endpoint = endpoint.clone();
        async move { store(&endpoint).await }
    })
}
