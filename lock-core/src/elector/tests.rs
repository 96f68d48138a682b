//! client-go's tryAcquireOrRenew, release and config table cases, ported.

use super::*;
use crate::{CallCounts, CountingStore, FaultyStore, MemoryStore, clock::Stamp};

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

/// Takes a lock that has no record: absent means unknown, so it claims it and leads
/// only after the claim has stood for a lease.
async fn take_empty(c: &mut Campaign<'_>) {
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Vacant), "an absent record is claimed, not led on at once");
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held), "taken a lease after it was first seen absent");
}

fn token(rec: &LeaderElectionRecord) -> u64 {
    rec.fencing_token.expect("a Highlander record carries a token").get()
}

#[tokio::test(start_paused = true)]
async fn acquire_from_no_object() {
    let store = CountingStore::new(MemoryStore::new());
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Vacant), "absent is not free");
    let claim = stored(store.inner());
    assert!(claim.claim && claim.holder_identity == ME, "a claim is written at once: {claim:?}");
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Vacant), "9 s after the claim: still waiting");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held), "a lease after the claim");
    let rec = stored(store.inner());
    assert_eq!((rec.holder_identity.as_str(), rec.leader_transitions, rec.lease_duration_seconds, rec.claim), (ME, 0, 10, false));
    assert!(token(&rec) > token(&claim), "the term's token is above the claim's: {rec:?}");
    let n = store.counts();
    assert_eq!((n.get, n.create, n.update), (3, 1, 1), "reads, the claim, then the compare-and-set that confirms it");
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
    assert!(token(&rec) > 7, "{rec:?}");
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
    assert!(token(&rec) > 2, "{rec:?}");
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
async fn a_lease_held_under_our_identity_by_another_process_is_not_ours_until_it_expires() {
    // A record naming us with a token we never wrote: a twin with our identity, or an
    // earlier run of this process. Either way not ours to renew while it is valid.
    let store = MemoryStore::new();
    seed(&store, ME, 5, Some(9));
    let before = store.raw(&lock());
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::HeldBy(h) if h == ME), "not taken while valid");
    assert_eq!(store.raw(&lock()), before, "and not touched");
    tokio::time::advance(Duration::from_secs(11)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held), "taken once it expired as observed");
    let rec = stored(&store);
    assert_eq!(rec.leader_transitions, 5, "the same identity: not a holder change");
    assert!(token(&rec) > 9, "but a new process is a new term: {rec:?}");
}

#[tokio::test(start_paused = true)]
async fn its_own_earlier_term_is_not_a_twin_after_a_failed_attempt() {
    // A term ends; the next attempt to take the lock fails without writing (a full disk,
    // a timeout before the commit). The record still carries the ended term's token:
    // this candidate's own, not a twin's, so it is taken again rather than waited out
    // under a false alarm about another process with this identity.
    let (store, faults) = FaultyStore::new(MemoryStore::new());
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    take_empty(&mut c).await;
    let term = c.start_term(Stamp::now());
    let first = token(&stored(store.inner()));
    c.end_term(term, &TermEnd::Lost("the test ends it".into())).await;
    // The write of the next attempt fails (its token is remembered before it is sent).
    faults.conflict_next_updates(1);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Failed(_)), "the injected failure");
    assert_eq!(token(&stored(store.inner())), first, "nothing was written");
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held), "its own record is taken again at once");
    let rec = stored(store.inner());
    assert!(token(&rec) > first, "a new term: {rec:?}");
    assert!(!c.twin_reported(), "no twin was reported");
    // A token it never wrote under its identity is still a twin's.
    let term = c.start_term(Stamp::now());
    c.end_term(term, &TermEnd::Lost("the test ends it".into())).await;
    seed(store.inner(), ME, 0, Some(token(&rec) + 1_000));
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::HeldBy(h) if h == ME), "a twin's valid lease is waited out");
    assert!(!c.twin_reported(), "at first sight it may be an earlier run of this candidate (a restart)");
    tokio::time::advance(Duration::from_secs(2)).await;
    seed(store.inner(), ME, 0, Some(token(&rec) + 1_000));
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::HeldBy(h) if h == ME));
    assert!(c.twin_reported(), "renewed while watched: another process, reported");
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_finds_its_identity_with_another_token_steps_down() {
    let store = MemoryStore::new();
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    take_empty(&mut c).await;
    let _term = c.start_term(Stamp::now());
    // A second process started with the same identity takes the record over.
    seed(&store, ME, 0, Some(2));
    let step = c.try_acquire_or_renew(None, None).await;
    assert!(matches!(&step, Step::Lost(why) if why.contains("another process")), "a twin is another leader");
    assert_eq!(stored(&store).fencing_token, Some(FencingToken(2)), "the twin's record is left alone");
}

