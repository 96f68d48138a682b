//! lock-postgres passes the whole conformance suite against a real Postgres
//! (`LOCK_TEST_POSTGRES_URL`, else a container).

use crate::support;

lock_conformance::conformance_tests!(support::from_env().await);
