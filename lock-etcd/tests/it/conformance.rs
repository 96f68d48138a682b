//! lock-etcd passes the whole conformance suite against a real etcd
//! (`LOCK_TEST_ETCD_ENDPOINTS`, else a container).

use crate::support;

lock_conformance::conformance_tests!(support::from_env().await);