/// Writes go through, but the first one's answer is lost (a timeout after the commit).
#[derive(Debug, Clone)]
struct LostAnswers(MemoryStore, Arc<std::sync::atomic::AtomicBool>);

impl LostAnswers {
    fn lose_first(&self) -> Result<()> {
        if self.1.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::Unavailable { store: self.to_string(), source: "the answer was lost".into() });
        }
        Ok(())
    }
}

impl std::fmt::Display for LostAnswers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("lost answers")
    }
}

#[async_trait::async_trait]
impl LeaseStore for LostAnswers {
    async fn get(&self, lock: &LockName) -> Result<Option<Observed>> {
        self.0.get(lock).await
    }
    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
        let v = self.0.create(lock, rec).await?;
        self.lose_first().map(|()| v)
    }
    async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
        let v = self.0.update(lock, expected, rec).await?;
        self.lose_first().map(|()| v)
    }
    fn capabilities(&self) -> crate::Capabilities {
        self.0.capabilities()
    }
}

#[tokio::test(start_paused = true)]
async fn a_won_write_whose_answer_was_lost_is_still_recognised_as_ours() {
    let store = MemoryStore::new();
    let e = elector(LostAnswers(store.clone(), Arc::new(std::sync::atomic::AtomicBool::new(true))));
    let mut c = Campaign::new(&e);
    seed(&store, "", 0, Some(1));
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Failed(Error::Unavailable { .. })));
    assert_eq!(stored(&store).holder_identity, ME, "the write happened");
    let attempted = token(&stored(&store));
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held), "our own token: ours, no waiting for expiry");
    assert!(token(&stored(&store)) > attempted, "a fresh term for the process that now leads");
}

#[tokio::test(start_paused = true)]
async fn a_record_deleted_under_a_leader_is_written_again_within_its_term_and_said_once() {
    let store = MemoryStore::new();
    seed(&store, OTHER, 4, Some(41));
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    tokio::time::advance(Duration::from_secs(11)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::HeldBy(_)));
    tokio::time::advance(Duration::from_secs(11)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held));
    let _term = c.start_term(Stamp::now());
    let held = stored(&store);
    store.remove(&lock());
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held), "a leader within its term writes its record again");
    let again = stored(&store);
    assert_eq!(
        (again.holder_identity.as_str(), again.fencing_token, again.leader_transitions, again.acquire_time),
        (ME, held.fencing_token, 5, held.acquire_time),
        "the same term: same token, transitions and acquire time"
    );
}

#[tokio::test(start_paused = true)]
async fn a_standby_that_sees_the_record_vanish_claims_it_waits_a_lease_and_takes_a_larger_token() {
    let store = MemoryStore::new();
    seed(&store, OTHER, 2, Some(9));
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::HeldBy(_)));
    store.remove(&lock());
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Vacant), "claimed when first seen absent");
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Vacant), "the lost holder may still be in its term");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held));
    let rec = stored(&store);
    assert_eq!((rec.holder_identity.as_str(), rec.leader_transitions, rec.claim), (ME, 3, false), "the lost record's count goes on");
    assert!(token(&rec) > 9, "{rec:?}");
}

#[tokio::test(start_paused = true)]
async fn a_claim_that_is_replaced_is_never_led_on() {
    let store = MemoryStore::new();
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Vacant), "claimed");
    // Another candidate's record replaces the claim (a racing claim that won, then was lost and re-created, say).
    seed(&store, OTHER, 0, Some(u64::MAX / 2));
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::HeldBy(h) if h == OTHER), "someone else's record now");
    assert_eq!(stored(&store).holder_identity, OTHER, "left alone");
}

#[tokio::test(start_paused = true)]
async fn a_leader_inside_its_term_writes_its_record_back_over_a_claim() {
    let store = MemoryStore::new();
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    take_empty(&mut c).await;
    let _term = c.start_term(Stamp::now());
    let held = stored(&store);
    // The record vanishes and another candidate claims the lock before this leader renews.
    let mut claim = LeaderElectionRecord::new(OTHER, 10, Utc::now());
    claim.claim = true;
    claim.fencing_token = held.fencing_token.map(|t| FencingToken(t.get() + 1));
    store.remove(&lock());
    store.put_raw(&lock(), claim.to_json().expect("encode"));
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held), "the leader keeps its term");
    let back = stored(&store);
    assert_eq!((back.holder_identity.as_str(), back.fencing_token, back.claim), (ME, held.fencing_token, false), "{back:?}");
}

