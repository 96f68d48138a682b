//! The elector end to end on a paused clock: renewal cost, step-down, failover,
//! safety under faults, fencing tokens, last-writer-wins stores, corrupt records.

use lock_core::terms::{Term, TermLog, overlaps, token_regressions};
use lock_core::{
    CountingStore, ElectionEnd, ElectionState, FaultMode, Faults, FaultyStore, FencingToken, LeaderElectionRecord, LeaderElector,
    Leadership, LeaseStore, LockName, MemoryStore, Phase, elector::metrics as names,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{sync::watch, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

const LEASE: Duration = Duration::from_secs(6);
const RENEW: Duration = Duration::from_secs(4);
const RETRY: Duration = Duration::from_secs(1);

fn lock() -> LockName {
    LockName::new("integration").expect("valid")
}

type Log = TermLog;

struct Candidate {
    name: String,
    state: watch::Receiver<ElectionState>,
    shutdown: CancellationToken,
    task: JoinHandle<ElectionEnd>,
}

fn candidate<S: LeaseStore + 'static>(store: S, name: &str, log: &Log) -> Candidate {
    let log = log.clone();
    let elector = LeaderElector::builder(store, lock(), name)
        .lease_duration(LEASE)
        .renew_deadline(RENEW)
        .retry_period(RETRY)
        .on_started_leading(move |l| {
            let log = log.clone();
            async move { log.serve(l).await }
        })
        .build()
        .expect("valid config");
    let state = elector.subscribe();
    let shutdown = CancellationToken::new();
    let task = elector.spawn(shutdown.clone());
    Candidate { name: name.into(), state, shutdown, task }
}

async fn until_leader(c: &mut Candidate) -> Instant {
    c.state.wait_for(ElectionState::is_leader).await.expect("elector alive");
    Instant::now()
}

async fn until_not_leader(c: &mut Candidate) -> Instant {
    c.state.wait_for(|s| !s.is_leader()).await.expect("elector alive");
    Instant::now()
}

fn assert_no_overlap(log: &Log) -> Vec<Term<Instant>> {
    let found = overlaps(&log.terms());
    assert!(found.is_empty(), "leadership overlapped: {found:?}");
    let mut terms = log.terms();
    terms.sort_by_key(|t| t.start);
    terms
}

#[tokio::test(start_paused = true)]
async fn steady_state_renewal_is_exactly_one_store_call() {
    let store = CountingStore::new(MemoryStore::new());
    let log = Log::default();
    let mut leader = candidate(store.clone(), "stalin", &log);
    until_leader(&mut leader).await;
    tokio::time::sleep(RETRY / 2).await;
    let before = store.counts();
    tokio::time::sleep(RETRY * 20).await;
    let n = store.counts() - before;
    assert_eq!((n.get, n.create, n.update, n.errors), (0, 0, 20, 0), "20 renewals, one update each: {n:?}");
    leader.shutdown.cancel();
    assert_eq!(leader.task.await.expect("task"), ElectionEnd::Shutdown);
}

async fn leader_steps_down_by_renew_deadline(mode: FaultMode) {
    let memory = MemoryStore::new();
    let (faulty, faults) = FaultyStore::new(memory.clone());
    let log = Log::default();
    let mut leader = candidate(faulty, "napoleon", &log);
    until_leader(&mut leader).await;
    let mut standby = candidate(memory, "cleopatra", &log);
    tokio::time::sleep(RETRY * 5 + RETRY / 3).await;
    faults.set_mode(mode);
    let broke = Instant::now();
    let stepped_down = until_not_leader(&mut leader).await;
    assert!(stepped_down - broke <= RENEW, "{mode:?}: stepped down {:?} after the store broke", stepped_down - broke);
    assert!(stepped_down - broke >= RENEW - RETRY, "{mode:?}: stepped down too early: {:?}", stepped_down - broke);
    let took_over = until_leader(&mut standby).await;
    assert!(took_over > stepped_down, "{mode:?}: the standby led before the leader stepped down");
    assert!(took_over - broke <= LEASE + RETRY * 3, "{mode:?}: failover took {:?}", took_over - broke);
    assert_no_overlap(&log);
}

#[tokio::test(start_paused = true)]
async fn leader_steps_down_by_renew_deadline_when_the_store_fails() {
    leader_steps_down_by_renew_deadline(FaultMode::Fail).await;
}

#[tokio::test(start_paused = true)]
async fn leader_steps_down_by_renew_deadline_when_the_store_hangs() {
    leader_steps_down_by_renew_deadline(FaultMode::Hang).await;
}

/// Runs `n` candidates, each through its own fault switchboard, under seeded chaos
/// (failures, hangs, slow requests, slow responses, rival writes, crashes and
/// restarts) until `terms` leadership terms were recorded.
async fn chaos(seed: u64, n: usize, terms: usize) -> Vec<Term<Instant>> {
    let memory = MemoryStore::new();
    let log = Log::default();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut switches: Vec<Faults> = Vec::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    for i in 0..n {
        let (store, faults) = FaultyStore::new(memory.clone());
        candidates.push(candidate(store, &format!("candidate-{i}"), &log));
        switches.push(faults);
    }
    let started = Instant::now();
    while log.terms().len() < terms {
        assert!(started.elapsed() < Duration::from_secs(24 * 3600), "only {} terms in a simulated day", log.terms().len());
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..15_000))).await;
        let i = rng.random_range(0..n);
        let faults = &switches[i];
        faults.heal();
        match rng.random_range(0..7) {
            0 => faults.set_mode(FaultMode::Fail),
            1 => faults.set_mode(FaultMode::Hang),
            2 => faults.set_delay(Duration::from_millis(rng.random_range(100..3_000))),
            3 => faults.set_response_delay(Duration::from_millis(rng.random_range(100..3_000))),
            4 => faults.set_fail_probability(0.5, rng.random()),
            5 => faults.rival_overwrite_next(format!("rival-{}", rng.random::<u16>())),
            _ => {
                // Crash without release, then restart with the same identity.
                let old = candidates.swap_remove(i);
                old.task.abort();
                let _ = old.task.await;
                let (store, faults) = FaultyStore::new(memory.clone());
                candidates.push(candidate(store, &old.name, &log));
                let last = candidates.len() - 1;
                candidates.swap(i, last);
                switches[i] = faults;
            }
        }
    }
    for c in &candidates {
        c.shutdown.cancel();
    }
    for c in candidates {
        assert_eq!(c.task.await.expect("elector task"), ElectionEnd::Shutdown);
    }
    assert_no_overlap(&log)
}

