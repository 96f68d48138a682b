//! lock-postgres passes the whole conformance suite through PgBouncer in session mode,
//! where LISTEN works and notifications are declared and delivered.

lock_conformance::conformance_tests!(
    lock_conformance::fixtures::harness(
        &lock_postgres::BACKEND,
        lock_conformance::fixtures::pgbouncer_url("session").await.map(|(url, _)| url)
    )
    .await
);