#[tokio::test(start_paused = true)]
async fn a_vanished_record_with_a_longer_lease_is_waited_out_in_full() {
    let store = MemoryStore::new();
    let mut rec = LeaderElectionRecord::new(OTHER, 60, Utc::now());
    rec.fencing_token = Some(FencingToken(3));
    store.put_raw(&lock(), rec.to_json().expect("encode"));
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::HeldBy(_)));
    store.remove(&lock());
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Vacant));
    assert_eq!(stored(&store).lease_duration_seconds, 60, "the claim carries the longest lease known");
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Vacant), "the holder's 60 s lease, not our 10 s");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held));
}

#[tokio::test(start_paused = true)]
async fn a_token_that_cannot_grow_is_reported_never_wrapped() {
    let store = MemoryStore::new();
    seed(&store, "", 3, Some(u64::MAX));
    let before = store.raw(&lock());
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    let step = c.try_acquire_or_renew(None, None).await;
    assert!(matches!(&step, Step::Failed(Error::Corrupt { detail, .. }) if detail.contains("cannot grow")), "reported");
    assert_eq!(store.raw(&lock()), before, "the record is left untouched");
}

#[tokio::test(start_paused = true)]
async fn a_record_with_a_huge_lease_is_honoured_without_overflow() {
    let store = MemoryStore::new();
    let mut rec = LeaderElectionRecord::new(OTHER, u32::MAX, Utc::now());
    rec.leader_transitions = u32::MAX;
    store.put_raw(&lock(), rec.to_json().expect("encode"));
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::HeldBy(_)));
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::HeldBy(_)), "still valid an hour later");
}

#[tokio::test(start_paused = true)]
async fn renew_already_held_object_with_one_call_keeping_acquire_time() {
    let store = CountingStore::new(MemoryStore::new());
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    take_empty(&mut c).await;
    let _term = c.start_term(Stamp::now());
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
    take_empty(&mut c).await;
    let _term = c.start_term(Stamp::now());
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
    take_empty(&mut c).await;
    let _term = c.start_term(Stamp::now());
    seed(&store, OTHER, 1, None);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Lost(h) if h.contains(OTHER)));
}

#[tokio::test(start_paused = true)]
async fn last_writer_wins_store_never_takes_the_fast_path() {
    let store = CountingStore::new(MemoryStore::last_writer_wins());
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    take_empty(&mut c).await;
    let _term = c.start_term(Stamp::now());
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
    take_empty(&mut c).await;
    let _term = c.start_term(Stamp::now());
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
    for holder in [OTHER, ME] {
        // Another candidate's lease, or another process's under our own identity.
        let store = MemoryStore::new();
        seed(&store, holder, 1, Some(4));
        let before = store.raw(&lock());
        let e = elector(store.clone());
        let mut c = Campaign::new(&e);
        assert!(c.release().await);
        assert_eq!(store.raw(&lock()), before, "{holder}'s record");
    }
}

#[tokio::test(start_paused = true)]
async fn release_gives_up_at_the_renew_deadline() {
    let (faulty, faults) = FaultyStore::new(MemoryStore::new());
    let e = elector(faulty);
    let mut c = Campaign::new(&e);
    take_empty(&mut c).await;
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
        (ME, 10_000, 9_900, 2_000, "must exceed renew deadline (9.9s) plus the clock margin (120ms"),
        (ME, 15_000, 2_400, 2_000, "renew deadline (2.4s) must be greater than 1.2 × retry period (2s)"),
        (ME, 1_500, 1_000, 500, "whole number of seconds"),
        (ME, 86_401_000, 10_000, 2_000, "lease duration (86401s) must not exceed 86400s"),
        (ME, 10_000_000_000_000_000, 10_000, 2_000, "must not exceed 86400s"),
        (ME, 15_000, 10_000, 1, "retry period (1ms) must be at least 100ms"),
        ("eve\nholder mallory", 15_000, 10_000, 2_000, "contains a control character"),
        ("\u{1b}[2J", 15_000, 10_000, 2_000, "contains a control character"),
        (" padded", 15_000, 10_000, 2_000, "leading or trailing whitespace"),
        (&"x".repeat(254), 15_000, 10_000, 2_000, "the limit is 253"),
    ] {
        let err = build(identity, lease, renew, retry).expect_err(expected);
        assert!(err.contains(expected) && err.contains("table-lock"), "{expected:?} not in {err:?}");
        assert!(!err.chars().any(char::is_control), "the message itself is one clean line: {err:?}");
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

fn seed_released_for(store: &MemoryStore, preferred: &str) {
    let mut rec = LeaderElectionRecord::new(OTHER, 10, Utc::now()).released(Utc::now());
    rec.fencing_token = Some(FencingToken(4));
    rec.preferred_holder = Some(preferred.into());
    store.put_raw(&lock(), rec.to_json().expect("encode"));
}

#[tokio::test(start_paused = true)]
async fn a_lock_released_for_a_hand_over_is_left_to_the_preferred_candidate_for_a_lease() {
    let store = MemoryStore::new();
    seed_released_for(&store, "preferred");
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Deferred(to) if to == "preferred"));
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Deferred(_)), "9 s of a 10 s lease: still left to it");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held), "a lease later, anyone may take it");
    let rec = stored(&store);
    assert_eq!((rec.holder_identity.as_str(), rec.preferred_holder.as_deref()), (ME, None), "the void hand-over is cleared: {rec:?}");
}

