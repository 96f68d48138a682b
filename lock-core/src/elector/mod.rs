//! The leader elector: client-go's `tools/leaderelection` algorithm, step for step,
//! with fencing tokens, re-campaigning, drain-then-release, health and metrics.

mod config;
pub mod metrics;
mod registration;
#[cfg(test)]
mod sim;
mod state;
#[cfg(test)]
mod tests;

/// Where the simulation's mutants take a safety mechanism out. Outside this crate's own
/// tests these are the identity and `false`: no build a user gets can switch them.
mod mutant {
    #[cfg(test)]
    pub(super) use super::sim::{absent_is_free, origin, unit_random};

    /// A number in [0, 1) for client-go's jitter (the simulation draws it from its seed).
    #[cfg(not(test))]
    pub(super) fn unit_random() -> f64 {
        use rand::Rng;
        rand::rng().random()
    }

    /// The origin of a term's deadline: the start of its winning write.
    #[cfg(not(test))]
    #[inline]
    pub(super) fn origin(write_started: crate::clock::Stamp) -> crate::clock::Stamp {
        write_started
    }

    /// Whether a candidate leads at once on a lock it found without a record.
    #[cfg(not(test))]
    #[inline]
    pub(super) fn absent_is_free() -> bool {
        false
    }
}

pub use config::{
    Candidacy, DEFAULT_LEASE_DURATION, DEFAULT_RENEW_DEADLINE, DEFAULT_RETRY_PERIOD, ElectorBuilder, ElectorConfig, JITTER_FACTOR,
    MAX_IDENTITY_LEN, MAX_LEASE_DURATION, MIN_RETRY_PERIOD, Timing, check_identity,
};
pub use state::{ElectionState, Health, Leadership, LeaseDeadlines, Phase, Unhealthy};

use crate::{
    clock::{self, Stamp},
    display::Escaped,
    error::{Error, Result},
    name::LockName,
    record::{FencingToken, LeaderElectionRecord},
    store::{LeaseStore, Observed, SharedStore, Version},
};
use bytes::Bytes;
use chrono::Utc;
use metrics::ElectorMetrics;
use std::{future::Future, pin::Pin, sync::Arc, time::Duration};
use tokio::{
    sync::watch,
    task::{JoinError, JoinHandle},
    time::{Instant, sleep, sleep_until},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

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
#[derive(Debug, Clone)]
pub enum ElectionEnd {
    /// The shutdown token was cancelled (and the lease released if configured).
    Shutdown,
    /// Leadership was lost and re-campaigning is off.
    LostLeadership {
        /// Why: the renew deadline passed, or who took the lease.
        reason: String,
    },
    /// The store answered with an error that retrying cannot fix (a missing table,
    /// refused credentials, a record the store cannot hold): see
    /// [`Error::is_permanent`]. A leader stepped down first.
    Failed {
        /// The error.
        error: Arc<Error>,
    },
}

impl PartialEq for ElectionEnd {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Shutdown, Self::Shutdown) => true,
            (Self::LostLeadership { reason: a }, Self::LostLeadership { reason: b }) => a == b,
            (Self::Failed { error: a }, Self::Failed { error: b }) => a.to_string() == b.to_string(),
            _ => false,
        }
    }
}

impl Eq for ElectionEnd {}

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
    /// The live candidates as this candidate's last registration refresh found them.
    candidates: watch::Sender<Vec<crate::roster::Candidate>>,
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
        Self {
            store,
            config,
            callbacks,
            state: watch::Sender::new(ElectionState::initial()),
            health,
            candidates: watch::Sender::new(Vec::new()),
        }
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

    /// The live candidates of the lock's roster, as each registration refresh finds
    /// them (empty unless [`ElectorBuilder::register`] was called): no store call of its own.
    #[must_use]
    pub fn candidates(&self) -> watch::Receiver<Vec<crate::roster::Candidate>> {
        self.candidates.subscribe()
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
        let mut registration = self.config.candidacy.map(|candidacy| {
            let stop = CancellationToken::new();
            let task = tokio::spawn(registration::keep_registered(
                self.store.clone(),
                self.config.clone(),
                candidacy,
                self.state.subscribe(),
                self.candidates.clone(),
                stop.clone(),
            ));
            registration::Registered { stop, task: Some(task) }
        });
        let mut run = Campaign::new(&self);
        let end = loop {
            run.publish();
            let acquired_at = match run.acquire(&shutdown).await {
                Acquired::Yes(at) => at,
                Acquired::Shutdown => break ElectionEnd::Shutdown,
                Acquired::Failed(error) => break ElectionEnd::Failed { error: Arc::new(error) },
            };
            let mut term = run.start_term(acquired_at);
            let end = run.renew(&mut term, acquired_at, &shutdown).await;
            run.end_term(term, &end).await;
            match end {
                TermEnd::Shutdown => break ElectionEnd::Shutdown,
                TermEnd::Failed(error) => break ElectionEnd::Failed { error: Arc::new(error) },
                TermEnd::Lost(_) | TermEnd::HandOver(_) if shutdown.is_cancelled() => break ElectionEnd::Shutdown,
                TermEnd::Lost(reason) if !self.config.recampaign => break ElectionEnd::LostLeadership { reason },
                TermEnd::HandOver(to) if !self.config.recampaign => {
                    break ElectionEnd::LostLeadership { reason: format!("handed over to {}", Escaped(&to)) };
                }
                TermEnd::Lost(_) | TermEnd::HandOver(_) => {}
            }
        };
        if let Some(registered) = &mut registration {
            registered.end().await;
        }
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
    /// The lock had no record: this candidate claimed it, and may lead on the claim
    /// only once it has stood for a lease (see [`Campaign::absent`]).
    Vacant,
    /// A store call failed.
    Failed(Error),
    /// The lock was released for a hand-over to this other candidate: it is left to it
    /// for a lease.
    Deferred(String),
}

