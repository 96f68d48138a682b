//! A deterministic simulation of the real elector: three candidates, each on a Tokio
//! runtime of its own whose paused clock the driver advances at that candidate's rate,
//! one memory store behind a fault layer per candidate, and seeded faults — latency,
//! failed calls, partitions, pauses, crashes, the record lost. The oracle reads the
//! terms the leaders' own work recorded and ends each one at its guard's deadline (the
//! real time at which the candidate's clock reaches the term's deadline), as the guard
//! process of `highlander run` does; no two terms may overlap and tokens must grow.
//!
//! `SIM_SEED=N cargo test -p lock-core --lib sim::replay -- --nocapture` replays one seed
//! with its events printed; `SIM_SEEDS=N` sets how many seeds the sweep runs.

use super::*;
use crate::{FaultMode, Faults, FaultyStore, MemoryStore};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::{
    cell::Cell,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

/// A safety mechanism the simulation can take out (in this crate's tests only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mutant {
    None,
    /// The deadline counts from when the winning write was answered.
    DeadlineFromAnswer,
    /// A lock found without a record is led on at once.
    AbsentIsFree,
    /// No guard: a term ends only when its own elector notices.
    NoGuardDeadline,
    /// A lease of renew deadline + 1 ms (built without the timing rule).
    LeaseWithinTheMargin,
}

thread_local! {
    static MUTANT: Cell<Mutant> = const { Cell::new(Mutant::None) };
    /// The electors' jitter, drawn from the seed while a simulation runs.
    static JITTER: std::cell::RefCell<Option<StdRng>> = const { std::cell::RefCell::new(None) };
}

pub(super) fn unit_random() -> f64 {
    JITTER.with(|j| j.borrow_mut().as_mut().map(|rng| rng.random::<f64>())).unwrap_or_else(|| rand::rng().random())
}

pub(super) fn origin(write_started: Stamp) -> Stamp {
    if MUTANT.with(Cell::get) == Mutant::DeadlineFromAnswer { Stamp::now() } else { write_started }
}

pub(super) fn absent_is_free() -> bool {
    MUTANT.with(Cell::get) == Mutant::AbsentIsFree
}

const LOCK: &str = "simulated";
const STEP: Duration = Duration::from_millis(50);
const RUN: Duration = Duration::from_secs(20);
const TIMING: Timing =
    Timing { lease: Duration::from_secs(2), renew_deadline: Duration::from_millis(1500), retry_period: Duration::from_millis(300) };

/// One term as its leader's work recorded it, in real milliseconds.
#[derive(Debug, Clone)]
struct SimTerm {
    who: usize,
    token: u64,
    start: u64,
    /// When the work saw leadership end (late if the candidate was paused or dead).
    seen_end: Option<u64>,
    /// The term's last deadline, on the candidate's clock, in ms since it started.
    deadline: u64,
}

struct Node {
    rt: tokio::runtime::Runtime,
    /// Clock units per real unit, in millionths.
    rate_ppm: u64,
    /// How far this node's runtime clock has been advanced, in µs.
    advanced_us: u64,
    /// Its clock's zero, as an instant of its own runtime.
    zero: Instant,
    paused_until: u64,
    faults: Faults,
    shutdown: CancellationToken,
    task: Option<JoinHandle<ElectionEnd>>,
}

/// What one seed produced.
#[derive(Debug)]
pub(crate) struct Outcome {
    terms: usize,
    pub(crate) violation: Option<String>,
    events: Vec<String>,
}

/// Runs one seed under `mutant`.
pub(crate) fn run(seed: u64, mutant: Mutant) -> Outcome {
    MUTANT.with(|m| m.set(mutant));
    JITTER.with(|j| *j.borrow_mut() = Some(StdRng::seed_from_u64(seed ^ 0x5eed)));
    let outcome = simulate(seed, mutant);
    MUTANT.with(|m| m.set(Mutant::None));
    JITTER.with(|j| *j.borrow_mut() = None);
    outcome
}

