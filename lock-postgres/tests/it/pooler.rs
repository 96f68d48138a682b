//! Postgres behind PgBouncer (Debian's, started by the fixture on 127.0.0.1): what
//! notifications do in each pool mode, and errors that say what the pooler said.

use crate::support;
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
    let direct = format!("{url}?cancel=false&listen={server}");
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
/// crashes ("bad client state: 0", pgbouncer/pgbouncer#801) when a cancel request's
/// client leaves before the pooler has forwarded it, as tokio-postgres's own cancel
/// does: the store's cancels must wait for the pooler, over plain TCP and with
/// `sslmode=prefer` (the default). (Session mode: in transaction mode PgBouncer 1.18
/// crashes on cancels whoever sends them, #822 — see the next test.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_statements_are_cancelled_without_crashing_the_pooler() {
    let (url, server) = fixtures::pgbouncer_url("session").await.expect("pgbouncer");
    let (lock, holder) = abandon_updates(&url, &server, "").await;
    // Every abandoned statement is cancelled while the row is still locked: none is
    // left waiting.
    let mut waiting = i64::MAX;
    for _ in 0..200 {
        let row = holder
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()", &[])
            .await
            .expect("pg_stat_activity");
        waiting = row.get(0);
        if waiting == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(waiting, 0, "abandoned statements still wait for the row lock: their cancels did not arrive");
    holder.batch_execute("ROLLBACK").await.expect("rollback");
    let alive = open(&url).await.get(&lock).await;
    assert!(alive.is_ok(), "the pooler died after the cancels: {alive:?}\n{}", pooler_log("session"));
}

/// With `cancel=false` (for PgBouncer 1.18 in transaction mode, pgbouncer#822) an abandoned
/// statement's connection is closed, no cancel request is sent, and the pooler lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cancel_off_abandoned_statements_send_no_cancel_request() {
    let (url, server) = fixtures::pgbouncer_url("transaction").await.expect("pgbouncer");
    let (lock, holder) = abandon_updates(&url, &server, "cancel=false&").await;
    holder.batch_execute("ROLLBACK").await.expect("rollback");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let alive = open(&format!("{url}?cancel=false")).await.get(&lock).await;
    let log = pooler_log("transaction");
    assert!(alive.is_ok(), "the pooler died: {alive:?}\n{log}");
    assert!(!log.contains("cancel request"), "a cancel request was sent:\n{log}");
}

/// Creates a lock through the pooler at `url`, locks its row on the server itself, and
/// abandons 20 updates of it (100 ms each) through stores opened with `params` and
/// each `sslmode`. Returns the lock and the connection whose transaction holds the row.
async fn abandon_updates(url: &str, server: &str, params: &str) -> (lock_core::LockName, deadpool_postgres::Client) {
    fixtures::ready(&lock_postgres::BACKEND, url).await.expect("ready");
    let lock = lock_conformance::unique_lock("pooler-cancel");
    let pooled = open(&format!("{url}?{params}sslmode=prefer")).await;
    pooled.create(&lock, &lock_core::LeaderElectionRecord::new("stalin", 15, chrono::Utc::now())).await.expect("create");
    let seen = pooled.get(&lock).await.expect("get").expect("record");

    // The lease row locked by a transaction on the server itself: updates wait.
    let (user_info, rest) = url.split_once('@').expect("user-info");
    let db = rest.split_once('/').map_or("", |(_, db)| db);
    let holder = support::lock_row(&format!("{user_info}@{server}/{db}"), &lock).await;

    for modes in ["sslmode=prefer", "sslmode=disable"] {
        let store = open(&format!("{url}?{params}{modes}")).await;
        for _ in 0..10 {
            let mut rec = lock_core::LeaderElectionRecord::new("napoleon", 15, chrono::Utc::now());
            rec.leader_transitions = 1;
            let waited = tokio::time::timeout(std::time::Duration::from_millis(100), store.update(&lock, &seen.version, &rec)).await;
            assert!(!matches!(waited, Ok(Ok(_))), "{modes}: the update did not wait for the row lock");
        }
    }
    (lock, holder)
}

/// The end of the fixture pooler's log (its directory is this process's).
fn pooler_log(mode: &str) -> String {
    let path = std::env::temp_dir().join(format!("highlander-pgbouncer-{mode}-{}", std::process::id())).join("pgbouncer.log");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| format!("{}: {e}", path.display()));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