#[tokio::test(start_paused = true)]
async fn no_two_leadership_intervals_overlap_under_faults() {
    for seed in 1..=3 {
        let terms = chaos(seed, 3, 30).await;
        let leaders: std::collections::BTreeSet<_> = terms.iter().map(|t| t.who.as_str()).collect();
        assert!(leaders.len() >= 2, "seed {seed}: leadership never moved: {leaders:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn fencing_tokens_strictly_increase_across_100_randomized_terms() {
    let terms = chaos(42, 4, 100).await;
    assert!(terms.len() >= 100);
    let back = token_regressions(&terms);
    assert!(back.is_empty(), "tokens did not increase: {back:?}");
}

#[tokio::test(start_paused = true)]
async fn rival_overwrite_on_a_last_writer_wins_store_is_detected_within_one_retry_period() {
    let store = MemoryStore::last_writer_wins();
    let log = Log::default();
    let mut leader = candidate(store.clone(), "stalin", &log);
    until_leader(&mut leader).await;
    tokio::time::sleep(RETRY * 3 + RETRY / 2).await;
    let seen = store.get(&lock()).await.expect("get").expect("present");
    let rival = LeaderElectionRecord::new("usurper", 60, chrono::Utc::now());
    store.update(&lock(), &seen.version, &rival).await.expect("a last-writer-wins store takes any write");
    let overwritten = Instant::now();
    let noticed = until_not_leader(&mut leader).await;
    assert!(noticed - overwritten <= RETRY, "noticed after {:?}", noticed - overwritten);
    assert_eq!(leader.state.borrow().leader.as_deref(), Some("usurper"));
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_record_is_reported_and_never_overwritten() {
    let store = CountingStore::new(MemoryStore::new());
    store.inner().put_raw(&lock(), &b"{\"holderIdentity\": not json"[..]);
    let log = Log::default();
    let mut c = candidate(store.clone(), "napoleon", &log);
    tokio::time::sleep(LEASE * 10).await;
    let state = c.state.borrow_and_update().clone();
    assert_eq!(state.phase, Phase::Candidate);
    let error = state.last_error.expect("the failure is published");
    assert!(error.contains("corrupt") && error.contains("\"integration\"") && error.contains("memory store"), "{error}");
    assert_eq!(store.inner().raw(&lock()).as_deref(), Some(&b"{\"holderIdentity\": not json"[..]), "left untouched");
    assert_eq!(store.counts().writes(), 0, "no write was even attempted");
    assert!(log.terms().is_empty());
}

#[tokio::test(start_paused = true)]
async fn graceful_release_hands_over_within_2_2_retry_periods() {
    let store = MemoryStore::new();
    let log = Log::default();
    let mut first = candidate(store.clone(), "napoleon", &log);
    until_leader(&mut first).await;
    let mut second = candidate(store.clone(), "cleopatra", &log);
    tokio::time::sleep(RETRY * 5).await;
    first.shutdown.cancel();
    let released = Instant::now();
    assert_eq!(first.task.await.expect("task"), ElectionEnd::Shutdown);
    let took_over = until_leader(&mut second).await;
    assert!(took_over - released <= RETRY.mul_f64(2.2), "handover took {:?}", took_over - released);
    let rec = LeaderElectionRecord::from_json(&store.raw(&lock()).expect("present")).expect("decodes");
    assert_eq!((rec.holder_identity.as_str(), rec.leader_transitions), ("cleopatra", 1));
    assert_no_overlap(&log);
}

#[tokio::test(start_paused = true)]
async fn with_change_notifications_a_release_is_taken_at_once_and_standbys_stop_polling() {
    let memory = MemoryStore::with_watch();
    let store = CountingStore::new(memory.clone());
    let log = Log::default();
    let mut first = candidate(store.clone(), "napoleon", &log);
    until_leader(&mut first).await;
    let mut second = candidate(store.clone(), "cleopatra", &log);
    tokio::time::sleep(RETRY * 5).await;
    // The leader's renewals reach the standby as notifications: it reads nothing itself.
    let before = store.counts();
    tokio::time::sleep(RETRY * 20).await;
    let n = store.counts() - before;
    assert_eq!((n.get, n.create, n.update), (0, 0, 20), "only the leader's 20 renewals: {n:?}");

    first.shutdown.cancel();
    let released = Instant::now();
    assert_eq!(first.task.await.expect("task"), ElectionEnd::Shutdown);
    let took_over = until_leader(&mut second).await;
    // Not at the next poll (up to 2.2 retry periods away) but the moment the release lands.
    assert!(took_over - released < RETRY / 10, "handover took {:?}", took_over - released);
    let rec = LeaderElectionRecord::from_json(&memory.raw(&lock()).expect("present")).expect("decodes");
    assert_eq!((rec.holder_identity.as_str(), rec.leader_transitions), ("cleopatra", 1));
    assert_no_overlap(&log);
}

#[tokio::test(start_paused = true)]
async fn a_change_feed_that_ends_is_subscribed_to_again_and_notifies_again() {
    let store = MemoryStore::with_watch();
    let log = Log::default();
    let mut first = candidate(store.clone(), "napoleon", &log);
    until_leader(&mut first).await;
    let mut second = candidate(store.clone(), "cleopatra", &log);
    tokio::time::sleep(RETRY * 5).await;
    // The store restarts: every feed ends. The standby polls, then subscribes again.
    store.end_watches();
    tokio::time::sleep(RETRY * 6).await;
    first.shutdown.cancel();
    let released = Instant::now();
    assert_eq!(first.task.await.expect("task"), ElectionEnd::Shutdown);
    let took_over = until_leader(&mut second).await;
    assert!(took_over - released < RETRY / 10, "after the feed ended, handover took {:?}: not notified", took_over - released);
    assert_no_overlap(&log);
}

/// A slow link (a round trip of a quarter of the renew deadline, half each way): the
/// term's deadline counts from the start of its winning write, not from the read before
/// it, so one leader keeps one term instead of losing it at every other renewal.
#[tokio::test(start_paused = true)]
async fn a_round_trip_of_a_quarter_of_the_renew_deadline_keeps_one_term() {
    let (faulty, faults) = FaultyStore::new(MemoryStore::new());
    faults.set_delay(RENEW / 8);
    faults.set_response_delay(RENEW / 8);
    let log = Log::default();
    let mut c = candidate(faulty, "napoleon", &log);
    until_leader(&mut c).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(c.state.borrow().is_leader(), "{:?}", *c.state.borrow());
    let terms = log.terms();
    assert_eq!(terms.len(), 1, "one term for 60 s, no restarts: {terms:?}");
    assert!(terms[0].end.is_none(), "{terms:?}");
    c.shutdown.cancel();
    c.task.await.expect("task");
}

#[tokio::test(start_paused = true)]
async fn with_change_notifications_a_crashed_leader_is_still_replaced_by_polling() {
    let store = MemoryStore::with_watch();
    let log = Log::default();
    let mut first = candidate(store.clone(), "napoleon", &log);
    until_leader(&mut first).await;
    let mut second = candidate(store.clone(), "cleopatra", &log);
    tokio::time::sleep(RETRY * 5).await;
    // A crash writes nothing: no notification comes, and the lease must expire.
    first.task.abort();
    let crashed = Instant::now();
    let took_over = until_leader(&mut second).await;
    assert!(took_over - crashed >= LEASE - RETRY, "took an unexpired lease after {:?}", took_over - crashed);
    assert!(took_over - crashed <= LEASE + RETRY.mul_f64(2.2), "failover took {:?}", took_over - crashed);
    assert_no_overlap(&log);
}

#[tokio::test(start_paused = true)]
async fn shutdown_drains_the_work_while_renewing_then_releases() {
    let store = MemoryStore::new();
    let drained = Arc::new(Mutex::new(None));
    let d = drained.clone();
    let elector = LeaderElector::builder(store.clone(), lock(), "stalin")
        .lease_duration(LEASE)
        .renew_deadline(RENEW)
        .retry_period(RETRY)
        .drain_timeout(Duration::from_secs(30))
        .on_started_leading(move |l| {
            let d = d.clone();
            async move {
                l.lost().await;
                tokio::time::sleep(Duration::from_secs(12)).await; // finishing the batch
                *d.lock().expect("drained") = Some(Instant::now());
            }
        })
        .build()
        .expect("config");
    let mut state = elector.subscribe();
    let shutdown = CancellationToken::new();
    let task = elector.spawn(shutdown.clone());
    state.wait_for(ElectionState::is_leader).await.expect("alive");
    shutdown.cancel();
    let asked = Instant::now();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let rec = LeaderElectionRecord::from_json(&store.raw(&lock()).expect("present")).expect("decodes");
    assert_eq!(rec.holder_identity, "stalin", "still held (and renewed past the lease) while draining");
    assert_eq!(task.await.expect("task"), ElectionEnd::Shutdown);
    let done = drained.lock().expect("drained").expect("work finished");
    assert_eq!(done - asked, Duration::from_secs(12));
    let rec = LeaderElectionRecord::from_json(&store.raw(&lock()).expect("present")).expect("decodes");
    assert_eq!(rec.holder_identity, "", "released after the drain");
}

#[tokio::test(start_paused = true)]
async fn work_that_ignores_shutdown_is_aborted_at_the_drain_timeout() {
    let store = MemoryStore::new();
    let elector = LeaderElector::builder(store.clone(), lock(), "stalin")
        .lease_duration(LEASE)
        .renew_deadline(RENEW)
        .retry_period(RETRY)
        .drain_timeout(Duration::from_secs(3))
        .on_started_leading(|_| std::future::pending())
        .build()
        .expect("config");
    let mut state = elector.subscribe();
    let shutdown = CancellationToken::new();
    let task = elector.spawn(shutdown.clone());
    state.wait_for(ElectionState::is_leader).await.expect("alive");
    shutdown.cancel();
    let asked = Instant::now();
    assert_eq!(task.await.expect("task"), ElectionEnd::Shutdown);
    assert_eq!(asked.elapsed(), Duration::from_secs(3));
    let rec = LeaderElectionRecord::from_json(&store.raw(&lock()).expect("present")).expect("decodes");
    assert_eq!(rec.holder_identity, "");
}

#[tokio::test(start_paused = true)]
async fn leader_recampaigns_after_loss_with_a_higher_token() {
    let (store, faults) = FaultyStore::new(MemoryStore::new());
    let log = Log::default();
    let mut c = candidate(store, "napoleon", &log);
    until_leader(&mut c).await;
    let first = c.state.borrow().fencing_token.expect("token");
    faults.set_mode(FaultMode::Fail);
    until_not_leader(&mut c).await;
    faults.heal();
    until_leader(&mut c).await;
    let second = c.state.borrow().fencing_token.expect("token");
    assert!(second > first, "{second} after {first}");
    assert_eq!(log.terms().len(), 2);
    assert_no_overlap(&log);
}

#[tokio::test(start_paused = true)]
async fn without_recampaign_run_ends_when_leadership_is_lost() {
    let (store, faults) = FaultyStore::new(MemoryStore::new());
    let stopped = Arc::new(Mutex::new(0));
    let s = stopped.clone();
    let elector = LeaderElector::builder(store, lock(), "napoleon")
        .lease_duration(LEASE)
        .renew_deadline(RENEW)
        .retry_period(RETRY)
        .recampaign(false)
        .on_stopped_leading(move || *s.lock().expect("stopped") += 1)
        .build()
        .expect("config");
    let mut state = elector.subscribe();
    let task = elector.spawn(CancellationToken::new());
    state.wait_for(ElectionState::is_leader).await.expect("alive");
    faults.set_mode(FaultMode::Fail);
    let end = task.await.expect("task");
    assert!(matches!(&end, ElectionEnd::LostLeadership { reason } if reason.contains("renew deadline")), "{end:?}");
    assert_eq!(*stopped.lock().expect("stopped"), 1);
    assert_eq!(state.borrow().phase, Phase::Stopped);
}

#[tokio::test(start_paused = true)]
async fn every_candidate_learns_the_leader() {
    let store = MemoryStore::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    let shutdown = CancellationToken::new();
    for name in ["napoleon", "cleopatra", "stalin"] {
        let seen = seen.clone();
        let elector = LeaderElector::builder(store.clone(), lock(), name)
            .lease_duration(LEASE)
            .renew_deadline(RENEW)
            .retry_period(RETRY)
            .on_new_leader(move |leader| seen.lock().expect("seen").push((name, leader.to_string())))
            .build()
            .expect("config");
        tasks.push(elector.spawn(shutdown.clone()));
    }
    // A lock with no record is first waited out for a lease (absent means unknown).
    tokio::time::sleep(LEASE + RETRY * 3).await;
    let seen = seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    let leader = &seen[0].1;
    assert!(seen.iter().all(|(_, l)| l == leader), "{seen:?}");
    shutdown.cancel();
    for t in tasks {
        t.await.expect("task");
    }
}

#[tokio::test(start_paused = true)]
async fn health_and_metrics_follow_leadership() {
    use metrics_util::debugging::{DebugValue, DebuggingRecorder};
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _guard = metrics::set_default_local_recorder(&recorder);

    let (store, faults) = FaultyStore::new(MemoryStore::new());
    let elector = LeaderElector::builder(store, lock(), "stalin")
        .lease_duration(LEASE)
        .renew_deadline(RENEW)
        .retry_period(RETRY)
        .build()
        .expect("config");
    let health = elector.health();
    let mut state = elector.subscribe();
    let shutdown = CancellationToken::new();
    let task = elector.spawn(shutdown.clone());
    state.wait_for(ElectionState::is_leader).await.expect("alive");
    faults.conflict_next_updates(1); // one renewal goes the slow way
    tokio::time::sleep(RETRY * 5).await;
    assert!(health.check().is_ok(), "a renewing leader is healthy");

    let metrics: std::collections::HashMap<String, DebugValue> =
        snapshotter.snapshot().into_vec().into_iter().map(|(key, _, _, value)| (key.key().name().to_string(), value)).collect();
    assert!(matches!(metrics.get(names::LEADER), Some(DebugValue::Gauge(v)) if v.0 == 1.0), "{metrics:?}");
    assert!(matches!(metrics.get(names::SLOW_PATH), Some(DebugValue::Counter(1))), "{metrics:?}");
    assert!(matches!(metrics.get(names::ACQUIRED), Some(DebugValue::Counter(1))), "{metrics:?}");
    assert!(matches!(metrics.get(names::RENEW_SECONDS), Some(DebugValue::Histogram(h)) if h.len() >= 4), "{metrics:?}");
    assert!(matches!(metrics.get(names::LEASE_REMAINING_SECONDS), Some(DebugValue::Gauge(v)) if v.0 > 0.0), "{metrics:?}");
    shutdown.cancel();
    task.await.expect("task");
    let leader = snapshotter.snapshot().into_vec().into_iter().find(|(k, ..)| k.key().name() == names::LEADER).map(|(.., v)| v);
    assert!(matches!(leader, Some(DebugValue::Gauge(v)) if v.0 == 0.0));
}

#[tokio::test(start_paused = true)]
async fn crash_without_release_fails_over_within_lease_plus_2_2_retry_periods() {
    let bound = LEASE + RETRY.mul_f64(2.2);
    let mut worst = Duration::ZERO;
    for round in 0..50u64 {
        let store = MemoryStore::new();
        let log = Log::default();
        let mut leader = candidate(store.clone(), "stalin", &log);
        until_leader(&mut leader).await;
        let mut standby = candidate(store.clone(), "napoleon", &log);
        // Crash at a different phase of the renewal cycle each round.
        tokio::time::sleep(RETRY * 4 + RETRY.mul_f64((round % 10) as f64 / 10.0)).await;
        leader.task.abort();
        let crashed = Instant::now();
        let took_over = until_leader(&mut standby).await;
        worst = worst.max(took_over - crashed);
        assert!(took_over - crashed <= bound, "round {round}: failover took {:?}, bound {bound:?}", took_over - crashed);
        standby.shutdown.cancel();
        standby.task.await.expect("task");
        assert_no_overlap(&log);
    }
    assert!(worst > LEASE, "a crash cannot fail over before the lease expires: {worst:?}");
}

/// A store that rate-limits every call for a while, asking callers to wait.
#[derive(Debug, Clone)]
struct RateLimitedStore {
    inner: MemoryStore,
    calls: Arc<Mutex<Vec<Instant>>>,
    until: Instant,
}

impl std::fmt::Display for RateLimitedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rate-limited store")
    }
}

#[lock_core::async_trait]
impl LeaseStore for RateLimitedStore {
    async fn get(&self, lock: &LockName) -> lock_core::Result<Option<lock_core::Observed>> {
        self.calls.lock().expect("calls").push(Instant::now());
        if Instant::now() < self.until {
            return Err(lock_core::Error::RateLimited { store: self.to_string(), retry_after: Some(self.until - Instant::now()) });
        }
        self.inner.get(lock).await
    }
    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> lock_core::Result<lock_core::Version> {
        self.inner.create(lock, rec).await
    }
    async fn update(
        &self,
        lock: &LockName,
        expected: &lock_core::Version,
        rec: &LeaderElectionRecord,
    ) -> lock_core::Result<lock_core::Version> {
        self.inner.update(lock, expected, rec).await
    }
    fn capabilities(&self) -> lock_core::Capabilities {
        self.inner.capabilities()
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_asking_to_wait_is_not_called_again_before_then() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let inner = MemoryStore::new();
    inner.put_raw(&lock(), LeaderElectionRecord::new("", 1, chrono::Utc::now()).to_json().expect("encodes"));
    let store = RateLimitedStore { inner, calls: calls.clone(), until: Instant::now() + Duration::from_secs(60) };
    let log = Log::default();
    let mut c = candidate(store, "napoleon", &log);
    let led = until_leader(&mut c).await;
    let calls = calls.lock().expect("calls").clone();
    assert_eq!(calls.len(), 2, "one refused call, then one after the wait: {calls:?}");
    assert!(calls[1] - calls[0] >= Duration::from_secs(60), "called again after {:?}", calls[1] - calls[0]);
    assert!(led - calls[0] < Duration::from_secs(60) + RETRY * 3);
}

/// The leader's work, handed out of the elector so a test can inspect it.
fn leader_with_handle<S: LeaseStore + 'static>(store: S, name: &str) -> (Candidate, tokio::sync::mpsc::UnboundedReceiver<Leadership>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let elector = LeaderElector::builder(store, lock(), name)
        .lease_duration(LEASE)
        .renew_deadline(RENEW)
        .retry_period(RETRY)
        .on_started_leading(move |l| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(l.clone());
                l.lost().await;
            }
        })
        .build()
        .expect("valid config");
    let state = elector.subscribe();
    let shutdown = CancellationToken::new();
    let task = elector.spawn(shutdown.clone());
    (Candidate { name: name.into(), state, shutdown, task }, rx)
}

