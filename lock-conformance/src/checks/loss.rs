//! Record-loss checks: the store forgets a lock's record behind the candidates' backs
//! (an operator's `DELETE`, a flush, an eviction, a restore from an older backup).

/// The level of every check in this module.
pub const LEVEL: crate::Level = crate::Level::Elector;

use super::elector::{Candidate, SCHEDULING_SLACK, TermLog, overlaps, store_latency, token_regressions};
use crate::{
    ensure,
    harness::{CheckResult, Observation, StoreHarness, unique_lock},
};
use lock_core::{ElectionState, FaultMode, FaultyStore, LeaderElectionRecord};
use std::sync::Arc;
use tokio::time::Instant;

/// The record is deleted while the leader is cut off from the store (its calls hang,
/// as in a partition or a pause): absent means unknown, so the standby leads only
/// after the lock has been seen absent for a whole lease, when the cut-off leader's
/// term has ended, and never beside it.
pub async fn record_lost_under_a_cut_off_leader_is_not_a_free_lock(h: &dyn StoreHarness) -> CheckResult {
    let (t, lock, terms) = (h.timing(), unique_lock("lost-record"), TermLog::default());
    let (faulty, faults) = FaultyStore::new(h.connect().await?);
    let mut leader = Candidate::spawn(Arc::new(faulty), &lock, "stalin", t, &terms)?;
    leader.until("lead", ElectionState::is_leader).await?;
    let mut standby = Candidate::spawn(h.connect().await?, &lock, "napoleon", t, &terms)?;
    standby.until("see stalin lead", |s| s.leader.as_deref() == Some("stalin")).await?;
    let latency = store_latency(h, &lock).await?;
    faults.set_mode(FaultMode::Hang);
    h.remove_raw(&lock).await?;
    let deleted = Instant::now();
    // Read back at once: gone, or already the standby's claim (it may have looked in between).
    if let Some(raw) = h.raw(&lock).await? {
        let claim = LeaderElectionRecord::from_json(&raw).is_ok_and(|r| r.claim && r.holder_identity == "napoleon");
        ensure!(claim, "the record of {lock} is still there after it was deleted: {}", String::from_utf8_lossy(&raw));
    }
    let took_over = standby.until("lead after the record was lost", ElectionState::is_leader).await?;
    faults.heal();
    let found = overlaps(&terms.terms());
    let back = token_regressions(&terms.terms());
    leader.stop().await?;
    standby.stop().await?;
    let after = took_over - deleted;
    ensure!(found.is_empty(), "a standby led beside the cut-off leader after the record was deleted: {found:?}");
    ensure!(
        after >= t.lease,
        "the standby led {after:?} after the record was deleted, less than a lease ({:?}): absent was taken as free",
        t.lease
    );
    let bound = t.lease + t.retry_period.mul_f64(2.2) + latency * 4 + SCHEDULING_SLACK;
    ensure!(after <= bound, "the standby led {after:?} after the record was deleted, over {bound:?} (lease + 2.2 × retry + 4 × latency)");
    ensure!(back.is_empty(), "fencing tokens did not increase across the loss: {back:?}");
    Ok(Observation::default().figure("lost_record_takeover_seconds", after.as_secs_f64()))
}

/// Every candidate stopped, the record deleted, a fresh candidate started: its term's
/// fencing token is still above every earlier term's, although nothing it can read
/// remembers them.
pub async fn record_lost_between_terms_still_gets_a_larger_token(h: &dyn StoreHarness) -> CheckResult {
    let (t, lock, terms) = (h.timing(), unique_lock("lost-token"), TermLog::default());
    for name in ["stalin", "napoleon"] {
        let mut c = Candidate::spawn(h.connect().await?, &lock, name, t, &terms)?;
        c.until("lead", ElectionState::is_leader).await?;
        tokio::time::sleep(t.retry_period).await;
        c.stop().await?;
    }
    h.remove_raw(&lock).await?;
    ensure!(h.raw(&lock).await?.is_none(), "the record of {lock} is still there after it was deleted");
    let mut fresh = Candidate::spawn(h.connect().await?, &lock, "cleopatra", t, &terms)?;
    fresh.until("lead after the record was lost", ElectionState::is_leader).await?;
    tokio::time::sleep(t.retry_period).await;
    fresh.stop().await?;
    let terms = terms.terms();
    ensure!(terms.len() == 3, "expected 3 terms, saw {}: {terms:?}", terms.len());
    let back = token_regressions(&terms);
    ensure!(back.is_empty(), "fencing tokens did not grow after the record was lost: {back:?}");
    Ok(Observation::default())
}
