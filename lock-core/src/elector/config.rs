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
/// The longest lease accepted: a day. A longer one means a crashed leader's lock stays
/// stuck for longer than anyone would wait, and the record stores whole seconds in 32 bits.
pub const MAX_LEASE_DURATION: Duration = Duration::from_secs(24 * 3600);
/// The shortest retry period accepted: below it a candidate writes or reads more than
/// ten times a second per lock, which no lease needs and every store bills for.
pub const MIN_RETRY_PERIOD: Duration = Duration::from_millis(100);

/// The three durations of client-go's algorithm, validated together in one place for
/// the elector, the stores that care about them (a rate budget, call timeouts) and the
/// command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// How long a lease stays valid after a standby observed its last change (whole seconds).
    pub lease: Duration,
    /// How long the leader keeps trying to renew before it steps down.
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews.
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self { lease: DEFAULT_LEASE_DURATION, renew_deadline: DEFAULT_RENEW_DEADLINE, retry_period: DEFAULT_RETRY_PERIOD }
    }
}

impl Timing {
    /// client-go's defaults: 15 s / 10 s / 2 s.
    pub const DEFAULT: Self =
        Self { lease: DEFAULT_LEASE_DURATION, renew_deadline: DEFAULT_RENEW_DEADLINE, retry_period: DEFAULT_RETRY_PERIOD };

    /// Checks client-go's rules (lease > renew deadline > 1.2 × retry period, all > 0),
    /// the timing rule of `docs/safety.md` (lease > renew deadline + [`clock_margin`](Self::clock_margin))
    /// and Highlander's bounds ([`MAX_LEASE_DURATION`], [`MIN_RETRY_PERIOD`], whole-second
    /// leases). The message says which rule and with which values.
    pub fn check(&self) -> std::result::Result<(), String> {
        for (name, d) in [("lease duration", self.lease), ("renew deadline", self.renew_deadline), ("retry period", self.retry_period)] {
            if d.is_zero() {
                return Err(format!("{name} must be greater than zero"));
            }
            if d > MAX_LEASE_DURATION {
                return Err(format!("{name} ({d:?}) must not exceed {MAX_LEASE_DURATION:?}"));
            }
        }
        if self.lease.subsec_nanos() != 0 {
            return Err(format!("lease duration {:?} must be a whole number of seconds (the record stores seconds)", self.lease));
        }
        if self.lease <= self.renew_deadline {
            return Err(format!("lease duration ({:?}) must be greater than renew deadline ({:?})", self.lease, self.renew_deadline));
        }
        // The timing rule of docs/safety.md (checked by lock-model): a leader's term must
        // end before a standby with a faster clock may take over.
        if self.lease <= self.renew_deadline.saturating_add(self.clock_margin()) {
            return Err(format!(
                "lease duration ({:?}) must exceed renew deadline ({:?}) plus the clock margin ({:?}: 1 % of the lease + 20 ms), so that a leader's term ends before a standby whose clock runs faster may take the lease",
                self.lease,
                self.renew_deadline,
                self.clock_margin()
            ));
        }
        if self.retry_period < MIN_RETRY_PERIOD {
            return Err(format!(
                "retry period ({:?}) must be at least {MIN_RETRY_PERIOD:?}: shorter means more than ten store calls a second per lock",
                self.retry_period
            ));
        }
        if self.renew_deadline.as_secs_f64() <= JITTER_FACTOR * self.retry_period.as_secs_f64() {
            return Err(format!(
                "renew deadline ({:?}) must be greater than {JITTER_FACTOR} × retry period ({:?})",
                self.renew_deadline, self.retry_period
            ));
        }
        Ok(())
    }

    /// The lease in the record's whole seconds (within `u32` once [`check`](Self::check)ed).
    #[must_use]
    pub fn lease_seconds(&self) -> u32 {
        u32::try_from(self.lease.as_secs()).unwrap_or(u32::MAX)
    }

    /// The default bound on one store call: half the renew deadline, so a leader gets
    /// at least two tries before it must step down.
    #[must_use]
    pub fn call_timeout(&self) -> Duration {
        self.renew_deadline / 2
    }

