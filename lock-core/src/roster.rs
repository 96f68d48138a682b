//! Candidates' registrations, and hand-overs.
//!
//! Each candidate that registers keeps a small, expiring entry (its priority, since
//! when it has been registered without a gap, when it was last seen, its version) in
//! one more record of the same store: the lock's *roster*, named by [`roster_lock`].
//! The roster is an ordinary [`LeaderElectionRecord`] with no holder; its entries live
//! under the key [`ROSTER_KEY`], which every store keeps as it keeps any unknown key.
//! Entries are written by compare-and-set and retried on conflict; on a
//! last-writer-wins store two refreshes at once can drop one, which the next refresh
//! puts back.
//!
//! Liveness is judged by wall clocks (the writer's `lastSeen` plus its TTL against the
//! reader's now): it is for operators and for choosing whom to hand over to, never for
//! who leads.
//!
//! (A lock named `X.candidates` would share its record with the roster of lock `X`:
//! do not name locks so.)
//!
//! A hand-over names the candidate to lead next in the lock's record, as Kubernetes'
//! coordinated leader election does: [`LeaderElectionRecord::preferred_holder`]. The
//! leader sees it at its next renewal, stops its work and releases; for a lease after
//! that, candidates other than the preferred one leave the lock to it.

use crate::{
    display::Escaped,
    error::{Error, Result},
    name::{LockName, MAX_LOCK_NAME_LEN},
    record::LeaderElectionRecord,
    store::LeaseStore,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::{collections::BTreeMap, time::Duration};

/// The roster record's key that holds the entries, by identity.
pub const ROSTER_KEY: &str = "highlanderCandidates";

/// What the roster's name adds to the lock's.
const SUFFIX: &str = ".candidates";

/// How many times a roster write is tried when another candidate's write came first.
const ATTEMPTS: u32 = 8;

/// One candidate's registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    /// Higher leads when live and registered without a gap for the hold-down time.
    #[serde(default)]
    pub priority: i32,
    /// Since when this candidate has refreshed its entry without a gap.
    pub since: DateTime<Utc>,
    /// Its last refresh, by its clock.
    pub last_seen: DateTime<Utc>,
    /// How long after `last_seen` the entry counts as live.
    pub ttl_seconds: u32,
    /// The version of Highlander it runs (or of whatever wrote the entry).
    #[serde(default)]
    pub version: String,
    /// Keys this version does not know, kept on rewrite.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Registration {
    /// A registration refreshed `now`, without a gap since `since`.
    #[must_use]
    pub fn new(priority: i32, since: DateTime<Utc>, now: DateTime<Utc>, ttl: Duration) -> Self {
        Self {
            priority,
            since,
            last_seen: now,
            ttl_seconds: u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX).max(1),
            version: env!("CARGO_PKG_VERSION").to_string(),
            extra: Map::new(),
        }
    }

    /// When the entry stops counting as live (`None` past the calendar's end).
    #[must_use]
    pub fn expires(&self) -> Option<DateTime<Utc>> {
        self.last_seen.checked_add_signed(chrono::TimeDelta::seconds(i64::from(self.ttl_seconds)))
    }

    /// Whether the entry is live at `now`: seen within its TTL, and not from further in
    /// the future than its TTL (a writer's clock that far ahead, or a forged entry,
    /// would otherwise keep a dead candidate live until that time).
    #[must_use]
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        let ttl = chrono::TimeDelta::seconds(i64::from(self.ttl_seconds));
        let too_far = now.checked_add_signed(ttl).is_some_and(|limit| self.last_seen > limit);
        !too_far && self.expires().is_none_or(|end| end > now)
    }

    /// Whether the entry was refreshed within half its TTL (one and a half refreshes):
    /// what a hand-over's target must be, so that one that has just died is not named.
    #[must_use]
    pub fn is_fresh(&self, now: DateTime<Utc>) -> bool {
        let half = chrono::TimeDelta::milliseconds(i64::from(self.ttl_seconds) * 500);
        self.is_live(now) && self.last_seen.checked_add_signed(half).is_none_or(|end| end > now)
    }

    /// How long, at `now`, it has been registered without a gap (zero if `since` is ahead).
    #[must_use]
    pub fn registered_for(&self, now: DateTime<Utc>) -> Duration {
        (now - self.since).to_std().unwrap_or_default()
    }
}

