//! lock-dynamodb passes the whole conformance suite against a real DynamoDB API
//! (`LOCK_TEST_DYNAMODB_ENDPOINT`, else a container: DynamoDB Local, or moto offline).

use crate::support;

lock_conformance::conformance_tests!(support::harness().await);
