//! `highlander elect`: campaigns with no command and answers "who leads, and is it
//! me?" over HTTP, for a service in any language (the sidecar pattern).
//!
//! - `GET /leader` (and `GET /`): the state as JSON.
//! - `GET /watch?seq=N&timeout=30s`: the same, once it differs from state `seq` N (at
//!   once if it already does, or without `seq`), or at the timeout; a client loops on
//!   the `seq` it got.
//! - `GET /healthz`, `GET /metrics`.

use crate::{Failure, serve};
use highlander::{ElectionState, Escaped, LeaderElector, Leadership, LockName, Phase, check_identity, roster::Candidate};
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// The longest a `/watch` request waits for a change.
pub(crate) const WATCH_MAX: Duration = Duration::from_secs(60);
/// How long a `/watch` request waits when it does not say.
const WATCH_DEFAULT: Duration = Duration::from_secs(30);

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    target: crate::Target,
    /// This candidate's identity, unique among candidates (default: HOSTNAME-PID).
    #[arg(long)]
    identity: Option<String>,
    #[command(flatten)]
    timing: crate::TimingArgs,
    #[command(flatten)]
    candidacy: crate::CandidacyArgs,
    /// Create what the store needs if it is missing (as `run --create`).
    #[arg(long)]
    create: bool,
    /// Serve /leader, /watch, /healthz and /metrics at http://ADDR (127.0.0.1:PORT for
    /// the application beside it; port 0 picks one, which the log says).
    #[arg(long, value_name = "ADDR")]
    serve: SocketAddr,
}

/// What `/leader` shows, but for the term's remaining time (computed per request).
#[derive(Debug, Clone, PartialEq)]
struct Snapshot {
    lock: String,
    identity: String,
    leader: Option<String>,
    is_leader: bool,
    fencing_token: Option<u64>,
    transitions: u32,
    candidates: Option<Vec<CandidateView>>,
}

#[derive(Debug, Clone, PartialEq)]
struct CandidateView {
    identity: String,
    priority: i32,
}

/// The election as the HTTP routes see it.
#[derive(Clone)]
pub(crate) struct Election {
    view: watch::Receiver<(u64, Snapshot)>,
    term: Arc<Mutex<Option<Leadership>>>,
    /// Requests that may wait for a change at once; more are answered at once, so that
    /// a flood of watchers cannot take every connection from /healthz.
    waiting: Arc<tokio::sync::Semaphore>,
}

/// The most `/watch` requests waiting at once (a quarter of the connections served).
const MAX_WAITING: usize = 1024;

impl Election {
    /// The state now, as JSON.
    pub(crate) fn now(&self) -> String {
        let (seq, snapshot) = self.view.borrow().clone();
        self.json(seq, &snapshot)
    }

    fn json(&self, seq: u64, s: &Snapshot) -> String {
        let term = self.term.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let valid_for = term.filter(|t| s.is_leader && Some(t.fencing_token().get()) == s.fencing_token).map(|t| t.remaining().as_millis());
        serde_json::json!({
            "seq": seq,
            "lock": s.lock,
            "identity": s.identity,
            "leader": s.leader,
            // As Kubernetes' leader-elector sidecar answers.
            "name": s.leader,
            "is_leader": s.is_leader,
            "fencing_token": s.fencing_token,
            "term_valid_for_ms": valid_for,
            "transitions": s.transitions,
            "candidates": s.candidates.as_ref().map(|list| list.iter().map(|c| serde_json::json!({
                "identity": c.identity, "priority": c.priority, "leader": Some(&c.identity) == s.leader.as_ref(),
            })).collect::<Vec<_>>()),
        })
        .to_string()
    }

    /// Waits for a state other than `seq=` (bounded by `timeout=`), then answers it.
    pub(crate) async fn watch(&self, query: &str) -> Result<String, String> {
        let mut seq = None;
        let mut wait = WATCH_DEFAULT;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("seq", v)) => seq = Some(v.parse::<u64>().map_err(|_| format!("seq={v}: not a number"))?),
                Some(("timeout", v)) => {
                    wait = highlander::parse_duration(v).map_err(|e| format!("timeout={v}: {e}"))?;
                    if wait > WATCH_MAX {
                        return Err(format!("timeout={v}: at most {WATCH_MAX:?}"));
                    }
                }
                _ => return Err(format!("{pair}: /watch takes seq=N and timeout=DURATION")),
            }
        }
        let mut view = self.view.clone();
        let current = view.borrow_and_update().0;
        // Without seq=, the state now: a client's first call.
        if seq == Some(current)
            && let Ok(_slot) = self.waiting.try_acquire()
        {
            let _ = tokio::time::timeout(wait, view.changed()).await;
        }
        let (seq, snapshot) = view.borrow().clone();
        Ok(self.json(seq, &snapshot))
    }
}