fn simulate(seed: u64, mutant: Mutant) -> Outcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let memory = MemoryStore::with_watch();
    let lock = LockName::new(LOCK).expect("valid");
    let real_ms = Arc::new(AtomicU64::new(0));
    let terms: Arc<Mutex<Vec<SimTerm>>> = Arc::default();
    let mut events = Vec::new();
    let timing = if mutant == Mutant::LeaseWithinTheMargin {
        Timing { lease: TIMING.renew_deadline + Duration::from_millis(1), ..TIMING }
    } else {
        TIMING
    };
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| {
            // Clocks within ±0.4 % of each other: inside the clock margin (1 % of the lease).
            let rate_ppm = 996_000 + rng.random_range(0..8_000);
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("runtime");
            let zero = rt.block_on(async { Instant::now() });
            let (_, faults) = FaultyStore::new(memory.clone());
            events.push(format!("candidate-{i}: clock rate {:.4}", rate_ppm as f64 / 1e6));
            Node { rt, rate_ppm, advanced_us: 0, zero, paused_until: 0, faults, shutdown: CancellationToken::new(), task: None }
        })
        .collect();
    for i in 0..nodes.len() {
        start_node(&mut nodes, i, &memory, &lock, timing, &terms, &real_ms);
    }
    let steps = RUN.as_millis() as u64 / STEP.as_millis() as u64;
    for step in 1..=steps {
        let now = step * STEP.as_millis() as u64;
        real_ms.store(now, Ordering::SeqCst);
        inject(&mut rng, &mut nodes, now, &memory, &lock, timing, &terms, &real_ms, &mut events);
        let mut order: Vec<usize> = (0..nodes.len()).collect();
        for k in (1..order.len()).rev() {
            order.swap(k, rng.random_range(0..=k));
        }
        for i in order {
            drive(&mut nodes[i], now);
        }
    }
    for node in &mut nodes {
        node.shutdown.cancel();
        node.paused_until = 0;
    }
    let end = steps * STEP.as_millis() as u64;
    for k in 1..=100 {
        real_ms.store(end + k * STEP.as_millis() as u64, Ordering::SeqCst);
        for node in &mut nodes {
            drive(node, end + k * STEP.as_millis() as u64);
        }
    }
    let terms = terms.lock().map(|t| t.clone()).unwrap_or_default();
    let violation = judge(&terms, &nodes, mutant);
    Outcome { terms: terms.len(), violation, events }
}

fn start_node(
    nodes: &mut [Node],
    i: usize,
    memory: &MemoryStore,
    lock: &LockName,
    timing: Timing,
    terms: &Arc<Mutex<Vec<SimTerm>>>,
    real_ms: &Arc<AtomicU64>,
) {
    let (store, faults) = FaultyStore::new(memory.clone());
    let node = &mut nodes[i];
    node.faults = faults;
    node.shutdown = CancellationToken::new();
    let (terms, real_ms, zero) = (terms.clone(), real_ms.clone(), node.zero);
    let builder = LeaderElector::builder(store, lock.clone(), format!("candidate-{i}")).timing(timing).on_started_leading(move |l| {
        let (terms, real_ms) = (terms.clone(), real_ms.clone());
        async move {
            let ms = |at: Instant| u64::try_from(at.saturating_duration_since(zero).as_millis()).unwrap_or(u64::MAX);
            let index = {
                let mut t = terms.lock().expect("terms");
                t.push(SimTerm {
                    who: i,
                    token: l.fencing_token().get(),
                    start: real_ms.load(Ordering::SeqCst),
                    seen_end: None,
                    deadline: ms(l.valid_until()),
                });
                t.len() - 1
            };
            let mut changes = l.deadline_changes();
            loop {
                tokio::select! {
                    () = l.lost() => break,
                    changed = changes.changed() => if changed.is_err() { break },
                }
                if let Ok(mut t) = terms.lock() {
                    t[index].deadline = ms(l.valid_until());
                }
            }
            if let Ok(mut t) = terms.lock() {
                t[index].seen_end = Some(real_ms.load(Ordering::SeqCst));
            }
        }
    });
    let elector = if timing.check().is_ok() { builder.build().expect("valid timing") } else { builder.build_unchecked() };
    let shutdown = node.shutdown.clone();
    node.task = Some(node.rt.spawn(elector.run(shutdown)));
}

/// Brings a node's runtime clock to real time `now` (at its rate) and lets its tasks run.
fn drive(node: &mut Node, now: u64) {
    if now < node.paused_until {
        return;
    }
    let target_us = now.saturating_mul(node.rate_ppm) / 1_000;
    let lag = Duration::from_micros(target_us.saturating_sub(node.advanced_us));
    node.advanced_us = target_us.max(node.advanced_us);
    node.rt.block_on(async move {
        tokio::time::advance(lag).await;
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    });
}