    /// What a leader allows for clocks that run at different rates. Leases are compared
    /// across machines only as durations (client-go assumes rates agree, not times): an
    /// NTP-disciplined clock is slewed by at most 500 ppm, so two of them disagree by at
    /// most 0.1 % of a lease. The margin is ten times that, plus 20 ms for a kill signal
    /// to take effect.
    #[must_use]
    pub fn clock_margin(&self) -> Duration {
        self.lease / 100 + Duration::from_millis(20)
    }

    /// From the renew deadline to the moment a leader's work must be dead: lease −
    /// renew deadline − [`clock_margin`](Self::clock_margin). A supervisor's grace
    /// between SIGTERM and SIGKILL must fit in it.
    #[must_use]
    pub fn stop_window(&self) -> Duration {
        self.lease.saturating_sub(self.renew_deadline).saturating_sub(self.clock_margin())
    }
}

/// The longest identity accepted, in bytes (a Kubernetes pod name is at most 253).
pub const MAX_IDENTITY_LEN: usize = 253;

/// Checks a candidate identity: what every other candidate, log line and status shows,
/// so no control characters (a newline or an escape sequence would forge lines), no
/// leading or trailing whitespace, at most [`MAX_IDENTITY_LEN`] bytes.
pub fn check_identity(identity: &str) -> std::result::Result<(), String> {
    if identity.is_empty() {
        Err("identity must not be empty".into())
    } else if identity.len() > MAX_IDENTITY_LEN {
        Err(format!("identity is {} bytes long, the limit is {MAX_IDENTITY_LEN}", identity.len()))
    } else if identity.chars().any(|c| c.is_control() || crate::display::is_format_control(c)) {
        Err(format!("identity {} contains a control character", crate::display::Escaped(identity)))
    } else if identity.trim() != identity {
        Err(format!("identity {} has leading or trailing whitespace", crate::display::Escaped(identity)))
    } else {
        Ok(())
    }
}

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
    /// Whether a permanent store error (configuration, permission) ends the election
    /// ([`ElectionEnd::Failed`](super::ElectionEnd::Failed)) instead of being retried.
    pub stop_on_permanent_error: bool,
    /// How long to wait for the leader's work to finish before releasing or moving on.
    pub drain_timeout: Duration,
    /// How long past its deadline the health check still reports a leader healthy.
    pub health_tolerance: Duration,
    /// Whether and how this candidate registers in the lock's roster (see
    /// [`roster`](crate::roster)): off unless [`ElectorBuilder::register`] is called.
    pub candidacy: Option<Candidacy>,
}

/// A candidate's registration settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidacy {
    /// Higher is preferred: a leader hands over to a live candidate of higher priority
    /// once it has been registered without a gap for `hold_down`.
    pub priority: i32,
    /// How long a higher-priority candidate must have been registered without a gap
    /// before the leader hands over to it (default: two leases, at least one).
    pub hold_down: Duration,
    /// How often the registration is refreshed (default: the lease duration); it
    /// counts as live for three of these.
    pub refresh: Duration,
}

impl ElectorConfig {
    /// The lease duration in the record's whole seconds.
    pub(crate) fn lease_seconds(&self) -> u32 {
        self.timing().lease_seconds()
    }

    /// The three durations.
    #[must_use]
    pub fn timing(&self) -> Timing {
        Timing { lease: self.lease_duration, renew_deadline: self.renew_deadline, retry_period: self.retry_period }
    }

