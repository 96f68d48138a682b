//! Store calls per renewal and per acquisition, counted through `CountingStore`.
//!
//! `cargo bench -p lock-core` prints one table. Time runs on a paused clock, so the
//! figures are exact counts for client-go's default durations, not samples.

use lock_core::{CallCounts, CountingStore, ElectionState, LeaderElector, LeaseStore, LockName, MemoryStore};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const RENEWALS: u32 = 1_000;

fn lock() -> LockName {
    LockName::new("bench").expect("valid")
}

fn row(what: &str, calls: CallCounts, per: u32, unit: &str) {
    let per = f64::from(per);
    println!(
        "{what:<44} {:>8.2} {:>8.2} {:>8.2} {:>8.2}   per {unit}",
        calls.total() as f64 / per,
        calls.get as f64 / per,
        calls.create as f64 / per,
        calls.update as f64 / per
    );
}

/// Runs one leader for `RENEWALS` retry periods and returns the calls made while renewing.
async fn renewals<S: LeaseStore + Clone + 'static>(store: CountingStore<S>, register: bool) -> CallCounts {
    let builder = LeaderElector::builder(store.clone(), lock(), "leader");
    let elector = if register { builder.register(0) } else { builder }.build().expect("defaults");
    let period = elector.config().retry_period;
    let mut state = elector.subscribe();
    let shutdown = CancellationToken::new();
    let task = elector.spawn(shutdown.clone());
    state.wait_for(ElectionState::is_leader).await.expect("alive");
    tokio::time::sleep(period / 2).await;
    let before = store.counts();
    tokio::time::sleep(period * RENEWALS).await;
    let calls = store.counts() - before;
    shutdown.cancel();
    task.await.expect("task");
    calls
}

/// One candidate acquiring from `setup`'s starting point; returns the calls of the winning campaign.
async fn acquisition(setup: impl FnOnce(&MemoryStore)) -> CallCounts {
    let memory = MemoryStore::new();
    setup(&memory);
    let store = CountingStore::new(memory);
    let elector = LeaderElector::builder(store.clone(), lock(), "candidate").build().expect("defaults");
    let mut state = elector.subscribe();
    let shutdown = CancellationToken::new();
    let task = elector.spawn(shutdown.clone());
    state.wait_for(ElectionState::is_leader).await.expect("alive");
    let calls = store.counts();
    shutdown.cancel();
    task.await.expect("task");
    calls
}

/// A standby watching a healthy leader: calls per standby poll.
async fn standby_polls(register: bool) -> (CallCounts, u64) {
    let memory = MemoryStore::new();
    let leader = LeaderElector::builder(memory.clone(), lock(), "leader").build().expect("defaults");
    let mut leader_state = leader.subscribe();
    let shutdown = CancellationToken::new();
    let leader_task = leader.spawn(shutdown.clone());
    leader_state.wait_for(ElectionState::is_leader).await.expect("alive");
    let store = CountingStore::new(memory);
    let builder = LeaderElector::builder(store.clone(), lock(), "standby");
    let standby = if register { builder.register(0) } else { builder }.build().expect("defaults");
    let standby_task = standby.spawn(shutdown.clone());
    let hour = Duration::from_secs(3600);
    let started = Instant::now();
    tokio::time::sleep(hour).await;
    let calls = store.counts();
    let polls_per_hour = (calls.get as f64 * hour.as_secs_f64() / started.elapsed().as_secs_f64()) as u64;
    shutdown.cancel();
    standby_task.await.expect("task");
    leader_task.await.expect("task");
    (calls, polls_per_hour)
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("runtime");
    rt.block_on(async {
        println!("store calls with client-go's default durations (lease 15s, renew deadline 10s, retry period 2s)");
        println!("{:<44} {:>8} {:>8} {:>8} {:>8}", "", "total", "get", "create", "update");
        let cas = renewals(CountingStore::new(MemoryStore::new()), false).await;
        row("renewal, atomic store (fast path)", cas, RENEWALS, "renewal");
        let registered = renewals(CountingStore::new(MemoryStore::new()), true).await;
        row("renewal, atomic store, registered", registered, RENEWALS, "renewal");
        let lww = renewals(CountingStore::new(MemoryStore::last_writer_wins()), false).await;
        row("renewal, last-writer-wins store", lww, RENEWALS, "renewal");
        row("acquisition of an absent lock", acquisition(|_| {}).await, 1, "acquisition");
        let released = |m: &MemoryStore| {
            let mut rec = lock_core::LeaderElectionRecord::new("", 1, chrono::Utc::now());
            rec.leader_transitions = 3;
            m.put_raw(&lock(), rec.to_json().expect("encode"));
        };
        row("acquisition of a released lock", acquisition(released).await, 1, "acquisition");
        let (standby, per_hour) = standby_polls(false).await;
        row("standby watching a live leader (one hour)", standby, 1, "hour");
        let (standby_registered, _) = standby_polls(true).await;
        row("the same standby, registered (one hour)", standby_registered, 1, "hour");
        println!();
        println!(
            "requests per hour: leader {:.0} (atomic) / {:.0} (last-writer-wins); each standby {per_hour}",
            cas.total() as f64 / f64::from(RENEWALS) * 1800.0,
            lww.total() as f64 / f64::from(RENEWALS) * 1800.0
        );
        println!(
            "registration (one roster read and write per lease): leader +{:.0}, each standby +{} requests per hour",
            (registered.total() as f64 - cas.total() as f64) / f64::from(RENEWALS) * 1800.0,
            standby_registered.total().saturating_sub(standby.total())
        );
    });
}
