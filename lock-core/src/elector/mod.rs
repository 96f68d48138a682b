//! The leader elector: client-go's `tools/leaderelection` algorithm, step for step,
//! with fencing tokens, re-campaigning, drain-then-release, health and metrics.

mod config;
pub mod metrics;
mod state;
#[cfg(test)]
mod tests;

pub use config::{DEFAULT_LEASE_DURATION, DEFAULT_RENEW_DEADLINE, DEFAULT_RETRY_PERIOD, ElectorBuilder, ElectorConfig, JITTER_FACTOR};
pub use state::{ElectionState, Health, Leadership, Phase, Unhealthy};

use crate::{
    error::{Error, Result},
    name::LockName,
    record::{FencingToken, LeaderElectionRecord},
    store::{LeaseStore, Observed, SharedStore, Version},
};
use bytes::Bytes;
use chrono::Utc;
use metrics::ElectorMetrics;
use rand::Rng;
use std::{future::Future, pin::Pin, sync::Arc, time::Duration};
use tokio::{
    sync::watch,
    task::{JoinError, JoinHandle},
    time::{Instant, sleep_until},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type StartedFn = Arc<dyn Fn(Leadership) -> BoxFuture + Send + Sync>;
type StoppedFn = Arc<dyn Fn() + Send + Sync>;
type NewLeaderFn = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Default, Clone)]
struct Callbacks {
    started: Option<StartedFn>,
    stopped: Option<StoppedFn>,
    new_leader: Option<NewLeaderFn>,
}

/// How [`LeaderElector::run`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionEnd {
    /// The shutdown token was cancelled (and the lease released if configured).
    Shutdown,
    /// Leadership was lost and re-campaigning is off.
    LostLeadership {
        /// Why: the renew deadline passed, or who took the lease.
        reason: String,
    },
}

/// Elects one leader among candidates that share a lock in a [`LeaseStore`].
///
/// Build one with [`LeaderElector::builder`], subscribe to its state or health if
/// needed, then [`run`](Self::run) it until a shutdown token is cancelled.
pub struct LeaderElector {
    store: SharedStore,
    config: ElectorConfig,
    callbacks: Callbacks,
    state: watch::Sender<ElectionState>,
    health: Health,
}

impl std::fmt::Debug for LeaderElector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderElector").field("store", &self.store.to_string()).field("config", &self.config).finish_non_exhaustive()
    }
}

impl LeaderElector {
    /// Starts building an elector for `lock` in `store`, campaigning as `identity`.
    pub fn builder<S: LeaseStore + 'static>(store: S, lock: LockName, identity: impl Into<String>) -> ElectorBuilder {
        ElectorBuilder::new(config::share(store), lock, identity.into())
    }

    fn from_parts(store: SharedStore, config: ElectorConfig, callbacks: Callbacks) -> Self {
        let health = Health {
            lock: config.lock.clone(),
            identity: config.identity.clone(),
            tolerance: config.health_tolerance,
            state: Arc::default(),
        };
        Self { store, config, callbacks, state: watch::Sender::new(ElectionState::initial()), health }
    }

    /// The validated configuration.
    #[must_use]
    pub fn config(&self) -> &ElectorConfig {
        &self.config
    }

    /// A channel of this elector's state, updated at every change.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<ElectionState> {
        self.state.subscribe()
    }

    /// A health check for this elector (see [`Health`]).
    #[must_use]
    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Campaigns until `shutdown` is cancelled (or, with re-campaigning off, until
    /// leadership is lost). On shutdown the leader signals its work, keeps renewing
    /// while the work drains (bounded by the drain timeout), then releases the lease.
    pub async fn run(self, shutdown: CancellationToken) -> ElectionEnd {
        let mut run = Campaign::new(&self);
        let end = loop {
            run.publish();
            let Some(acquired_at) = run.acquire(&shutdown).await else {
                break ElectionEnd::Shutdown;
            };
            let mut term = run.start_term();
            let end = run.renew(&mut term, acquired_at, &shutdown).await;
            run.end_term(term, &end).await;
            match end {
                TermEnd::Shutdown => break ElectionEnd::Shutdown,
                TermEnd::Lost(_) if shutdown.is_cancelled() => break ElectionEnd::Shutdown,
                TermEnd::Lost(reason) if !self.config.recampaign => break ElectionEnd::LostLeadership { reason },
                TermEnd::Lost(_) => {}
            }
        };
        self.state.send_modify(|s| {
            s.phase = Phase::Stopped;
            s.fencing_token = None;
        });
        end
    }

    /// Spawns [`run`](Self::run) on the current Tokio runtime.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<ElectionEnd> {
        tokio::spawn(self.run(shutdown))
    }
}

