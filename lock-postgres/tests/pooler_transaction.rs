//! lock-postgres passes the whole conformance suite through PgBouncer in transaction
//! mode with stock settings (no startup parameters it rejects, no session state;
//! notifications found not to arrive, so declared off and standbys poll).

lock_conformance::conformance_tests!(
    lock_conformance::fixtures::harness(
        &lock_postgres::BACKEND,
        lock_conformance::fixtures::pgbouncer_url("transaction").await.map(|(url, _)| url)
    )
    .await
);
