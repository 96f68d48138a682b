//! The reference store: records in memory with atomic compare-and-set.

use crate::{
    error::{Error, Result},
    name::LockName,
    record::LeaderElectionRecord,
    store::{Capabilities, LeaseStore, Observed, RawAccess, Version, encode_record},
};
use async_trait::async_trait;
use bytes::Bytes;
use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, PoisonError},
};

#[derive(Debug, Default)]
struct Inner {
    records: HashMap<LockName, (Bytes, u64)>,
    next_version: u64,
}

/// An in-memory [`LeaseStore`]: the reference implementation, for tests and demos.
///
/// Clones share the same records, so several electors in one process can compete.
/// By default `update` is an atomic compare-and-set;
/// [`MemoryStore::last_writer_wins`] builds one that ignores the expected version
/// (and says so in its capabilities), to model stores such as a Gist.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    last_writer_wins: bool,
}

impl MemoryStore {
    /// An empty store with atomic compare-and-set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose last write wins, declared as such.
    #[must_use]
    pub fn last_writer_wins() -> Self {
        Self { last_writer_wins: true, ..Self::default() }
    }

    /// Writes raw bytes for `lock` behind the store's back (a foreign or corrupt writer).
    pub fn put_raw(&self, lock: &LockName, raw: impl Into<Bytes>) -> Version {
        let mut inner = self.lock();
        inner.next_version += 1;
        let v = inner.next_version;
        inner.records.insert(lock.clone(), (raw.into(), v));
        Version::new(v.to_string())
    }

    /// The raw bytes stored for `lock`, if any.
    #[must_use]
    pub fn raw(&self, lock: &LockName) -> Option<Bytes> {
        self.lock().records.get(lock).map(|(raw, _)| raw.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave a half-written record: every write is one insert.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").field("locks", &self.lock().records.len()).field("last_writer_wins", &self.last_writer_wins).finish()
    }
}

impl fmt::Display for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.last_writer_wins { "memory store (last-writer-wins)" } else { "memory store" })
    }
}

#[async_trait]
impl LeaseStore for MemoryStore {
    async fn get(&self, lock: &LockName) -> Result<Option<Observed>> {
        let found = self.lock().records.get(lock).cloned();
        found.map(|(raw, v)| Observed::decode(lock, self, raw, Version::new(v.to_string()))).transpose()
    }

    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
        let raw = encode_record(lock, self, rec, None)?;
        let mut inner = self.lock();
        if inner.records.contains_key(lock) {
            return Err(Error::AlreadyExists { lock: lock.clone(), store: self.to_string() });
        }
        inner.next_version += 1;
        let v = inner.next_version;
        inner.records.insert(lock.clone(), (raw, v));
        Ok(Version::new(v.to_string()))
    }

    async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
        let raw = encode_record(lock, self, rec, None)?;
        let mut inner = self.lock();
        let current = match inner.records.get(lock) {
            None => return Err(Error::NotFound { lock: lock.clone(), store: self.to_string() }),
            Some((current_raw, v)) => (current_raw.clone(), *v),
        };
        if !self.last_writer_wins && current.1.to_string() != expected.as_str() {
            return Err(Error::Conflict { lock: lock.clone(), store: self.to_string() });
        }
        // Never overwrite what we could not read, whatever the version.
        if let Err(e) = LeaderElectionRecord::from_json(&current.0) {
            return Err(Error::Corrupt { lock: lock.clone(), store: self.to_string(), detail: e.to_string() });
        }
        inner.next_version += 1;
        let v = inner.next_version;
        inner.records.insert(lock.clone(), (raw, v));
        Ok(Version::new(v.to_string()))
    }

    fn capabilities(&self) -> Capabilities {
        let caps = if self.last_writer_wins { Capabilities::last_writer_wins() } else { Capabilities::atomic() };
        caps.with_monotonic_versions(true)
    }
}

#[async_trait]
impl RawAccess for MemoryStore {
    async fn write_raw(&self, lock: &LockName, raw: &[u8]) -> Result<()> {
        self.put_raw(lock, raw.to_vec());
        Ok(())
    }
    async fn read_raw(&self, lock: &LockName) -> Result<Option<Bytes>> {
        Ok(self.raw(lock))
    }
}