#[tokio::test(start_paused = true)]
async fn a_leaders_validity_ends_at_its_deadline_even_while_a_call_hangs() {
    let (store, faults) = FaultyStore::new(MemoryStore::new());
    let (mut leader, mut handles) = leader_with_handle(store, "napoleon");
    let health = {
        until_leader(&mut leader).await;
        handles.recv().await.expect("the work started")
    };
    tokio::time::sleep(RETRY * 3 + RETRY / 2).await;
    assert!(health.is_valid() && health.ensure_valid().is_ok(), "a renewing leader may act");
    let before = health.deadlines();
    assert_eq!(before.valid_until.instant - before.renewed.instant, RENEW, "valid until the renewal's start + renew deadline");
    assert_eq!(before.takeover.instant - before.renewed.instant, LEASE, "a standby may take over a lease later");
    assert!(before.kill_by.instant < before.takeover.instant, "and everything must be dead before then");
    assert!(before.valid_until.instant - Instant::now() > RENEW - RETRY, "renewed within the last retry period");

    // Every call from now on hangs: no renewal fails, none succeeds either.
    faults.set_mode(FaultMode::Hang);
    let deadline = health.valid_until();
    let watcher = health.clone();
    let lost_at = tokio::spawn(async move {
        watcher.lost().await;
        Instant::now()
    });
    tokio::time::sleep_until(deadline - Duration::from_millis(1)).await;
    assert!(health.is_valid(), "valid up to the deadline");
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(!health.is_valid(), "not a moment after");
    let err = health.ensure_valid().expect_err("past the deadline");
    assert!(err.is_fenced() && err.to_string().contains("integration"), "{err}");
    assert_eq!(lost_at.await.expect("lost() returned"), deadline, "lost() fires at the deadline");
    let stepped_down = until_not_leader(&mut leader).await;
    assert!(stepped_down - deadline <= Duration::from_millis(1), "the elector steps down at its deadline: {:?}", stepped_down - deadline);
    leader.shutdown.cancel();
    leader.task.await.expect("task");
}

