//! Elector-level checks: real electors, real time, short durations, the store under test.

/// The level of every check in this module.
pub const LEVEL: crate::Level = crate::Level::Elector;

use crate::{
    ensure,
    harness::{CheckResult, Failure, Observation, StoreHarness, unique_lock},
};
pub(crate) use lock_core::terms::{TermLog, overlaps, token_regressions};
use lock_core::{ElectionEnd, ElectionState, FaultMode, FaultyStore, LeaderElectionRecord, LeaderElector, LockName, SharedStore, Timing};
use std::{sync::Arc, time::Duration};
use tokio::{sync::watch, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

/// How long any single wait in a check may take before the check fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);

/// Allowance for timers and the scheduler on a busy machine, added to timing bounds.
pub const SCHEDULING_SLACK: Duration = Duration::from_millis(100);

pub(crate) struct Candidate {
    pub(crate) name: String,
    pub(crate) state: watch::Receiver<ElectionState>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) task: JoinHandle<ElectionEnd>,
}

impl Candidate {
    pub(crate) fn spawn(store: SharedStore, lock: &LockName, name: &str, t: Timing, terms: &TermLog) -> Result<Self, Failure> {
        Self::spawn_with(store, lock, name, t, terms, None)
    }

    /// As [`spawn`](Self::spawn), registered in the lock's roster with `priority` if given.
    pub(crate) fn spawn_with(
        store: SharedStore,
        lock: &LockName,
        name: &str,
        t: Timing,
        terms: &TermLog,
        priority: Option<i32>,
    ) -> Result<Self, Failure> {
        let terms = terms.clone();
        let builder = LeaderElector::builder(store, lock.clone(), name).timing(t).on_started_leading(move |l| {
            let terms = terms.clone();
            async move { terms.serve(l).await }
        });
        let builder = match priority {
            Some(p) => builder.register(p),
            None => builder,
        };
        let elector = builder.build().map_err(|e| Failure(format!("elector config rejected: {e}")))?;
        let state = elector.subscribe();
        let shutdown = CancellationToken::new();
        let task = elector.spawn(shutdown.clone());
        Ok(Self { name: name.into(), state, shutdown, task })
    }

    pub(crate) async fn until(&mut self, what: &str, f: impl FnMut(&ElectionState) -> bool) -> Result<Instant, Failure> {
        let waited = tokio::time::timeout(PATIENCE, self.state.wait_for(f)).await.map(|r| r.map(drop));
        match waited {
            Ok(Ok(())) => Ok(Instant::now()),
            Ok(Err(_)) => Err(Failure(format!("{}'s elector stopped while waiting for it to {what}", self.name))),
            Err(_) => Err(Failure(format!("{} did not {what} within {PATIENCE:?}; last state {:?}", self.name, *self.state.borrow()))),
        }
    }

    pub(crate) fn crash(&self) {
        self.task.abort();
    }

    pub(crate) async fn stop(self) -> Result<(), Failure> {
        self.shutdown.cancel();
        match tokio::time::timeout(PATIENCE, self.task).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.is_cancelled() => Ok(()),
            Ok(Err(e)) => Err(Failure(format!("{}'s elector panicked: {e}", self.name))),
            Err(_) => Err(Failure(format!("{}'s elector did not stop within {PATIENCE:?}", self.name))),
        }
    }
}

async fn stop_all(candidates: Vec<Candidate>) -> Result<(), Failure> {
    for c in candidates {
        c.stop().await?;
    }
    Ok(())
}

