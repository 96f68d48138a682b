//! What the store-failover experiments share (`failover_of_the_store_*` in the
//! backends' tests): a tap that stops the world right after an acknowledged write, the
//! two candidates' terms, and the figures each configuration reports.

use lock_core::{
    Capabilities, Changes, ElectionEnd, ElectionState, LeaderElectionRecord, LeaderElector, LeaseStore, LockName, Observed, Result,
    SharedStore, Timing, Version,
};
use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{sync::watch, task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;

pub use lock_core::terms::{TermLog, overlaps};

/// The candidates' durations in the experiments.
pub const TIMING: Timing =
    Timing { lease: Duration::from_secs(2), renew_deadline: Duration::from_millis(1500), retry_period: Duration::from_millis(200) };

/// Shared by the taps of one experiment: which write to catch, and the gate it closes.
pub struct Gate {
    armed: Mutex<Option<(String, tokio::sync::oneshot::Sender<Version>)>>,
    open: watch::Sender<bool>,
}

impl Gate {
    /// An open gate, armed for nothing.
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::new(Self { armed: Mutex::new(None), open: watch::channel(true).0 })
    }

    /// Catches the next acknowledged write naming `holder`: closes the gate (every tapped
    /// store's calls wait from then on: the failover window) and hands over its version.
    pub fn arm(&self, holder: &str) -> tokio::sync::oneshot::Receiver<Version> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        *self.armed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((holder.to_string(), tx));
        rx
    }

    /// Lets the tapped stores' calls through again.
    pub fn open(&self) {
        self.open.send_replace(true);
    }
}

/// A store whose acknowledged writes can close a [`Gate`].
#[derive(Clone)]
pub struct Tap {
    inner: SharedStore,
    gate: Arc<Gate>,
}

impl Tap {
    /// Taps `inner`.
    pub fn new(inner: SharedStore, gate: &Arc<Gate>) -> Self {
        Self { inner, gate: gate.clone() }
    }

    async fn pass(&self) {
        let mut open = self.gate.open.subscribe();
        let _ = open.wait_for(|o| *o).await;
    }

    fn acked(&self, rec: &LeaderElectionRecord, v: &Version) {
        let mut armed = self.gate.armed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if armed.as_ref().is_some_and(|(holder, _)| *holder == rec.holder_identity)
            && let Some((_, tx)) = armed.take()
        {
            // Closed before anyone else can write: the failover starts now.
            self.gate.open.send_replace(false);
            let _ = tx.send(v.clone());
        }
    }
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tap({})", self.inner)
    }
}

impl std::fmt::Display for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait::async_trait]
impl LeaseStore for Tap {
    async fn get(&self, lock: &LockName) -> Result<Option<Observed>> {
        self.pass().await;
        self.inner.get(lock).await
    }
    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
        self.pass().await;
        let v = self.inner.create(lock, rec).await?;
        self.acked(rec, &v);
        Ok(v)
    }
    async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
        self.pass().await;
        let v = self.inner.update(lock, expected, rec).await?;
        self.acked(rec, &v);
        Ok(v)
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn watch(&self, lock: &LockName) -> Result<Option<Changes>> {
        self.inner.watch(lock).await
    }
}

/// A running candidate.
pub struct Candidate {
    /// Its state.
    pub state: watch::Receiver<ElectionState>,
    /// Cancels it.
    pub stop: CancellationToken,
    /// Its task.
    pub task: JoinHandle<ElectionEnd>,
}

/// Starts a candidate on `store` that logs its terms.
pub fn candidate(store: Tap, lock: &LockName, name: &str, terms: &TermLog) -> Candidate {
    let terms = terms.clone();
    let elector = LeaderElector::builder(store, lock.clone(), name)
        .timing(TIMING)
        .on_started_leading(move |l| {
            let terms = terms.clone();
            async move { terms.serve(l).await }
        })
        .build()
        .expect("the experiment's timing is valid");
    let state = elector.subscribe();
    let stop = CancellationToken::new();
    let task = elector.spawn(stop.clone());
    Candidate { state, stop, task }
}

/// One try, up to the moment the store fails: `alpha` leads, `beta` stands by, and the
/// gate closes on the next acknowledged write — alpha's renewal, or (`takeover`) beta's
/// takeover once alpha has released. Returns both candidates and that write's version.
///
/// # Panics
/// If alpha does not lead, or no write is acknowledged, within 20 s.
pub async fn until_acknowledged(
    alpha: Tap,
    beta: Tap,
    gate: &Gate,
    lock: &LockName,
    terms: &TermLog,
    takeover: bool,
) -> (Candidate, Candidate, Version) {
    let a = candidate(alpha, lock, "alpha", terms);
    let mut state = a.state.clone();
    tokio::time::timeout(Duration::from_secs(20), state.wait_for(ElectionState::is_leader)).await.expect("alpha leads").expect("alive");
    let b = candidate(beta, lock, "beta", terms);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked = if takeover {
        // The acknowledged write is beta's takeover after alpha releases.
        let acked = gate.arm("beta");
        a.stop.cancel();
        acked
    } else {
        gate.arm("alpha")
    };
    let acked = tokio::time::timeout(Duration::from_secs(20), acked).await.expect("a write was acknowledged").expect("tap");
    (a, b, acked)
}