#[tokio::test(start_paused = true)]
async fn health_fails_from_the_deadline_not_the_end_of_the_lease() {
    let (store, faults) = FaultyStore::new(MemoryStore::new());
    let elector = LeaderElector::builder(store, lock(), "stalin").lease_duration(LEASE).renew_deadline(RENEW).retry_period(RETRY);
    let elector = elector.recampaign(false).build().expect("config");
    let health = elector.health();
    let mut state = elector.subscribe();
    let task = elector.spawn(CancellationToken::new());
    state.wait_for(ElectionState::is_leader).await.expect("alive");
    tokio::time::sleep(RETRY * 2 + RETRY / 2).await;
    faults.set_mode(FaultMode::Hang);
    let broke = Instant::now();
    // The elector is stuck in a hanging call: health must not wait for the whole lease.
    while health.check().is_ok() {
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(Instant::now() - broke <= RENEW, "still healthy {:?} after the store hung", Instant::now() - broke);
    }
    let _ = task.await;
}

#[tokio::test(start_paused = true)]
async fn two_processes_with_one_identity_never_both_lead() {
    // Two electors with the same identity on one store, as two processes started with
    // the same --identity would be: at most one leads at any moment.
    let memory = MemoryStore::new();
    let log = Log::default();
    let first = candidate(memory.clone(), "twin", &log);
    let mut state = first.state.clone();
    state.wait_for(ElectionState::is_leader).await.expect("alive");
    let second = candidate(memory.clone(), "twin", &log);
    tokio::time::sleep(LEASE * 4).await;
    assert_eq!(log.terms().len(), 1, "the second twin never took a term while the first renews: {:?}", log.terms());
    // The first leaves without releasing: the second takes over after the lease, as any standby.
    first.task.abort();
    let _ = first.task.await;
    let mut second_state = second.state.clone();
    tokio::time::timeout(LEASE + RETRY * 3, second_state.wait_for(ElectionState::is_leader)).await.expect("took over").expect("alive");
    let terms = assert_no_overlap(&log);
    assert_eq!(terms.len(), 2, "{terms:?}");
    assert!(terms[1].token > terms[0].token, "{terms:?}");
    second.shutdown.cancel();
    second.task.await.expect("task");
}

