//! The demo, written once: candidates elect a leader, it crashes without releasing,
//! a standby takes over, and a summary shows the timeline and the failover time.
//! `highlander demo` runs it on a gist emulator or any store; `cargo run -p
//! highlander --example demo` on the in-process memory store. It narrates on stdout.

use lock_core::{ElectionState, Escaped, FencingToken, LeaderElector, LockName, SharedStore, Timing, check_identity};
use std::{
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What the demo runs.
#[derive(Debug, Clone)]
pub struct Script {
    /// The candidates' identities (at least two, all different).
    pub candidates: Vec<String>,
    /// The electors' durations.
    pub timing: Timing,
    /// How long the first leader leads before it crashes.
    pub crash_after: Duration,
    /// The lock contended for.
    pub lock: String,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            candidates: ["napoleon", "cleopatra", "stalin"].map(String::from).to_vec(),
            timing: Timing { lease: Duration::from_secs(6), renew_deadline: Duration::from_secs(4), retry_period: Duration::from_secs(1) },
            crash_after: Duration::from_secs(10),
            lock: "world-domination".into(),
        }
    }
}

/// What the demo measured.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Events since the start: who led with which token, who crashed.
    pub timeline: Vec<(Duration, String)>,
    /// The first leader's token and the next one's.
    pub tokens: (Option<FencingToken>, Option<FencingToken>),
    /// The record's transition count at the end.
    pub transitions: u32,
    /// From the crash to the next leader.
    pub failover: Duration,
    /// What client-go bounds it by: lease + 2.2 × retry period.
    pub bound: Duration,
}

struct Running {
    name: String,
    state: tokio::sync::watch::Receiver<ElectionState>,
    task: tokio::task::JoinHandle<lock_core::ElectionEnd>,
}

type Timeline = Arc<Mutex<Vec<(Duration, String)>>>;

fn note(timeline: &Timeline, at: Duration, event: String) {
    timeline.lock().unwrap_or_else(PoisonError::into_inner).push((at, event));
}

/// Runs the script, each candidate on a store of its own from `connect` (as separate
/// processes would have), and prints the summary.
pub async fn run<F, Fut>(script: &Script, connect: F) -> Result<Summary, String>
where
    F: Fn() -> Fut,
    Fut: Future<Output = lock_core::Result<SharedStore>>,
{
    let t = script.timing;
    t.check().map_err(|e| format!("demo: {e}"))?;
    if script.candidates.len() < 2 {
        return Err("the demo needs at least two candidates (--candidates a,b)".into());
    }
    for (i, name) in script.candidates.iter().enumerate() {
        check_identity(name).map_err(|e| format!("demo candidate {}: {e}", i + 1))?;
        if script.candidates[..i].contains(name) {
            return Err(format!("demo candidate {} appears twice: identities must be unique", Escaped(name)));
        }
    }
    let lock = LockName::new(&script.lock).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let timeline = Timeline::default();
    let shutdown = CancellationToken::new();
    let mut running = Vec::new();
    for name in &script.candidates {
        let store = connect().await.map_err(|e| e.to_string())?;
        let (who, log, who2) = (name.clone(), timeline.clone(), name.clone());
        let elector = LeaderElector::builder(store, lock.clone(), name.clone())
            .timing(t)
            .on_started_leading(move |l| {
                let (who, log) = (who.clone(), log.clone());
                async move {
                    println!("[{who}] I am {who}! I will lead you to greatness! (fencing token {})", l.fencing_token());
                    note(&log, t0.elapsed(), format!("{who} leads with fencing token {}", l.fencing_token()));
                    l.lost().await;
                }
            })
            .on_new_leader(move |leader| {
                if leader != who2 {
                    println!("[{who2}] All hail {}", lock_core::display::Unquoted(leader));
                }
            })
            .build()
            .map_err(|e| e.to_string())?;
        let state = elector.subscribe();
        running.push(Running { name: name.clone(), state, task: elector.spawn(shutdown.clone()) });
    }
    println!("[all] the lock has no record yet: absent means unknown, so whoever claims it leads only after one lease ({:?})", t.lease);
    let first = wait_for_leader(&mut running, t.lease * 4).await?;
    let first_token = running[first].state.borrow().fencing_token;
    tokio::time::sleep(script.crash_after).await;
    let leader = running.iter().position(|c| c.state.borrow().is_leader()).ok_or("the leader stepped down before the crash")?;
    let crashed = running.remove(leader);
    crashed.task.abort();
    let crash_at = Instant::now();
    println!("[{}] *** crashed without releasing ***", crashed.name);
    note(&timeline, t0.elapsed(), format!("{} crashes without releasing", crashed.name));
    let next = wait_for_leader(&mut running, t.lease * 4).await?;
    let failover = crash_at.elapsed();
    let state = running[next].state.borrow().clone();
    // Give the remaining standbys a poll to learn the new leader.
    tokio::time::sleep(t.retry_period.mul_f64(2.2)).await;
    shutdown.cancel();
    for c in running {
        let _ = c.task.await;
    }
    let summary = Summary {
        timeline: timeline.lock().unwrap_or_else(PoisonError::into_inner).clone(),
        tokens: (first_token, state.fencing_token),
        transitions: state.transitions,
        failover,
        bound: t.lease + t.retry_period.mul_f64(2.2),
    };
    print_summary(&summary);
    Ok(summary)
}

