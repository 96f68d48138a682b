//! The store under test: the fixture's S3 (MinIO or moto), by URL, with the bucket created.

use lock_conformance::{Connect, Harness, fixtures};

/// The harness: every client a new store on the fixture's bucket.
pub(crate) async fn harness() -> Harness<Connect> {
    fixtures::harness(&lock_s3::BACKEND, fixtures::s3_url().await).await
}