enum TermEnd {
    Shutdown,
    Lost(String),
    Failed(Error),
    /// The leader's work stopped for a hand-over to this candidate.
    HandOver(String),
}

enum Acquired {
    Yes(Stamp),
    Shutdown,
    Failed(Error),
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
    Deadline,
}

/// Re-subscribing to a store's change feed after it ended: each loss and each recovery
/// said once, attempts spaced from one retry period up to four.
struct FeedRetry {
    base: Duration,
    backoff: Duration,
    next: Instant,
    lost: bool,
}

impl FeedRetry {
    fn new(base: Duration) -> Self {
        Self { base, backoff: base, next: Instant::now(), lost: false }
    }

    fn due(&self) -> bool {
        Instant::now() >= self.next
    }

    fn lost(&mut self, lock: &LockName, store: &dyn LeaseStore) {
        if !self.lost {
            warn!(lock = %lock, store = %store, "change notifications from the store ended (a restart or a dropped connection): polling every retry period and subscribing again until they are back");
            self.lost = true;
        }
        self.backoff = self.base;
        self.next = clock::add(Instant::now(), self.base);
    }

    fn attempted(&mut self, ok: bool, lock: &LockName, store: &dyn LeaseStore) {
        if ok {
            if self.lost {
                info!(lock = %lock, store = %store, "change notifications are back");
            }
            self.lost = false;
            self.backoff = self.base;
        } else {
            self.next = clock::add(Instant::now(), self.backoff);
            self.backoff = (self.backoff * 2).min(self.base * 4);
        }
    }
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
    /// The tokens of this candidate's latest writes that tried to take the lease (its
    /// terms among them): a record carrying one was written by this process even if the
    /// answer was lost, or a later attempt failed — not by a twin with its identity.
    own_tokens: std::collections::VecDeque<FencingToken>,
    /// The current term's deadlines, shared with its [`Leadership`].
    deadlines: Option<watch::Sender<LeaseDeadlines>>,
    /// A lease under our identity that we did not write, as first seen.
    own_identity_seen: Option<OwnIdentitySighting>,
    max_token_seen: u64,
    /// When this candidate first found the lock without a record (reset when one is
    /// seen): each gap is reported once.
    absent_since: Option<Instant>,
    /// The last record seen before it vanished, for the log and the next record's counts.
    vanished: Option<LeaderElectionRecord>,
    reported_leader: Option<String>,
    /// The last failed store call, shown in the published state until a call succeeds.
    last_error: Option<String>,
    /// How long the store last asked us to wait before calling again.
    asked_to_wait: Option<Duration>,
    /// A run of failed attempts to acquire: said when it starts (and when the kind of
    /// failure changes) and when it ends, with a count, not at every retry.
    trouble: Option<Trouble>,
    /// When the last write of a tryAcquireOrRenew started: a term's deadline counts from
    /// the start of its winning write, which no standby can have seen earlier.
    write_started: Option<Stamp>,
    /// The candidate this leader is handing over to, once asked.
    handing_over: Option<String>,
}

/// A term under this candidate's identity that it did not write: its token, its bytes
/// when first seen, and whether it has been reported as another process's (once it
/// changed: renewed by someone alive).
#[derive(Debug)]
struct OwnIdentitySighting {
    token: Option<FencingToken>,
    first: Bytes,
    reported: bool,
}

/// A run of failed attempts to acquire the lease.
#[derive(Debug)]
struct Trouble {
    since: Instant,
    count: u32,
    kind: std::mem::Discriminant<Error>,
}

impl Trouble {
    /// Counts a failure; whether it begins a run (or a new kind of failure) to be said.
    fn begins(run: &mut Option<Self>, e: &Error) -> bool {
        let kind = std::mem::discriminant(e);
        match run {
            Some(t) if t.kind == kind => {
                t.count = t.count.saturating_add(1);
                false
            }
            Some(t) => {
                t.count = t.count.saturating_add(1);
                t.kind = kind;
                true
            }
            None => {
                *run = Some(Self { since: Instant::now(), count: 1, kind });
                true
            }
        }
    }
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
            own_tokens: std::collections::VecDeque::new(),
            deadlines: None,
            own_identity_seen: None,
            max_token_seen: 0,
            absent_since: None,
            vanished: None,
            reported_leader: None,
            last_error: None,
            asked_to_wait: None,
            trouble: None,
            write_started: None,
            handing_over: None,
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
            // A claim is not a term: its holder does not lead (yet).
            leader: self.observed.as_ref().filter(|r| !r.claim).map(|r| r.holder_identity.clone()).filter(|h| !h.is_empty()),
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

    /// When the observed lease expires: judged by when *we* saw the record change, never
    /// by its renewTime. A lock with no record is treated as held by someone unknown
    /// since we first saw it absent (see [`Self::vacancy_wait`]).
    fn observed_expiry(&self) -> Option<Instant> {
        self.observed.as_ref().map(|r| clock::add(self.observed_time, Duration::from_secs(r.lease_duration_seconds.into())))
    }

