//! lock-s3 passes the whole conformance suite against a real S3 API with conditional
//! writes (`LOCK_TEST_S3_ENDPOINT`, else a container: MinIO, or moto offline).

use crate::support;

lock_conformance::conformance_tests!(support::harness().await);