/// The result of one tryAcquireOrRenew.
enum Step {
    /// We hold the lease (acquired or renewed).
    Held,
    /// Someone else holds a valid lease.
    HeldBy(String),
    /// We were leading but the record names someone else.
    Lost(String),
    /// A store call failed.
    Failed(Error),
}

enum TermEnd {
    Shutdown,
    Lost(String),
}

struct Term {
    leadership: Leadership,
    task: Option<JoinHandle<()>>,
}

/// If the elector itself is dropped mid-term (its task aborted, its runtime shut
/// down), the leader's work must not carry on unsupervised.
impl Drop for Term {
    fn drop(&mut self) {
        self.leadership.cancel.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

enum Wake {
    Timer,
    Shutdown,
    WorkDone(Result<(), JoinError>),
    DrainOver,
}

/// The state of one run: client-go's observed record, observed time and raw bytes.
struct Campaign<'a> {
    elector: &'a LeaderElector,
    metrics: ElectorMetrics,
    atomic: bool,
    leading: bool,
    observed: Option<LeaderElectionRecord>,
    observed_raw: Option<Bytes>,
    observed_version: Option<Version>,
    /// When the observed record last changed, on the local monotonic clock.
    observed_time: Instant,
    term_token: Option<FencingToken>,
    max_token_seen: u64,
    reported_leader: Option<String>,
    /// The last failed store call, shown in the published state until a call succeeds.
    last_error: Option<String>,
    /// How long the store last asked us to wait before calling again.
    asked_to_wait: Option<Duration>,
}

impl<'a> Campaign<'a> {
    fn new(elector: &'a LeaderElector) -> Self {
        Campaign {
            elector,
            metrics: ElectorMetrics::new(elector.config.lock.as_str(), &elector.config.identity),
            atomic: elector.store.capabilities().is_atomic(),
            leading: false,
            observed: None,
            observed_raw: None,
            observed_version: None,
            observed_time: Instant::now(),
            term_token: None,
            max_token_seen: 0,
            reported_leader: None,
            last_error: None,
            asked_to_wait: None,
        }
    }

    fn cfg(&self) -> &ElectorConfig {
        &self.elector.config
    }

    fn store(&self) -> &dyn LeaseStore {
        &*self.elector.store
    }

    fn publish(&self) {
        let state = ElectionState {
            phase: if self.leading { Phase::Leading } else { Phase::Candidate },
            leader: self.observed.as_ref().map(|r| r.holder_identity.clone()).filter(|h| !h.is_empty()),
            fencing_token: if self.leading { self.term_token } else { None },
            transitions: self.observed.as_ref().map_or(0, |r| r.leader_transitions),
            last_error: self.last_error.clone(),
        };
        self.elector.state.send_if_modified(|s| {
            let changed = *s != state;
            *s = state;
            changed
        });
    }

    /// When the observed lease expires: judged by when *we* saw the record change, never by its renewTime.
    fn observed_expiry(&self) -> Option<Instant> {
        self.observed.as_ref().map(|r| self.observed_time + Duration::from_secs(r.lease_duration_seconds.into()))
    }

    /// client-go's isLeaseValid.
    fn lease_valid(&self, now: Instant) -> bool {
        self.observed_expiry().is_some_and(|expiry| expiry > now)
    }

