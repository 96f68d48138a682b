//! The store under test: the fixture's S3 (MinIO or moto), with the bucket created.

use lock_conformance::fixtures::{self, AwsEndpoint};
use lock_s3::S3Store;
use std::time::Duration;

pub(crate) const BUCKET: &str = "highlander-leases";

pub(crate) async fn store(endpoint: &AwsEndpoint) -> lock_core::Result<S3Store> {
    S3Store::builder(BUCKET)
        .endpoint(&endpoint.url)
        .region(&endpoint.region)
        .path_style(true)
        .static_credentials(&endpoint.access_key_id, &endpoint.secret_access_key)
        .connect()
        .await
}

/// The fixture's endpoint, once the bucket exists.
pub(crate) async fn ready() -> AwsEndpoint {
    let endpoint = fixtures::s3_endpoint().await.unwrap_or_else(|e| panic!("no S3 to test against: {e}"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let attempt = match store(&endpoint).await {
            Ok(s) => s.ensure_bucket().await,
            Err(e) => Err(e),
        };
        match attempt {
            Ok(()) => return endpoint,
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(250)).await,
            Err(e) => panic!("S3 at {} never became ready: {e}", endpoint.url),
        }
    }
}

/// The harness: every client a new store on the fixture's endpoint.
pub(crate) async fn harness() -> impl lock_conformance::StoreHarness {
    let endpoint = ready().await;
    lock_conformance::Harness::new(move || {
        let endpoint = endpoint.clone();
        async move { store(&endpoint).await }
    })
}