pub(crate) async fn elect(args: Args) -> Result<(), Failure> {
    let lock = LockName::new(&args.target.lock).map_err(|e| e.to_string())?;
    let identity = args.identity.unwrap_or_else(crate::run::default_identity);
    check_identity(&identity).map_err(|e| format!("--identity: {e}"))?;
    let timing = args.timing.timing()?;
    let recorder = serve::install_recorder()?;
    serve::raise_open_file_limit();
    let store = crate::run::open_store(&args.target.store, args.create, &lock, timing).await?;
    let term: Arc<Mutex<Option<Leadership>>> = Arc::default();
    let held = term.clone();
    let elector = LeaderElector::builder(store.clone(), lock.clone(), identity.clone()).timing(timing).on_started_leading(move |l| {
        *held.lock().unwrap_or_else(PoisonError::into_inner) = Some(l.clone());
        async move { l.lost().await }
    });
    let elector = args.candidacy.apply(elector).build().map_err(|e| e.to_string())?;
    let stop = CancellationToken::new();
    let first = Snapshot {
        lock: lock.to_string(),
        identity: identity.clone(),
        leader: None,
        is_leader: false,
        fencing_token: None,
        transitions: 0,
        candidates: None,
    };
    let (view_tx, view) = watch::channel((0, first.clone()));
    let candidates = elector.config().candidacy.is_some().then(|| elector.candidates());
    tokio::spawn(follow(elector.subscribe(), candidates, first, view_tx, stop.clone()));
    let routes = serve::Routes {
        metrics: Some(recorder),
        health: Some((elector.health(), elector.subscribe())),
        election: Some(Election { view, term, waiting: Arc::new(tokio::sync::Semaphore::new(MAX_WAITING)) }),
    };
    serve::bind(args.serve, routes, "/leader, /watch, /healthz and /metrics").await?;
    info!(lock = %lock, identity = %Escaped(&identity), store = %store, "campaigning, with no command");

    let mut signals = crate::run::ShutdownSignals::new("releasing the lease")?;
    let shutdown = CancellationToken::new();
    let mut election = elector.spawn(shutdown.clone());
    let end = loop {
        tokio::select! {
            end = &mut election => break end,
            () = signals.stop(&shutdown) => {}
        }
    };
    stop.cancel();
    let end = end.map_err(|e| format!("the election task failed: {e}"))?;
    info!(lock = %lock, identity = %Escaped(&identity), ?end, "stopped");
    match end {
        highlander::ElectionEnd::Failed { error } => Err(format!("lock {lock:?}: giving up: {error}").into()),
        _ => Ok(()),
    }
}

/// Keeps the served snapshot: the elector's state and the live candidates (as its
/// registration refreshes find them, when registered) at every change; each change
/// gets the next `seq`.
async fn follow(
    mut state: watch::Receiver<ElectionState>,
    mut candidates: Option<watch::Receiver<Vec<Candidate>>>,
    mut snapshot: Snapshot,
    view: watch::Sender<(u64, Snapshot)>,
    stop: CancellationToken,
) {
    let mut seq = 0u64;
    loop {
        {
            let s = state.borrow_and_update();
            snapshot.leader.clone_from(&s.leader);
            snapshot.is_leader = s.phase == Phase::Leading;
            snapshot.fencing_token = s.fencing_token.map(|t| t.get());
            snapshot.transitions = s.transitions;
        }
        if let Some(found) = &mut candidates {
            let live = found.borrow_and_update();
            snapshot.candidates =
                Some(live.iter().map(|c| CandidateView { identity: c.identity.clone(), priority: c.registration.priority }).collect());
        }
        if view.borrow().1 != snapshot {
            seq = seq.saturating_add(1);
            view.send_replace((seq, snapshot.clone()));
        }
        let roster_changed = async {
            match &mut candidates {
                Some(found) => {
                    if found.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            changed = state.changed() => if changed.is_err() { return },
            () = roster_changed => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(leader: &str) -> Snapshot {
        Snapshot {
            lock: "l".into(),
            identity: "me".into(),
            leader: Some(leader.into()),
            is_leader: false,
            fencing_token: None,
            transitions: 0,
            candidates: None,
        }
    }

    fn election(waiting: usize) -> (watch::Sender<(u64, Snapshot)>, Election) {
        let (tx, view) = watch::channel((7, snapshot("a")));
        (tx, Election { view, term: Arc::default(), waiting: Arc::new(tokio::sync::Semaphore::new(waiting)) })
    }

    fn leader(json: &str) -> (u64, String) {
        let v: serde_json::Value = serde_json::from_str(json).expect("JSON");
        (v["seq"].as_u64().expect("seq"), v["leader"].as_str().expect("leader").to_string())
    }

    #[tokio::test(start_paused = true)]
    async fn watch_answers_a_change_a_stale_seq_at_once_and_the_same_state_at_its_timeout() {
        let (tx, e) = election(4);
        let started = tokio::time::Instant::now();
        assert_eq!(leader(&e.watch("").await.expect("ok")), (7, "a".into()), "no seq: the state now");
        assert_eq!(leader(&e.watch("seq=3").await.expect("ok")), (7, "a".into()), "a stale seq: at once");
        assert_eq!(started.elapsed(), Duration::ZERO);
        let changer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            tx.send_replace((8, snapshot("b")));
            tx
        });
        assert_eq!(leader(&e.watch("seq=7").await.expect("ok")), (8, "b".into()), "the change");
        assert_eq!(started.elapsed(), Duration::from_secs(5), "answered when it came");
        let _tx = changer.await.expect("changer");
        assert_eq!(leader(&e.watch("seq=8&timeout=2s").await.expect("ok")), (8, "b".into()), "no change: the state at the timeout");
        assert_eq!(started.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn bad_queries_are_refused_and_watchers_beyond_the_bound_are_answered_at_once() {
        let (_tx, e) = election(1);
        for bad in ["seq=x", "timeout=forever", "timeout=61s", "since=3"] {
            assert!(e.watch(bad).await.is_err(), "{bad}");
        }
        let first = {
            let e = e.clone();
            tokio::spawn(async move { e.watch("seq=7&timeout=30s").await })
        };
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        assert_eq!(leader(&e.watch("seq=7&timeout=30s").await.expect("ok")).0, 7);
        assert_eq!(started.elapsed(), Duration::ZERO, "the second watcher is over the bound: answered at once");
        first.await.expect("task").expect("ok");
    }
}
