//! What the elector shows the outside: its state, the leader's context and its health.

use crate::{
    clock::Stamp,
    error::{Error, Result},
    name::LockName,
    record::FencingToken,
};
use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

/// Where an elector is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Trying to acquire the lease.
    Candidate,
    /// Holding the lease.
    Leading,
    /// Finished: shut down, lost leadership with re-campaigning off, or failed.
    Stopped,
}

/// A snapshot of an elector's view, published on its `watch` channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionState {
    /// This elector's phase.
    pub phase: Phase,
    /// The holder this elector last observed (itself when leading). Another process's
    /// text: escape it before showing it ([`Escaped`](crate::Escaped)).
    pub leader: Option<String>,
    /// This elector's fencing token while it leads.
    pub fencing_token: Option<FencingToken>,
    /// The record's transition count as last observed.
    pub transitions: u32,
    /// The last store failure, until a call succeeds (a corrupt record shows here).
    pub last_error: Option<String>,
}

impl ElectionState {
    pub(super) fn initial() -> Self {
        Self { phase: Phase::Candidate, leader: None, fencing_token: None, transitions: 0, last_error: None }
    }

    /// Whether this elector leads.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.phase == Phase::Leading
    }
}

/// When a leader's right to act ends, counted from the *start* of its last successful
/// renewal (or of the write that won the lease) on clocks that keep counting through a
/// pause or a suspend ([`Stamp`]).
///
/// A standby takes the lease no earlier than its own observation of that write plus
/// the lease duration, and it cannot observe the write before the write began. So a
/// leader that stops acting by [`valid_until`](Self::valid_until) and has killed
/// everything it started by [`kill_by`](Self::kill_by) never overlaps the next leader,
/// however long it was paused in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseDeadlines {
    /// When the last successful renewal's write started.
    pub renewed: Stamp,
    /// How long that write took to be answered: the next renewal needs about as long,
    /// and must be answered before [`valid_until`](Self::valid_until).
    pub round_trip: Duration,
    /// `renewed` + renew deadline: stop acting from here on.
    pub valid_until: Stamp,
    /// `renewed` + lease duration: the earliest moment a standby may take the lease.
    pub takeover: Stamp,
    /// `takeover` − [`clock_margin`](crate::Timing::clock_margin): everything the
    /// leader started must be dead by now.
    pub kill_by: Stamp,
}

impl LeaseDeadlines {
    pub(super) fn from_renewal(renewed: Stamp, timing: &crate::Timing) -> Self {
        let takeover = renewed.after(timing.lease);
        Self {
            renewed,
            round_trip: renewed.overdue(),
            valid_until: renewed.after(timing.renew_deadline),
            takeover,
            kill_by: takeover.before(timing.clock_margin()),
        }
    }
}

/// Handed to the leader's work: who leads, with which fencing token, until when, and a
/// signal that fires the moment leadership ends (step-down, loss, shutdown, or the
/// local deadline passing with no renewal).
///
/// Call [`ensure_valid`](Self::ensure_valid) right before every side effect: it is
/// synchronous and asks no store, so it is cheap enough for every write. It closes
/// the window a paused or partitioned leader would otherwise act in, except for the
/// time between the check and the effect itself; fenced writes and fencing tokens
/// close that (see `docs/fencing.md`).
#[derive(Clone)]
pub struct Leadership {
    pub(super) lock: LockName,
    pub(super) store: Arc<str>,
    pub(super) identity: String,
    pub(super) token: FencingToken,
    pub(super) cancel: CancellationToken,
    pub(super) deadlines: watch::Receiver<LeaseDeadlines>,
}

impl fmt::Debug for Leadership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leadership")
            .field("lock", &self.lock)
            .field("identity", &self.identity)
            .field("token", &self.token)
            .field("valid", &self.is_valid())
            .finish_non_exhaustive()
    }
}

impl Leadership {
    /// The fencing token of this term: pass it to every resource the leader writes.
    #[must_use]
    pub fn fencing_token(&self) -> FencingToken {
        self.token
    }

    /// The lock led.
    #[must_use]
    pub fn lock(&self) -> &LockName {
        &self.lock
    }

    /// The store the lock is in (its display form).
    #[must_use]
    pub fn store(&self) -> &str {
        &self.store
    }

    /// This leader's identity.
    #[must_use]
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// The current deadlines (they move on with every successful renewal).
    #[must_use]
    pub fn deadlines(&self) -> LeaseDeadlines {
        *self.deadlines.borrow()
    }

    /// A channel that sees each new set of deadlines: for a supervisor that enforces
    /// them elsewhere (`highlander run` hands them to its guard process).
    #[must_use]
    pub fn deadline_changes(&self) -> watch::Receiver<LeaseDeadlines> {
        self.deadlines.clone()
    }

    /// When this leader must stop acting, on the runtime's clock: the start of its last
    /// successful renewal plus the renew deadline. [`is_valid`](Self::is_valid) also
    /// counts time the machine spent suspended.
    #[must_use]
    pub fn valid_until(&self) -> Instant {
        self.deadlines().valid_until.instant
    }