    /// How long a claim must stand before its candidate may lead: the longest lease it
    /// knows of (its own, the vanished record's).
    fn vacancy_wait(&self) -> Duration {
        let last = self.vanished.as_ref().map_or(0, |r| r.lease_duration_seconds);
        self.cfg().lease_duration.max(Duration::from_secs(last.into()))
    }

    /// client-go's isLeaseValid.
    fn lease_valid(&self, now: Instant) -> bool {
        self.observed_expiry().is_some_and(|expiry| expiry > now)
    }

    /// Runs one store call, bounded by the call timeout and by `deadline`.
    async fn call<T>(&self, operation: &'static str, deadline: Option<Stamp>, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let mut bound = self.cfg().call_timeout;
        if let Some(deadline) = deadline {
            bound = bound.min(deadline.remaining());
        }
        crate::error::bounded(&self.cfg().lock, &self.store(), operation, bound, fut).await
    }

    /// The token a write carries: a leader's term's, else a new term's (above `old`'s and
    /// every token seen), remembered as this candidate's own before it is sent.
    fn token_to_write(&mut self, old: Option<&LeaderElectionRecord>) -> Result<Option<FencingToken>> {
        if self.leading {
            return Ok(self.term_token);
        }
        let token = self.next_token(old)?;
        self.attempted(Some(token));
        Ok(Some(token))
    }

    /// The token of a new term: above every token seen and the wall clock, never wrapped.
    fn next_token(&self, old: Option<&LeaderElectionRecord>) -> Result<FencingToken> {
        let from_record = old.map_or(0, |r| r.fencing_token.map_or(0, FencingToken::get).max(u64::from(r.leader_transitions)));
        let highest = from_record.max(self.max_token_seen);
        FencingToken::next_after(highest, std::time::SystemTime::now()).ok_or_else(|| Error::Corrupt {
            lock: self.cfg().lock.clone(),
            store: self.store().to_string(),
            detail: format!("fencing token {highest} cannot grow any further, so no new term can start; reset the record by hand"),
        })
    }

    fn wrote(&mut self, rec: LeaderElectionRecord, version: Version) {
        if let Some(t) = rec.fencing_token {
            self.max_token_seen = self.max_token_seen.max(t.get());
        }
        self.observed = Some(rec);
        self.observed_version = Some(version);
        self.absent_since = None;
        self.vanished = None;
        // The store may hold our record in another byte form; the next read resets observed time.
        self.observed_raw = None;
        self.observed_time = Instant::now();
    }

