//! The elector's metrics, through the `metrics` facade (install any recorder, e.g. Prometheus).

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

/// `1` while this elector leads the lock, else `0`. Labels: `lock`, `identity`.
pub const LEADER: &str = "highlander_leader";
/// The lock record's `leaderTransitions` as last observed. Labels: `lock`, `identity`.
pub const TRANSITIONS: &str = "highlander_leader_transitions";
/// Seconds taken by each successful renewal (all store calls of it). Labels: `lock`, `identity`.
pub const RENEW_SECONDS: &str = "highlander_renew_duration_seconds";
/// Renewals or acquisitions that took the slow path (read, then write). Labels: `lock`, `identity`.
pub const SLOW_PATH: &str = "highlander_slow_path_total";
/// Seconds until the leader's lease expires by its own clock. Labels: `lock`, `identity`.
pub const LEASE_REMAINING_SECONDS: &str = "highlander_lease_remaining_seconds";
/// Terms won. Labels: `lock`, `identity`.
pub const ACQUIRED: &str = "highlander_leadership_acquired_total";
/// Terms ended without a shutdown (deadline missed or the lease taken). Labels: `lock`, `identity`.
pub const LOST: &str = "highlander_leadership_lost_total";

/// Live registered candidates, this one and the leader included, as this candidate last
/// saw the roster. Labels: `lock`, `identity`. Only with registration on.
pub const CANDIDATES: &str = "highlander_candidates";
/// Live registered candidates other than the leader: who could take over. Labels:
/// `lock`, `identity`. Only with registration on.
pub const STANDBYS: &str = "highlander_standbys";

/// Handles registered once per elector run.
pub(super) struct ElectorMetrics {
    pub(super) leader: Gauge,
    pub(super) transitions: Gauge,
    pub(super) renew_seconds: Histogram,
    pub(super) slow_path: Counter,
    pub(super) lease_remaining: Gauge,
    pub(super) acquired: Counter,
    pub(super) lost: Counter,
}

impl ElectorMetrics {
    pub(super) fn new(lock: &str, identity: &str) -> Self {
        let labels = [("lock", lock.to_string()), ("identity", identity.to_string())];
        Self {
            leader: gauge!(LEADER, &labels),
            transitions: gauge!(TRANSITIONS, &labels),
            renew_seconds: histogram!(RENEW_SECONDS, &labels),
            slow_path: counter!(SLOW_PATH, &labels),
            lease_remaining: gauge!(LEASE_REMAINING_SECONDS, &labels),
            acquired: counter!(ACQUIRED, &labels),
            lost: counter!(LOST, &labels),
        }
    }
}
