//! A candidate's registration in the lock's roster, kept while it campaigns; and the
//! leader's hand-over to a candidate of higher priority after the hold-down time.

use super::{ElectionState, Phase, config::Candidacy, config::ElectorConfig};
use crate::{
    display::Escaped,
    roster::{self, Candidate, Registration},
    store::SharedStore,
};
use chrono::Utc;
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The registration task of a running elector: ended (its entry removed) when the
/// election ends, aborted if the elector is dropped mid-run (as a crash would end it).
pub(super) struct Registered {
    pub(super) stop: CancellationToken,
    pub(super) task: Option<tokio::task::JoinHandle<()>>,
}

impl Registered {
    /// Stops refreshing and removes the entry.
    pub(super) async fn end(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Refreshes this candidate's entry every `refresh` until `stop`, then removes it.
pub(super) async fn keep_registered(
    store: SharedStore,
    cfg: ElectorConfig,
    candidacy: Candidacy,
    mut state: watch::Receiver<ElectionState>,
    found: watch::Sender<Vec<Candidate>>,
    stop: CancellationToken,
) {
    let labels = [("lock", cfg.lock.to_string()), ("identity", cfg.identity.clone())];
    let candidates = metrics::gauge!(super::metrics::CANDIDATES, &labels);
    let standbys = metrics::gauge!(super::metrics::STANDBYS, &labels);
    let ttl = candidacy.refresh.saturating_mul(3);
    let mut since = Utc::now();
    let mut last_ok: Option<Instant> = None;
    let mut failing = false;
    let (mut was_leading, mut state_open) = (false, true);
    // When this candidate's current term began: a leader keeps the lock for the
    // hold-down time before a higher priority moves it, so a hand-over away from a
    // higher-priority candidate holds at least that long, whatever its entry says.
    let mut leading_since: Option<Instant> = None;
    'refreshing: loop {
        let now = Utc::now();
        // A gap in the refreshes (this process paused, the store out of reach): its
        // continuity, which the hold-down time counts, starts again.
        if last_ok.is_none_or(|t| t.elapsed() > candidacy.refresh.saturating_mul(2)) {
            since = now;
        }
        let entry = Registration::new(candidacy.priority, since, now, ttl);
        // A read and a compare-and-set, retried on conflict: bounded by the renew
        // deadline rather than one call's timeout (nothing waits on it).
        let written = tokio::time::timeout(cfg.renew_deadline, roster::write_entry(&*store, &cfg.lock, &cfg.identity, Some(entry))).await;
        match written {
            Ok(Ok(list)) => {
                if failing {
                    info!(lock = %cfg.lock, store = %store, identity = %Escaped(&cfg.identity), "this candidate's registration is refreshed again");
                    failing = false;
                }
                last_ok = Some(Instant::now());
                let live: Vec<Candidate> = list.into_iter().filter(|c| c.registration.is_live(now)).collect();
                let (phase, leader) = {
                    let s = state.borrow();
                    (s.phase, s.leader.clone())
                };
                candidates.set(live.len() as f64);
                standbys.set(roster::standbys(&live, leader.as_deref()) as f64);
                if phase == Phase::Leading && leading_since.is_some_and(|t| t.elapsed() >= candidacy.hold_down) {
                    prefer_higher_priority(&store, &cfg, &candidacy, &live).await;
                }
                found.send_if_modified(|seen| {
                    let changed = *seen != live;
                    *seen = live;
                    changed
                });
            }
            Ok(Err(e)) => {
                if !failing {
                    warn!(
                        lock = %cfg.lock, store = %store, identity = %Escaped(&cfg.identity), error = %e,
                        "cannot refresh this candidate's registration: status and hand-overs may not see it (the election itself goes on); retrying every {:?}", candidacy.refresh
                    );
                    failing = true;
                }
            }
            Err(_) => {
                if !failing {
                    warn!(
                        lock = %cfg.lock, store = %store, identity = %Escaped(&cfg.identity),
                        "refreshing this candidate's registration took longer than the renew deadline ({:?}): status and hand-overs may not see it (the election itself goes on); retrying every {:?}", cfg.renew_deadline, candidacy.refresh
                    );
                    failing = true;
                }
            }
        }
        let next = crate::clock::add(Instant::now(), candidacy.refresh);
        loop {
            tokio::select! {
                () = stop.cancelled() => break 'refreshing,
                () = tokio::time::sleep_until(next) => break,
                changed = state.changed(), if state_open => {
                    state_open = changed.is_ok();
                    let leading = state.borrow().phase == Phase::Leading;
                    // A term that ended (handed over, lost): this candidate's claim to
                    // its priority starts again, so a hand-over away from it holds for
                    // the hold-down time at least, and a flapping one never returns.
                    match (was_leading, leading) {
                        (false, true) => leading_since = Some(Instant::now()),
                        (true, false) => leading_since = None,
                        _ => {}
                    }
                    let ended = was_leading && !leading;
                    was_leading = leading;
                    if ended {
                        // Written now, not at the next refresh: the new leader reads it.
                        since = Utc::now();
                        break;
                    }
                }
            }
        }
    }
    // Gone from the roster at once rather than when the entry expires.
    let _ = tokio::time::timeout(cfg.call_timeout, roster::write_entry(&*store, &cfg.lock, &cfg.identity, None)).await;
    candidates.set(0.0);
    standbys.set(0.0);
}

/// A leader hands over to the live candidate of highest priority above its own that has
/// been registered without a gap for the hold-down time.
async fn prefer_higher_priority(store: &SharedStore, cfg: &ElectorConfig, candidacy: &Candidacy, live: &[Candidate]) {
    let now = Utc::now();
    let ready = live
        .iter()
        .filter(|c| c.registration.priority > candidacy.priority && c.registration.is_fresh(now))
        .filter(|c| c.registration.registered_for(now) >= candidacy.hold_down);
    let Some(best) = roster::best_standby(&ready.cloned().collect::<Vec<_>>(), &cfg.identity).cloned() else { return };
    info!(
        lock = %cfg.lock, identity = %Escaped(&cfg.identity), to = %Escaped(&best.identity), priority = best.registration.priority,
        own_priority = candidacy.priority,
        "a candidate of higher priority has been registered for the hold-down time ({:?}): handing over to it", candidacy.hold_down
    );
    match tokio::time::timeout(cfg.call_timeout, roster::hand_over(&**store, &cfg.lock, Some(&best.identity))).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            warn!(lock = %cfg.lock, store = %store, identity = %Escaped(&cfg.identity), error = %e, "could not hand over to the higher-priority candidate; this leader goes on leading")
        }
        Err(_) => {
            warn!(lock = %cfg.lock, store = %store, identity = %Escaped(&cfg.identity), "handing over to the higher-priority candidate took longer than the call timeout; this leader goes on leading")
        }
    }
}
