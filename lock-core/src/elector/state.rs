//! What the elector shows the outside: its state, the leader's context and its health.

use crate::{name::LockName, record::FencingToken};
use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// Where an elector is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Trying to acquire the lease.
    Candidate,
    /// Holding the lease.
    Leading,
    /// Finished: shut down, or lost leadership with re-campaigning off.
    Stopped,
}

/// A snapshot of an elector's view, published on its `watch` channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionState {
    /// This elector's phase.
    pub phase: Phase,
    /// The holder this elector last observed (itself when leading).
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

/// Handed to the leader's work: who leads, with which fencing token, and a signal
/// that fires the moment leadership ends (step-down, loss or shutdown).
#[derive(Debug, Clone)]
pub struct Leadership {
    pub(super) lock: LockName,
    pub(super) identity: String,
    pub(super) token: FencingToken,
    pub(super) cancel: CancellationToken,
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

    /// This leader's identity.
    #[must_use]
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Completes when leadership ends; stop the work then.
    pub fn lost(&self) -> WaitForCancellationFuture<'_> {
        self.cancel.cancelled()
    }

    /// Whether leadership has ended.
    #[must_use]
    pub fn is_lost(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The cancellation token behind [`lost`](Self::lost), to hand to other tasks.
    #[must_use]
    pub fn cancellation_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// Why a health check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("elector {identity:?} for lock {lock:?} still leads but its lease expired {overdue:?} ago (locally observed)")]
pub struct Unhealthy {
    /// The lock.
    pub lock: LockName,
    /// The elector's identity.
    pub identity: String,
    /// How long past expiry.
    pub overdue: Duration,
}

#[derive(Debug, Default)]
pub(super) struct HealthState {
    /// While leading: when the lease expires by this elector's own clock.
    pub(super) leader_lease_expires: Option<Instant>,
}

/// A cheap, cloneable health check, as client-go's `HealthzAdaptor`: a leader
/// whose lease expired locally (its elector is stuck) is unhealthy; standbys are healthy.
#[derive(Clone)]
pub struct Health {
    pub(super) lock: LockName,
    pub(super) identity: String,
    pub(super) tolerance: Duration,
    pub(super) state: Arc<Mutex<HealthState>>,
}

impl Health {
    /// `Ok` unless this elector claims to lead past its lease's local expiry plus tolerance.
    pub fn check(&self) -> Result<(), Unhealthy> {
        let expires = self.state.lock().unwrap_or_else(PoisonError::into_inner).leader_lease_expires;
        match expires {
            Some(at) if Instant::now() > at + self.tolerance => {
                Err(Unhealthy { lock: self.lock.clone(), identity: self.identity.clone(), overdue: Instant::now() - at })
            }
            _ => Ok(()),
        }
    }

    pub(super) fn set(&self, expires: Option<Instant>) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).leader_lease_expires = expires;
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
    async fn leader_past_local_expiry_is_unhealthy() {
        let health =
            Health { lock: LockName::new("l").unwrap(), identity: "me".into(), tolerance: Duration::from_secs(1), state: Arc::default() };
        assert!(health.check().is_ok(), "a standby is healthy");
        health.set(Some(Instant::now() + Duration::from_secs(5)));
        assert!(health.check().is_ok());
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(health.check().is_ok(), "within tolerance");
        tokio::time::advance(Duration::from_secs(1)).await;
        let err = health.check().expect_err("past expiry and tolerance");
        assert_eq!(err.overdue, Duration::from_secs(2));
        health.set(None);
        assert!(health.check().is_ok(), "stepped down");
    }
}