#[tokio::test(start_paused = true)]
async fn a_leader_whose_record_a_twin_took_steps_down() {
    let memory = MemoryStore::new();
    let log = Log::default();
    let mut first = candidate(memory.clone(), "twin", &log);
    until_leader(&mut first).await;
    // The twin writes its own term over the leader's record (a rival with our identity).
    let (faulty, faults) = FaultyStore::new(memory.clone());
    faults.rival_overwrite_next("twin");
    let _ = faulty.get(&lock()).await;
    let lost = until_not_leader(&mut first).await;
    let _ = lost;
    let intervals = log.terms();
    assert!(intervals[0].end.is_some(), "the work was stopped: {intervals:?}");
    let rec = memory.get(&lock()).await.expect("get").expect("record");
    assert_eq!(
        rec.record.fencing_token.map(FencingToken::get),
        intervals[0].token.checked_add(1),
        "the twin's term was not overwritten: {:?}",
        rec.record
    );
    first.shutdown.cancel();
    first.task.await.expect("task");
}

#[tokio::test(start_paused = true)]
async fn a_permanent_store_error_ends_the_election_with_that_error() {
    let (store, faults) = FaultyStore::new(MemoryStore::new());
    faults.set_mode(FaultMode::Deny);
    let elector = LeaderElector::builder(store, lock(), "stalin").build().expect("config");
    let mut state = elector.subscribe();
    let end = tokio::time::timeout(Duration::from_secs(60), elector.run(CancellationToken::new())).await.expect("ended by itself");
    assert!(matches!(&end, ElectionEnd::Failed { error } if matches!(**error, lock_core::Error::PermissionDenied { .. })), "{end:?}");
    assert_eq!(state.borrow_and_update().phase, Phase::Stopped);

    // A leader whose store starts refusing steps down first, then ends the same way.
    let (store, faults) = FaultyStore::new(MemoryStore::new());
    let log = Log::default();
    let mut leader = candidate(store, "stalin", &log);
    until_leader(&mut leader).await;
    faults.set_mode(FaultMode::Deny);
    let end = tokio::time::timeout(RENEW, &mut leader.task).await.expect("ended by itself").expect("task");
    assert!(matches!(&end, ElectionEnd::Failed { .. }), "{end:?}");
    assert!(log.terms()[0].end.is_some(), "the work was stopped");
}

