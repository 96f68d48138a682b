//! Store-level checks: the `LeaseStore` contract, call by call.

/// The level of every check in this module.
pub const LEVEL: crate::Level = crate::Level::Store;

use crate::{
    ensure,
    harness::{CheckResult, Failure, Observation, StoreHarness, unique_lock},
};
use chrono::{TimeZone, Utc};
use lock_core::{Error, FencingToken, LeaderElectionRecord, LeaseStore, LockName, SharedStore, Version};
use std::{collections::HashSet, sync::Arc};
use tokio::task::JoinSet;

fn sample(holder: &str) -> LeaderElectionRecord {
    LeaderElectionRecord::new(holder, 15, Utc::now())
}

async fn must_get(store: &dyn LeaseStore, lock: &LockName) -> Result<lock_core::Observed, Failure> {
    store.get(lock).await?.ok_or_else(|| Failure(format!("lock {lock:?} in {store} reads as absent after a successful write")))
}

/// Runs `n` copies of `f` at once, each with its own client, and returns their results.
async fn race<T, F, Fut>(h: &dyn StoreHarness, n: usize, f: F) -> Result<Vec<lock_core::Result<T>>, Failure>
where
    T: Send + 'static,
    F: Fn(usize, SharedStore) -> Fut,
    Fut: std::future::Future<Output = lock_core::Result<T>> + Send + 'static,
{
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(h.connect().await?);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut set = JoinSet::new();
    for (i, client) in clients.into_iter().enumerate() {
        let fut = f(i, client);
        let barrier = barrier.clone();
        set.spawn(async move {
            barrier.wait().await;
            (i, fut.await)
        });
    }
    let mut results: Vec<(usize, lock_core::Result<T>)> = Vec::with_capacity(n);
    while let Some(joined) = set.join_next().await {
        results.push(joined.map_err(|e| Failure(format!("a racing task panicked: {e}")))?);
    }
    results.sort_by_key(|(i, _)| *i);
    Ok(results.into_iter().map(|(_, r)| r).collect())
}

/// `get` of a lock never written returns `None`.
pub async fn absent_lock_reads_as_absent(h: &dyn StoreHarness) -> CheckResult {
    let store = h.connect().await?;
    let lock = unique_lock("absent");
    let got = store.get(&lock).await?;
    ensure!(got.is_none(), "get of never-written lock {lock:?} in {store} returned {got:?}");
    Ok(Observation::default())
}

/// Every field survives create then get: sub-second times, unicode and long identities,
/// client-go's optional fields, the fencing token and unknown keys.
pub async fn create_then_get_round_trips_every_field(h: &dyn StoreHarness) -> CheckResult {
    let store = h.connect().await?;
    let cases = [
        "stalin".to_string(),
        "Клеопатра-🐍-拿破仑".to_string(),
        format!("{}@cluster-eu-west-1", "n".repeat(230)),
        "name with \"quotes\", \\ and spaces".to_string(),
    ];
    for holder in cases {
        let lock = unique_lock("round-trip");
        let mut rec = sample(&holder);
        rec.acquire_time = Some(Utc.timestamp_opt(1_776_668_936, 123_456_000).single().expect("valid time"));
        rec.renew_time = Some(Utc.timestamp_opt(1_776_669_204, 987_000_000).single().expect("valid time"));
        rec.leader_transitions = 4_000_000;
        rec.lease_duration_seconds = 3600;
        rec.strategy = Some("OldestEmulationVersion".into());
        rec.preferred_holder = Some("cleopatra".into());
        rec.fencing_token = Some(FencingToken(u64::from(u32::MAX) + 7));
        rec.extra.insert("futureField".into(), serde_json::json!({"nested": [1, 2]}));
        let version = store.create(&lock, &rec).await?;
        let got = must_get(&*store, &lock).await?;
        ensure!(
            got.record == rec,
            "record for holder {holder:?} did not round-trip through {store}:\n wrote {rec:?}\n read  {:?}",
            got.record
        );
        ensure!(got.version == version, "get returned version {} but create returned {version}", got.version);
        let reparsed =
            LeaderElectionRecord::from_json(&got.raw).map_err(|e| Failure(format!("raw bytes from {store} do not parse: {e}")))?;
        ensure!(reparsed == rec, "raw bytes from {store} do not hold the record");
    }
    Ok(Observation::default())
}

