//! A mutant: the same store with a lost-update bug (its update ignores the version the
//! caller read). The suite must catch it; if these checks pass on the mutant, the suite
//! cannot tell a lock from a last-writer-wins register.

use lock_conformance::{CHECKS, Harness, Level, SUITE_TIMING, check};
use lock_core::{
    Capabilities, LeaderElectionRecord, LeaseStore, LockName, Observed, RawAccess, Result, Version, async_trait, bytes::Bytes,
};
use lock_sqlite::SqliteStore;

#[derive(Debug)]
struct IgnoresVersion(SqliteStore);

/// The store's own name: errors carry it, and a check that looks for it must not fail
/// for the wrapper's sake.
impl std::fmt::Display for IgnoresVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[async_trait]
impl LeaseStore for IgnoresVersion {
    async fn get(&self, lock: &LockName) -> Result<Option<Observed>> {
        self.0.get(lock).await
    }
    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
        self.0.create(lock, rec).await
    }
    async fn update(&self, lock: &LockName, _expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
        // The bug: whatever the caller read, write over what is there now.
        let current = self.0.get(lock).await?.map_or_else(|| Version::new("0"), |seen| seen.version);
        self.0.update(lock, &current, rec).await
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
}

#[async_trait]
impl RawAccess for IgnoresVersion {
    async fn write_raw(&self, lock: &LockName, raw: &[u8]) -> Result<()> {
        self.0.write_raw(lock, raw).await
    }
    async fn read_raw(&self, lock: &LockName) -> Result<Option<Bytes>> {
        self.0.read_raw(lock).await
    }
    async fn delete_raw(&self, lock: &LockName) -> Result<()> {
        self.0.delete_raw(lock).await
    }
}

/// The checks a lost-update bug must fail, whatever else catches it.
const MUST_CATCH: [&str; 2] = ["update_with_stale_version_fails", "read_modify_write_increments_are_not_lost"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_a_store_that_ignores_the_expected_version() {
    let url = crate::fresh_database("mutant").await;
    let path = lock_core::StoreUrl::parse(&url).expect("url").local_path("database file").expect("a path");
    let open = move || {
        let path = path.clone();
        async move { SqliteStore::open(&path, "highlander_leases", SUITE_TIMING.call_timeout(), false) }
    };
    let real = Harness::new(open.clone());
    let mutant = Harness::new(move || {
        let open = open.clone();
        async move { open().await.map(IgnoresVersion) }
    });
    let mut caught = Vec::new();
    for c in CHECKS.iter().filter(|c| c.level == Level::Store) {
        check(c.name, &real).await.unwrap_or_else(|failure| panic!("the real store fails {}: {failure}", c.name));
        if let Err(failure) = check(c.name, &mutant).await {
            println!("{} caught the mutant: {failure}", c.name);
            caught.push(c.name);
        }
    }
    for name in MUST_CATCH {
        assert!(caught.contains(&name), "the mutant passed {name}: the suite did not see it ignore the expected version");
    }
}