/// One try of an experiment: `alpha` leads and `beta` stands by (see
/// [`until_acknowledged`]); right after the acknowledged write, `fail` loses the store's
/// primary and returns a store on what serves now. Counts in `figures` whether that write
/// was kept, how long the election paused, and overlapping terms (after `settle`, once
/// both candidates have had time to act). Returns whether the write was kept and the pause.
///
/// # Panics
/// If alpha does not lead, no write is acknowledged, or the new primary shows no record
/// of the lock, within 20 s.
pub async fn one_try<S: LeaseStore>(
    (alpha, beta): (Tap, Tap),
    gate: &Gate,
    lock: &LockName,
    takeover: bool,
    settle: Duration,
    figures: &mut Figures,
    fail: impl AsyncFnOnce() -> S,
) -> (bool, Option<Duration>) {
    let terms = TermLog::default();
    let (a, b, acked) = until_acknowledged(alpha, beta, gate, lock, &terms, takeover).await;
    let failed_at = Instant::now();
    let now_serving = fail().await;
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match now_serving.get(lock).await {
                Ok(Some(seen)) => break seen,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("the new primary shows the lock's record");
    let kept = seen.version.ordinal() >= acked.ordinal();
    if !kept {
        if takeover {
            figures.lost_takeovers += 1;
        } else {
            figures.lost_renewals += 1;
        }
    }
    gate.open();
    let pause = pause_until_written(&now_serving, lock, &seen.version, failed_at, figures).await;
    tokio::time::sleep(settle).await;
    figures.overlapping_terms += overlaps(&terms.terms()).len();
    for c in [a, b] {
        c.stop.cancel();
        let _ = c.task.await;
    }
    figures.tries += 1;
    (kept, pause)
}

/// What one configuration showed.
pub use crate::report::FailoverFigures as Figures;

/// How many tries: `FAILOVER_TRIES`, default 4 (the docs use 50).
#[must_use]
pub fn tries() -> usize {
    std::env::var("FAILOVER_TRIES").ok().and_then(|t| t.parse().ok()).unwrap_or(4)
}

/// Prints one JSON line, and writes it to `FAILOVER_REPORT_DIR` if set (for the semantics report).
pub fn report(backend: &str, configuration: &str, figures: &Figures) {
    let line = serde_json::json!({ "backend": backend, "configuration": configuration, "figures": figures });
    println!("{line}");
    if let Ok(dir) = std::env::var("FAILOVER_REPORT_DIR") {
        let _ = std::fs::create_dir_all(&dir);
        let file: String = format!("{backend}-{configuration}").chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        let _ = std::fs::write(Path::new(&dir).join(format!("{file}.json")), line.to_string());
    }
}

/// Waits (up to 10 s) for a write to `lock` after `seen` and counts it in `figures`:
/// the failover's pause (`None`: no write within 10 s), and whether the election went on.
pub async fn pause_until_written(
    store: &dyn LeaseStore,
    lock: &LockName,
    seen: &Version,
    failed_at: Instant,
    figures: &mut Figures,
) -> Option<Duration> {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if let Ok(Some(now)) = store.get(lock).await
            && now.version != *seen
        {
            let pause = failed_at.elapsed();
            figures.resumed += 1;
            figures.failover_seconds_max = figures.failover_seconds_max.max(pause.as_secs_f64());
            return Some(pause);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    figures.failover_seconds_max = figures.failover_seconds_max.max(failed_at.elapsed().as_secs_f64());
    None
}

/// A TCP proxy on 127.0.0.1 to `target` that delays every byte by `delay` each way,
/// keeping order: the network between two regions. Cutting it drops what is in flight,
/// as losing the primary's region does.
pub async fn delaying_proxy(target: u16, delay: Duration) -> (u16, watch::Sender<bool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let port = listener.local_addr().expect("its address").port();
    let (cut, watching) = watch::channel(false);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else { continue };
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            for (mut from, mut to) in [
                (
                    Box::new(cr) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
                    Box::new(sw) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>,
                ),
                (Box::new(sr), Box::new(cw)),
            ] {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = from.read(&mut buf).await {
                        if n == 0 || tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                });
                let cut = watching.clone();
                tokio::spawn(async move {
                    while let Some((at, bytes)) = rx.recv().await {
                        tokio::time::sleep_until(at).await;
                        if *cut.borrow() || to.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown().await;
                });
            }
        }
    });
    (port, cut)
}
