//! TLS against a real Postgres server that refuses plain connections: a throwaway CA
//! (made with `openssl`) signs the server's certificate, and the server (Debian's
//! binaries, run here on 127.0.0.1 and stopped by its pid) accepts only `hostssl`.
//!
//! Needs the `postgresql` and `openssl` packages (`scripts/setup` installs them); without
//! them the test fails and says so.

use crate::support::server::{Server, TempDir, as_postgres, chown, pg_bin, run};
use lock_core::{Error, LeaderElectionRecord, LeaseStore, LockName};
use lock_postgres::PostgresStore;
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

/// A certificate authority.
fn certificates(dir: &Path, name: &str) -> PathBuf {
    lock_conformance::fixtures::test_ca(dir, name).expect("a test CA")
}

fn server_certificate(dir: &Path, ca: &Path) {
    lock_conformance::fixtures::test_server_certificate(dir, ca).expect("a server certificate");
}

fn start_tls_server(dir: &Path) -> Server {
    let bin = pg_bin();
    let data = dir.join("data");
    chown(dir);
    run(as_postgres(&bin.join("initdb")).arg("-D").arg(&data).args(["-U", "postgres", "-A", "trust", "--no-sync"]), "initdb");
    // Only TLS connections are accepted: a plain one is rejected outright.
    std::fs::write(data.join("pg_hba.conf"), "hostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n").expect("hba");
    for f in ["server.key", "server.crt"] {
        std::fs::copy(dir.join(f), data.join(f)).expect("copy");
    }
    chown(&data);
    run(Command::new("chmod").arg("600").arg(data.join("server.key")), "chmod");
    Server::start(dir, &data, &["ssl=on", "fsync=off"])
}

#[tokio::test]
async fn tls_is_verified_against_the_given_ca_and_refused_without_it() {
    let dir = TempDir::new("pg-tls");
    let dir = dir.0.as_path();
    let ca = certificates(dir, "highlander-test-ca");
    server_certificate(dir, &ca);
    let other_ca = certificates(dir, "some-other-ca");
    let server = start_tls_server(dir);
    let base = format!("postgres://postgres@127.0.0.1:{}/postgres", server.port);
    let lock = LockName::new("tls").expect("name");

    // verify-full with the right CA: TLS, verified, and the store works.
    let url = format!("{base}?sslmode=verify-full&sslrootcert={}", ca.display());
    let store = PostgresStore::builder(&url).expect("url").build().expect("store");
    store.ensure_schema().await.expect("schema over TLS");
    let v = store.create(&lock, &LeaderElectionRecord::new("stalin", 15, chrono::Utc::now())).await.expect("create over TLS");
    // Change notifications come over their own TLS connection (LISTEN).
    let mut changes = store.watch(&lock).await.expect("LISTEN over TLS").expect("postgres notifies");
    let v2 = store.update(&lock, &v, &LeaderElectionRecord::new("stalin", 15, chrono::Utc::now())).await.expect("update over TLS");
    assert_eq!(store.get(&lock).await.expect("get").expect("record").record.holder_identity, "stalin");
    let seen = tokio::time::timeout(Duration::from_secs(5), changes.recv()).await.expect("a notification").expect("open");
    assert_eq!(seen.version, v2, "the notification carries the update's version");

    // The builder's option does the same as sslrootcert.
    let store =
        PostgresStore::builder(&format!("{base}?sslmode=require")).expect("url").root_certificates_file(&ca).build().expect("store");
    assert!(store.get(&lock).await.expect("get with root_certificates_file").is_some());

    // Default sslmode (prefer) and Mozilla's roots: the private CA is not trusted, and the
    // error says how to fix it, once, without retrying forever as if the store were down.
    let store = PostgresStore::builder(&base).expect("url").build().expect("store");
    let err = store.get(&lock).await.expect_err("an untrusted certificate");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("TLS") && text.contains("sslrootcert") && text.contains("127.0.0.1"), "{text}");

    // Another CA's certificate does not vouch for this server.
    let store = PostgresStore::builder(&format!("{base}?sslmode=verify-full&sslrootcert={}", other_ca.display()))
        .expect("url")
        .build()
        .expect("store");
    let err = store.get(&lock).await.expect_err("the wrong CA");
    assert!(matches!(err, Error::Config(_)) && err.to_string().contains("TLS"), "{err}");

    // Plain connections are refused by this server: proof the successes above were TLS.
    let store = PostgresStore::builder(&format!("{base}?sslmode=disable")).expect("url").build().expect("store");
    assert!(store.get(&lock).await.is_err(), "the server accepts TLS only");

    drop(server);
}
