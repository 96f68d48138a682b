//! Advisory-lock mode against a real Postgres: the session lock is a gate a writer
//! with the right version still cannot pass while another holder's session lasts; the
//! gate opens when that holder releases, loses a compare-and-set, lets its lease end, or
//! its connection closes; and a transaction-mode pooler without a direct address is
//! refused. (The whole suite runs on it by URL in scripts/test-external.)

use crate::support;
use lock_conformance::fixtures;
use lock_core::{Backend, Error, LeaderElectionRecord, LeaseStore, LockName, OpenOptions, RawAccess, StoreUrl, Version};
use lock_postgres::PostgresStore;
use std::time::Duration;

fn with_param(url: &str, param: &str) -> String {
    format!("{url}{}{param}", if url.contains('?') { '&' } else { '?' })
}

async fn advisory_store(url: &str) -> PostgresStore {
    PostgresStore::builder(&with_param(url, "advisory=true")).expect("url").build().expect("builds")
}

fn held_by(holder: &str, lease_seconds: u32) -> LeaderElectionRecord {
    LeaderElectionRecord::new(holder, lease_seconds, chrono::Utc::now())
}

/// How many sessions hold `lock`'s advisory lock, seen from a plain connection.
async fn advisory_holders(url: &str, lock: &LockName) -> i64 {
    let plain = PostgresStore::builder(url).expect("url").build().expect("builds");
    let key = plain.advisory_key(lock);
    let client = plain.connection().await.expect("connection");
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
             AND (classid::bigint << 32 | objid::bigint) = $1",
            &[&key],
        )
        .await
        .expect("pg_locks");
    row.get(0)
}

async fn setup() -> (String, LockName) {
    let url = support::ready(fixtures::postgres_url().await.expect("a Postgres")).await;
    (url, lock_conformance::unique_lock("advisory"))
}