/// The log lines a test's elector writes (INFO and above), captured on this thread.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lines").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let lines = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .without_time()
            .with_writer(move || lines.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lines")).into_owned()
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_down_for_a_while_is_said_once_when_it_goes_and_once_when_it_comes_back() {
    let lines = Lines::default();
    let _capture = lines.capture();
    let (store, faults) = FaultyStore::new(MemoryStore::new());
    faults.set_mode(FaultMode::Fail);
    let log = Log::default();
    let mut c = candidate(store, "patient", &log);
    tokio::time::sleep(Duration::from_secs(30)).await;
    faults.heal();
    until_leader(&mut c).await;
    c.shutdown.cancel();
    let _ = c.task.await;
    let text = lines.text();
    let warned: Vec<&str> = text.lines().filter(|l| l.contains("WARN")).collect();
    assert_eq!(warned.len(), 1, "one warning for the whole outage:\n{text}");
    assert!(warned[0].contains("failed to acquire the lease") && warned[0].contains("lock=integration"), "{text}");
    let back: Vec<&str> = text.lines().filter(|l| l.contains("the store answers again")).collect();
    assert_eq!(back.len(), 1, "{text}");
    let failures: u32 =
        back[0].split("failures=").nth(1).and_then(|f| f.split_whitespace().next()).and_then(|n| n.parse().ok()).expect("a count");
    assert!(failures >= 12, "one failure a jittered retry period (1 to 2.2 s) for 30 s: {failures}\n{text}");
}
