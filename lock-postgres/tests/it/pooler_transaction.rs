//! lock-postgres passes the whole conformance suite through PgBouncer in transaction
//! mode with stock settings (no startup parameters it rejects, no session state;
//! notifications found not to arrive, so declared off and standbys poll). Debian's
//! PgBouncer 1.18 can crash on any cancel request in transaction mode
//! (pgbouncer/pgbouncer#822, fixed upstream): `cancel=false`, as the README says.

lock_conformance::conformance_tests!(
    lock_conformance::fixtures::harness(
        &lock_postgres::BACKEND,
        lock_conformance::fixtures::pgbouncer_url("transaction").await.map(|(url, _)| format!("{url}?cancel=false"))
    )
    .await
);
