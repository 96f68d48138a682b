//! The store itself restarts mid-election. Not in the macro: the caller must be able
//! to stop and start its store (e.g. a container), so each backend calls it directly.

use crate::{
    checks::elector::{Candidate, TermLog, overlaps},
    ensure,
    harness::{CheckResult, Failure, Observation, StoreHarness, unique_lock},
};
use async_trait::async_trait;
use std::time::Duration;
use tokio::time::Instant;

/// A store the test can take down and bring back (its data must survive).
#[async_trait]
pub trait RestartableStore: Send + Sync {
    /// Stops the store.
    async fn stop(&self) -> Result<(), Failure>;
    /// Starts it again at the same address.
    async fn start(&self) -> Result<(), Failure>;
}

/// How soon a release must reach a standby that has change notifications.
pub const NOTIFIED_HANDOVER: Duration = Duration::from_millis(200);

/// How long after the store is back a leader must be elected again.
pub const RECOVERY_BOUND: Duration = Duration::from_secs(30);

/// The leader steps down when the store goes away, nobody leads while it is down,
/// the election resumes when it is back, and the record (transitions, fencing
/// token) is not lost.
///
/// On a store with change notifications, the standby's feed must come back too: after
/// the restart a graceful release reaches it by notification (within
/// [`NOTIFIED_HANDOVER`]) rather than at its next poll, up to 2.2 retry periods later.
pub async fn election_survives_store_restart(h: &dyn StoreHarness, store: &dyn RestartableStore) -> CheckResult {
    let (lock, terms) = (unique_lock("restart"), TermLog::default());
    // A longer retry period than the suite's, so that a poll cannot pass for a notification.
    let t = h.timing();
    let t = lock_core::Timing { lease: t.lease * 2, renew_deadline: t.renew_deadline * 2, retry_period: t.retry_period * 4 };
    let mut candidates = vec![
        Candidate::spawn(h.connect().await?, &lock, "napoleon", t, &terms)?,
        Candidate::spawn(h.connect().await?, &lock, "cleopatra", t, &terms)?,
    ];
    let first = loop {
        if let Some(i) = candidates.iter().position(|c| c.state.borrow().is_leader()) {
            break i;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(t.retry_period * 3).await;
    let before = candidates[first].state.borrow().clone();
    let token = before.fencing_token.ok_or_else(|| Failure("the leader has no fencing token".into()))?;

    store.stop().await?;
    let stopped = Instant::now();
    let stepped_down = candidates[first].until("step down while the store is down", |s| !s.is_leader()).await?;
    let down_for = stepped_down - stopped;
    ensure!(down_for <= t.renew_deadline + Duration::from_millis(500), "the leader stepped down {down_for:?} after the store went away");
    tokio::time::sleep(t.lease).await;
    ensure!(candidates.iter().all(|c| !c.state.borrow().is_leader()), "someone led while the store was down");

    store.start().await?;
    let started = Instant::now();
    let recovered = loop {
        if let Some(i) = candidates.iter().position(|c| c.state.borrow().is_leader()) {
            break i;
        }
        ensure!(started.elapsed() < RECOVERY_BOUND, "no leader within {RECOVERY_BOUND:?} of the store's return");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let recovery = started.elapsed();
    let after = candidates[recovered].state.borrow().clone();
    let new_token = after.fencing_token.ok_or_else(|| Failure("the new leader has no fencing token".into()))?;
    let watch = h.connect().await?.capabilities().watch;
    let mut handover = None;
    if watch {
        // The standby's feed is subscribed to again within its backoff (at most four retry periods).
        tokio::time::sleep(t.retry_period * 5).await;
        let leader = candidates.remove(recovered);
        let asked = Instant::now();
        leader.stop().await?;
        let took_over = candidates[0].until("take over after the release", |s| s.is_leader()).await?;
        handover = Some(took_over - asked);
    }
    let found = overlaps(&terms.terms());
    for c in candidates {
        c.stop().await?;
    }
    if let Some(handover) = handover {
        ensure!(
            handover <= NOTIFIED_HANDOVER,
            "after the restart a release reached the standby in {handover:?}, not by notification (within {NOTIFIED_HANDOVER:?}): its change feed did not come back"
        );
    }
    ensure!(new_token > token, "the fencing token went from {token} to {new_token} across the restart");
    ensure!(
        after.transitions >= before.transitions,
        "transitions went from {} to {}: the record was lost",
        before.transitions,
        after.transitions
    );
    ensure!(found.is_empty(), "terms overlapped across the restart: {found:?}");
    let obs = Observation::default().figure("step_down_seconds", down_for.as_secs_f64()).figure("recovery_seconds", recovery.as_secs_f64());
    Ok(match handover {
        Some(h) => obs.figure("handover_after_restart_seconds", h.as_secs_f64()),
        None => obs,
    })
}

/// A container started by a fixture, as a [`RestartableStore`].
#[cfg(feature = "containers")]
#[async_trait]
impl RestartableStore for std::sync::Arc<crate::fixtures::RunningContainer> {
    async fn stop(&self) -> Result<(), Failure> {
        crate::fixtures::RunningContainer::stop(self).await.map_err(|e| Failure(e.to_string()))
    }
    async fn start(&self) -> Result<(), Failure> {
        crate::fixtures::RunningContainer::start(self).await.map_err(|e| Failure(e.to_string()))
    }
}