#[tokio::test(start_paused = true)]
async fn the_preferred_candidate_takes_the_lock_at_once_and_clears_the_hand_over() {
    let store = MemoryStore::new();
    seed_released_for(&store, ME);
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held));
    let rec = stored(&store);
    assert_eq!((rec.holder_identity.as_str(), rec.preferred_holder.as_deref()), (ME, None), "{rec:?}");
}

/// A leader asked to hand over (by `roster::hand_over`, as `highlander handover` does)
/// stops its work, releases, and the named standby leads; the rest wait.
#[tokio::test(start_paused = true)]
async fn a_hand_over_moves_the_lock_to_the_named_standby_and_no_one_else() {
    let store = MemoryStore::with_watch();
    let leaders: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    for (id, delay) in [("a", 0u64), ("b", 1), ("c", 1)] {
        tokio::time::sleep(Duration::from_secs(delay)).await;
        let seen = leaders.clone();
        let e = LeaderElector::builder(store.clone(), lock(), id)
            .lease_duration(Duration::from_secs(10))
            .renew_deadline(Duration::from_secs(5))
            .retry_period(Duration::from_secs(2))
            .register(0)
            .on_started_leading(move |l| {
                let seen = seen.clone();
                async move {
                    seen.lock().expect("lock").push(l.identity().to_string());
                    l.lost().await;
                }
            })
            .build()
            .expect("config");
        tasks.push(e.spawn(shutdown.clone()));
    }
    tokio::time::sleep(Duration::from_secs(12)).await;
    assert_eq!(*leaders.lock().expect("lock"), ["a"], "a leads after its claim stood");
    let live = crate::roster::candidates(&store, &lock()).await.expect("roster");
    assert_eq!(live.iter().map(|c| c.identity.as_str()).collect::<Vec<_>>(), ["a", "b", "c"], "all three registered");
    let to = crate::roster::hand_over(&store, &lock(), Some("c")).await.expect("hand over");
    assert_eq!(to, "c");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(*leaders.lock().expect("lock"), ["a", "c"], "c leads next, and only c");
    let rec = stored(&store);
    assert_eq!((rec.holder_identity.as_str(), rec.preferred_holder.as_deref()), ("c", None), "{rec:?}");
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(*leaders.lock().expect("lock"), ["a", "c"], "and it stays with c");
    shutdown.cancel();
    for t in tasks {
        assert_eq!(t.await.expect("task"), ElectionEnd::Shutdown);
    }
    let left = crate::roster::candidates(&store, &lock()).await.expect("roster");
    assert!(left.is_empty(), "each candidate removed its entry on shutdown: {left:?}");
}

/// A hand-over asked while the holder cannot release (paused, cut off): its lease ends,
/// and the preferred candidate may take the lock at once while the others wait a lease more.
#[tokio::test(start_paused = true)]
async fn a_hand_over_from_a_holder_that_never_releases_still_goes_to_the_preferred_candidate() {
    let store = MemoryStore::new();
    let mut rec = LeaderElectionRecord::new(OTHER, 10, Utc::now());
    rec.fencing_token = Some(FencingToken(4));
    rec.preferred_holder = Some("preferred".into());
    store.put_raw(&lock(), rec.to_json().expect("encode"));
    let e = elector(store.clone());
    let mut c = Campaign::new(&e);
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::HeldBy(_)), "the lease runs");
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Deferred(to) if to == "preferred"), "expired: left to it");
    tokio::time::advance(Duration::from_secs(9)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Deferred(_)), "for a lease after the lease");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(matches!(c.try_acquire_or_renew(None, None).await, Step::Held), "then anyone");

    store.put_raw(&lock(), rec.to_json().expect("encode"));
    let preferred = LeaderElector::builder(store.clone(), lock(), "preferred")
        .lease_duration(Duration::from_secs(10))
        .renew_deadline(Duration::from_secs(5))
        .retry_period(Duration::from_secs(2))
        .build()
        .expect("config");
    let mut p = Campaign::new(&preferred);
    assert!(matches!(p.try_acquire_or_renew(None, None).await, Step::HeldBy(_)));
    tokio::time::advance(Duration::from_secs(10)).await;
    assert!(matches!(p.try_acquire_or_renew(None, None).await, Step::Held), "the preferred candidate takes it when the lease ends");
}
