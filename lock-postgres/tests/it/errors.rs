//! Postgres failures reach the caller as clear, secret-free errors; the minimal
//! grants from the README are enough.

use crate::support;
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
    // The cause, not just "error connecting to server".
    assert!(err.to_string().contains("Connection refused"), "{err}");
}

#[tokio::test]
async fn server_errors_say_what_the_server_said_not_db_error() {
    let url = admin_url().await;
    let store = PostgresStore::builder(&url).expect("url").schema("no_such_schema").build().expect("builds");
    let err = store.get(&lock()).await.expect_err("no such schema");
    let text = err.to_string();
    assert!(matches!(err, Error::Config(_)) && text.contains("no_such_schema") && !text.contains("db error"), "{text}");
    let err = store.ensure_schema().await.expect_err("cannot create a table in a missing schema");
    assert!(err.to_string().contains("schema \"no_such_schema\" does not exist"), "{err}");
}

#[tokio::test]
async fn a_row_changed_behind_the_stores_back_is_never_overwritten() {
    // Another writer changes the record but not the version column: the row's xmin
    // still moves, so the compare-and-set fails and the change is reported, not overwritten.
    let url = admin_url().await;
    let store = PostgresStore::builder(&url).expect("url").build().expect("builds");
    let lock = lock_conformance::unique_lock("bypass");
    let v1 = store.create(&lock, &record()).await.expect("create");
    let admin = admin(&url).await;
    admin
        .execute("UPDATE highlander_leases SET record = 'garbage' WHERE name = $1", &[&lock.as_str()])
        .await
        .expect("a write that bypasses the store");
    let err = store.update(&lock, &v1, &record()).await.expect_err("the version the store issued is stale now");
    assert!(err.is_conflict(), "{err:?}");
    let err = store.get(&lock).await.expect_err("garbage");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    let row = admin.query_one("SELECT record FROM highlander_leases WHERE name = $1", &[&lock.as_str()]).await.expect("row");
    assert_eq!(row.get::<_, String>(0), "garbage", "left untouched");

    // The same with an elector renewing: it steps down instead of writing over it.
    let lock = lock_conformance::unique_lock("bypass-elector");
    let elector = lock_core::LeaderElector::builder(store.clone(), lock.clone(), "stalin")
        .lease_duration(std::time::Duration::from_secs(2))
        .renew_deadline(std::time::Duration::from_millis(1500))
        .retry_period(std::time::Duration::from_millis(300))
        .build()
        .expect("config");
    let mut state = elector.subscribe();
    let task = elector.spawn(tokio_util::sync::CancellationToken::new());
    state.wait_for(lock_core::ElectionState::is_leader).await.expect("leads");
    admin.execute("UPDATE highlander_leases SET record = 'garbage' WHERE name = $1", &[&lock.as_str()]).await.expect("bypass");
    tokio::time::timeout(std::time::Duration::from_secs(5), state.wait_for(|s| !s.is_leader()))
        .await
        .expect("stepped down")
        .expect("alive");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let row = admin.query_one("SELECT record FROM highlander_leases WHERE name = $1", &[&lock.as_str()]).await.expect("row");
    assert_eq!(row.get::<_, String>(0), "garbage", "the leader never overwrote it");
    assert!(state.borrow().last_error.as_deref().is_some_and(|e| e.contains("corrupt")), "{:?}", state.borrow());
    task.abort();
}

#[test]
fn identifiers_are_validated() {
    for bad in ["", "1table", "bad-name", "x\"; DROP TABLE y; --", &"t".repeat(64)] {
        let err = PostgresStore::builder("postgres://u@127.0.0.1/db").expect("url").table(bad).build().expect_err(bad);
        assert!(err.to_string().contains("letters, digits or underscores"), "{err}");
    }
    assert!(PostgresStore::builder("postgres://u@127.0.0.1/db").expect("url").schema("tenant_7").table("leases_v2").build().is_ok());
}
