//! The elector's builder and the validation of its durations.

use super::{Callbacks, LeaderElector, Leadership};
use crate::{
    error::{Error, Result},
    name::LockName,
    store::{LeaseStore, SharedStore},
};
use std::{future::Future, sync::Arc, time::Duration};

/// client-go's default lease duration.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
/// client-go's default renew deadline.
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// client-go's default retry period.
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);
/// client-go's jitter factor: candidates wait `RetryPeriod × (1 + rand[0,1) × 1.2)` between tries.
pub const JITTER_FACTOR: f64 = 1.2;

/// The validated settings of one elector.
#[derive(Debug, Clone)]
pub struct ElectorConfig {
    /// The lock contended for.
    pub lock: LockName,
    /// This candidate's identity, unique among candidates.
    pub identity: String,
    /// How long a lease stays valid after a standby observed its last change.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it steps down.
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews.
    pub retry_period: Duration,
    /// The bound on any one store call.
    pub call_timeout: Duration,
    /// Whether to release the lease when shut down (so a standby takes over at once).
    pub release_on_cancel: bool,
    /// Whether to campaign again after losing leadership.
    pub recampaign: bool,
    /// How long to wait for the leader's work to finish before releasing or moving on.
    pub drain_timeout: Duration,
    /// How long past local lease expiry the health check still reports healthy.
    pub health_tolerance: Duration,
}

impl ElectorConfig {
    /// The lease duration in the record's whole seconds.
    pub(crate) fn lease_seconds(&self) -> u32 {
        u32::try_from(self.lease_duration.as_secs()).unwrap_or(u32::MAX)
    }

    fn validate(&self) -> Result<()> {
        let fail = |why: String| Err(Error::Config(format!("elector for lock {:?}: {why}", self.lock)));
        if self.identity.is_empty() {
            return fail("identity must not be empty".into());
        }
        for (name, d) in [
            ("lease duration", self.lease_duration),
            ("renew deadline", self.renew_deadline),
            ("retry period", self.retry_period),
            ("call timeout", self.call_timeout),
        ] {
            if d.is_zero() {
                return fail(format!("{name} must be greater than zero"));
            }
        }
        if self.lease_duration.subsec_nanos() != 0 {
            return fail(format!("lease duration {:?} must be a whole number of seconds (the record stores seconds)", self.lease_duration));
        }
        if self.lease_duration <= self.renew_deadline {
            return fail(format!(
                "lease duration ({:?}) must be greater than renew deadline ({:?})",
                self.lease_duration, self.renew_deadline
            ));
        }
        if self.renew_deadline.as_secs_f64() <= JITTER_FACTOR * self.retry_period.as_secs_f64() {
            return fail(format!(
                "renew deadline ({:?}) must be greater than {JITTER_FACTOR} × retry period ({:?})",
                self.renew_deadline, self.retry_period
            ));
        }
        if self.call_timeout > self.renew_deadline {
            return fail(format!("call timeout ({:?}) must not exceed renew deadline ({:?})", self.call_timeout, self.renew_deadline));
        }
        Ok(())
    }
}

/// Builds a [`LeaderElector`]; see [`LeaderElector::builder`].
#[must_use = "a builder does nothing until .build()"]
pub struct ElectorBuilder {
    store: SharedStore,
    config: ElectorConfig,
    call_timeout_set: bool,
    drain_timeout_set: bool,
    callbacks: Callbacks,
}

impl ElectorBuilder {
    pub(super) fn new(store: SharedStore, lock: LockName, identity: String) -> Self {
        Self {
            store,
            config: ElectorConfig {
                lock,
                identity,
                lease_duration: DEFAULT_LEASE_DURATION,
                renew_deadline: DEFAULT_RENEW_DEADLINE,
                retry_period: DEFAULT_RETRY_PERIOD,
                call_timeout: DEFAULT_RENEW_DEADLINE / 2,
                release_on_cancel: true,
                recampaign: true,
                drain_timeout: DEFAULT_RENEW_DEADLINE,
                health_tolerance: Duration::ZERO,
            },
            call_timeout_set: false,
            drain_timeout_set: false,
            callbacks: Callbacks::default(),
        }
    }

    /// How long a lease stays valid after a standby observed its last change (default 15 s; whole seconds).
    pub fn lease_duration(mut self, d: Duration) -> Self {
        self.config.lease_duration = d;
        self
    }

    /// How long the leader keeps trying to renew before stepping down (default 10 s).
    pub fn renew_deadline(mut self, d: Duration) -> Self {
        self.config.renew_deadline = d;
        self
    }

    /// How often to try to acquire or renew (default 2 s).
    pub fn retry_period(mut self, d: Duration) -> Self {
        self.config.retry_period = d;
        self
    }

    /// The bound on any one store call (default: half the renew deadline).
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.config.call_timeout = d;
        self.call_timeout_set = true;
        self
    }

    /// Release the lease on shutdown (default true).
    pub fn release_on_cancel(mut self, yes: bool) -> Self {
        self.config.release_on_cancel = yes;
        self
    }

    /// Campaign again after losing leadership (default true).
    pub fn recampaign(mut self, yes: bool) -> Self {
        self.config.recampaign = yes;
        self
    }

    /// How long to wait for the leader's work to finish before releasing (default: the renew deadline).
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.config.drain_timeout = d;
        self.drain_timeout_set = true;
        self
    }

    /// How long past local lease expiry the health check still passes (default 0).
    pub fn health_tolerance(mut self, d: Duration) -> Self {
        self.config.health_tolerance = d;
        self
    }

    /// Runs `f` each time this candidate starts leading, as its own task. The
    /// [`Leadership`] carries the fencing token and is cancelled when leadership ends.
    pub fn on_started_leading<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Leadership) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.callbacks.started = Some(Arc::new(move |l| Box::pin(f(l))));
        self
    }

    /// Called each time this candidate stops leading, after its work has drained.
    pub fn on_stopped_leading(mut self, f: impl Fn() + Send + Sync + 'static) -> Self {
        self.callbacks.stopped = Some(Arc::new(f));
        self
    }

    /// Called with the identity of each new leader this candidate observes (itself included).
    pub fn on_new_leader(mut self, f: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.callbacks.new_leader = Some(Arc::new(f));
        self
    }

    /// Validates the settings and builds the elector.
    pub fn build(mut self) -> Result<LeaderElector> {
        if !self.call_timeout_set {
            self.config.call_timeout = self.config.renew_deadline / 2;
        }
        if !self.drain_timeout_set {
            self.config.drain_timeout = self.config.renew_deadline;
        }
        self.config.validate()?;
        Ok(LeaderElector::from_parts(self.store, self.config, self.callbacks))
    }
}

/// Accepts a concrete store or an already shared one.
pub(super) fn share<S: LeaseStore + 'static>(store: S) -> SharedStore {
    Arc::new(store)
}