/// `create` of an existing lock fails with `AlreadyExists` and changes nothing.
pub async fn create_on_existing_lock_fails(h: &dyn StoreHarness) -> CheckResult {
    let store = h.connect().await?;
    let lock = unique_lock("create-existing");
    store.create(&lock, &sample("first")).await?;
    let before = must_get(&*store, &lock).await?;
    match store.create(&lock, &sample("second")).await {
        Err(Error::AlreadyExists { .. }) => {}
        other => return Err(Failure(format!("second create of {lock:?} in {store}: expected AlreadyExists, got {other:?}"))),
    }
    let after = must_get(&*store, &lock).await?;
    ensure!(after.record.holder_identity == "first", "the failed create changed the record to {:?}", after.record);
    ensure!(after.version == before.version, "the failed create changed the version");
    Ok(Observation::default())
}

/// `update` with the current version succeeds and yields a new version.
pub async fn update_with_current_version_succeeds(h: &dyn StoreHarness) -> CheckResult {
    let store = h.connect().await?;
    let lock = unique_lock("update-current");
    let v1 = store.create(&lock, &sample("a")).await?;
    let v2 = store.update(&lock, &v1, &sample("b")).await?;
    ensure!(v2 != v1, "update returned the old version {v1}");
    let got = must_get(&*store, &lock).await?;
    ensure!(
        got.record.holder_identity == "b" && got.version == v2,
        "after update read {:?} at {}",
        got.record.holder_identity,
        got.version
    );
    let v3 = store.update(&lock, &v2, &sample("c")).await?;
    ensure!(v3 != v2 && v3 != v1, "versions repeat: {v1}, {v2}, {v3}");
    if store.capabilities().monotonic_versions {
        let n =
            |v: &Version| v.ordinal().ok_or_else(|| Failure(format!("{store} claims monotonic versions but version {v} has no ordinal")));
        ensure!(n(&v1)? < n(&v2)? && n(&v2)? < n(&v3)?, "{store} claims monotonic versions but wrote {v1}, {v2}, {v3}");
    }
    Ok(Observation::default())
}

/// `update` with a stale version fails with `Conflict` on an atomic store.
pub async fn update_with_stale_version_fails(h: &dyn StoreHarness) -> CheckResult {
    let store = h.connect().await?;
    let lock = unique_lock("update-stale");
    let v1 = store.create(&lock, &sample("a")).await?;
    let v2 = store.update(&lock, &v1, &sample("b")).await?;
    let stale = store.update(&lock, &v1, &sample("intruder")).await;
    let got = must_get(&*store, &lock).await?;
    if store.capabilities().is_atomic() {
        ensure!(
            matches!(stale, Err(Error::Conflict { .. })),
            "update of {lock:?} in {store} with stale version {v1}: expected Conflict, got {stale:?}"
        );
        ensure!(got.record.holder_identity == "b" && got.version == v2, "the rejected update changed the record to {:?}", got.record);
        Ok(Observation::default())
    } else {
        ensure!(matches!(&stale, Ok(_) | Err(Error::Conflict { .. })), "stale update on a last-writer-wins store: {stale:?}");
        Ok(Observation::default().note(match stale {
            Ok(_) => "a stale-version update was accepted (last writer wins)",
            Err(_) => "a stale-version update was rejected when made after the newer write",
        }))
    }
}

/// `update` of an absent lock fails with `NotFound` and creates nothing.
pub async fn update_of_absent_lock_fails(h: &dyn StoreHarness) -> CheckResult {
    let store = h.connect().await?;
    let lock = unique_lock("update-absent");
    let other = unique_lock("update-absent-version-source");
    let version = store.create(&other, &sample("a")).await?;
    let result = store.update(&lock, &version, &sample("b")).await;
    ensure!(matches!(result, Err(Error::NotFound { .. })), "update of absent {lock:?} in {store}: expected NotFound, got {result:?}");
    let got = store.get(&lock).await?;
    ensure!(got.is_none(), "the failed update created {got:?}");
    Ok(Observation::default())
}

/// Counts the winners of a race and, on a last-writer-wins store, how many of them the record does not show.
fn winners<T>(results: &[lock_core::Result<T>], what: &str) -> Result<usize, Failure> {
    let mut won = 0;
    for r in results {
        match r {
            Ok(_) => won += 1,
            Err(Error::AlreadyExists { .. } | Error::Conflict { .. }) => {}
            Err(e) => return Err(Failure(format!("a racing {what} failed with an unexpected error: {e}"))),
        }
    }
    Ok(won)
}

