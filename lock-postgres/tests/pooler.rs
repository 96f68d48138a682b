//! Postgres behind PgBouncer (Debian's, started by the fixture on 127.0.0.1): what
//! notifications do in each pool mode, and errors that say what the pooler said.

use lock_conformance::fixtures;
use lock_core::{Backend, LeaseStore, OpenOptions, StoreUrl};

async fn open(url: &str) -> std::sync::Arc<dyn lock_core::RawAccess> {
    lock_postgres::BACKEND.open(&StoreUrl::parse(url).expect("url"), &OpenOptions::default()).await.expect("opens")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_transaction_pooler_notifications_are_found_missing_and_not_declared() {
    let (url, server) = fixtures::pgbouncer_url("transaction").await.expect("pgbouncer");
    fixtures::ready(&lock_postgres::BACKEND, &url).await.expect("ready");
    let store = open(&url).await;
    assert!(!store.capabilities().watch, "a transaction pooler does not deliver notifications: not declared");
    let lock = lock_conformance::unique_lock("pooler");
    assert!(store.watch(&lock).await.expect("watch").is_none(), "no watch that would not deliver");

    // With listen= the server itself, notifications come back, past the pooler.
    let direct = format!("{url}?listen={server}");
    let store = open(&direct).await;
    assert!(store.capabilities().watch, "LISTEN on the server directly delivers");
    let mut changes = store.watch(&lock).await.expect("watch").expect("a watch");
    let v = store.create(&lock, &lock_core::LeaderElectionRecord::new("stalin", 15, chrono::Utc::now())).await.expect("create");
    let _ = v;
    let mut rec = lock_core::LeaderElectionRecord::new("napoleon", 15, chrono::Utc::now());
    rec.leader_transitions = 1;
    let seen = store.get(&lock).await.expect("get").expect("record");
    store.update(&lock, &seen.version, &rec).await.expect("update through the pooler");
    let got = tokio::time::timeout(std::time::Duration::from_secs(5), changes.recv()).await.expect("notified").expect("open");
    assert_eq!(got.record.holder_identity, "napoleon");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_session_pooler_notifications_work() {
    let (url, _) = fixtures::pgbouncer_url("session").await.expect("pgbouncer");
    fixtures::ready(&lock_postgres::BACKEND, &url).await.expect("ready");
    assert!(open(&url).await.capabilities().watch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poolers_own_errors_are_shown_not_db_error() {
    let (url, _) = fixtures::pgbouncer_url("transaction").await.expect("pgbouncer");
    // A user PgBouncer does not know (not in its auth_file).
    let (_, rest) = url.split_once('@').expect("user-info");
    let stranger = format!("postgres://nobody-{}@{rest}", std::process::id());
    let store = lock_postgres::PostgresStore::builder(&stranger).expect("url").build().expect("builds");
    let err = store.get(&lock_conformance::unique_lock("pooler-error")).await.expect_err("unknown user");
    let text = err.to_string();
    assert!(!text.contains("db error"), "{text}");
    assert!(text.to_lowercase().contains("no such user") || text.contains("SQLSTATE"), "the pooler's words: {text}");
}

/// Every abandoned statement sends a cancel request through the pooler. PgBouncer 1.18
/// crashes ("bad client state: 0") when a cancel request's client leaves before the
/// pooler has forwarded it, as tokio-postgres's own cancel does: the store's cancels
/// must wait for the pooler, over plain TCP and with `sslmode=prefer` (the default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_statements_are_cancelled_without_crashing_the_pooler() {
    for mode in ["session", "transaction"] {
        let (url, server) = fixtures::pgbouncer_url(mode).await.expect("pgbouncer");
        fixtures::ready(&lock_postgres::BACKEND, &url).await.expect("ready");
        let lock = lock_conformance::unique_lock("pooler-cancel");
        let pooled = open(&url).await;
        pooled.create(&lock, &lock_core::LeaderElectionRecord::new("stalin", 15, chrono::Utc::now())).await.expect("create");
        let seen = pooled.get(&lock).await.expect("get").expect("record");

        // The lease row locked by a transaction on the server itself: updates wait.
        let (user_info, rest) = url.split_once('@').expect("user-info");
        let db = rest.split_once('/').map_or("", |(_, db)| db);
        let direct = lock_postgres::PostgresStore::builder(&format!("{user_info}@{server}/{db}")).expect("url").build().expect("builds");
        let mut holder = direct.connection().await.expect("direct connection");
        let tx = holder.transaction().await.expect("begin");
        tx.execute("SELECT 1 FROM highlander_leases WHERE name = $1 FOR UPDATE", &[&lock.as_str()]).await.expect("row lock");

        for modes in ["sslmode=prefer", "sslmode=disable"] {
            let store = open(&format!("{url}?{modes}")).await;
            for _ in 0..10 {
                let mut rec = lock_core::LeaderElectionRecord::new("napoleon", 15, chrono::Utc::now());
                rec.leader_transitions = 1;
                let waited = tokio::time::timeout(std::time::Duration::from_millis(100), store.update(&lock, &seen.version, &rec)).await;
                // (Through a transaction pooler the previous round's cancel may reach the
                // server connection this statement got: it fails, which is fine.)
                assert!(!matches!(waited, Ok(Ok(_))), "{mode}, {modes}: the update did not wait for the row lock");
            }
        }
        tx.rollback().await.expect("rollback");
        // The cancels run on threads of their own: give them time to reach the pooler.
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let alive = open(&url).await.get(&lock).await;
        assert!(alive.is_ok(), "{mode}: the pooler died after the cancels: {alive:?}");
    }
}