/// A candidate and its registration.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Its identity (as it campaigns).
    pub identity: String,
    /// Its entry.
    pub registration: Registration,
}

/// The name of the record that holds `lock`'s candidates: the lock's name and
/// `.candidates`, or, for a name too long for that, a digest of it.
#[must_use]
pub fn roster_lock(lock: &LockName) -> LockName {
    let plain = format!("{lock}{SUFFIX}", lock = lock.as_str());
    if plain.len() <= MAX_LOCK_NAME_LEN
        && let Ok(name) = LockName::new(&plain)
    {
        return name;
    }
    // FNV-1a over the name: stable across versions and machines.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in lock.as_str().bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let mut prefix: String = String::new();
    for c in lock.as_str().chars() {
        if prefix.len() + c.len_utf8() > 120 {
            break;
        }
        prefix.push(c);
    }
    LockName::new(format!("{}~{hash:016x}{SUFFIX}", prefix.trim_end())).unwrap_or_else(|_| lock.clone())
}

/// The entries of a roster record; an error names the lock and store if they are not
/// entries this version understands (the record is then left untouched).
fn entries(store: &dyn LeaseStore, roster: &LockName, rec: &LeaderElectionRecord) -> Result<BTreeMap<String, Registration>> {
    match rec.extra.get(ROSTER_KEY) {
        None => Ok(BTreeMap::new()),
        Some(value) => serde_json::from_value(value.clone()).map_err(|e| Error::Corrupt {
            lock: roster.clone(),
            store: store.to_string(),
            detail: format!(
                "its {ROSTER_KEY} are not candidates' registrations ({e}); it only lists candidates: delete that record with the store's own tools and the candidates write it again within a lease"
            ),
        }),
    }
}

/// The candidates registered for `lock` (live or not), by identity.
pub async fn candidates(store: &dyn LeaseStore, lock: &LockName) -> Result<Vec<Candidate>> {
    let roster = roster_lock(lock);
    let Some(seen) = store.get(&roster).await? else { return Ok(Vec::new()) };
    Ok(entries(store, &roster, &seen.record)?.into_iter().map(|(identity, registration)| Candidate { identity, registration }).collect())
}

/// Writes `identity`'s entry (or removes it, with `None`) in `lock`'s roster and drops
/// entries that expired, by compare-and-set, retried when another write came first.
/// Returns the entries as written.
pub async fn write_entry(store: &dyn LeaseStore, lock: &LockName, identity: &str, entry: Option<Registration>) -> Result<Vec<Candidate>> {
    let roster = roster_lock(lock);
    let mut last = None;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(5 + u64::from(attempt) * rand::random_range(1..10u64))).await;
        }
        let now = Utc::now();
        let seen = store.get(&roster).await?;
        let mut rec = seen.as_ref().map_or_else(|| LeaderElectionRecord::new("", 0, now), |s| s.record.clone());
        rec.acquire_time = None;
        rec.renew_time = None;
        let mut list = entries(store, &roster, &rec)?;
        list.retain(|id, reg| id != identity && reg.is_live(now));
        if let Some(entry) = &entry {
            list.insert(identity.to_string(), entry.clone());
        } else if seen.is_none() {
            return Ok(Vec::new());
        }
        let value = serde_json::to_value(&list).map_err(|e| Error::Config(format!("lock {lock:?}: registration: {e}")))?;
        rec.extra.insert(ROSTER_KEY.to_string(), value);
        let written = match &seen {
            None => store.create(&roster, &rec).await.map(|_| ()),
            Some(s) => store.update(&roster, &s.version, &rec).await.map(|_| ()),
        };
        match written {
            Ok(()) => return Ok(list.into_iter().map(|(identity, registration)| Candidate { identity, registration }).collect()),
            Err(e @ (Error::Conflict { .. } | Error::AlreadyExists { .. } | Error::NotFound { .. })) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| Error::Conflict { lock: roster, store: store.to_string() }))
}

