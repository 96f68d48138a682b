//! Spanner failures reach the caller as the shared error kinds, naming the lock and the
//! store: a missing table or database is configuration, an unreachable endpoint is
//! unavailable (and bounded by the call timeout). The emulator has no IAM, so
//! permission errors are mapped in code (`map_error`) but not exercised here.

use lock_conformance::fixtures;
use lock_core::{Error, LeaseStore, LockName, StoreUrl};
use lock_spanner::SpannerStoreBuilder;
use std::time::{Duration, Instant};

fn lock() -> LockName {
    LockName::new("errors/lock").expect("valid")
}

async fn ready_url() -> String {
    let url = fixtures::spanner_url().await.expect("the Spanner emulator");
    fixtures::ready(&lock_spanner::BACKEND, &url).await.expect("instance, database and table");
    url
}

fn builder(url: &str) -> SpannerStoreBuilder {
    SpannerStoreBuilder::from_url(&StoreUrl::parse(url).expect("url")).expect("builder")
}

#[tokio::test]
async fn missing_table_is_configuration_naming_the_table_the_lock_and_the_store() {
    let url = ready_url().await;
    let store = builder(&url).table("no_such_table").connect().await.expect("connects");
    let err = store.get(&lock()).await.expect_err("the table does not exist");
    let text = err.to_string();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    for needle in ["no_such_table", "errors/lock", "databases/locks", "--create"] {
        assert!(text.contains(needle), "{needle:?} missing from: {text}");
    }
}

#[tokio::test]
async fn missing_database_is_configuration() {
    let url = ready_url().await;
    let url = url.replace("/locks?", "/nothere?");
    let err = match builder(&url).connect().await {
        Ok(store) => store.get(&lock()).await.expect_err("the database does not exist"),
        Err(e) => e,
    };
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("databases/nothere"), "{err}");
}

#[tokio::test]
async fn unreachable_emulator_is_unavailable_within_the_call_timeout() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("spanner://p-test/inst/db?emulator=127.0.0.1:{port}");
    let started = Instant::now();
    let err = match builder(&url).call_timeout(Duration::from_millis(500)).connect().await {
        Ok(store) => store.get(&lock()).await.expect_err("nothing listens"),
        Err(e) => e,
    };
    assert!(matches!(err, Error::Unavailable { .. } | Error::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "names the store: {err}");
    assert!(started.elapsed() < Duration::from_secs(10), "bounded: {:?}", started.elapsed());
}
