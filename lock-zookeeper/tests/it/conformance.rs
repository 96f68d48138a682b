//! lock-zookeeper passes the whole conformance suite against a real ZooKeeper server
//! (`LOCK_TEST_ZOOKEEPER_URL`, else Debian's ZooKeeper started here on 127.0.0.1).

lock_conformance::conformance_tests!(
    lock_conformance::fixtures::harness(&lock_zookeeper::BACKEND, lock_conformance::fixtures::zookeeper_url().await).await
);