/// How many of `live` could take over from `leader`: the candidates other than it.
#[must_use]
pub fn standbys(live: &[Candidate], leader: Option<&str>) -> usize {
    live.iter().filter(|c| Some(c.identity.as_str()) != leader).count()
}

/// The live candidate `hand_over` picks when none is named: the highest priority, then
/// the longest registered, other than `holder`.
#[must_use]
pub fn best_standby<'a>(live: &'a [Candidate], holder: &str) -> Option<&'a Candidate> {
    live.iter()
        .filter(|c| c.identity != holder)
        .max_by(|a, b| a.registration.priority.cmp(&b.registration.priority).then(b.registration.since.cmp(&a.registration.since)))
}

/// Why a hand-over was refused, or the store's error.
#[derive(Debug, thiserror::Error)]
pub enum HandOverError {
    /// It cannot be done as asked; nothing was written.
    #[error("{0}")]
    Refused(String),
    /// No candidate was named and no live standby has refreshed its entry lately (they
    /// may be starting, or unable to reach the store); nothing was written.
    #[error("{0}")]
    NoStandby(String),
    /// A store call failed.
    #[error(transparent)]
    Store(#[from] Error),
}

/// Asks `lock`'s leader to hand over to `to` (or to the best live standby): sets the
/// record's `preferredHolder` by compare-and-set. Refused if no one leads, if the
/// candidate is not live in the roster, if it already leads, or if another hand-over
/// is under way. Returns the candidate named.
pub async fn hand_over(store: &dyn LeaseStore, lock: &LockName, to: Option<&str>) -> std::result::Result<String, HandOverError> {
    let say = |why: String| format!("lock {lock:?} in {store}: {why}");
    let refuse = |why: String| HandOverError::Refused(say(why));
    let mut holder_seen: Option<String> = None;
    for _ in 0..ATTEMPTS {
        let Some(seen) = store.get(lock).await? else { return Err(refuse("no record: no one leads it".into())) };
        let rec = &seen.record;
        if !rec.is_held() || rec.claim {
            return Err(refuse("no one leads it: there is nothing to hand over".into()));
        }
        if holder_seen.as_ref().is_some_and(|h| *h != rec.holder_identity) {
            return Err(refuse(format!("its leader changed to {} meanwhile: nothing was written", Escaped(&rec.holder_identity))));
        }
        holder_seen = Some(rec.holder_identity.clone());
        let now = Utc::now();
        // A target must have been refreshed lately, not merely be within its TTL.
        let live: Vec<Candidate> = candidates(store, lock).await?.into_iter().filter(|c| c.registration.is_fresh(now)).collect();
        let names = || {
            let list: Vec<String> = live.iter().map(|c| Escaped(&c.identity).to_string()).collect();
            if list.is_empty() { "none".to_string() } else { list.join(", ") }
        };
        let target = match to {
            Some(to) if to == rec.holder_identity => return Err(refuse(format!("{} already leads it", Escaped(to)))),
            Some(to) => match live.iter().find(|c| c.identity == to) {
                Some(c) => c.identity.clone(),
                None => {
                    return Err(refuse(format!(
                        "{} is not a live candidate refreshed within the last half of its TTL (those are: {})",
                        Escaped(to),
                        names()
                    )));
                }
            },
            None => match best_standby(&live, &rec.holder_identity) {
                Some(c) => c.identity.clone(),
                None => {
                    return Err(HandOverError::NoStandby(say(format!(
                        "no live standby is registered and recently refreshed (candidates: {})",
                        names()
                    ))));
                }
            },
        };
        match rec.preferred_holder.as_deref() {
            Some(p) if p == target => return Ok(target),
            Some(p) if !p.is_empty() && p != rec.holder_identity => {
                return Err(refuse(format!("a hand-over to {} is already under way", Escaped(p))));
            }
            _ => {}
        }
        let mut next = rec.clone();
        next.preferred_holder = Some(target.clone());
        match store.update(lock, &seen.version, &next).await {
            Ok(_) => return Ok(target),
            // The leader renewed, or another hand-over came first: look again.
            Err(Error::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(refuse(format!("its record changed under each of {ATTEMPTS} tries: nothing was written")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn lock(name: &str) -> LockName {
        LockName::new(name).expect("name")
    }

    #[test]
    fn roster_names_are_valid_distinct_and_stable() {
        assert_eq!(roster_lock(&lock("billing")).as_str(), "billing.candidates");
        let long_a = lock(&"a".repeat(195));
        let long_b = lock(&format!("{}b", "a".repeat(194)));
        let (ra, rb) = (roster_lock(&long_a), roster_lock(&long_b));
        assert_ne!(ra, rb);
        assert!(ra.as_str().len() <= MAX_LOCK_NAME_LEN);
        assert_eq!(ra, roster_lock(&long_a));
    }

    #[test]
    fn an_entry_from_too_far_in_the_future_is_not_live_and_a_stale_one_is_not_fresh() {
        let t0 = Utc::now();
        let ttl = Duration::from_secs(30);
        let ahead = |s| Registration::new(0, t0, t0 + chrono::TimeDelta::seconds(s), ttl);
        assert!(ahead(29).is_live(t0), "a clock a little ahead");
        assert!(!ahead(31).is_live(t0), "further ahead than the TTL: a forged entry or a clock far off");
        assert!(!ahead(78 * 60).is_live(t0));
        let seen = Registration::new(0, t0, t0, ttl);
        assert!(seen.is_fresh(t0 + chrono::TimeDelta::seconds(14)));
        assert!(!seen.is_fresh(t0 + chrono::TimeDelta::seconds(15)), "live, but not refreshed for half its TTL");
        assert!(seen.is_live(t0 + chrono::TimeDelta::seconds(15)));
    }

    #[test]
    fn liveness_and_continuity_follow_the_clock() {
        let t0 = Utc::now();
        let reg = Registration::new(1, t0, t0, Duration::from_secs(30));
        assert!(reg.is_live(t0 + chrono::TimeDelta::seconds(29)));
        assert!(!reg.is_live(t0 + chrono::TimeDelta::seconds(30)));
        assert_eq!(reg.registered_for(t0 + chrono::TimeDelta::seconds(5)), Duration::from_secs(5));
        assert_eq!(reg.registered_for(t0 - chrono::TimeDelta::seconds(5)), Duration::ZERO);
        let far = Registration { last_seen: DateTime::<Utc>::MAX_UTC, ..reg.clone() };
        assert!(!far.is_live(t0), "no overflow at the calendar's end");
        assert!(!reg.is_live(DateTime::<Utc>::MAX_UTC), "nor at the reader's");
    }

    #[tokio::test]
    async fn entries_are_written_kept_pruned_and_removed() {
        let store = MemoryStore::new();
        let l = lock("roster");
        let now = Utc::now();
        write_entry(&store, &l, "a", Some(Registration::new(0, now, now, Duration::from_secs(30)))).await.expect("a");
        write_entry(&store, &l, "b", Some(Registration::new(5, now, now, Duration::from_secs(30)))).await.expect("b");
        let old = now - chrono::TimeDelta::seconds(60);
        write_entry(&store, &l, "dead", Some(Registration::new(9, old, old, Duration::from_secs(30)))).await.expect("dead");
        let all = candidates(&store, &l).await.expect("read");
        let ids: Vec<&str> = all.iter().map(|c| c.identity.as_str()).collect();
        assert_eq!(ids, ["a", "b", "dead"], "the expired entry is written, to be pruned by the next write");
        write_entry(&store, &l, "a", None).await.expect("remove a");
        let ids: Vec<String> = candidates(&store, &l).await.expect("read").into_iter().map(|c| c.identity).collect();
        assert_eq!(ids, ["b"], "a removed, dead pruned");
        assert!(store.get(&l).await.expect("get").is_none(), "the lock's own record is untouched");
    }

    #[tokio::test]
    async fn a_roster_that_is_not_understood_is_never_overwritten() {
        let store = MemoryStore::new();
        let l = lock("odd");
        let mut rec = LeaderElectionRecord::new("", 0, Utc::now());
        rec.extra.insert(ROSTER_KEY.into(), serde_json::json!(["not", "a", "map"]));
        store.create(&roster_lock(&l), &rec).await.expect("create");
        let now = Utc::now();
        let e = write_entry(&store, &l, "a", Some(Registration::new(0, now, now, Duration::from_secs(30)))).await.expect_err("refused");
        assert!(matches!(e, Error::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("odd.candidates"), "names the roster: {e}");
        let kept = store.get(&roster_lock(&l)).await.expect("get").expect("record");
        assert_eq!(kept.record.extra.get(ROSTER_KEY), Some(&serde_json::json!(["not", "a", "map"])));
    }

    #[tokio::test]
    async fn hand_overs_are_refused_unless_a_live_candidate_can_take_over() {
        let store = MemoryStore::new();
        let l = lock("ho");
        assert!(matches!(hand_over(&store, &l, None).await, Err(HandOverError::Refused(m)) if m.contains("no one leads")));
        store.create(&l, &LeaderElectionRecord::new("alone", 15, Utc::now())).await.expect("create");
        assert!(
            matches!(hand_over(&store, &l, None).await, Err(HandOverError::NoStandby(m)) if m.contains("no live standby") && m.contains("ho")),
            "a leader alone: no standby to hand over to"
        );
        let l = lock("ho2");
        store.create(&l, &LeaderElectionRecord::new("leader", 15, Utc::now())).await.expect("create");
        let now = Utc::now();
        for (id, prio) in [("leader", 0), ("low", 1), ("high", 7)] {
            write_entry(&store, &l, id, Some(Registration::new(prio, now, now, Duration::from_secs(30)))).await.expect("register");
        }
        let old = now - chrono::TimeDelta::seconds(60);
        write_entry(&store, &l, "gone", Some(Registration::new(9, old, old, Duration::from_secs(30)))).await.expect("register");
        let refused = |r: std::result::Result<String, HandOverError>| match r {
            Err(HandOverError::Refused(m)) => m,
            other => panic!("not refused: {other:?}"),
        };
        let m = refused(hand_over(&store, &l, Some("gone")).await);
        assert!(m.contains("\"gone\" is not a live candidate"), "{m}");
        assert!(m.contains("ho") && m.contains("memory"), "names the lock and store: {m}");
        assert!(refused(hand_over(&store, &l, Some("nobody")).await).contains("not a live candidate"));
        assert!(refused(hand_over(&store, &l, Some("leader")).await).contains("already leads"));
        assert_eq!(hand_over(&store, &l, None).await.expect("to the best"), "high");
        let rec = store.get(&l).await.expect("get").expect("rec").record;
        assert_eq!(rec.preferred_holder.as_deref(), Some("high"));
        assert_eq!(hand_over(&store, &l, Some("high")).await.expect("the same again"), "high");
        assert!(refused(hand_over(&store, &l, Some("low")).await).contains("already under way"));
    }

    #[tokio::test]
    async fn two_hand_overs_at_once_one_wins() {
        let store = MemoryStore::new();
        let l = lock("race");
        store.create(&l, &LeaderElectionRecord::new("leader", 15, Utc::now())).await.expect("create");
        let now = Utc::now();
        for id in ["x", "y"] {
            write_entry(&store, &l, id, Some(Registration::new(0, now, now, Duration::from_secs(30)))).await.expect("register");
        }
        let (a, b) = tokio::join!(hand_over(&store, &l, Some("x")), hand_over(&store, &l, Some("y")));
        assert!(a.is_ok() != b.is_ok(), "exactly one wins: {a:?} {b:?}");
        let winner = a.or(b).expect("a winner");
        let rec = store.get(&l).await.expect("get").expect("rec").record;
        assert_eq!(rec.preferred_holder.as_deref(), Some(winner.as_str()));
    }
}