/// 16 concurrent creates of one lock: exactly one wins (atomic stores).
pub async fn concurrent_creates_have_one_winner(h: &dyn StoreHarness) -> CheckResult {
    let lock = unique_lock("create-race");
    let results = race(h, 16, |i, store| {
        let lock = lock.clone();
        async move { store.create(&lock, &sample(&format!("racer-{i}"))).await }
    })
    .await?;
    let won = winners(&results, "create")?;
    let store = h.connect().await?;
    let final_holder = must_get(&*store, &lock).await?.record.holder_identity;
    let believed: Vec<String> = results.iter().enumerate().filter(|(_, r)| r.is_ok()).map(|(i, _)| format!("racer-{i}")).collect();
    ensure!(believed.contains(&final_holder), "the record names {final_holder:?}, which no winner wrote ({believed:?})");
    if store.capabilities().is_atomic() {
        ensure!(won == 1, "{won} of 16 concurrent creates in {store} succeeded: {believed:?}");
        Ok(Observation::default().figure("create_race_winners", 1.0))
    } else {
        ensure!(won >= 1, "no create succeeded");
        Ok(Observation::default().figure("create_race_winners", won as f64))
    }
}

/// 16 concurrent updates from one version of a released record: exactly one wins (atomic stores).
pub async fn concurrent_updates_have_one_winner(h: &dyn StoreHarness) -> CheckResult {
    let store = h.connect().await?;
    let lock = unique_lock("update-race");
    let created = store.create(&lock, &sample("origin")).await?;
    // Released first, as candidates race for a free lock: a store that also gates a new
    // holder on the last one's session (Postgres advisory locks) admits none while it lives.
    let version = store.update(&lock, &created, &sample("")).await?;
    let results = race(h, 16, |i, store| {
        let (lock, version) = (lock.clone(), version.clone());
        async move { store.update(&lock, &version, &sample(&format!("racer-{i}"))).await }
    })
    .await?;
    let won = winners(&results, "update")?;
    let final_holder = must_get(&*store, &lock).await?.record.holder_identity;
    let believed: HashSet<String> = results.iter().enumerate().filter(|(_, r)| r.is_ok()).map(|(i, _)| format!("racer-{i}")).collect();
    ensure!(believed.contains(&final_holder), "the record names {final_holder:?}, which no winner wrote");
    if store.capabilities().is_atomic() {
        ensure!(won == 1, "{won} of 16 concurrent updates from version {version} in {store} succeeded");
        Ok(Observation::default().figure("update_race_winners", 1.0))
    } else {
        ensure!(won >= 1, "no update succeeded");
        Ok(Observation::default().figure("update_race_winners", won as f64))
    }
}

/// 5 workers × 10 read-modify-write increments (retrying on conflict) end at exactly 50.
pub async fn read_modify_write_increments_are_not_lost(h: &dyn StoreHarness) -> CheckResult {
    const WORKERS: usize = 5;
    const EACH: u32 = 10;
    let store = h.connect().await?;
    let lock = unique_lock("increments");
    store.create(&lock, &sample("counter")).await?;
    let results = race(h, WORKERS, |_, store| {
        let lock = lock.clone();
        async move {
            let mut conflicts = 0u32;
            for _ in 0..EACH {
                loop {
                    let seen = store.get(&lock).await?.ok_or_else(|| Error::NotFound { lock: lock.clone(), store: store.to_string() })?;
                    let mut rec = seen.record;
                    rec.leader_transitions += 1;
                    // Leave a window between read and write, as a network round trip would.
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                    match store.update(&lock, &seen.version, &rec).await {
                        Ok(_) => break,
                        Err(Error::Conflict { .. }) => conflicts += 1,
                        Err(e) => return Err(e),
                    }
                    if conflicts > 10_000 {
                        return Err(Error::Backend { store: store.to_string(), source: "no progress after 10000 conflicts".into() });
                    }
                }
            }
            Ok(conflicts)
        }
    })
    .await?;
    let mut conflicts = 0;
    for r in results {
        conflicts += r?;
    }
    let total = must_get(&*store, &lock).await?.record.leader_transitions;
    let expected = WORKERS as u32 * EACH;
    let obs = Observation::default().figure("increment_conflicts", f64::from(conflicts)).figure("increments_kept", f64::from(total));
    if store.capabilities().is_atomic() {
        ensure!(total == expected, "{WORKERS} workers × {EACH} increments in {store} ended at {total}, not {expected}: updates were lost");
        Ok(obs)
    } else {
        ensure!(total >= 1 && total <= expected, "counter ended at {total}");
        Ok(obs.note(format!("{} of {expected} increments were lost (last writer wins)", expected - total)))
    }
}

