//! client-go's tryAcquireOrRenew, release and config table cases, ported.

use super::*;
use crate::{CallCounts, CountingStore, FaultyStore, MemoryStore};

const ME: &str = "baz";
const OTHER: &str = "bing";

fn lock() -> LockName {
    LockName::new("table-lock").expect("valid name")
}

fn elector<S: LeaseStore + 'static>(store: S) -> LeaderElector {
    LeaderElector::builder(store, lock(), ME)
        .lease_duration(Duration::from_secs(10))
        .renew_deadline(Duration::from_secs(5))
        .retry_period(Duration::from_secs(2))
        .build()
        .expect("valid config")
}

fn seed(store: &MemoryStore, holder: &str, transitions: u32, token: Option<u64>) {
    let mut rec = LeaderElectionRecord::new(holder, 10, Utc::now());
    rec.leader_transitions = transitions;
    rec.fencing_token = token.map(FencingToken);
    store.put_raw(&lock(), rec.to_json().expect("encode"));
}

fn stored(store: &MemoryStore) -> LeaderElectionRecord {
    LeaderElectionRecord::from_json(&store.raw(&lock()).expect("record present")).expect("decodes")
}

#[tokio::test(start_paused = true)]
async fn acquire_from_no_object() {
    let store = CountingStore::new(MemoryStore::new());
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held));
    let rec = stored(store.inner());
    assert_eq!((rec.holder_identity.as_str(), rec.leader_transitions, rec.lease_duration_seconds), (ME, 0, 10));
    assert_eq!(rec.fencing_token, Some(FencingToken(1)));
    let n = store.counts();
    assert_eq!((n.get, n.create, n.update), (1, 1, 0), "get then create");
}

#[tokio::test(start_paused = true)]
async fn acquire_from_unled_object() {
    let store = MemoryStore::new();
    seed(&store, "", 3, Some(7));
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held));
    let rec = stored(&store);
    assert_eq!(rec.holder_identity, ME);
    assert_eq!(rec.leader_transitions, 4, "a holder change is a transition");
    assert_eq!(rec.fencing_token, Some(FencingToken(8)));
}

#[tokio::test(start_paused = true)]
async fn do_not_acquire_from_led_fresh_object_then_acquire_once_expired() {
    let store = MemoryStore::new();
    seed(&store, OTHER, 1, Some(2));
    let before = store.raw(&lock());
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::HeldBy(h) if h == OTHER));
    assert_eq!(store.raw(&lock()), before, "a fresh lease is not touched");

    // Expiry is judged from when we observed the record, not from its renewTime.
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::HeldBy(_)), "still valid 9 s after observing");
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held), "expired 11 s after observing");
    let rec = stored(&store);
    assert_eq!((rec.holder_identity.as_str(), rec.leader_transitions), (ME, 2));
    assert_eq!(rec.fencing_token, Some(FencingToken(3)));
}

#[tokio::test(start_paused = true)]
async fn a_changing_record_resets_the_observed_time() {
    let store = MemoryStore::new();
    seed(&store, OTHER, 1, None);
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::HeldBy(_)));
    tokio::time::advance(Duration::from_secs(8)).await;
    seed(&store, OTHER, 1, None); // the holder renews: new bytes
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::HeldBy(_)));
    tokio::time::advance(Duration::from_secs(8)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::HeldBy(_)), "16 s after the first look but 8 s after the renewal");
}

#[tokio::test(start_paused = true)]
async fn acquire_from_led_object_naming_us_is_not_a_transition() {
    let store = MemoryStore::new();
    seed(&store, ME, 5, Some(9));
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held), "a restarted holder takes its lease back at once");
    let rec = stored(&store);
    assert_eq!(rec.leader_transitions, 5);
    assert_eq!(rec.fencing_token, Some(FencingToken(10)), "but a new process is a new term");
}

#[tokio::test(start_paused = true)]
async fn renew_already_held_object_with_one_call_keeping_acquire_time() {
    let store = CountingStore::new(MemoryStore::new());
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held));
    let _term = c.start_term();
    let first = stored(store.inner());
    let before = store.counts();
    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held));
    assert_eq!(store.counts() - before, CallCounts { update: 1, ..CallCounts::default() }, "fast path: one update");
    let renewed = stored(store.inner());
    assert_eq!(renewed.acquire_time, first.acquire_time);
    assert_eq!(renewed.leader_transitions, first.leader_transitions);
    assert_eq!(renewed.fencing_token, first.fencing_token);
}

#[tokio::test(start_paused = true)]
async fn renew_falls_back_to_the_slow_path_when_the_version_moved() {
    let (faulty, faults) = FaultyStore::new(MemoryStore::new());
    let store = CountingStore::new(faulty);
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held));
    let _term = c.start_term();
    faults.conflict_next_updates(1);
    let before = store.counts();
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held));
    let n = store.counts() - before;
    assert_eq!((n.get, n.update), (1, 2), "failed optimistic update, get, update");
}