    fn validate(&self) -> Result<()> {
        let fail = |why: String| Err(Error::Config(format!("elector for lock {:?}: {why}", self.lock)));
        if let Err(why) = check_identity(&self.identity) {
            return fail(why);
        }
        if let Err(why) = self.timing().check() {
            return fail(why);
        }
        if self.call_timeout.is_zero() {
            return fail("call timeout must be greater than zero".into());
        }
        if self.call_timeout > self.renew_deadline {
            return fail(format!("call timeout ({:?}) must not exceed renew deadline ({:?})", self.call_timeout, self.renew_deadline));
        }
        if self.drain_timeout > MAX_LEASE_DURATION || self.health_tolerance > MAX_LEASE_DURATION {
            return fail(format!("drain timeout and health tolerance must not exceed {MAX_LEASE_DURATION:?}"));
        }
        if let Some(c) = &self.candidacy {
            if c.refresh < MIN_RETRY_PERIOD || c.refresh > MAX_LEASE_DURATION {
                return fail(format!(
                    "registration refresh ({:?}) must be between {MIN_RETRY_PERIOD:?} and {MAX_LEASE_DURATION:?}",
                    c.refresh
                ));
            }
            if c.hold_down < self.lease_duration || c.hold_down > MAX_LEASE_DURATION {
                return fail(format!(
                    "hold-down time ({:?}) must be at least the lease ({:?}), so a flapping candidate cannot move the lock back and forth, and at most {MAX_LEASE_DURATION:?}",
                    c.hold_down, self.lease_duration
                ));
            }
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
    hold_down_set: Option<Duration>,
    refresh_set: Option<Duration>,
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
                stop_on_permanent_error: true,
                drain_timeout: DEFAULT_RENEW_DEADLINE,
                health_tolerance: Duration::ZERO,
                candidacy: None,
            },
            call_timeout_set: false,
            drain_timeout_set: false,
            hold_down_set: None,
            refresh_set: None,
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

    /// All three durations at once (see [`Timing`]).
    pub fn timing(mut self, t: Timing) -> Self {
        self.config.lease_duration = t.lease;
        self.config.renew_deadline = t.renew_deadline;
        self.config.retry_period = t.retry_period;
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

    /// End the election with [`ElectionEnd::Failed`](super::ElectionEnd::Failed) on a
    /// permanent store error (bad configuration, permission denied) instead of retrying
    /// it forever (default true).
    pub fn stop_on_permanent_error(mut self, yes: bool) -> Self {
        self.config.stop_on_permanent_error = yes;
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

    /// Registers this candidate in the lock's roster (see [`roster`](crate::roster)),
    /// standby or leader, with `priority`: `highlander status` lists it, the metrics
    /// count it, hand-overs can name it, and a leader of lower priority hands over to it
    /// once it has been registered without a gap for the hold-down time. Each refresh
    /// is one read and one write of the roster record (default: once per lease).
    pub fn register(mut self, priority: i32) -> Self {
        // The durations are settled at build, from the lease then known.
        self.config.candidacy = Some(Candidacy { priority, hold_down: Duration::ZERO, refresh: Duration::ZERO });
        self
    }

    /// How long a higher-priority candidate must have been registered without a gap
    /// before a leader hands over to it (default: two leases). Needs [`register`](Self::register).
    pub fn hold_down(mut self, d: Duration) -> Self {
        self.hold_down_set = Some(d);
        self
    }

    /// How often the registration is refreshed (default: the lease duration). Needs [`register`](Self::register).
    pub fn registration_refresh(mut self, d: Duration) -> Self {
        self.refresh_set = Some(d);
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
            self.config.call_timeout = self.config.timing().call_timeout();
        }
        if !self.drain_timeout_set {
            self.config.drain_timeout = self.config.renew_deadline;
        }
        if let Some(c) = &mut self.config.candidacy {
            c.refresh = self.refresh_set.unwrap_or(self.config.lease_duration);
            c.hold_down = self.hold_down_set.unwrap_or(self.config.lease_duration * 2);
        } else if self.hold_down_set.is_some() || self.refresh_set.is_some() {
            return Err(Error::Config(format!(
                "elector for lock {:?}: a hold-down time or registration refresh needs register(priority)",
                self.config.lock
            )));
        }
        self.config.validate()?;
        Ok(LeaderElector::from_parts(self.store, self.config, self.callbacks))
    }

    /// Builds without validating the timings: for the simulation's mutants only.
    #[cfg(test)]
    pub(crate) fn build_unchecked(mut self) -> LeaderElector {
        self.config.call_timeout = self.config.timing().call_timeout();
        self.config.drain_timeout = self.config.renew_deadline;
        LeaderElector::from_parts(self.store, self.config, self.callbacks)
    }
}

/// Accepts a concrete store or an already shared one.
pub(super) fn share<S: LeaseStore + 'static>(store: S) -> SharedStore {
    Arc::new(store)
}
