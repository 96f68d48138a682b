//! lock-redis passes the whole conformance suite against a real Redis server
//! (`LOCK_TEST_REDIS_URL`, else Debian's `redis-server` started here on 127.0.0.1).

lock_conformance::conformance_tests!(
    lock_conformance::fixtures::harness(&lock_redis::BACKEND, lock_conformance::fixtures::redis_url().await).await
);