fn token(t: Option<FencingToken>) -> String {
    t.map_or_else(|| "-".into(), |t| t.to_string())
}

fn print_summary(s: &Summary) {
    println!();
    println!("summary");
    for (at, event) in &s.timeline {
        println!("  {:>7.2}s  {event}", at.as_secs_f64());
    }
    println!("  transitions      {}", s.transitions);
    println!("  fencing tokens   {} then {}", token(s.tokens.0), token(s.tokens.1));
    println!(
        "  failover         {:.2}s after the crash (bound: lease + 2.2 × retry period = {:.2}s)",
        s.failover.as_secs_f64(),
        s.bound.as_secs_f64()
    );
}

async fn wait_for_leader(running: &mut [Running], within: Duration) -> Result<usize, String> {
    let until = Instant::now() + within;
    loop {
        if let Some(i) = running.iter().position(|c| c.state.borrow().is_leader()) {
            return Ok(i);
        }
        if Instant::now() >= until {
            let errors: Vec<String> = running.iter().filter_map(|c| c.state.borrow().last_error.clone()).collect();
            return Err(format!("no leader within {within:?}{}", errors.first().map(|e| format!(": {e}")).unwrap_or_default()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_demo_fails_over_on_memory_and_refuses_twins() {
        let store = lock_core::MemoryStore::new();
        let script = Script { crash_after: Duration::from_secs(3), ..Script::default() };
        let connect = || {
            let store = store.clone();
            async move { Ok(Arc::new(store) as SharedStore) }
        };
        let summary = run(&script, connect).await.expect("the demo runs");
        let (Some(first), Some(next)) = summary.tokens else { panic!("two terms: {summary:?}") };
        assert!(first < next, "tokens grow: {summary:?}");
        let led = summary.timeline.iter().find(|(_, e)| e.contains("leads")).expect("a leader");
        assert!(led.0 >= script.timing.lease, "a lock with no record is waited out for a lease first: {summary:?}");
        assert!(summary.failover <= summary.bound, "{summary:?}");
        let twins = Script { candidates: vec!["a".into(), "a".into()], ..Script::default() };
        let err = run(&twins, connect).await.expect_err("twins");
        assert!(err.contains("appears twice"), "{err}");
        let forged = Script { candidates: vec!["a".into(), "b\nholder x".into()], ..Script::default() };
        assert!(run(&forged, connect).await.expect_err("forged").contains("control character"));
    }
}
