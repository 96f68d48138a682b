//! Wrappers that take any store and return a store: call counting and fault injection.
//!
//! Like tower layers, they compose (`CountingStore::new(FaultyStore::new(store))`),
//! so the conformance suite and the benchmarks run any backend through them unchanged.

use crate::{
    error::{Error, Result},
    name::LockName,
    record::{FencingToken, LeaderElectionRecord},
    store::{Capabilities, Changes, LeaseStore, Observed, Version},
};
use async_trait::async_trait;
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::{
    fmt,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

/// How many calls a [`CountingStore`] forwarded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCounts {
    /// `get` calls.
    pub get: u64,
    /// `create` calls.
    pub create: u64,
    /// `update` calls.
    pub update: u64,
    /// Calls that returned an error.
    pub errors: u64,
}

impl CallCounts {
    /// All calls.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.get + self.create + self.update
    }

    /// Calls that write (`create` + `update`).
    #[must_use]
    pub fn writes(&self) -> u64 {
        self.create + self.update
    }
}

impl std::ops::Sub for CallCounts {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        Self {
            get: self.get - rhs.get,
            create: self.create - rhs.create,
            update: self.update - rhs.update,
            errors: self.errors - rhs.errors,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    get: AtomicU64,
    create: AtomicU64,
    update: AtomicU64,
    errors: AtomicU64,
}

/// Counts the calls made to the store it wraps. Clones share the counts.
#[derive(Debug, Clone)]
pub struct CountingStore<S> {
    inner: S,
    counters: Arc<Counters>,
}

impl<S: LeaseStore> CountingStore<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner, counters: Arc::default() }
    }

    /// The counts so far.
    #[must_use]
    pub fn counts(&self) -> CallCounts {
        let c = &self.counters;
        CallCounts {
            get: c.get.load(Ordering::SeqCst),
            create: c.create.load(Ordering::SeqCst),
            update: c.update.load(Ordering::SeqCst),
            errors: c.errors.load(Ordering::SeqCst),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn tally<T>(&self, counter: &AtomicU64, result: Result<T>) -> Result<T> {
        counter.fetch_add(1, Ordering::SeqCst);
        if result.is_err() {
            self.counters.errors.fetch_add(1, Ordering::SeqCst);
        }
        result
    }
}

impl<S: fmt::Display> fmt::Display for CountingStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
impl<S: LeaseStore> LeaseStore for CountingStore<S> {
    async fn get(&self, lock: &LockName) -> Result<Option<Observed>> {
        let r = self.inner.get(lock).await;
        self.tally(&self.counters.get, r)
    }
    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
        let r = self.inner.create(lock, rec).await;
        self.tally(&self.counters.create, r)
    }
    async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
        let r = self.inner.update(lock, expected, rec).await;
        self.tally(&self.counters.update, r)
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn watch(&self, lock: &LockName) -> Result<Option<Changes>> {
        self.inner.watch(lock).await
    }
}

/// How a [`FaultyStore`] treats every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultMode {
    /// Calls go through.
    #[default]
    Healthy,
    /// Calls fail at once with [`Error::Unavailable`].
    Fail,
    /// Calls never return (until the caller's timeout drops them).
    Hang,
    /// Calls fail at once with [`Error::PermissionDenied`]: a permanent error.
    Deny,
}

#[derive(Debug)]
struct FaultState {
    mode: FaultMode,
    fail_next: u32,
    delay: Duration,
    response_delay: Duration,
    fail_probability: f64,
    rng: StdRng,
    rival: Option<String>,
    conflict_updates: u32,
    injected: u64,
}

/// The switchboard of a [`FaultyStore`]; clones control the same store.
#[derive(Debug, Clone)]
pub struct Faults(Arc<Mutex<FaultState>>);

impl Default for Faults {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(FaultState {
            mode: FaultMode::Healthy,
            fail_next: 0,
            delay: Duration::ZERO,
            response_delay: Duration::ZERO,
            fail_probability: 0.0,
            rng: StdRng::seed_from_u64(0),
            rival: None,
            conflict_updates: 0,
            injected: 0,
        })))
    }
}