    /// How long this leader may still act (zero once it may not).
    #[must_use]
    pub fn remaining(&self) -> Duration {
        if self.cancel.is_cancelled() { Duration::ZERO } else { self.deadlines().valid_until.remaining() }
    }

    /// Whether this leader may still act: leadership has not ended and its deadline has
    /// not passed. Synchronous, and asks no store.
    #[must_use]
    pub fn is_valid(&self) -> bool {
        !self.cancel.is_cancelled() && !self.deadlines().valid_until.has_passed()
    }

    /// `Ok` while [`is_valid`](Self::is_valid), else [`Error::Fenced`] saying why: call
    /// it right before any side effect.
    pub fn ensure_valid(&self) -> Result<()> {
        if self.cancel.is_cancelled() {
            return Err(self.fenced(format!("leadership (fencing token {}) has ended", self.token)));
        }
        let until = self.deadlines().valid_until;
        if until.has_passed() {
            return Err(self.fenced(format!(
                "the local deadline of this term (fencing token {}) passed {:?} ago with no renewal",
                self.token,
                until.overdue()
            )));
        }
        Ok(())
    }

    pub(crate) fn fenced(&self, reason: String) -> Error {
        Error::Fenced { lock: self.lock.clone(), store: self.store.to_string(), reason }
    }

    /// Completes when leadership ends or its deadline passes without a renewal, whichever
    /// comes first: stop the work then.
    pub async fn lost(&self) {
        let mut deadlines = self.deadlines.clone();
        loop {
            let until = deadlines.borrow_and_update().valid_until;
            if until.has_passed() {
                return;
            }
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep(until.remaining()) => {}
                changed = deadlines.changed() => if changed.is_err() {
                    // The elector is gone: nothing will extend the deadline any more.
                    tokio::select! {
                        () = self.cancel.cancelled() => return,
                        () = tokio::time::sleep(until.remaining()) => return,
                    }
                },
            }
        }
    }

    /// Whether leadership has ended (see also [`is_valid`](Self::is_valid)).
    #[must_use]
    pub fn is_lost(&self) -> bool {
        self.cancel.is_cancelled() || self.deadlines().valid_until.has_passed()
    }

    /// The cancellation token the elector cancels when the term ends, to hand to other
    /// tasks. (It fires when the elector steps down, which it does at the deadline.)
    #[must_use]
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// Why a health check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("elector {identity:?} for lock {lock:?} still leads but its renewal deadline passed {overdue:?} ago (locally observed)")]
pub struct Unhealthy {
    /// The lock.
    pub lock: LockName,
    /// The elector's identity.
    pub identity: String,
    /// How long past the deadline.
    pub overdue: Duration,
}

#[derive(Debug, Default)]
pub(super) struct HealthState {
    /// While leading: when the leader must stop acting (start of last renewal + renew deadline).
    pub(super) leader_valid_until: Option<Stamp>,
}

/// A cheap, cloneable health check, as client-go's `HealthzAdaptor`: a leader whose
/// deadline passed with no renewal (its elector is stuck, or it was paused) is
/// unhealthy; standbys are healthy.
#[derive(Clone)]
pub struct Health {
    pub(super) lock: LockName,
    pub(super) identity: String,
    pub(super) tolerance: Duration,
    pub(super) state: Arc<Mutex<HealthState>>,
}

impl Health {
    /// `Ok` unless this elector claims to lead past its renewal deadline plus tolerance.
    pub fn check(&self) -> Result<(), Unhealthy> {
        let until = self.state.lock().unwrap_or_else(PoisonError::into_inner).leader_valid_until;
        match until {
            Some(at) if at.after(self.tolerance).has_passed() => {
                Err(Unhealthy { lock: self.lock.clone(), identity: self.identity.clone(), overdue: at.overdue() })
            }
            _ => Ok(()),
        }
    }

    pub(super) fn set(&self, valid_until: Option<Stamp>) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).leader_valid_until = valid_until;
    }
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Health")
            .field("lock", &self.lock)
            .field("identity", &self.identity)
            .field("healthy", &self.check().is_ok())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn leader_past_its_deadline_is_unhealthy() {
        let health =
            Health { lock: LockName::new("l").unwrap(), identity: "me".into(), tolerance: Duration::from_secs(1), state: Arc::default() };
        assert!(health.check().is_ok(), "a standby is healthy");
        health.set(Some(Stamp::now().after(Duration::from_secs(5))));
        assert!(health.check().is_ok());
        tokio::time::advance(Duration::from_millis(5_500)).await;
        assert!(health.check().is_ok(), "within tolerance");
        tokio::time::advance(Duration::from_secs(1)).await;
        let err = health.check().expect_err("past the deadline and tolerance");
        assert_eq!(err.overdue, Duration::from_millis(1_500));
        health.set(None);
        assert!(health.check().is_ok(), "stepped down");
    }
}