    /// Runs one store call, bounded by the call timeout and by `deadline`.
    async fn call<T>(&self, operation: &'static str, deadline: Option<Instant>, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let mut bound = self.cfg().call_timeout;
        if let Some(deadline) = deadline {
            bound = bound.min(deadline.saturating_duration_since(Instant::now()));
        }
        match tokio::time::timeout(bound, fut).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout { lock: self.cfg().lock.clone(), store: self.store().to_string(), operation, after: bound }),
        }
    }

    fn next_token(&self, old: Option<&LeaderElectionRecord>) -> FencingToken {
        let from_record = old.map_or(0, |r| r.fencing_token.map_or(0, FencingToken::get).max(u64::from(r.leader_transitions)));
        FencingToken(from_record.max(self.max_token_seen) + 1)
    }

    fn wrote(&mut self, rec: LeaderElectionRecord, version: Version) {
        if let Some(t) = rec.fencing_token {
            self.max_token_seen = self.max_token_seen.max(t.get());
        }
        self.observed = Some(rec);
        self.observed_version = Some(version);
        // The store may hold our record in another byte form; the next read resets observed time.
        self.observed_raw = None;
        self.observed_time = Instant::now();
    }

    /// client-go's tryAcquireOrRenew, remembering the last failure for the published state.
    async fn try_acquire_or_renew(&mut self, deadline: Option<Instant>, notified: Option<Observed>) -> Step {
        let step = self.try_acquire_or_renew_once(deadline, notified).await;
        self.last_error = match &step {
            Step::Failed(e) => Some(e.to_string()),
            _ => None,
        };
        self.asked_to_wait = match &step {
            Step::Failed(Error::RateLimited { retry_after, .. }) => *retry_after,
            _ => None,
        };
        step
    }

    /// `notified`: a record the store's change notifications just delivered, used in
    /// place of a `get` (a standby acting on a release costs no extra read).
    async fn try_acquire_or_renew_once(&mut self, deadline: Option<Instant>, notified: Option<Observed>) -> Step {
        let lock = self.cfg().lock.clone();
        let me = self.cfg().identity.clone();
        let lease = self.cfg().lease_seconds();
        let now = Utc::now();

        // 1. Fast path: a leader with a locally valid lease updates optimistically
        //    against the version it last wrote. Not for last-writer-wins stores, which
        //    must read to learn whether someone else wrote.
        if self.leading
            && self.atomic
            && self.lease_valid(Instant::now())
            && let (Some(old), Some(version)) = (self.observed.clone(), self.observed_version.clone())
        {
            let mut rec = old;
            rec.holder_identity.clone_from(&me);
            rec.lease_duration_seconds = lease;
            rec.renew_time = Some(now);
            rec.fencing_token = self.term_token;
            match self.call("update", deadline, self.store().update(&lock, &version, &rec)).await {
                Ok(v) => {
                    self.wrote(rec, v);
                    return Step::Held;
                }
                Err(e) => debug!(lock = %lock, identity = %me, error = %e, "optimistic renewal failed, falling back to the slow path"),
            }
        }
        if self.leading {
            self.metrics.slow_path.increment(1);
        }

        // 2. Obtain or create the record.
        let got = match notified {
            Some(seen) => Ok(Some(seen)),
            None => self.call("get", deadline, self.store().get(&lock)).await,
        };
        let seen = match got {
            Err(e) => return Step::Failed(e),
            Ok(None) => {
                let mut rec = LeaderElectionRecord::new(me, lease, now);
                let token = if self.leading { self.term_token } else { Some(self.next_token(self.observed.as_ref())) };
                rec.fencing_token = token;
                return match self.call("create", deadline, self.store().create(&lock, &rec)).await {
                    Ok(v) => {
                        self.wrote(rec, v);
                        Step::Held
                    }
                    Err(e) => Step::Failed(e),
                };
            }
            Ok(Some(seen)) => seen,
        };

        // 3. Remember the record and when it last changed, by our own clock.
        if self.observed_raw.as_ref() != Some(&seen.raw) {
            if let Some(t) = seen.record.fencing_token {
                self.max_token_seen = self.max_token_seen.max(t.get());
            }
            self.observed = Some(seen.record.clone());
            self.observed_raw = Some(seen.raw.clone());
            self.observed_time = Instant::now();
        }
        self.observed_version = Some(seen.version.clone());
        let old = seen.record;
        let held_by_me = old.holder_identity == me;
        if self.leading && !held_by_me {
            return Step::Lost(old.holder_identity);
        }
        // 4. Someone else holds a lease that has not expired as we observed it.
        if old.is_held() && !held_by_me && self.lease_valid(Instant::now()) {
            return Step::HeldBy(old.holder_identity);
        }

        // 5. Take or renew it.
        let mut rec = old.clone();
        rec.holder_identity.clone_from(&me);
        rec.lease_duration_seconds = lease;
        rec.renew_time = Some(now);
        if !held_by_me {
            rec.acquire_time = Some(now);
            rec.leader_transitions = old.leader_transitions.saturating_add(1);
        }
        rec.fencing_token = if self.leading { self.term_token } else { Some(self.next_token(Some(&old))) };
        match self.call("update", deadline, self.store().update(&lock, &seen.version, &rec)).await {
            Ok(v) => {
                self.wrote(rec, v);
                Step::Held
            }
            Err(e) => Step::Failed(e),
        }
    }

    /// client-go's maybeReportTransition.
    fn report_leader(&mut self) {
        let holder = self.observed.as_ref().map(|r| r.holder_identity.clone()).filter(|h| !h.is_empty());
        if let Some(r) = &self.observed {
            self.metrics.transitions.set(f64::from(r.leader_transitions));
        }
        if holder.is_some() && holder != self.reported_leader {
            self.reported_leader.clone_from(&holder);
            let holder = holder.unwrap_or_default();
            info!(lock = %self.cfg().lock, identity = %self.cfg().identity, leader = %holder, "new leader observed");
            if let Some(f) = &self.elector.callbacks.new_leader {
                f(&holder);
            }
        }
        self.publish();
    }

    /// Tries until the lease is ours; returns when the winning call started, or `None` on shutdown.
    async fn acquire(&mut self, shutdown: &CancellationToken) -> Option<Instant> {
        let mut changes = self.subscribe().await;
        let mut notified = None;
        loop {
            let started = Instant::now();
            let step = tokio::select! {
                biased;
                () = shutdown.cancelled() => return None,
                step = self.try_acquire_or_renew(None, notified.take()) => step,
            };
            self.report_leader();
            match step {
                Step::Held => return Some(started),
                Step::HeldBy(holder) => {
                    debug!(lock = %self.cfg().lock, identity = %self.cfg().identity, %holder, "lease is held and has not expired")
                }
                Step::Lost(holder) => debug!(lock = %self.cfg().lock, %holder, "lease taken"),
                Step::Failed(e) => {
                    warn!(lock = %self.cfg().lock, identity = %self.cfg().identity, error = %e, "failed to acquire the lease")
                }
            }
            let jitter = rand::rng().random::<f64>() * JITTER_FACTOR;
            let mut wake = Instant::now() + self.cfg().retry_period.mul_f64(1.0 + jitter);
            // A store that asked us to wait (a rate limit) is obeyed.
            if let Some(wait) = self.asked_to_wait.take() {
                wake = wake.max(Instant::now() + wait);
            }
            // Beyond client-go: look again the moment the observed lease expires
            // rather than up to a jittered retry period later.
            if let Some(expiry) = self.observed_expiry().filter(|e| *e > Instant::now()) {
                wake = wake.min(expiry);
            }
            // Beyond client-go: a store with change notifications wakes a standby the
            // moment the record changes (a release, a new leader) instead of at its next poll.
            loop {
                let change = async {
                    match changes.as_mut() {
                        Some(c) => c.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return None,
                    () = sleep_until(wake) => break,
                    seen = change => match seen {
                        Some(mut seen) => {
                            if let Some(c) = changes.as_mut() {
                                while let Ok(newer) = c.try_recv() {
                                    seen = newer;
                                }
                            }
                            if !self.is_stale(&seen) {
                                notified = Some(seen);
                                break;
                            }
                        }
                        None => {
                            debug!(lock = %self.cfg().lock, identity = %self.cfg().identity, "change notifications ended; polling");
                            changes = None;
                        }
                    },
                }
            }
        }
    }

    /// Subscribes to the store's change notifications, if it has them.
    async fn subscribe(&self) -> Option<crate::store::Changes> {
        if !self.store().capabilities().watch {
            return None;
        }
        match self.call("watch", None, self.store().watch(&self.cfg().lock)).await {
            Ok(changes) => changes,
            Err(e) => {
                debug!(lock = %self.cfg().lock, identity = %self.cfg().identity, error = %e, "no change notifications; polling");
                None
            }
        }
    }

    /// A notification older than the record already observed (by a store's monotonic versions).
    fn is_stale(&self, seen: &Observed) -> bool {
        let number = |v: &Version| v.as_str().parse::<u64>().ok();
        self.store().capabilities().monotonic_versions
            && matches!((number(&seen.version), self.observed_version.as_ref().and_then(number)), (Some(new), Some(old)) if new < old)
    }

    fn start_term(&mut self) -> Term {
        self.leading = true;
        // The winning write carried the new term's token.
        let token = self.observed.as_ref().and_then(|r| r.fencing_token).unwrap_or(FencingToken(self.max_token_seen));
        self.term_token = Some(token);
        let leadership =
            Leadership { lock: self.cfg().lock.clone(), identity: self.cfg().identity.clone(), token, cancel: CancellationToken::new() };
        self.metrics.leader.set(1.0);
        self.metrics.acquired.increment(1);
        self.elector.health.set(Some(self.observed_time + self.cfg().lease_duration));
        info!(lock = %self.cfg().lock, identity = %self.cfg().identity, fencing_token = %leadership.token, "became leader");
        self.report_leader();
        let task = self.elector.callbacks.started.as_ref().map(|f| tokio::spawn(f(leadership.clone())));
        Term { leadership, task }
    }

    /// Waits until `until`, watching for shutdown (which starts the drain) and for the work to finish.
    async fn wait(
        &self,
        until: Instant,
        term: &mut Term,
        shutdown: &CancellationToken,
        draining_until: &mut Option<Instant>,
    ) -> Option<TermEnd> {
        loop {
            let draining = draining_until.is_some();
            let drain_end = draining_until.unwrap_or(until);
            let wake = {
                let work = async {
                    match term.task.as_mut() {
                        Some(task) => task.await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    biased;
                    () = shutdown.cancelled(), if !draining => Wake::Shutdown,
                    done = work => Wake::WorkDone(done),
                    () = sleep_until(drain_end), if draining => Wake::DrainOver,
                    () = sleep_until(until) => Wake::Timer,
                }
            };
            match wake {
                Wake::Timer => return None,
                Wake::DrainOver => return Some(TermEnd::Shutdown),
                Wake::Shutdown => {
                    info!(lock = %self.cfg().lock, identity = %self.cfg().identity, "shutting down: draining the leader's work");
                    term.leadership.cancel.cancel();
                    *draining_until = Some(Instant::now() + self.cfg().drain_timeout);
                    if term.task.is_none() {
                        return Some(TermEnd::Shutdown);
                    }
                }
                Wake::WorkDone(result) => {
                    term.task = None;
                    if let Err(e) = result {
                        warn!(lock = %self.cfg().lock, identity = %self.cfg().identity, error = %e, "the leader's work failed");
                    }
                    if draining {
                        return Some(TermEnd::Shutdown);
                    }
                }
            }
        }
    }

    /// client-go's renew loop, with the deadline counted from the last successful renewal.
    async fn renew(&mut self, term: &mut Term, acquired_at: Instant, shutdown: &CancellationToken) -> TermEnd {
        let mut last_ok = acquired_at;
        let mut draining_until = None;
        loop {
            let next = Instant::now() + self.cfg().retry_period;
            if let Some(end) = self.wait(next, term, shutdown, &mut draining_until).await {
                return end;
            }
            loop {
                let deadline = last_ok + self.cfg().renew_deadline;
                if Instant::now() >= deadline {
                    return TermEnd::Lost(format!("no renewal succeeded within the renew deadline ({:?})", self.cfg().renew_deadline));
                }
                let started = Instant::now();
                let step = self.try_acquire_or_renew(Some(deadline), None).await;
                self.report_leader();
                match step {
                    Step::Held => {
                        last_ok = started;
                        self.metrics.renew_seconds.record(started.elapsed().as_secs_f64());
                        let expires = self.observed_time + self.cfg().lease_duration;
                        self.metrics.lease_remaining.set(expires.saturating_duration_since(Instant::now()).as_secs_f64());
                        self.elector.health.set(Some(expires));
                        break;
                    }
                    Step::Lost(holder) | Step::HeldBy(holder) => return TermEnd::Lost(format!("{holder:?} holds the lease now")),
                    Step::Failed(e) => {
                        warn!(lock = %self.cfg().lock, identity = %self.cfg().identity, error = %e, "failed to renew the lease");
                        let wait = self.asked_to_wait.take().unwrap_or_default().max(self.cfg().retry_period);
                        let retry_at = (Instant::now() + wait).min(deadline);
                        if let Some(end) = self.wait(retry_at, term, shutdown, &mut draining_until).await {
                            return end;
                        }
                    }
                }
            }
        }
    }

    /// Steps down: signals the work, drains it (bounded), releases on shutdown, reports.
    async fn end_term(&mut self, mut term: Term, end: &TermEnd) {
        term.leadership.cancel.cancel();
        self.leading = false;
        self.term_token = None;
        self.metrics.leader.set(0.0);
        self.elector.health.set(None);
        if let TermEnd::Lost(reason) = end {
            self.metrics.lost.increment(1);
            warn!(lock = %self.cfg().lock, identity = %self.cfg().identity, %reason, "lost leadership");
        }
        self.publish();
        if let Some(mut task) = term.task.take() {
            let grace = match end {
                TermEnd::Lost(_) => self.cfg().drain_timeout,
                TermEnd::Shutdown => Duration::ZERO,
            };
            if tokio::time::timeout(grace, &mut task).await.is_err() {
                warn!(lock = %self.cfg().lock, identity = %self.cfg().identity, "the leader's work did not finish within the drain timeout; aborting it");
                task.abort();
            }
        }
        if matches!(end, TermEnd::Shutdown) && self.cfg().release_on_cancel {
            self.release().await;
        }
        if let Some(f) = &self.elector.callbacks.stopped {
            f();
        }
    }

    /// client-go's release, retried on conflict and bounded by the renew deadline.
    async fn release(&mut self) -> bool {
        let lock = self.cfg().lock.clone();
        let me = self.cfg().identity.clone();
        let deadline = Instant::now() + self.cfg().renew_deadline;
        while Instant::now() < deadline {
            let outcome = match self.call("get", Some(deadline), self.store().get(&lock)).await {
                Ok(None) => return false,
                Ok(Some(seen)) if seen.record.holder_identity != me => return true,
                Ok(Some(seen)) => {
                    let now = Utc::now();
                    let mut rec = seen.record;
                    rec.holder_identity = String::new();
                    rec.lease_duration_seconds = 1;
                    rec.acquire_time = Some(now);
                    rec.renew_time = Some(now);
                    match self.call("update", Some(deadline), self.store().update(&lock, &seen.version, &rec)).await {
                        Ok(v) => {
                            self.wrote(rec, v);
                            info!(lock = %lock, identity = %me, "released the lease");
                            self.publish();
                            return true;
                        }
                        Err(e) => e,
                    }
                }
                Err(e) => e,
            };
            // A conflict means the record moved under us: re-read at once (after a breath).
            let pause = if outcome.is_conflict() {
                debug!(lock = %lock, identity = %me, "release conflicted; retrying");
                self.cfg().retry_period / 20
            } else {
                warn!(lock = %lock, identity = %me, error = %outcome, "failed to release the lease");
                self.cfg().retry_period / 4
            };
            sleep_until((Instant::now() + pause).min(deadline)).await;
        }
        false
    }
}