/// Waits until exactly one candidate leads and returns its index.
async fn one_leader(candidates: &mut [Candidate]) -> Result<usize, Failure> {
    let started = Instant::now();
    loop {
        let leaders: Vec<usize> = candidates.iter().enumerate().filter(|(_, c)| c.state.borrow().is_leader()).map(|(i, _)| i).collect();
        if leaders.len() == 1 {
            return Ok(leaders[0]);
        }
        ensure!(started.elapsed() < PATIENCE, "no single leader within {PATIENCE:?}: {} lead", leaders.len());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The slowest of a few `get`s: the slack added to timing bounds for this store.
pub(crate) async fn store_latency(h: &dyn StoreHarness, lock: &LockName) -> Result<Duration, Failure> {
    let store = h.connect().await?;
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let t = Instant::now();
        store.get(lock).await?;
        worst = worst.max(t.elapsed());
    }
    Ok(worst)
}

/// Whether the store under test claims atomic compare-and-set (overlap is then forbidden, not just measured).
async fn claims_atomic(h: &dyn StoreHarness) -> Result<bool, Failure> {
    Ok(h.connect().await?.capabilities().is_atomic())
}

/// One candidate alone acquires the lock, holds it, and releases it on shutdown.
pub async fn one_candidate_acquires(h: &dyn StoreHarness) -> CheckResult {
    let (t, lock, terms) = (h.timing(), unique_lock("one-candidate"), TermLog::default());
    let store = h.connect().await?;
    let started = Instant::now();
    let mut c = Candidate::spawn(store.clone(), &lock, "stalin", t, &terms)?;
    let led = c.until("lead", ElectionState::is_leader).await?;
    tokio::time::sleep(t.retry_period * 3).await;
    ensure!(c.state.borrow().is_leader(), "stalin stopped leading with no rival: {:?}", *c.state.borrow());
    let seen = store.get(&lock).await?.ok_or_else(|| Failure("no record after acquiring".into()))?;
    ensure!(seen.record.holder_identity == "stalin", "record names {:?}", seen.record.holder_identity);
    ensure!(seen.record.fencing_token.is_some(), "record carries no fencing token");
    c.stop().await?;
    let seen = store.get(&lock).await?.ok_or_else(|| Failure("record vanished on release".into()))?;
    ensure!(seen.record.holder_identity.is_empty(), "after shutdown the record still names {:?}", seen.record.holder_identity);
    Ok(Observation::default().figure("acquire_seconds", (led - started).as_secs_f64()))
}

/// Five candidates: exactly one leads and every other learns who (on a last-writer-wins
/// store a racing write may replace the first winner once; they must still settle).
pub async fn five_candidates_elect_exactly_one(h: &dyn StoreHarness) -> CheckResult {
    let (t, lock, terms) = (h.timing(), unique_lock("five"), TermLog::default());
    let mut candidates = Vec::new();
    for name in ["napoleon", "cleopatra", "stalin", "genghis", "boudica"] {
        candidates.push(Candidate::spawn(h.connect().await?, &lock, name, t, &terms)?);
    }
    let atomic = claims_atomic(h).await?;
    let mut leader = one_leader(&mut candidates).await?;
    let latency = store_latency(h, &lock).await?;
    let settle = t.retry_period.mul_f64(2.2) + latency * 2;
    tokio::time::sleep(settle).await;
    if !atomic && !candidates[leader].state.borrow().is_leader() {
        // Last writer wins: a racing candidate's write replaced the first winner's, who
        // stepped down at its next renewal. The candidates must still settle on one.
        leader = one_leader(&mut candidates).await?;
        tokio::time::sleep(settle).await;
    }
    let name = candidates[leader].name.clone();
    for c in &candidates {
        let s = c.state.borrow().clone();
        ensure!(s.is_leader() == (c.name == name), "{} leads too ({s:?}) besides {name}", c.name);
        ensure!(s.leader.as_deref() == Some(name.as_str()), "{} thinks the leader is {:?}, not {name}", c.name, s.leader);
    }
    let found = overlaps(&terms.terms());
    stop_all(candidates).await?;
    if atomic {
        ensure!(found.is_empty(), "leadership terms overlapped: {found:?}");
    }
    Ok(Observation::default().figure("overlapping_terms", found.len() as f64))
}

/// The leader crashes without releasing: a standby leads within lease + 2.2 × retry period (+ store latency).
pub async fn crash_fails_over_within_bound(h: &dyn StoreHarness) -> CheckResult {
    let (t, lock, terms) = (h.timing(), unique_lock("crash"), TermLog::default());
    let mut leader = Candidate::spawn(h.connect().await?, &lock, "stalin", t, &terms)?;
    leader.until("lead", ElectionState::is_leader).await?;
    let mut standbys = vec![
        Candidate::spawn(h.connect().await?, &lock, "napoleon", t, &terms)?,
        Candidate::spawn(h.connect().await?, &lock, "cleopatra", t, &terms)?,
    ];
    let latency = store_latency(h, &lock).await?;
    tokio::time::sleep(t.lease).await;
    leader.crash();
    let crashed = Instant::now();
    one_leader(&mut standbys).await?;
    let failover = crashed.elapsed();
    let bound = t.lease + t.retry_period.mul_f64(2.2) + latency * 4 + SCHEDULING_SLACK;
    let found = overlaps(&terms.terms());
    let _ = leader.stop().await;
    stop_all(standbys).await?;
    ensure!(
        failover >= t.lease.saturating_sub(t.retry_period.mul_f64(2.2)),
        "a standby took over {failover:?} after the crash, before the lease could expire"
    );
    ensure!(failover <= bound, "failover took {failover:?}, over its bound {bound:?} (lease + 2.2 × retry + 4 × latency {latency:?})");
    if claims_atomic(h).await? {
        ensure!(found.is_empty(), "terms overlapped: {found:?}");
    }
    Ok(Observation::default()
        .figure("failover_seconds", failover.as_secs_f64())
        .figure("failover_bound_seconds", bound.as_secs_f64())
        .figure("overlapping_terms", found.len() as f64))
}

/// A leader that shuts down gracefully releases; a standby leads within about 2.2 × retry period.
pub async fn graceful_release_hands_over_quickly(h: &dyn StoreHarness) -> CheckResult {
    let (t, lock, terms) = (h.timing(), unique_lock("release"), TermLog::default());
    let mut leader = Candidate::spawn(h.connect().await?, &lock, "stalin", t, &terms)?;
    leader.until("lead", ElectionState::is_leader).await?;
    let mut standby = Candidate::spawn(h.connect().await?, &lock, "napoleon", t, &terms)?;
    let latency = store_latency(h, &lock).await?;
    tokio::time::sleep(t.retry_period * 3).await;
    let asked = Instant::now();
    leader.stop().await?;
    let took_over = standby.until("lead", ElectionState::is_leader).await?;
    let handover = took_over - asked;
    let bound = t.retry_period.mul_f64(2.2) + latency * 4 + SCHEDULING_SLACK;
    standby.stop().await?;
    ensure!(handover <= bound, "handover after a release took {handover:?}, over {bound:?}: is the release written?");
    Ok(Observation::default().figure("handover_seconds", handover.as_secs_f64()).figure("handover_bound_seconds", bound.as_secs_f64()))
}

/// Three registered candidates: the roster lists them, and a planned hand-over to a
/// named standby moves the lock to it, and to no one else, with no overlap.
pub async fn planned_hand_over_goes_to_the_named_candidate(h: &dyn StoreHarness) -> CheckResult {
    let (t, lock, terms) = (h.timing(), unique_lock("hand-over"), TermLog::default());
    let store = h.connect().await?;
    let mut leader = Candidate::spawn_with(h.connect().await?, &lock, "stalin", t, &terms, Some(0))?;
    leader.until("lead", ElectionState::is_leader).await?;
    let mut others = Vec::new();
    for name in ["napoleon", "cleopatra"] {
        others.push(Candidate::spawn_with(h.connect().await?, &lock, name, t, &terms, Some(0))?);
    }
    let latency = store_latency(h, &lock).await?;
    // Registered: every candidate refreshes its entry (one of two written at once may
    // be lost on a last-writer-wins store, and is put back at its next refresh).
    let listed = Instant::now() + PATIENCE;
    loop {
        let live: Vec<String> = lock_core::roster::candidates(&*store, &lock).await?.into_iter().map(|c| c.identity).collect();
        if live.len() == 3 {
            break;
        }
        ensure!(Instant::now() < listed, "the roster of {lock:?} in {store} lists {live:?}, not the three candidates");
        tokio::time::sleep(t.retry_period / 2).await;
    }
    let atomic = claims_atomic(h).await?;
    let mut cleopatra = others.pop().ok_or_else(|| Failure("no candidate".into()))?;
    let mut asked = Instant::now();
    loop {
        match lock_core::roster::hand_over(&*store, &lock, Some("cleopatra")).await {
            Ok(to) => ensure!(to == "cleopatra", "handed over to {to}"),
            Err(e) => return Err(Failure(format!("hand-over of {lock:?} in {store}: {e}"))),
        }
        // Timed from the ask's write.
        if atomic {
            asked = Instant::now();
        }
        // A last-writer-wins store can lose the ask under the leader's renewal: ask again.
        let waited = if atomic { PATIENCE } else { t.lease };
        if tokio::time::timeout(waited, cleopatra.state.wait_for(ElectionState::is_leader)).await.is_ok() {
            break;
        }
        ensure!(!atomic && asked.elapsed() < PATIENCE, "cleopatra did not lead within {waited:?} of the hand-over");
    }
    let took = asked.elapsed();
    // The elector says it leads before its work has logged the term.
    let logged = Instant::now() + PATIENCE;
    while terms.terms().len() < 2 && Instant::now() < logged {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let found = overlaps(&terms.terms());
    let leaders: Vec<String> = terms.terms().into_iter().map(|term| term.who).collect();
    // The leader's next renewal (a retry period; a failed fast path, a read, a write),
    // its work's drain and its release (a read, a write), then the named candidate's
    // next poll if no notification wakes it (2.2 retry periods; a write): seven calls,
    // and three electors' timers in a row, each of which a busy machine can delay.
    let bound = t.retry_period.mul_f64(3.2) + latency * 7 + SCHEDULING_SLACK * 3;
    let record = store.get(&lock).await?.map(|seen| seen.record);
    leader.stop().await?;
    cleopatra.stop().await?;
    for other in others {
        other.stop().await?;
    }
    ensure!(leaders == ["stalin", "cleopatra"], "the terms were {leaders:?}: the hand-over went to someone else");
    ensure!(found.is_empty(), "terms overlapped: {found:?}");
    ensure!(
        record.as_ref().is_some_and(|r| r.preferred_holder.is_none()),
        "the new leader did not clear the hand-over from the record: {record:?}"
    );
    if atomic {
        ensure!(took <= bound, "the hand-over took {took:?}, over {bound:?} (the leader's next renewal, a release, a take)");
    }
    Ok(Observation::default().figure("hand_over_seconds", took.as_secs_f64()).figure("hand_over_bound_seconds", bound.as_secs_f64()))
}

async fn step_down_when_store_breaks(h: &dyn StoreHarness, mode: FaultMode) -> CheckResult {
    let (t, lock, terms) = (h.timing(), unique_lock("broken-store"), TermLog::default());
    let (faulty, faults) = FaultyStore::new(h.connect().await?);
    let mut leader = Candidate::spawn(Arc::new(faulty), &lock, "stalin", t, &terms)?;
    leader.until("lead", ElectionState::is_leader).await?;
    let mut standby = Candidate::spawn(h.connect().await?, &lock, "napoleon", t, &terms)?;
    let latency = store_latency(h, &lock).await?;
    tokio::time::sleep(t.retry_period * 3 + t.retry_period / 3).await;
    faults.set_mode(mode);
    let broke = Instant::now();
    let stepped_down = leader.until("step down", |s| !s.is_leader()).await?;
    let took_over = standby.until("lead", ElectionState::is_leader).await?;
    faults.heal();
    let found = overlaps(&terms.terms());
    leader.stop().await?;
    standby.stop().await?;
    let after = stepped_down - broke;
    ensure!(
        after <= t.renew_deadline + latency + SCHEDULING_SLACK,
        "{mode:?}: the leader stepped down {after:?} after its store broke, past the renew deadline {:?}",
        t.renew_deadline
    );
    ensure!(took_over >= stepped_down, "{mode:?}: the standby led before the leader stepped down");
    if claims_atomic(h).await? {
        ensure!(found.is_empty(), "{mode:?}: terms overlapped: {found:?}");
    }
    Ok(Observation::default()
        .figure("step_down_seconds", after.as_secs_f64())
        .figure("takeover_seconds", (took_over - broke).as_secs_f64()))
}

/// The leader's store calls fail: it steps down by the renew deadline, before anyone else can lead.
pub async fn failing_store_makes_the_leader_step_down(h: &dyn StoreHarness) -> CheckResult {
    step_down_when_store_breaks(h, FaultMode::Fail).await
}

/// The leader's store calls hang: per-call timeouts still make it step down by the renew deadline.
pub async fn hanging_store_makes_the_leader_step_down(h: &dyn StoreHarness) -> CheckResult {
    step_down_when_store_breaks(h, FaultMode::Hang).await
}

/// Four candidates under injected faults for several leases: no two terms overlap.
pub async fn leadership_intervals_never_overlap(h: &dyn StoreHarness) -> CheckResult {
    let (t, lock, terms) = (h.timing(), unique_lock("overlap"), TermLog::default());
    let mut candidates = Vec::new();
    let mut switches = Vec::new();
    for i in 0..4 {
        let (faulty, faults) = FaultyStore::new(h.connect().await?);
        candidates.push(Candidate::spawn(Arc::new(faulty), &lock, &format!("candidate-{i}"), t, &terms)?);
        switches.push(faults);
    }
    let seed: u64 = rand::random();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let until = Instant::now() + t.lease * 6;
    while Instant::now() < until {
        use rand::Rng;
        tokio::time::sleep(t.retry_period * rng.random_range(1..6)).await;
        let faults = &switches[rng.random_range(0..switches.len())];
        faults.heal();
        match rng.random_range(0..4) {
            0 => faults.set_mode(FaultMode::Fail),
            1 => faults.set_mode(FaultMode::Hang),
            2 => faults.set_response_delay(t.retry_period),
            _ => {}
        }
    }
    switches.iter().for_each(lock_core::Faults::heal);
    let found = overlaps(&terms.terms());
    let n = terms.terms().len();
    stop_all(candidates).await?;
    if claims_atomic(h).await? {
        ensure!(found.is_empty(), "seed {seed}: terms overlapped: {found:?}");
    }
    ensure!(n >= 1, "seed {seed}: nobody led");
    Ok(Observation::default().figure("terms", n as f64).figure("overlapping_terms", found.len() as f64))
}

/// Fencing tokens strictly increase across terms won by releases and by crashes.
pub async fn fencing_tokens_strictly_increase(h: &dyn StoreHarness) -> CheckResult {
    let (t, lock, terms) = (h.timing(), unique_lock("tokens"), TermLog::default());
    for round in 0..6 {
        let mut c = Candidate::spawn(h.connect().await?, &lock, &format!("leader-{}", round % 2), t, &terms)?;
        c.until("lead", ElectionState::is_leader).await?;
        tokio::time::sleep(t.retry_period).await; // let the term's work start and record it
        if round == 3 {
            c.crash(); // the next term must still get a higher token after an unreleased lease
            let _ = c.stop().await;
        } else {
            c.stop().await?;
        }
    }
    let terms = terms.terms();
    ensure!(terms.len() == 6, "expected 6 terms, saw {}", terms.len());
    let back = token_regressions(&terms);
    ensure!(back.is_empty(), "fencing tokens did not grow: {back:?}");
    Ok(Observation::default())
}

/// A rival writes the record behind the leader's back: the leader notices at its next renewal.
pub async fn rival_overwrite_is_detected_at_next_renewal(h: &dyn StoreHarness) -> CheckResult {
    let (t, lock, terms) = (h.timing(), unique_lock("rival"), TermLog::default());
    let mut leader = Candidate::spawn(h.connect().await?, &lock, "stalin", t, &terms)?;
    leader.until("lead", ElectionState::is_leader).await?;
    let latency = store_latency(h, &lock).await?;
    tokio::time::sleep(t.retry_period * 2 + t.retry_period / 2).await;
    let rival = LeaderElectionRecord::new("usurper", 60, chrono::Utc::now());
    h.put_raw(&lock, &rival.to_json().map_err(|e| Failure(e.to_string()))?).await?;
    let written = Instant::now();
    let noticed = leader.until("notice the usurper", |s| !s.is_leader()).await?;
    // A renewal that raced the write steps down on its conflict (or its deadline)
    // before it has read the usurper's record; its next read names them.
    let named = leader.until("name the usurper", |s| s.leader.as_deref() == Some("usurper")).await;
    leader.stop().await?;
    let after = noticed - written;
    let bound = t.retry_period + latency * 3 + SCHEDULING_SLACK;
    ensure!(after <= bound, "the leader noticed the overwrite after {after:?}, over one retry period {:?}", t.retry_period);
    let named = named? - noticed;
    // A standby's poll: one retry period with client-go's jitter (up to 1.2 more), one
    // more if that read failed.
    let bound = t.retry_period.mul_f64(2.2) + latency * 3 + SCHEDULING_SLACK;
    ensure!(named <= bound, "the leader named the usurper {named:?} after stepping down, over {bound:?}");
    Ok(Observation::default().figure("rival_detected_seconds", after.as_secs_f64()))
}

/// Two processes started with the same identity (a copy-pasted `--identity`, a
/// StatefulSet pod run twice) are still two candidates: while the first renews, the
/// second does not lead, and when the first crashes the second takes over as any
/// standby would, with a higher token.
pub async fn one_identity_in_two_processes_is_never_two_leaders(h: &dyn StoreHarness) -> CheckResult {
    let (t, lock, terms) = (h.timing(), unique_lock("twins"), TermLog::default());
    let mut first = Candidate::spawn(h.connect().await?, &lock, "twin", t, &terms)?;
    first.until("lead", ElectionState::is_leader).await?;
    let mut second = Candidate::spawn(h.connect().await?, &lock, "twin", t, &terms)?;
    tokio::time::sleep(t.lease * 2).await;
    let led = terms.terms().len();
    ensure!(
        !second.state.borrow().is_leader() && led == 1,
        "a second process with the same identity took the lease while the first renewed ({led} terms)"
    );
    ensure!(first.state.borrow().is_leader(), "the first twin stopped leading: {:?}", *first.state.borrow());
    first.crash();
    second.until("take over after the first twin crashed", ElectionState::is_leader).await?;
    let found = overlaps(&terms.terms());
    let back = token_regressions(&terms.terms());
    second.stop().await?;
    if claims_atomic(h).await? {
        ensure!(found.is_empty(), "the twins' terms overlapped: {found:?}");
        ensure!(back.is_empty(), "tokens did not increase: {back:?}");
    }
    Ok(Observation::default().figure("overlapping_terms", found.len() as f64))
}