#[allow(clippy::too_many_arguments)]
fn inject(
    rng: &mut StdRng,
    nodes: &mut [Node],
    now: u64,
    memory: &MemoryStore,
    lock: &LockName,
    timing: Timing,
    terms: &Arc<Mutex<Vec<SimTerm>>>,
    real_ms: &Arc<AtomicU64>,
    events: &mut Vec<String>,
) {
    // About one fault every two seconds, each drawn from the seed.
    if rng.random_range(0..40) >= 1 {
        return;
    }
    let i = rng.random_range(0..nodes.len());
    match rng.random_range(0..7) {
        0 => {
            let ms = rng.random_range(500..4_000);
            nodes[i].paused_until = now + ms;
            events.push(format!("t={now}ms candidate-{i} paused for {ms} ms"));
        }
        1 => {
            nodes[i].faults.set_mode(FaultMode::Hang);
            events.push(format!("t={now}ms candidate-{i} cut off"));
        }
        2 => {
            nodes[i].faults.heal();
            events.push(format!("t={now}ms candidate-{i} healed"));
        }
        3 => {
            let (out, back) = (rng.random_range(0..100), rng.random_range(0..700));
            nodes[i].faults.set_delay(Duration::from_millis(out));
            nodes[i].faults.set_response_delay(Duration::from_millis(back));
            events.push(format!("t={now}ms candidate-{i} slow link ({out} ms out, {back} ms back)"));
        }
        4 => {
            nodes[i].faults.set_fail_probability(0.3, rng.random());
            events.push(format!("t={now}ms candidate-{i} calls fail 30 %"));
        }
        5 => {
            memory.remove(lock);
            events.push(format!("t={now}ms the store loses the record"));
        }
        _ => {
            // A crash: the guard kills the command at once; a new process starts.
            if let Some(task) = nodes[i].task.take() {
                task.abort();
            }
            drive(&mut nodes[i], now);
            if let Ok(mut t) = terms.lock() {
                for term in t.iter_mut().filter(|t| t.who == i && t.seen_end.is_none()) {
                    term.seen_end = Some(now);
                }
            }
            nodes[i].paused_until = 0;
            start_node(nodes, i, memory, lock, timing, terms, real_ms);
            events.push(format!("t={now}ms candidate-{i} crashed and restarted"));
        }
    }
}

/// The first overlap or token regression, if any.
fn judge(terms: &[SimTerm], nodes: &[Node], mutant: Mutant) -> Option<String> {
    // Each term ends when its work saw it end, or at its guard's deadline if sooner:
    // the real time at which the candidate's clock reached the deadline.
    let ended: Vec<(u64, &SimTerm)> = terms
        .iter()
        .map(|t| {
            let guard = t.deadline.saturating_mul(1_000_000) / nodes[t.who].rate_ppm;
            let seen = t.seen_end.unwrap_or(u64::MAX);
            (if mutant == Mutant::NoGuardDeadline { seen } else { seen.min(guard) }, t)
        })
        .collect();
    let mut sorted = ended.clone();
    sorted.sort_by_key(|(_, t)| t.start);
    for (k, (end_a, a)) in sorted.iter().enumerate() {
        for (_, b) in &sorted[k + 1..] {
            if *end_a > b.start {
                return Some(format!(
                    "candidate-{} (token {}, {}–{} ms) overlapped candidate-{} (token {}, from {} ms)",
                    a.who, a.token, a.start, end_a, b.who, b.token, b.start
                ));
            }
            if b.token <= a.token {
                return Some(format!("token {} of candidate-{} came after token {} of candidate-{}", b.token, b.who, a.token, a.who));
            }
        }
    }
    None
}

fn seeds() -> u64 {
    std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2000)
}

#[test]
fn seeded_runs_of_the_real_elector_never_overlap_and_tokens_grow() {
    let started = std::time::Instant::now();
    let (mut terms, n) = (0, seeds());
    for seed in 0..n {
        let outcome = run(seed, Mutant::None);
        terms += outcome.terms;
        if let Some(violation) = outcome.violation {
            panic!(
                "seed {seed}: {violation}\n{}\nreplay: SIM_SEED={seed} cargo test -p lock-core --lib sim::replay -- --nocapture",
                outcome.events.join("\n")
            );
        }
    }
    println!("{n} seeds, {terms} terms, no overlap, no token regression, in {:?}", started.elapsed());
    assert!(terms > n as usize, "the runs are not vacuous: {terms} terms in {n} seeds");
}

fn caught(mutant: Mutant) {
    for seed in 0..seeds() {
        if let Some(violation) = run(seed, mutant).violation {
            println!("{mutant:?}: seed {seed}: {violation}");
            return;
        }
    }
    panic!("{mutant:?}: no seed of {} found the violation it allows", seeds());
}

#[test]
fn without_the_guards_deadline_the_simulation_finds_an_overlap() {
    caught(Mutant::NoGuardDeadline);
}

#[test]
fn a_deadline_from_the_answer_is_found_by_the_simulation() {
    caught(Mutant::DeadlineFromAnswer);
}

#[test]
fn leading_at_once_on_an_absent_lock_is_found_by_the_simulation() {
    caught(Mutant::AbsentIsFree);
}

#[test]
fn a_lease_within_the_margin_is_found_by_the_simulation() {
    caught(Mutant::LeaseWithinTheMargin);
}

/// Replays `SIM_SEED` (default 7) twice: the same events and terms both times.
#[test]
fn replay() {
    let seed = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
    let (first, again) = (run(seed, Mutant::None), run(seed, Mutant::None));
    println!("{}", first.events.join("\n"));
    println!("{} terms; {}", first.terms, first.violation.as_deref().unwrap_or("no violation"));
    assert_eq!((&first.events, first.terms), (&again.events, again.terms), "seed {seed} is not deterministic");
}