impl Faults {
    fn state(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets how every call is treated from now on.
    pub fn set_mode(&self, mode: FaultMode) {
        self.state().mode = mode;
    }

    /// Back to healthy: no mode, no pending failures, no delay, no random failures.
    pub fn heal(&self) {
        let mut s = self.state();
        s.mode = FaultMode::Healthy;
        s.fail_next = 0;
        s.delay = Duration::ZERO;
        s.response_delay = Duration::ZERO;
        s.fail_probability = 0.0;
    }

    /// The next `n` calls fail.
    pub fn fail_next(&self, n: u32) {
        self.state().fail_next = n;
    }

    /// Every call waits `delay` before reaching the store.
    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// Every call's answer comes back `delay` after the store acted on it (a slow
    /// network: the write happened, the caller does not know yet).
    pub fn set_response_delay(&self, delay: Duration) {
        self.state().response_delay = delay;
    }

    /// Each call fails with probability `p`, drawn from a generator seeded with `seed`.
    pub fn set_fail_probability(&self, p: f64, seed: u64) {
        let mut s = self.state();
        s.fail_probability = p.clamp(0.0, 1.0);
        s.rng = StdRng::seed_from_u64(seed);
    }

    /// Before the next call reaches the store, a rival named `identity` writes the
    /// record of that call's lock naming itself as holder (as a racing writer would).
    pub fn rival_overwrite_next(&self, identity: impl Into<String>) {
        self.state().rival = Some(identity.into());
    }

    /// The next `n` updates fail with [`Error::Conflict`] without reaching the store,
    /// as if another writer had moved the record in between.
    pub fn conflict_next_updates(&self, n: u32) {
        self.state().conflict_updates = n;
    }

    /// How many faults were injected so far.
    #[must_use]
    pub fn injected(&self) -> u64 {
        self.state().injected
    }
}

enum Action {
    Pass,
    Fail,
    Hang,
    Deny,
}

/// Injects faults into the store it wraps: failures, delays, hangs and rival writes.
#[derive(Debug, Clone)]
pub struct FaultyStore<S> {
    inner: S,
    faults: Faults,
}

impl<S: LeaseStore> FaultyStore<S> {
    /// Wraps `inner`; returns the store and its switchboard.
    pub fn new(inner: S) -> (Self, Faults) {
        let faults = Faults::default();
        (Self { inner, faults: faults.clone() }, faults)
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    async fn before(&self, lock: &LockName) -> Result<()> {
        let (delay, rival, action) = {
            let mut s = self.faults.state();
            let rival = s.rival.take();
            let p = s.fail_probability;
            let random_failure = p > 0.0 && s.rng.random_bool(p);
            let action = match s.mode {
                FaultMode::Hang => Action::Hang,
                FaultMode::Fail => Action::Fail,
                FaultMode::Deny => Action::Deny,
                FaultMode::Healthy if s.fail_next > 0 => {
                    s.fail_next -= 1;
                    Action::Fail
                }
                FaultMode::Healthy if random_failure => Action::Fail,
                FaultMode::Healthy => Action::Pass,
            };
            if !matches!(action, Action::Pass) || rival.is_some() {
                s.injected += 1;
            }
            (s.delay, rival, action)
        };
        if let Some(rival) = rival {
            self.rival_write(lock, rival).await?;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match action {
            Action::Pass => Ok(()),
            Action::Fail => Err(Error::Unavailable { store: self.inner.to_string(), source: "injected fault".into() }),
            Action::Hang => std::future::pending().await,
            Action::Deny => Err(Error::PermissionDenied { store: self.inner.to_string(), detail: "injected refusal".into() }),
        }
    }

    async fn after<T>(&self, result: Result<T>) -> Result<T> {
        let delay = self.faults.state().response_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        result
    }

    async fn rival_write(&self, lock: &LockName, rival: String) -> Result<()> {
        let now = chrono::Utc::now();
        match self.inner.get(lock).await? {
            None => self.inner.create(lock, &LeaderElectionRecord::new(rival, 15, now)).await.map(drop),
            Some(seen) => {
                let old = seen.record;
                let mut rec = LeaderElectionRecord::new(rival, old.lease_duration_seconds.max(1), now);
                rec.leader_transitions = old.leader_transitions.saturating_add(1);
                rec.fencing_token = Some(FencingToken(old.fencing_token.map_or(0, FencingToken::get).saturating_add(1)));
                self.inner.update(lock, &seen.version, &rec).await.map(drop)
            }
        }
    }
}

impl<S: fmt::Display> fmt::Display for FaultyStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait]
impl<S: LeaseStore> LeaseStore for FaultyStore<S> {
    async fn get(&self, lock: &LockName) -> Result<Option<Observed>> {
        self.before(lock).await?;
        let r = self.inner.get(lock).await;
        self.after(r).await
    }
    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
        self.before(lock).await?;
        let r = self.inner.create(lock, rec).await;
        self.after(r).await
    }
    async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
        self.before(lock).await?;
        {
            let mut s = self.faults.state();
            if s.conflict_updates > 0 {
                s.conflict_updates -= 1;
                s.injected += 1;
                return Err(Error::Conflict { lock: lock.clone(), store: self.inner.to_string() });
            }
        }
        let r = self.inner.update(lock, expected, rec).await;
        self.after(r).await
    }
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    async fn watch(&self, lock: &LockName) -> Result<Option<Changes>> {
        self.inner.watch(lock).await
    }
}