    /// client-go's tryAcquireOrRenew, remembering the last failure for the published state.
    async fn try_acquire_or_renew(&mut self, deadline: Option<Stamp>, notified: Option<Observed>) -> Step {
        self.write_started = None;
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

    /// A valid lease under this candidate's identity that it did not write: an earlier
    /// run of it (a restart: its record stops changing) or another process given the
    /// same identity (its record goes on changing). Said once at first sight, as what
    /// it most often is; reported as a twin, once, if it is renewed while watched.
    fn own_identity_held(&mut self, rec: &LeaderElectionRecord) {
        let raw = self.observed_raw.clone().unwrap_or_default();
        match &mut self.own_identity_seen {
            Some(seen) if seen.token == rec.fencing_token => {
                if seen.first != raw && !seen.reported {
                    seen.reported = true;
                    error!(
                        lock = %self.cfg().lock, store = %self.store(), identity = %Escaped(&self.cfg().identity), record_token = ?rec.fencing_token,
                        "another process holds this lock under this candidate's own identity and renews it: give each candidate an identity of its own (the pod or host name); this one waits for that lease to expire"
                    );
                }
            }
            _ => {
                self.own_identity_seen = Some(OwnIdentitySighting { token: rec.fencing_token, first: raw, reported: false });
                info!(
                    lock = %self.cfg().lock, store = %self.store(), identity = %Escaped(&self.cfg().identity), record_token = ?rec.fencing_token,
                    "the lease is held under this candidate's own identity, by an earlier run of it (a restart) or by another process: waiting for it to expire (another process is reported if it renews it)"
                );
            }
        }
    }

    /// Whether a lease under this candidate's identity was reported as another process's.
    #[cfg(test)]
    fn twin_reported(&self) -> bool {
        self.own_identity_seen.as_ref().is_some_and(|s| s.reported)
    }

    /// Remembers a token this candidate wrote, or tried to (the latest few).
    fn attempted(&mut self, token: Option<FencingToken>) {
        const REMEMBERED: usize = 16;
        if let Some(t) = token
            && !self.own_tokens.contains(&t)
        {
            if self.own_tokens.len() == REMEMBERED {
                self.own_tokens.pop_front();
            }
            self.own_tokens.push_back(t);
        }
    }

    /// Whether a record naming this candidate was written by this process: it carries
    /// the token of the current term, or, before one starts, one of the tokens this
    /// candidate last wrote or tried (a write whose answer was lost, or an ended term
    /// after a failed attempt). Another process started with the same identity writes
    /// its own, higher token, and so does a client-go writer's record lack one: either
    /// is someone else.
    fn written_by_us(&self, rec: &LeaderElectionRecord) -> bool {
        rec.holder_identity == self.cfg().identity
            && rec.fencing_token.is_some_and(|t| if self.leading { Some(t) == self.term_token } else { self.own_tokens.contains(&t) })
    }

    /// `notified`: a record the store's change notifications just delivered, used in
    /// place of a `get` (a standby acting on a release costs no extra read).
    async fn try_acquire_or_renew_once(&mut self, deadline: Option<Stamp>, notified: Option<Observed>) -> Step {
        // 1. Fast path: a leader with a locally valid lease updates optimistically
        //    against the version it last wrote.
        if let Some(step) = self.renew_optimistically(deadline).await {
            return step;
        }
        if self.leading {
            self.metrics.slow_path.increment(1);
        }

        // 2. Obtain or create the record.
        let got = match notified {
            Some(seen) => Ok(Some(seen)),
            None => self.call("get", deadline, self.store().get(&self.cfg().lock)).await,
        };
        let seen = match got {
            Err(e) => return Step::Failed(e),
            Ok(None) => return self.absent(deadline).await,
            Ok(Some(seen)) => seen,
        };

        // 3. Remember the record and when it last changed, by our own clock; a leader
        //    learns whether it still holds its term.
        self.observe(&seen);
        let old = &seen.record;
        let held_by_me = old.holder_identity == self.cfg().identity;
        let ours = self.written_by_us(old);
        // Another candidate's claim while this leader is inside its term: the lock's
        // record vanished under it. The claimant leads only if its claim stands for a
        // lease, so this leader writes its record back over it and keeps its term.
        let overwrite_claim = self.leading && !ours && old.claim && !held_by_me;
        if self.leading && !ours && !overwrite_claim {
            return self.deposed(old, held_by_me);
        }
        if overwrite_claim {
            warn!(
                lock = %self.cfg().lock, store = %self.store(), identity = %Escaped(&self.cfg().identity), claimant = %Escaped(&old.holder_identity),
                "the lock's record vanished under this leader and another candidate claimed it: this leader is inside its term and writes its record back"
            );
        }
        // 4. Someone else holds a lease that has not expired as we observed it; our own
        //    claim waits out its lease the same way.
        if !self.leading && ours && old.claim && self.lease_valid(Instant::now()) {
            return Step::Vacant;
        }
        if old.is_held() && !ours && !self.leading && self.lease_valid(Instant::now()) {
            if held_by_me {
                self.own_identity_held(old);
            }
            return Step::HeldBy(old.holder_identity.clone());
        }
        // A hand-over to another candidate: the lock is left to it for a lease from
        // when this candidate saw the record change (the release); if the holder never
        // released (paused, cut off), for a lease after its lease, which the preferred
        // candidate may take at once.
        let left_for = if old.is_held() { self.cfg().lease_duration.saturating_mul(2) } else { self.cfg().lease_duration };
        if !self.leading
            && let Some(preferred) = self.preferred_other(old)
            && Instant::now() < clock::add(self.observed_time, left_for)
        {
            return Step::Deferred(preferred);
        }

        // 5. Take or renew it (a confirmed claim is a term from now on).
        let now = Utc::now();
        let mut rec = old.clone();
        if !self.leading {
            // A new term: a hand-over to this candidate is done with this write, and
            // one to a candidate that did not take the lock within a lease is void.
            rec.preferred_holder = None;
        }
        rec.holder_identity.clone_from(&self.cfg().identity);
        rec.lease_duration_seconds = self.cfg().lease_seconds();
        rec.renew_time = Some(now);
        rec.claim = false;
        if !held_by_me && !overwrite_claim {
            rec.acquire_time = Some(now);
            rec.leader_transitions = old.leader_transitions.saturating_add(1);
        }
        if old.claim && !self.leading {
            rec.acquire_time = Some(now);
        }
        rec.fencing_token = match self.token_to_write(Some(old)) {
            Ok(t) => t,
            Err(e) => return Step::Failed(e),
        };
        self.write_started = Some(Stamp::now());
        match self.call("update", deadline, self.store().update(&self.cfg().lock, &seen.version, &rec)).await {
            Ok(v) => {
                self.wrote(rec, v);
                Step::Held
            }
            Err(e) => Step::Failed(e),
        }
    }

    /// A leader with a locally valid lease renews against the version it last wrote,
    /// without reading first; `None` if it cannot (not leading, a last-writer-wins store,
    /// which must read to learn whether someone else wrote) or the write failed.
    async fn renew_optimistically(&mut self, deadline: Option<Stamp>) -> Option<Step> {
        if !self.leading || !self.atomic || !self.lease_valid(Instant::now()) {
            return None;
        }
        let (mut rec, version) = (self.observed.clone()?, self.observed_version.clone()?);
        rec.holder_identity.clone_from(&self.cfg().identity);
        rec.lease_duration_seconds = self.cfg().lease_seconds();
        rec.renew_time = Some(Utc::now());
        rec.fencing_token = self.term_token;
        self.write_started = Some(Stamp::now());
        match self.call("update", deadline, self.store().update(&self.cfg().lock, &version, &rec)).await {
            Ok(v) => {
                self.wrote(rec, v);
                Some(Step::Held)
            }
            Err(e) => {
                debug!(lock = %self.cfg().lock, identity = %Escaped(&self.cfg().identity), error = %e, "optimistic renewal failed, falling back to the slow path");
                None
            }
        }
    }

    /// Remembers a record read from the store, and when it last changed by our clock.
    fn observe(&mut self, seen: &Observed) {
        self.absent_since = None;
        self.vanished = None;
        // The first read of a record we wrote ourselves: its bytes are new to us, but it
        // did not change since we wrote it, and its lease runs from our write.
        if self.observed_raw.is_none() && self.observed.as_ref() == Some(&seen.record) {
            self.observed_raw = Some(seen.raw.clone());
        }
        if self.observed_raw.as_ref() != Some(&seen.raw) {
            if let Some(t) = seen.record.fencing_token {
                self.max_token_seen = self.max_token_seen.max(t.get());
            }
            self.observed = Some(seen.record.clone());
            self.observed_raw = Some(seen.raw.clone());
            self.observed_time = Instant::now();
        }
        self.observed_version = Some(seen.version.clone());
    }

    /// The candidate a record's `preferredHolder` names, if it is someone else.
    fn preferred_other(&self, rec: &LeaderElectionRecord) -> Option<String> {
        rec.preferred_holder.clone().filter(|p| !p.is_empty() && *p != self.cfg().identity)
    }

    /// A leader found a record that is not its term's: who holds the lock now.
    fn deposed(&self, old: &LeaderElectionRecord, held_by_me: bool) -> Step {
        let me = &self.cfg().identity;
        if held_by_me {
            error!(
                lock = %self.cfg().lock, store = %self.store(), identity = %Escaped(me), fencing_token = ?self.term_token, record_token = ?old.fencing_token,
                "another process holds this lock under this candidate's own identity: stepping down (identities must be unique)"
            );
            return Step::Lost(format!("another process using the identity {}", Escaped(me)));
        }
        if !old.is_held() {
            return Step::Lost("no one (the lease was released behind this leader's back):".into());
        }
        Step::Lost(Escaped(&old.holder_identity).to_string())
    }

    /// The lock has no record. Absent means unknown, not free: a record may have been
    /// deleted, flushed or restored away under a holder that is still inside its term.
    /// A leader within its own deadline writes its record again and goes on. Anyone
    /// else writes a *claim* at once and leads only after the claim has stood for a
    /// lease ([`Self::vacancy_wait`]) and a compare-and-set on its version still
    /// finds it: every term whose record was lost wrote its last renewal before the
    /// loss, so before the claim, and has ended by then; a claim that lost a race
    /// (another candidate's record, even one lost again since) fails its
    /// compare-and-set. Checked by `lock-model`: waiting on the gap instead and then
    /// leading on the created record lets a candidate that saw the gap before another
    /// term began lead beside it once that term's record is lost too.
    async fn absent(&mut self, deadline: Option<Stamp>) -> Step {
        let (lock, me) = (self.cfg().lock.clone(), self.cfg().identity.clone());
        if self.absent_since.is_none() {
            self.absent_since = Some(Instant::now());
            self.observed_raw = None;
            // A re-created record may start its versions again: none of the old ones is newer.
            self.observed_version = None;
            self.vanished = self.observed.take().or_else(|| self.vanished.take());
            let wait = self.vacancy_wait();
            match &self.vanished {
                Some(last) => warn!(
                    lock = %lock, store = %self.store(), identity = %Escaped(&me), last_holder = %Escaped(&last.holder_identity),
                    last_token = ?last.fencing_token.map(FencingToken::get),
                    "the lock's record vanished from the store (deleted, flushed, evicted or restored from a backup); {}",
                    if self.leading { "this leader writes it again within its term".to_string() }
                    else { format!("claiming it: a claim is led on only after it has stood for {wait:?}, in case the last holder is still in its term") }
                ),
                None if !self.leading => info!(
                    lock = %lock, store = %self.store(), identity = %Escaped(&me),
                    "the lock has no record: claiming it, and leading only after the claim has stood for {wait:?}, in case a holder's record was lost"
                ),
                None => {}
            }
        }
        let mut rec = LeaderElectionRecord::new(me.clone(), self.cfg().lease_seconds(), Utc::now());
        if !self.leading {
            rec.claim = true;
            rec.lease_duration_seconds = u32::try_from(self.vacancy_wait().as_secs()).unwrap_or(u32::MAX);
        }
        if let Some(last) = &self.vanished {
            rec.leader_transitions = last.leader_transitions;
            if self.leading {
                rec.acquire_time = last.acquire_time;
            } else if last.holder_identity != me {
                rec.leader_transitions = last.leader_transitions.saturating_add(1);
            }
        }
        rec.fencing_token = match self.token_to_write(self.vanished.clone().as_ref()) {
            Ok(t) => t,
            Err(e) => return Step::Failed(e),
        };
        self.write_started = Some(Stamp::now());
        match self.call("create", deadline, self.store().create(&lock, &rec)).await {
            Ok(v) => {
                let leading = self.leading;
                if leading && self.vanished.is_some() {
                    info!(lock = %lock, store = %self.store(), identity = %Escaped(&me), fencing_token = ?rec.fencing_token.map(FencingToken::get), "wrote the lock's record again");
                }
                // A claim is observed like anyone's record: its lease runs from now.
                self.wrote(rec, v);
                if leading || mutant::absent_is_free() { Step::Held } else { Step::Vacant }
            }
            Err(e) => Step::Failed(e),
        }
    }

    /// client-go's maybeReportTransition.
    fn report_leader(&mut self) {
        let holder = self.observed.as_ref().filter(|r| !r.claim).map(|r| r.holder_identity.clone()).filter(|h| !h.is_empty());
        if let Some(r) = &self.observed {
            self.metrics.transitions.set(f64::from(r.leader_transitions));
        }
        if holder.is_some() && holder != self.reported_leader {
            self.reported_leader.clone_from(&holder);
            let holder = holder.unwrap_or_default();
            info!(lock = %self.cfg().lock, identity = %Escaped(&self.cfg().identity), leader = %Escaped(&holder), "new leader observed");
            if let Some(f) = &self.elector.callbacks.new_leader {
                f(&holder);
            }
        }
        self.publish();
    }

    /// Tries until the lease is ours; returns when the winning call started.
    async fn acquire(&mut self, shutdown: &CancellationToken) -> Acquired {
        let mut changes = self.subscribe().await;
        let mut feed = FeedRetry::new(self.cfg().retry_period);
        let mut notified = None;
        loop {
            // A feed that ended (the store restarted, the connection dropped) is
            // subscribed to again, with backoff, while polling goes on.
            if changes.is_none() && self.store().capabilities().watch && feed.due() {
                changes = self.subscribe().await;
                feed.attempted(changes.is_some(), &self.cfg().lock, self.store());
            }
            let started = Stamp::now();
            let step = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Acquired::Shutdown,
                step = self.try_acquire_or_renew(None, notified.take()) => step,
            };
            self.report_leader();
            let failed = matches!(step, Step::Failed(_));
            match step {
                Step::Held => {
                    let origin = mutant::origin(self.write_started.take().unwrap_or(started));
                    // A win answered after the term it would start had already ended (the
                    // candidate was paused, the answer slow): no term; the record is ours,
                    // and the next try renews it with a fresh deadline.
                    if !origin.after(self.cfg().renew_deadline).has_passed() {
                        return Acquired::Yes(origin);
                    }
                    debug!(lock = %self.cfg().lock, identity = %Escaped(&self.cfg().identity), "won the lease after the term it would start had ended: trying again");
                }
                Step::HeldBy(holder) => {
                    debug!(lock = %self.cfg().lock, identity = %Escaped(&self.cfg().identity), holder = %Escaped(&holder), "lease is held and has not expired")
                }
                Step::Lost(holder) => debug!(lock = %self.cfg().lock, %holder, "lease taken"),
                Step::Deferred(to) => {
                    debug!(lock = %self.cfg().lock, identity = %Escaped(&self.cfg().identity), to = %Escaped(&to), "the lock is being handed over to another candidate: leaving it to it for a lease")
                }
                Step::Vacant => {
                    debug!(lock = %self.cfg().lock, identity = %Escaped(&self.cfg().identity), "no record yet: waiting for any lost term to end")
                }
                Step::Failed(e) if e.is_permanent() && self.cfg().stop_on_permanent_error => {
                    error!(lock = %self.cfg().lock, store = %self.store(), identity = %Escaped(&self.cfg().identity), error = %e, "cannot campaign: the store refused for good");
                    return Acquired::Failed(e);
                }
                // Another candidate's write got there first: the algorithm working, not a fault.
                Step::Failed(e @ (Error::Conflict { .. } | Error::AlreadyExists { .. })) => {
                    debug!(lock = %self.cfg().lock, identity = %Escaped(&self.cfg().identity), error = %e, "lost the race for the lease")
                }
                Step::Failed(e) if !Trouble::begins(&mut self.trouble, &e) => {
                    debug!(lock = %self.cfg().lock, identity = %Escaped(&self.cfg().identity), error = %e, "failed to acquire the lease, again")
                }
                Step::Failed(e @ Error::Timeout { .. }) => warn!(
                    lock = %self.cfg().lock, store = %self.store(), identity = %Escaped(&self.cfg().identity), error = %e,
                    "failed to acquire the lease: a store call took longer than the call timeout ({:?}); if the store is slow rather than down, raise the renew deadline (and the lease above it). Retrying every retry period; said again when the store answers",
                    self.cfg().call_timeout
                ),
                Step::Failed(e) => warn!(
                    lock = %self.cfg().lock, store = %self.store(), identity = %Escaped(&self.cfg().identity), error = %e,
                    "failed to acquire the lease: retrying every retry period; said again when the store answers"
                ),
            }
            if !failed && let Some(ended) = self.trouble.take() {
                info!(
                    lock = %self.cfg().lock, store = %self.store(), identity = %Escaped(&self.cfg().identity), failures = ended.count,
                    "the store answers again after {} failed attempts over {:.1?}", ended.count, ended.since.elapsed()
                );
            }
            let jitter = mutant::unit_random() * JITTER_FACTOR;
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
            // A lost feed is subscribed to again when its backoff is over, not at the
            // next jittered poll after it.
            if changes.is_none() && self.store().capabilities().watch {
                wake = wake.min(feed.next.max(Instant::now()));
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
                        () = shutdown.cancelled() => return Acquired::Shutdown,
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
                            feed.lost(&self.cfg().lock, self.store());
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
        self.store().capabilities().monotonic_versions
            && matches!((seen.version.ordinal(), self.observed_version.as_ref().and_then(Version::ordinal)), (Some(new), Some(old)) if new < old)
    }

    fn start_term(&mut self, acquired: Stamp) -> Term {
        self.leading = true;
        // The winning write carried the new term's token.
        let token = self.observed.as_ref().and_then(|r| r.fencing_token).unwrap_or(FencingToken(self.max_token_seen));
        self.term_token = Some(token);
        let deadlines = LeaseDeadlines::from_renewal(acquired, &self.cfg().timing());
        let (tx, rx) = watch::channel(deadlines);
        self.deadlines = Some(tx);
        let leadership = Leadership {
            lock: self.cfg().lock.clone(),
            store: self.store().to_string().into(),
            identity: self.cfg().identity.clone(),
            token,
            cancel: CancellationToken::new(),
            deadlines: rx,
        };
        self.metrics.leader.set(1.0);
        self.metrics.acquired.increment(1);
        self.elector.health.set(Some(deadlines.valid_until));
        info!(lock = %self.cfg().lock, identity = %Escaped(&self.cfg().identity), fencing_token = %leadership.token, "became leader");
        self.report_leader();
        let task = self.elector.callbacks.started.as_ref().map(|f| tokio::spawn(f(leadership.clone())));
        Term { leadership, task }
    }

    /// Moves the term's deadlines on after a successful renewal that started at `renewed`.
    fn extend(&mut self, renewed: Stamp) -> LeaseDeadlines {
        let deadlines = LeaseDeadlines::from_renewal(renewed, &self.cfg().timing());
        if let Some(tx) = &self.deadlines {
            tx.send_replace(deadlines);
        }
        self.elector.health.set(Some(deadlines.valid_until));
        self.metrics.lease_remaining.set(deadlines.valid_until.remaining().as_secs_f64());
        deadlines
    }

    /// Waits until `until`, watching for shutdown (which starts the drain), for the work
    /// to finish, and for the term's deadline, which ends the term wherever it comes.
    async fn wait(
        &self,
        until: Instant,
        valid_until: Stamp,
        term: &mut Term,
        shutdown: &CancellationToken,
        draining_until: &mut Option<Instant>,
    ) -> Option<TermEnd> {
        loop {
            // First, before anything else: a leader that finds its deadline gone (it was
            // paused, or the machine suspended) stops at once and tries nothing.
            if valid_until.has_passed() {
                return Some(self.deadline_passed());
            }
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
                    () = sleep(valid_until.remaining()) => Wake::Deadline,
                    () = shutdown.cancelled(), if !draining => Wake::Shutdown,
                    done = work => Wake::WorkDone(done),
                    () = sleep_until(drain_end), if draining => Wake::DrainOver,
                    () = sleep_until(until) => Wake::Timer,
                }
            };
            match wake {
                Wake::Timer => return None,
                Wake::Deadline => {}
                Wake::DrainOver => return Some(TermEnd::Shutdown),
                Wake::Shutdown => {
                    info!(lock = %self.cfg().lock, identity = %Escaped(&self.cfg().identity), "shutting down: draining the leader's work");
                    term.leadership.cancel.cancel();
                    *draining_until = Some(clock::add(Instant::now(), self.cfg().drain_timeout));
                    if term.task.is_none() {
                        return Some(TermEnd::Shutdown);
                    }
                }
                Wake::WorkDone(result) => {
                    term.task = None;
                    if let Err(e) = result {
                        warn!(lock = %self.cfg().lock, store = %self.store(), identity = %Escaped(&self.cfg().identity), error = %e, "the leader's work failed");
                    }
                    if draining {
                        return Some(TermEnd::Shutdown);
                    }
                }
            }
        }
    }

