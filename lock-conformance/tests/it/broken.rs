//! Deliberately broken stores fail exactly the checks that should catch them,
//! so a passing suite means something.

use async_trait::async_trait;
use lock_conformance::{MemoryHarness, StoreHarness, check};
use lock_core::{Capabilities, LeaderElectionRecord, LeaseStore, LockName, MemoryStore, Observed, SharedStore, Version};
use std::{fmt, sync::Arc};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Flaw {
    /// A last-writer-wins store that claims atomic compare-and-set.
    ClaimsAtomic,
    /// `create` overwrites an existing record instead of failing.
    CreateOverwrites,
    /// Writes that release the lease (empty holder) are acknowledged but dropped.
    ReleaseDoesNothing,
    /// Records that do not decode read as an empty record instead of an error.
    HidesCorruption,
    /// Claims change notifications, but its watch never delivers anything.
    SilentWatch,
}

#[derive(Debug, Clone)]
struct Broken {
    inner: MemoryStore,
    flaw: Flaw,
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "broken store ({:?})", self.flaw)
    }
}

#[async_trait]
impl LeaseStore for Broken {
    async fn get(&self, lock: &LockName) -> lock_core::Result<Option<Observed>> {
        match self.inner.get(lock).await {
            Err(lock_core::Error::Corrupt { .. }) if self.flaw == Flaw::HidesCorruption => {
                let raw = self.inner.raw(lock).unwrap_or_default();
                let record = LeaderElectionRecord::new("", 1, chrono::Utc::now());
                // Hand out the version a put_raw gave it, so a write can clobber it.
                let version = self.inner.put_raw(lock, raw.clone());
                Ok(Some(Observed { record, version, raw }))
            }
            other => other,
        }
    }
    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> lock_core::Result<Version> {
        if self.flaw == Flaw::CreateOverwrites {
            return Ok(self.inner.put_raw(lock, rec.to_json().expect("encodes")));
        }
        self.inner.create(lock, rec).await
    }
    async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> lock_core::Result<Version> {
        if self.flaw == Flaw::ReleaseDoesNothing && !rec.is_held() {
            return Ok(expected.clone());
        }
        if self.flaw == Flaw::HidesCorruption && self.inner.get(lock).await.is_err() {
            return Ok(self.inner.put_raw(lock, rec.to_json().expect("encodes")));
        }
        self.inner.update(lock, expected, rec).await
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::atomic().with_watch(self.flaw == Flaw::SilentWatch)
    }
    async fn watch(&self, _lock: &LockName) -> lock_core::Result<Option<lock_core::Changes>> {
        if self.flaw != Flaw::SilentWatch {
            return Ok(None);
        }
        // A channel whose sender is kept but never used: nothing ever arrives.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        std::mem::forget(tx);
        Ok(Some(rx))
    }
}

struct BrokenHarness {
    memory: MemoryHarness,
    store: Broken,
}

impl BrokenHarness {
    fn new(flaw: Flaw) -> Self {
        let inner = if flaw == Flaw::ClaimsAtomic { MemoryStore::last_writer_wins() } else { MemoryStore::new() };
        Self { memory: MemoryHarness::with_store(inner.clone()), store: Broken { inner, flaw } }
    }
}

#[async_trait]
impl StoreHarness for BrokenHarness {
    async fn connect(&self) -> lock_core::Result<SharedStore> {
        Ok(Arc::new(self.store.clone()))
    }
    async fn put_raw(&self, lock: &LockName, raw: &[u8]) -> lock_core::Result<()> {
        self.memory.put_raw(lock, raw).await
    }
    async fn raw(&self, lock: &LockName) -> lock_core::Result<Option<Vec<u8>>> {
        self.memory.raw(lock).await
    }
    async fn remove_raw(&self, lock: &LockName) -> lock_core::Result<()> {
        self.memory.remove_raw(lock).await
    }
}

/// Runs every named check against the flawed store and asserts each one fails.
async fn fails(flaw: Flaw, checks: &[&str]) {
    let harness = BrokenHarness::new(flaw);
    for name in checks {
        match check(name, &harness).await {
            Ok(obs) => panic!("{flaw:?}: check {name} passed ({obs:?}) but should have caught the flaw"),
            Err(failure) => println!("{flaw:?}: {name} failed as it should: {failure}"),
        }
    }
}

/// And the checks the flaw does not touch still pass, so the failures are specific.
async fn passes(flaw: Flaw, checks: &[&str]) {
    let harness = BrokenHarness::new(flaw);
    for name in checks {
        if let Err(failure) = check(name, &harness).await {
            panic!("{flaw:?}: check {name} should not be affected by the flaw but failed: {failure}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_writer_wins_store_claiming_atomic_cas_is_caught() {
    fails(
        Flaw::ClaimsAtomic,
        &["update_with_stale_version_fails", "concurrent_updates_have_one_winner", "read_modify_write_increments_are_not_lost"],
    )
    .await;
    passes(Flaw::ClaimsAtomic, &["absent_lock_reads_as_absent", "create_on_existing_lock_fails", "update_of_absent_lock_fails"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_that_overwrites_is_caught() {
    fails(
        Flaw::CreateOverwrites,
        &["create_on_existing_lock_fails", "concurrent_creates_have_one_winner", "corrupt_record_is_reported_and_left_untouched"],
    )
    .await;
    passes(Flaw::CreateOverwrites, &["update_with_stale_version_fails", "concurrent_updates_have_one_winner"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_that_does_nothing_is_caught() {
    fails(Flaw::ReleaseDoesNothing, &["graceful_release_hands_over_quickly", "one_candidate_acquires"]).await;
    passes(Flaw::ReleaseDoesNothing, &["crash_fails_over_within_bound", "update_with_stale_version_fails"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_that_hides_corruption_is_caught() {
    fails(Flaw::HidesCorruption, &["corrupt_record_is_reported_and_left_untouched"]).await;
    passes(Flaw::HidesCorruption, &["create_then_get_round_trips_every_field", "concurrent_updates_have_one_winner"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_that_never_notifies_is_caught_and_elections_still_work() {
    fails(Flaw::SilentWatch, &["change_notifications_deliver_each_write"]).await;
    // Notifications are a hint: without them the elector still polls.
    passes(Flaw::SilentWatch, &["graceful_release_hands_over_quickly", "crash_fails_over_within_bound"]).await;
}

#[tokio::test]
async fn unknown_check_names_are_an_error_not_a_pass() {
    let result = check("no_such_check", &MemoryHarness::new()).await;
    assert!(result.is_err_and(|f| f.0.contains("no_such_check")));
}