#[tokio::test(start_paused = true)]
async fn leader_that_finds_another_holder_has_lost() {
    let store = MemoryStore::new();
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held));
    let _term = c.start_term();
    seed(&store, OTHER, 1, None);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Lost(h) if h == OTHER));
}

#[tokio::test(start_paused = true)]
async fn last_writer_wins_store_never_takes_the_fast_path() {
    let store = CountingStore::new(MemoryStore::last_writer_wins());
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held));
    let _term = c.start_term();
    let before = store.counts();
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held));
    assert_eq!(store.counts() - before, CallCounts { get: 1, update: 1, ..CallCounts::default() }, "read, check holder, write");
}

#[tokio::test(start_paused = true)]
async fn release_retries_on_conflict_and_keeps_transitions() {
    let (faulty, faults) = FaultyStore::new(MemoryStore::new());
    let store = CountingStore::new(faulty.clone());
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held));
    let _term = c.start_term();
    let held = stored(faulty.inner());
    faults.conflict_next_updates(2);
    let before = store.counts();
    assert!(c.release().await, "released despite two conflicts");
    let rec = stored(faulty.inner());
    assert_eq!(rec.holder_identity, "");
    assert_eq!(rec.lease_duration_seconds, 1);
    assert_eq!(rec.leader_transitions, held.leader_transitions);
    assert_eq!(rec.fencing_token, held.fencing_token, "the next term continues from this token");
    let n = store.counts() - before;
    assert_eq!((n.get, n.update), (3, 3), "re-read after each conflict");
}

#[tokio::test(start_paused = true)]
async fn release_of_a_lease_held_by_someone_else_writes_nothing() {
    let store = MemoryStore::new();
    seed(&store, OTHER, 1, None);
    let before = store.raw(&lock());
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    assert!(c.release().await);
    assert_eq!(store.raw(&lock()), before);
}

#[tokio::test(start_paused = true)]
async fn release_gives_up_at_the_renew_deadline() {
    let (faulty, faults) = FaultyStore::new(MemoryStore::new());
    let e = elector(faulty);
    let mut c = Campaign::new(&e);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held));
    faults.set_mode(crate::FaultMode::Hang);
    let started = Instant::now();
    assert!(!c.release().await);
    assert_eq!(started.elapsed(), Duration::from_secs(5), "bounded by the renew deadline");
}

#[test]
fn config_validation_names_each_rule() {
    let build = |identity: &str, lease: u64, renew: u64, retry: u64| {
        LeaderElector::builder(MemoryStore::new(), lock(), identity)
            .lease_duration(Duration::from_millis(lease))
            .renew_deadline(Duration::from_millis(renew))
            .retry_period(Duration::from_millis(retry))
            .build()
            .map(drop)
            .map_err(|e| e.to_string())
    };
    assert!(build(ME, 15_000, 10_000, 2_000).is_ok());
    for (identity, lease, renew, retry, expected) in [
        ("", 15_000, 10_000, 2_000, "identity must not be empty"),
        (ME, 0, 10_000, 2_000, "lease duration must be greater than zero"),
        (ME, 15_000, 0, 2_000, "renew deadline must be greater than zero"),
        (ME, 15_000, 10_000, 0, "retry period must be greater than zero"),
        (ME, 10_000, 10_000, 2_000, "lease duration (10s) must be greater than renew deadline (10s)"),
        (ME, 15_000, 2_400, 2_000, "renew deadline (2.4s) must be greater than 1.2 × retry period (2s)"),
        (ME, 1_500, 1_000, 500, "whole number of seconds"),
    ] {
        let err = build(identity, lease, renew, retry).expect_err(expected);
        assert!(err.contains(expected) && err.contains("table-lock"), "{expected:?} not in {err:?}");
    }
    let err = LeaderElector::builder(MemoryStore::new(), lock(), ME).call_timeout(Duration::from_secs(11)).build().expect_err("too long");
    assert!(err.to_string().contains("call timeout (11s) must not exceed renew deadline (10s)"), "{err}");
}

#[test]
fn defaults_are_client_gos() {
    let e = LeaderElector::builder(MemoryStore::new(), lock(), ME).build().expect("defaults are valid");
    let c = e.config();
    assert_eq!(
        (c.lease_duration, c.renew_deadline, c.retry_period),
        (Duration::from_secs(15), Duration::from_secs(10), Duration::from_secs(2))
    );
    assert!(c.call_timeout <= c.renew_deadline && c.release_on_cancel && c.recampaign);
}
