//! Napoleon, Cleopatra and Stalin contend for one lock in a memory store; the
//! leader crashes without releasing and a standby takes over.
//!
//! `cargo run -p lock-core --example three_candidates`

use lock_core::{ElectionState, LeaderElector, LockName, MemoryStore};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const LEASE: Duration = Duration::from_secs(2);
const RENEW: Duration = Duration::from_millis(1500);
const RETRY: Duration = Duration::from_millis(500);

struct Running {
    name: &'static str,
    state: tokio::sync::watch::Receiver<ElectionState>,
    task: tokio::task::JoinHandle<lock_core::ElectionEnd>,
}

fn start(store: &MemoryStore, lock: &LockName, name: &'static str, shutdown: &CancellationToken) -> Result<Running, lock_core::Error> {
    let elector = LeaderElector::builder(store.clone(), lock.clone(), name)
        .lease_duration(LEASE)
        .renew_deadline(RENEW)
        .retry_period(RETRY)
        .on_started_leading(move |l| async move {
            println!("[{name}] I am {name}! I will lead you to greatness! (fencing token {})", l.fencing_token());
            l.lost().await;
        })
        .on_new_leader(move |leader| {
            if leader != name {
                println!("[{name}] All hail {leader}");
            }
        })
        .build()?;
    let state = elector.subscribe();
    Ok(Running { name, state, task: elector.spawn(shutdown.clone()) })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = MemoryStore::new();
    let lock = LockName::new("world-domination")?;
    let shutdown = CancellationToken::new();
    let t0 = Instant::now();
    println!("lease {LEASE:?}, renew deadline {RENEW:?}, retry period {RETRY:?}");

    // Stalin gets there first; the others arrive a moment later.
    let mut candidates = vec![start(&store, &lock, "stalin", &shutdown)?];
    tokio::time::sleep(Duration::from_millis(100)).await;
    for name in ["napoleon", "cleopatra"] {
        candidates.push(start(&store, &lock, name, &shutdown)?);
    }
    let first = candidates.iter_mut().find(|c| c.name == "stalin").ok_or("stalin missing")?;
    first.state.wait_for(ElectionState::is_leader).await?;
    let first_token = first.state.borrow().fencing_token;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The leader's cluster dies: no release, its lease must expire.
    let idx = candidates.iter().position(|c| c.state.borrow().is_leader()).ok_or("no leader")?;
    let crashed = candidates.remove(idx);
    crashed.task.abort();
    let crash_at = Instant::now();
    println!("[{}] *** crashed without releasing at {:.1?} ***", crashed.name, crash_at - t0);

    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    for c in &candidates {
        let (tx, mut state, name) = (tx.clone(), c.state.clone(), c.name);
        tokio::spawn(async move {
            if state.wait_for(ElectionState::is_leader).await.is_ok() {
                let snapshot = state.borrow().clone();
                let _ = tx.send((name, snapshot)).await;
            }
        });
    }
    let (successor, state) = tokio::time::timeout(LEASE * 4, rx.recv()).await?.ok_or("no successor")?;
    let failover = crash_at.elapsed();
    let bound = LEASE + RETRY.mul_f64(2.2);
    tokio::time::sleep(Duration::from_millis(200)).await;

    println!();
    println!("summary");
    println!("  first leader   {} (fencing token {})", crashed.name, first_token.map_or("-".into(), |t| t.to_string()));
    println!("  next leader    {successor} (fencing token {})", state.fencing_token.map_or("-".into(), |t| t.to_string()));
    println!("  transitions    {}", state.transitions);
    println!("  failover       {failover:.2?} after the crash (bound: lease + 2.2 × retry period = {bound:.2?})");
    shutdown.cancel();
    for c in candidates {
        c.task.await?;
    }
    if failover > bound {
        return Err(format!("failover {failover:?} exceeded its bound {bound:?}").into());
    }
    Ok(())
}
