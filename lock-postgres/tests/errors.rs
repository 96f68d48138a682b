//! Postgres failures reach the caller as clear, secret-free errors; the minimal
//! grants from the README are enough.

mod support;

use lock_conformance::fixtures;
use lock_core::{Error, LeaderElectionRecord, LeaseStore, LockName};
use lock_postgres::PostgresStore;

fn lock() -> LockName {
    LockName::new("errors/lock").expect("valid")
}

fn record() -> LeaderElectionRecord {
    LeaderElectionRecord::new("stalin", 15, chrono::Utc::now())
}

/// The container's superuser URL (these tests create roles, so never an external server).
async fn admin_url() -> String {
    support::ready(fixtures::postgres_container_url().await.expect("the Postgres container")).await
}

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("admin connection");
    tokio::spawn(conn);
    client
}

fn with_credentials(url: &str, user: &str, password: &str) -> String {
    let (_, rest) = url.split_once('@').expect("URL has credentials");
    format!("postgres://{user}:{password}@{rest}")
}

#[tokio::test]
async fn missing_table_says_to_run_ensure_schema() {
    let url = admin_url().await;
    let store = PostgresStore::builder(&url).expect("url").table("no_such_table").build().expect("builds");
    let err = store.get(&lock()).await.expect_err("the table does not exist");
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("ensure_schema()") && err.to_string().contains("no_such_table"), "{err}");
}

#[tokio::test]
async fn readme_grants_are_enough_and_missing_grants_are_permission_denied() {
    let url = admin_url().await;
    let admin = admin(&url).await;
    let password = fixtures::random_secret();
    admin.batch_execute("DROP ROLE IF EXISTS lease_app; DROP ROLE IF EXISTS lease_nobody").await.expect("drop roles");
    // The grants the README lists, and nothing more.
    admin
        .batch_execute(&format!(
            "CREATE ROLE lease_app LOGIN PASSWORD '{password}';
             GRANT USAGE ON SCHEMA public TO lease_app;
             GRANT SELECT, INSERT, UPDATE ON public.highlander_leases TO lease_app;
             CREATE ROLE lease_nobody LOGIN PASSWORD '{password}';"
        ))
        .await
        .expect("create roles");

    let app = PostgresStore::builder(&with_credentials(&url, "lease_app", &password)).expect("url").build().expect("builds");
    let lock = lock_conformance::unique_lock("grants");
    let v1 = app.create(&lock, &record()).await.expect("create with the README grants");
    app.update(&lock, &v1, &record()).await.expect("update with the README grants");
    assert!(app.get(&lock).await.expect("get with the README grants").is_some());

    let nobody = PostgresStore::builder(&with_credentials(&url, "lease_nobody", &password)).expect("url").build().expect("builds");
    let err = nobody.get(&lock).await.expect_err("no grants");
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(err.to_string().contains("grant SELECT, INSERT, UPDATE"), "{err}");
}

#[tokio::test]
async fn a_wrong_password_is_denied_and_never_echoed() {
    let url = admin_url().await;
    let secret = "hunter2-do-not-print-me";
    let store = PostgresStore::builder(&with_credentials(&url, "highlander", secret)).expect("url").build().expect("builds");
    let err = store.get(&lock()).await.expect_err("wrong password");
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    for shown in [err.to_string(), format!("{err:?}"), store.to_string(), format!("{store:?}")] {
        assert!(!shown.contains(secret), "the password leaked: {shown}");
    }
    let err = PostgresStore::builder(&format!("postgres://u:{secret}@[not a host")).expect_err("malformed URL");
    assert!(!err.to_string().contains(secret), "the password leaked: {err}");
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let store = PostgresStore::builder(&format!("postgres://u@127.0.0.1:{port}/db")).expect("url").build().expect("builds");
    let err = store.get(&lock()).await.expect_err("nothing listens there");
    assert!(err.is_transient(), "{err:?}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}/db")), "{err}");
}

#[test]
fn identifiers_are_validated() {
    for bad in ["", "1table", "bad-name", "x\"; DROP TABLE y; --", &"t".repeat(64)] {
        let err = PostgresStore::builder("postgres://u@127.0.0.1/db").expect("url").table(bad).build().expect_err(bad);
        assert!(err.to_string().contains("letters, digits or underscores"), "{err}");
    }
    assert!(PostgresStore::builder("postgres://u@127.0.0.1/db").expect("url").schema("tenant_7").table("leases_v2").build().is_ok());
}