    fn deadline_passed(&self) -> TermEnd {
        TermEnd::Lost(format!("no renewal succeeded within the renew deadline ({:?})", self.cfg().renew_deadline))
    }

    /// client-go's renew loop, with the deadline counted from the start of the last
    /// successful renewal's write (a read before it proves nothing to a standby), on
    /// both clocks.
    async fn renew(&mut self, term: &mut Term, acquired_at: Stamp, shutdown: &CancellationToken) -> TermEnd {
        let end = self.renew_until_over(term, acquired_at, shutdown).await;
        // A drain that began for a hand-over ends as one.
        match (end, self.handing_over.take()) {
            (TermEnd::Shutdown, Some(to)) => TermEnd::HandOver(to),
            (end, _) => end,
        }
    }

    async fn renew_until_over(&mut self, term: &mut Term, acquired_at: Stamp, shutdown: &CancellationToken) -> TermEnd {
        let mut valid_until = acquired_at.after(self.cfg().renew_deadline);
        let mut draining_until = None;
        let mut renew_failures = 0u32;
        loop {
            let next = clock::add(Instant::now(), self.cfg().retry_period);
            if let Some(end) = self.wait(next, valid_until, term, shutdown, &mut draining_until).await {
                return end;
            }
            loop {
                if valid_until.has_passed() {
                    return self.deadline_passed();
                }
                let started = Stamp::now();
                let step = self.try_acquire_or_renew(Some(valid_until), None).await;
                self.report_leader();
                match step {
                    Step::Held => {
                        if renew_failures > 0 {
                            info!(lock = %self.cfg().lock, identity = %Escaped(&self.cfg().identity), failures = renew_failures, "renewed the lease again after {renew_failures} failed attempts");
                            renew_failures = 0;
                        }
                        self.metrics.renew_seconds.record(started.instant.elapsed().as_secs_f64());
                        let origin = mutant::origin(self.write_started.take().unwrap_or(started));
                        valid_until = self.extend(origin).valid_until;
                        if self.handing_over.is_none()
                            && let Some(to) = self.observed.as_ref().and_then(|r| self.preferred_other(r))
                        {
                            info!(
                                lock = %self.cfg().lock, identity = %Escaped(&self.cfg().identity), to = %Escaped(&to),
                                "asked to hand over to {}: stopping the leader's work, then releasing the lease", Escaped(&to)
                            );
                            term.leadership.cancel.cancel();
                            self.handing_over = Some(to.clone());
                            if term.task.is_none() {
                                return TermEnd::HandOver(to);
                            }
                            draining_until = Some(clock::add(Instant::now(), self.cfg().drain_timeout));
                        }
                        break;
                    }
                    Step::Lost(holder) | Step::HeldBy(holder) | Step::Deferred(holder) => {
                        return TermEnd::Lost(format!("{holder} holds the lease now"));
                    }
                    Step::Vacant => return TermEnd::Lost("the lock's record vanished and this leader could not write it again".into()),
                    Step::Failed(e) if e.is_permanent() && self.cfg().stop_on_permanent_error => {
                        error!(lock = %self.cfg().lock, store = %self.store(), identity = %Escaped(&self.cfg().identity), error = %e, "stepping down: the store refused for good");
                        return TermEnd::Failed(e);
                    }
                    Step::Failed(e) => {
                        // Said once in a term; the retries that follow are quiet.
                        if renew_failures == 0 {
                            warn!(
                                lock = %self.cfg().lock, store = %self.store(), identity = %Escaped(&self.cfg().identity), error = %e,
                                "failed to renew the lease: retrying until the renew deadline ({:.1?} left)", valid_until.remaining()
                            );
                        } else {
                            debug!(lock = %self.cfg().lock, identity = %Escaped(&self.cfg().identity), error = %e, "failed to renew the lease, again");
                        }
                        renew_failures = renew_failures.saturating_add(1);
                        let wait = self.asked_to_wait.take().unwrap_or_default().max(self.cfg().retry_period);
                        let retry_at = clock::add(Instant::now(), wait).min(valid_until.instant);
                        if let Some(end) = self.wait(retry_at, valid_until, term, shutdown, &mut draining_until).await {
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
        let token = self.term_token;
        self.leading = false;
        self.term_token = None;
        self.deadlines = None;
        // A record with the last term's token is still ours until someone else writes.
        self.attempted(token);
        self.metrics.leader.set(0.0);
        self.elector.health.set(None);
        match end {
            TermEnd::Lost(reason) => {
                self.metrics.lost.increment(1);
                warn!(lock = %self.cfg().lock, store = %self.store(), identity = %Escaped(&self.cfg().identity), %reason, "lost leadership");
            }
            TermEnd::Failed(e) => {
                self.metrics.lost.increment(1);
                self.last_error = Some(e.to_string());
            }
            TermEnd::Shutdown => {}
            TermEnd::HandOver(to) => {
                info!(lock = %self.cfg().lock, identity = %Escaped(&self.cfg().identity), to = %Escaped(to), "the leader's work has stopped: releasing the lease for {}", Escaped(to));
            }
        }
        self.publish();
        if let Some(mut task) = term.task.take() {
            let grace = match end {
                TermEnd::Lost(_) | TermEnd::Failed(_) => self.cfg().drain_timeout,
                TermEnd::Shutdown | TermEnd::HandOver(_) => Duration::ZERO,
            };
            if tokio::time::timeout(grace, &mut task).await.is_err() {
                warn!(lock = %self.cfg().lock, store = %self.store(), identity = %Escaped(&self.cfg().identity), "the leader's work did not finish within the drain timeout; aborting it");
                task.abort();
            }
        }
        if matches!(end, TermEnd::Shutdown) && self.cfg().release_on_cancel || matches!(end, TermEnd::HandOver(_)) {
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
        let deadline = Stamp::now().after(self.cfg().renew_deadline);
        let mut failures = 0u32;
        while !deadline.has_passed() {
            let outcome = match self.call("get", Some(deadline), self.store().get(&lock)).await {
                Ok(None) => {
                    info!(lock = %lock, identity = %Escaped(&me), "the lease's record is gone: nothing to release");
                    return false;
                }
                // Someone else's, including another process's under our identity: not ours to release.
                Ok(Some(seen)) if !self.written_by_us(&seen.record) => {
                    info!(lock = %lock, identity = %Escaped(&me), holder = %Escaped(&seen.record.holder_identity), "the lease is no longer ours: nothing to release");
                    return true;
                }
                Ok(Some(seen)) => {
                    let rec = seen.record.released(Utc::now());
                    match self.call("update", Some(deadline), self.store().update(&lock, &seen.version, &rec)).await {
                        Ok(v) => {
                            self.wrote(rec, v);
                            info!(lock = %lock, identity = %Escaped(&me), "released the lease");
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
                debug!(lock = %lock, identity = %Escaped(&me), "release conflicted; retrying");
                self.cfg().retry_period / 20
            } else {
                // Said once; if it never succeeds, standbys wait out the lease instead.
                if failures == 0 {
                    warn!(
                        lock = %lock, store = %self.store(), identity = %Escaped(&me), error = %outcome,
                        "failed to release the lease: retrying for up to the renew deadline; otherwise a standby takes over when the lease expires"
                    );
                } else {
                    debug!(lock = %lock, identity = %Escaped(&me), error = %outcome, "failed to release the lease, again");
                }
                failures = failures.saturating_add(1);
                self.cfg().retry_period / 4
            };
            sleep(pause.min(deadline.remaining())).await;
        }
        if failures > 0 {
            warn!(lock = %lock, store = %self.store(), identity = %Escaped(&me), failures, "gave up releasing the lease: a standby takes over when it expires");
        } else {
            warn!(lock = %lock, store = %self.store(), identity = %Escaped(&me), "gave up releasing the lease: it changed under every try until the renew deadline; a standby takes over when it expires");
        }
        false
    }
}