/// Locks with different names never interfere, including names a careless key mapping would merge.
pub async fn lock_names_do_not_interfere(h: &dyn StoreHarness) -> CheckResult {
    let store = h.connect().await?;
    let base = unique_lock("names");
    let names = [
        base.to_string(),
        format!("{base}/child"),
        format!("{base}-child"),
        format!("{base}_child"),
        format!("{base}%2Fchild"),
        format!("{base}.child"),
        format!("{base}/CHILD"),
        format!("{base} child"),
    ];
    let locks: Vec<LockName> = names.iter().map(LockName::new).collect::<Result<_, _>>()?;
    for (i, lock) in locks.iter().enumerate() {
        store
            .create(lock, &sample(&format!("holder-{i}")))
            .await
            .map_err(|e| Failure(format!("create of {lock:?} failed ({e}): it collides with another name")))?;
    }
    for (i, lock) in locks.iter().enumerate() {
        let seen = must_get(&*store, lock).await?;
        ensure!(seen.record.holder_identity == format!("holder-{i}"), "{lock:?} reads {:?}: names collide", seen.record.holder_identity);
    }
    let first = must_get(&*store, &locks[0]).await?;
    store.update(&locks[0], &first.version, &sample("changed")).await?;
    for (i, lock) in locks.iter().enumerate().skip(1) {
        let seen = must_get(&*store, lock).await?;
        ensure!(seen.record.holder_identity == format!("holder-{i}"), "updating {:?} changed {lock:?}", locks[0]);
    }
    Ok(Observation::default())
}

/// A record written behind the store's back that is not a lease record is reported
/// as corrupt (naming the lock and the store) and never overwritten.
pub async fn corrupt_record_is_reported_and_left_untouched(h: &dyn StoreHarness) -> CheckResult {
    let store = h.connect().await?;
    for garbage in [&b"{\"holderIdentity\": not json"[..], br#"{"holderIdentity":5,"leaseDurationSeconds":"soon"}"#, b"[1,2,3]"] {
        let lock = unique_lock("corrupt");
        h.put_raw(&lock, garbage).await?;
        let got = store.get(&lock).await;
        let text = match &got {
            Err(e @ Error::Corrupt { .. }) => e.to_string(),
            other => {
                return Err(Failure(format!(
                    "get of corrupt record {:?}: expected Corrupt, got {other:?}",
                    String::from_utf8_lossy(garbage)
                )));
            }
        };
        ensure!(
            text.contains(lock.as_str()) && text.contains(&store.to_string()),
            "the error does not name the lock and the store: {text}"
        );
        // Neither a create nor a blind update (as a last-writer-wins store would take) may replace it.
        let created = store.create(&lock, &sample("clobberer")).await;
        ensure!(created.is_err(), "create over the corrupt record of {lock:?} succeeded");
        // Guessed versions too: small counters are what a raw write leaves behind.
        for guess in ["0", "1", "2"] {
            let _ = store.update(&lock, &Version::new(guess), &sample("clobberer")).await;
        }
        let raw = h.raw(&lock).await?;
        ensure!(
            raw.as_deref() == Some(garbage),
            "the corrupt record was changed to {:?}",
            raw.map(|r| String::from_utf8_lossy(&r).into_owned())
        );
    }
    Ok(Observation::default())
}

/// A store that declares change notifications delivers each write, with its new
/// record and version, to a watcher on another client. Stores without them pass
/// with a note: their standbys poll.
pub async fn change_notifications_deliver_each_write(h: &dyn StoreHarness) -> CheckResult {
    let writer = h.connect().await?;
    if !writer.capabilities().watch {
        return Ok(Observation::default().note("no change notifications: standbys poll"));
    }
    let watcher = h.connect().await?;
    let lock = unique_lock("watch");
    let first = writer.create(&lock, &sample("writer-1")).await?;
    let Some(mut changes) = watcher.watch(&lock).await? else {
        return Err(Failure(format!("{watcher} declares change notifications but watch() gave none")));
    };
    let mut latencies = Vec::new();
    let mut version = first;
    for i in 2..=4 {
        let holder = format!("writer-{i}");
        let sent = tokio::time::Instant::now();
        version = writer.update(&lock, &version, &sample(&holder)).await?;
        let deadline = sent + std::time::Duration::from_secs(5);
        loop {
            let seen = tokio::time::timeout_at(deadline, changes.recv())
                .await
                .map_err(|_| Failure(format!("no notification of the write by {holder} within 5 s")))?
                .ok_or_else(|| Failure(format!("the notifications ended before the write by {holder} arrived")))?;
            if seen.record.holder_identity == holder {
                ensure!(
                    seen.version == version,
                    "the notification of {holder}'s write carries version {:?}, the write returned {:?}",
                    seen.version,
                    version
                );
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                break;
            }
        }
    }
    let worst = latencies.iter().copied().fold(0.0, f64::max);
    Ok(Observation::default().figure("notification_ms", worst))
}
