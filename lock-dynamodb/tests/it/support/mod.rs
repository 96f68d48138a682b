//! The store under test: the fixture's DynamoDB (DynamoDB Local or moto), by URL, with the table created.

use lock_conformance::{Connect, Harness, fixtures};
use lock_core::StoreUrl;
use lock_dynamodb::{DynamoDbStore, DynamoDbStoreBuilder};

/// The fixture's URL, once the table exists.
pub(crate) async fn ready() -> String {
    let url = fixtures::dynamodb_url().await.unwrap_or_else(|e| panic!("no DynamoDB to test against: {e}"));
    fixtures::ready(&lock_dynamodb::BACKEND, &url).await.unwrap_or_else(|e| panic!("DynamoDB: {e}"));
    url
}

/// A store on the fixture's table, opened by URL.
pub(crate) async fn store(url: &str) -> lock_core::Result<DynamoDbStore> {
    DynamoDbStoreBuilder::from_url(&StoreUrl::parse(url)?)?.connect().await
}

/// The harness: every client a new store on the fixture's table.
pub(crate) async fn harness() -> Harness<Connect> {
    fixtures::harness(&lock_dynamodb::BACKEND, fixtures::dynamodb_url().await).await
}
