//! Two candidates elect a leader through a gist on the in-process GitHub API
//! emulator; the leader crashes, the standby takes over; then the request counts.
//!
//! `cargo run -p lock-gist --example gist_election`

use lock_core::{ElectionState, LeaderElector, LockName};
use lock_gist::{
    GistStore,
    emulator::{Emulator, EmulatorConfig},
};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const LEASE: Duration = Duration::from_secs(6);
const RENEW: Duration = Duration::from_secs(4);
const RETRY: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let emulator = Emulator::start(EmulatorConfig::default()).await?;
    let gist = emulator.control().create_gist("highlander", &[("README.md", "Highlander leases live here.")]);
    println!("emulator at {}, gist {gist}", emulator.url());
    let lock = LockName::new("world-domination")?;
    let shutdown = CancellationToken::new();
    let mut running = Vec::new();
    for name in ["stalin", "napoleon"] {
        // 1 s renewals are 3,600 writes an hour: fine for the emulator, refused for GitHub.
        let store =
            GistStore::builder(&gist).api(emulator.url()).token("emulator-token").retry_period(RETRY).allow_over_budget(true).build()?;
        let elector = LeaderElector::builder(store, lock.clone(), name)
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
        running.push((name, state, elector.spawn(shutdown.clone())));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let i = running.iter().position(|(_, s, _)| s.borrow().is_leader()).ok_or("no leader")?;
    let (crashed, _, task) = running.remove(i);
    task.abort();
    let at = tokio::time::Instant::now();
    println!("[{crashed}] *** crashed without releasing ***");
    let (next, mut state, task) = running.remove(0);
    tokio::time::timeout(LEASE * 3, state.wait_for(ElectionState::is_leader)).await??;
    println!("{next} took over {:.2?} after the crash (bound: lease + 2.2 × retry = {:.2?})", at.elapsed(), LEASE + RETRY.mul_f64(2.2));
    shutdown.cancel();
    task.await?;
    let n = emulator.control().counts();
    println!("requests: {} GET (200), {} GET answered 304 (free), {} PATCH", n.get, n.not_modified, n.patch);
    emulator.stop().await;
    Ok(())
}