/// Retries `b`'s takeover from `version` until it passes the gate, within `within`.
async fn takes_over_within(b: &PostgresStore, lock: &LockName, version: &Version, within: Duration) -> Duration {
    let started = tokio::time::Instant::now();
    loop {
        match b.update(lock, version, &held_by("b", 15)).await {
            Ok(_) => return started.elapsed(),
            Err(Error::Conflict { .. }) if started.elapsed() < within => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("b's takeover after {:?}: {other:?}", started.elapsed()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_holders_session_refuses_a_writer_with_the_right_version() {
    let (url, lock) = setup().await;
    let a = advisory_store(&url).await;
    let b = advisory_store(&url).await;
    let v1 = a.create(&lock, &held_by("a", 30)).await.expect("a creates");
    // b has the current version: the row alone would let it write; the gate does not.
    let refused = b.update(&lock, &v1, &held_by("b", 30)).await;
    assert!(matches!(refused, Err(Error::Conflict { .. })), "{refused:?}");
    assert_eq!(b.get(&lock).await.expect("get").expect("row").record.holder_identity, "a", "the row is a's still");
    let refused = b.create(&lock, &held_by("b", 30)).await;
    assert!(matches!(refused, Err(Error::AlreadyExists { .. })), "a create of an existing row says so: {refused:?}");
    // Without the gate the same write passes: the version was right.
    let plain = PostgresStore::builder(&url).expect("url").build().expect("builds");
    plain.update(&lock, &v1, &held_by("c", 30)).await.expect("the row's compare-and-set alone passes");
    // a renews: its own session passes its own gate; the version is stale now.
    let stale = a.update(&lock, &v1, &held_by("a", 30)).await;
    assert!(matches!(stale, Err(Error::Conflict { .. })), "{stale:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_opens_on_release_on_a_lost_compare_and_set_and_at_the_leases_end() {
    let (url, lock) = setup().await;
    let a = advisory_store(&url).await;
    let b = advisory_store(&url).await;
    // Released: the next holder passes at once.
    let v1 = a.create(&lock, &held_by("a", 30)).await.expect("a creates");
    let v2 = a.update(&lock, &v1, &held_by("", 30)).await.expect("a releases");
    assert_eq!(advisory_holders(&url, &lock).await, 0, "a release unlocks before it returns");
    let v3 = b.update(&lock, &v2, &held_by("b", 30)).await.expect("after a release the gate is open");
    // Lost: a's write from a stale version fails, and so a's session ends.
    let refused = a.update(&lock, &v3, &held_by("a", 30)).await;
    assert!(matches!(refused, Err(Error::Conflict { .. })), "b's session holds: {refused:?}");
    a.write_raw(&lock, &held_by("a", 30).to_json().expect("json")).await.expect("raw");
    let v4 = b.get(&lock).await.expect("get").expect("row").version;
    let lost = b.update(&lock, &v3, &held_by("b", 30)).await;
    assert!(matches!(lost, Err(Error::Conflict { .. })), "b's version is stale: {lost:?}");
    // The lease's end: a does not renew its 2 s lease; the gate opens then, not before.
    let asked = tokio::time::Instant::now();
    let v5 = a.update(&lock, &v4, &held_by("a", 2)).await.expect("b's lost compare-and-set gave its session up");
    takes_over_within(&b, &lock, &v5, Duration::from_secs(10)).await;
    assert!(asked.elapsed() >= Duration::from_secs(2), "the gate opened before a's lease ended: {:?}", asked.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_as_the_sessions_lease_ends_gets_a_session() {
    // The session closes when the lease its store last wrote ends. A renewal asked just
    // then must not find its connection closing under its gate query: 25 renewals timed
    // around that end, five locks at a time (before the fix, two and more of them failed
    // with "connection closed" in each of two runs).
    let (url, _) = setup().await;
    let store = advisory_store(&url).await;
    for round in 0..5u64 {
        let mut renewals = tokio::task::JoinSet::new();
        for i in 0..5u64 {
            let store = store.clone();
            renewals.spawn(async move {
                let lock = lock_conformance::unique_lock("advisory-lease-end");
                let started = tokio::time::Instant::now();
                let v = store.create(&lock, &held_by("a", 1)).await.expect("creates");
                // From 2 ms before the 1 s lease's end to 2.8 ms after it.
                let offset = Duration::from_micros(200 * (round * 5 + i));
                tokio::time::sleep_until(started + Duration::from_millis(998) + offset).await;
                store.update(&lock, &v, &held_by("a", 1)).await.map(|_| ()).map_err(|e| format!("{offset:?} after 998 ms: {e}"))
            });
        }
        let failed: Vec<String> = renewals.join_all().await.into_iter().filter_map(Result::err).collect();
        assert!(failed.is_empty(), "renewals at the session's lease end failed: {failed:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holders_closed_connection_frees_the_lock_on_the_server() {
    let (url, lock) = setup().await;
    let a = advisory_store(&url).await;
    assert_eq!(advisory_holders(&url, &lock).await, 0);
    let v1 = a.create(&lock, &held_by("a", 30)).await.expect("a creates");
    assert_eq!(advisory_holders(&url, &lock).await, 1, "a's session holds the lock on the server");
    drop(a);
    let b = advisory_store(&url).await;
    takes_over_within(&b, &lock, &v1, Duration::from_secs(5)).await;
    assert_eq!(advisory_holders(&url, &lock).await, 1, "b's session holds it now");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_pooler_without_a_direct_address_is_refused() {
    let (pooled, direct) = fixtures::pgbouncer_url("transaction").await.expect("PgBouncer");
    let options = OpenOptions::default();
    let advisory = with_param(&pooled, "cancel=false&advisory=true");
    let err = match lock_postgres::BACKEND.open(&StoreUrl::parse(&advisory).expect("url"), &options).await {
        Ok(_) => panic!("advisory locks through a transaction-mode pooler were accepted"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("listen=HOST:PORT") && err.contains("advisory"), "{err}");
    let password = StoreUrl::parse(&pooled).expect("url").password().unwrap_or_default().to_string();
    assert!(password.is_empty() || !err.contains(&password), "{err}");
    let direct = with_param(&advisory, &format!("listen={direct}"));
    let store = lock_postgres::BACKEND.open(&StoreUrl::parse(&direct).expect("url"), &options).await.expect("with listen= it opens");
    let lock = lock_conformance::unique_lock("advisory-pooled");
    store.create(&lock, &held_by("a", 30)).await.expect("the session goes to the server");
    let server = fixtures::postgres_url().await.expect("the server behind the pooler");
    assert_eq!(advisory_holders(&server, &lock).await, 1, "the lock is held on the server itself, not on a pooled connection");
    // Notifications turned off tell nothing about a pooler: a direct server opens.
    let quiet = with_param(&server, "notify=false&advisory=true");
    lock_postgres::BACKEND.open(&StoreUrl::parse(&quiet).expect("url"), &options).await.expect("notify=false on a direct server opens");
}

/// A hand-over asked by another process passes the gate (it confers nothing), while a
/// write that would take the lock under the live holder's session still does not; the
/// named candidate's write, which ends the hand-over, is gated again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_over_is_asked_past_the_gate_and_the_next_holders_write_is_gated() {
    let (url, lock) = setup().await;
    let (a, operator, b) = (advisory_store(&url).await, advisory_store(&url).await, advisory_store(&url).await);
    a.create(&lock, &held_by("a", 15)).await.expect("a leads");
    let now = chrono::Utc::now();
    lock_core::roster::write_entry(&b, &lock, "b", Some(lock_core::roster::Registration::new(0, now, now, Duration::from_secs(30))))
        .await
        .expect("b registers");
    assert_eq!(lock_core::roster::hand_over(&operator, &lock, Some("b")).await.expect("asked past the gate"), "b");
    let seen = operator.get(&lock).await.expect("get").expect("record");
    assert_eq!((seen.record.holder_identity.as_str(), seen.record.preferred_holder.as_deref()), ("a", Some("b")));
    // b's write that takes the lock clears the hand-over, and a's session still holds.
    match b.update(&lock, &seen.version, &held_by("b", 15)).await {
        Err(Error::Conflict { .. }) => {}
        other => panic!("b took the lock under a's live session: {other:?}"),
    }
    assert_eq!(advisory_holders(&url, &lock).await, 1, "a's session alone holds the lock");
}
