//! `highlander demo`: candidates elect a leader, it crashes without releasing, a
//! standby takes over, and a summary shows the timeline and the failover time.

use crate::duration;
use highlander::{ElectionState, FencingToken, LeaderElector, LockName, SharedStore, StoreUrl, open_parsed};
use lock_gist::emulator::{Emulator, EmulatorConfig};
use std::{sync::Arc, time::Duration};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The store (default: a GitHub gist API emulator started in-process).
    #[arg(long)]
    store: Option<String>,
    /// Comma-separated candidate identities.
    #[arg(long, default_value = "napoleon,cleopatra,stalin", value_delimiter = ',')]
    candidates: Vec<String>,
    /// Lease duration (whole seconds).
    #[arg(long, default_value = "6s", value_parser = duration)]
    lease: Duration,
    /// Renew deadline.
    #[arg(long = "renew-deadline", default_value = "4s", value_parser = duration)]
    renew_deadline: Duration,
    /// Retry period.
    #[arg(long = "retry-period", default_value = "1s", value_parser = duration)]
    retry_period: Duration,
    /// How long the first leader leads before it crashes.
    #[arg(long = "crash-after", default_value = "10s", value_parser = duration)]
    crash_after: Duration,
    /// The lock's name.
    #[arg(long, default_value = "world-domination")]
    lock: String,
}

pub(crate) async fn demo(args: Args) -> Result<(), String> {
    let Args { store, candidates, lease, renew_deadline, retry_period, crash_after, lock } = args;
    run_demo(store, candidates, Timing { lease, renew_deadline, retry_period }, crash_after, &lock).await
}

#[derive(Clone, Copy)]
struct Timing {
    lease: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
}

/// Where the demo's stores come from: a URL, or the emulator (kept alive while the demo runs).
enum DemoStore {
    Url(StoreUrl),
    Emulator { emulator: Emulator, gist: String },
}

impl DemoStore {
    async fn new(store: Option<String>) -> Result<Self, String> {
        match store {
            Some(url) => Ok(Self::Url(StoreUrl::parse(&url).map_err(|e| e.to_string())?)),
            None => {
                let emulator = Emulator::start(EmulatorConfig::default())
                    .await
                    .map_err(|e| format!("cannot start the gist emulator on 127.0.0.1: {e}"))?;
                let gist = emulator.control().create_gist("highlander", &[("README.md", "Highlander demo leases")]);
                Ok(Self::Emulator { emulator, gist })
            }
        }
    }

    fn label(&self) -> String {
        match self {
            Self::Url(StoreUrl::Memory { .. }) => "memory:// (in-process: the candidates share it because they share this process)".into(),
            Self::Url(_) => "the given store".into(),
            Self::Emulator { emulator, gist } => format!("a GitHub gist API emulator at {} (gist {gist})", emulator.url()),
        }
    }

    /// A client for one candidate.
    async fn connect(&self, t: Timing) -> Result<SharedStore, String> {
        match self {
            Self::Url(url) => open_parsed(url).await.map_err(|e| e.to_string()),
            // The emulator is not GitHub: its write budget does not apply.
            Self::Emulator { emulator, gist } => lock_gist::GistStore::builder(gist)
                .api(emulator.url())
                .token(DEFAULT_EMULATOR_TOKEN)
                .retry_period(t.retry_period)
                .allow_over_budget(true)
                .build()
                .map(|s| Arc::new(s) as SharedStore)
                .map_err(|e| e.to_string()),
        }
    }
}

/// The token the default emulator accepts.
const DEFAULT_EMULATOR_TOKEN: &str = "emulator-token";

struct Running {
    name: String,
    state: tokio::sync::watch::Receiver<ElectionState>,
    task: tokio::task::JoinHandle<highlander::ElectionEnd>,
}

async fn run_demo(store: Option<String>, candidates: Vec<String>, t: Timing, crash_after: Duration, lock: &str) -> Result<(), String> {
    if candidates.len() < 2 {
        return Err("the demo needs at least two candidates (--candidates a,b)".into());
    }
    let lock = LockName::new(lock).map_err(|e| e.to_string())?;
    let source = DemoStore::new(store).await?;
    println!("store: {}; lease {:?}, renew deadline {:?}, retry period {:?}", source.label(), t.lease, t.renew_deadline, t.retry_period);
    let t0 = Instant::now();
    let timeline = Arc::new(std::sync::Mutex::new(Vec::<(Duration, String)>::new()));
    let shutdown = CancellationToken::new();
    let mut running = Vec::new();
    for name in &candidates {
        let store = source.connect(t).await?;
        let (who, log) = (name.clone(), timeline.clone());
        let who2 = name.clone();
        let elector = LeaderElector::builder(store, lock.clone(), name.clone())
            .lease_duration(t.lease)
            .renew_deadline(t.renew_deadline)
            .retry_period(t.retry_period)
            .on_started_leading(move |l| {
                let (who, log) = (who.clone(), log.clone());
                async move {
                    println!("[{who}] I am {who}! I will lead you to greatness! (fencing token {})", l.fencing_token());
                    if let Ok(mut log) = log.lock() {
                        log.push((t0.elapsed(), format!("{who} leads with fencing token {}", l.fencing_token())));
                    }
                    l.lost().await;
                }
            })
            .on_new_leader(move |leader| {
                if leader != who2 {
                    println!("[{who2}] All hail {leader}");
                }
            })
            .build()
            .map_err(|e| e.to_string())?;
        let state = elector.subscribe();
        running.push(Running { name: name.clone(), state, task: elector.spawn(shutdown.clone()) });
    }
    let first = wait_for_leader(&mut running, t.lease * 4).await?;
    let first_token = running[first].state.borrow().fencing_token;
    tokio::time::sleep(crash_after).await;
    let leader = running.iter().position(|c| c.state.borrow().is_leader()).ok_or("the leader stepped down before the crash")?;
    let crashed = running.remove(leader);
    crashed.task.abort();
    let crash_at = Instant::now();
    println!("[{}] *** crashed without releasing ***", crashed.name);
    if let Ok(mut log) = timeline.lock() {
        log.push((t0.elapsed(), format!("{} crashes without releasing", crashed.name)));
    }
    let next = wait_for_leader(&mut running, t.lease * 4).await?;
    let failover = crash_at.elapsed();
    let state = running[next].state.borrow().clone();
    // Give the remaining standbys a poll to learn the new leader.
    tokio::time::sleep(t.retry_period.mul_f64(2.2)).await;
    shutdown.cancel();
    for c in running {
        let _ = c.task.await;
    }
    let bound = t.lease + t.retry_period.mul_f64(2.2);
    println!();
    println!("summary");
    for (at, event) in timeline.lock().map(|l| l.clone()).unwrap_or_default() {
        println!("  {:>7.2}s  {event}", at.as_secs_f64());
    }
    println!("  transitions      {}", state.transitions);
    println!("  fencing tokens   {} then {}", token(first_token), token(state.fencing_token));
    println!(
        "  failover         {:.2}s after the crash (bound: lease + 2.2 × retry period = {:.2}s)",
        failover.as_secs_f64(),
        bound.as_secs_f64()
    );
    Ok(())
}

pub(crate) fn token(t: Option<FencingToken>) -> String {
    t.map_or_else(|| "-".into(), |t| t.to_string())
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
