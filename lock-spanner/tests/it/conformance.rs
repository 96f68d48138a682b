//! lock-spanner passes the whole conformance suite against the Cloud Spanner emulator
//! (`LOCK_TEST_SPANNER_EMULATOR`, else started here on 127.0.0.1).

lock_conformance::conformance_tests!(
    lock_conformance::fixtures::harness(&lock_spanner::BACKEND, lock_conformance::fixtures::spanner_url().await).await
);
