//! The reference store: records in memory with atomic compare-and-set.

use crate::{
    error::{Error, Result},
    name::LockName,
    record::LeaderElectionRecord,
    store::{Capabilities, Changes, LeaseStore, Observed, RawAccess, Version, encode_record},
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
    watchers: HashMap<LockName, Vec<tokio::sync::mpsc::Sender<Observed>>>,
}

impl Inner {
    /// Stores a record and tells the lock's watchers.
    fn write(&mut self, store: &MemoryStore, lock: &LockName, raw: Bytes) -> u64 {
        self.next_version += 1;
        let v = self.next_version;
        self.records.insert(lock.clone(), (raw.clone(), v));
        if store.watch
            && let Some(watchers) = self.watchers.get_mut(lock)
            && let Ok(seen) = Observed::decode(lock, store, raw, Version::new(v.to_string()))
        {
            // A watcher that is gone, or too far behind to care, is dropped.
            watchers.retain(|w| w.try_send(seen.clone()).is_ok());
        }
        v
    }
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
    watch: bool,
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

    /// An empty atomic store with change notifications ([`LeaseStore::watch`]), as
    /// etcd's watch or Postgres's LISTEN/NOTIFY would give.
    #[must_use]
    pub fn with_watch() -> Self {
        Self { watch: true, ..Self::default() }
    }

    /// Writes raw bytes for `lock` behind the store's back (a foreign or corrupt writer).
    pub fn put_raw(&self, lock: &LockName, raw: impl Into<Bytes>) -> Version {
        let v = self.lock().write(self, lock, raw.into());
        Version::new(v.to_string())
    }

    /// The raw bytes stored for `lock`, if any.
    #[must_use]
    pub fn raw(&self, lock: &LockName) -> Option<Bytes> {
        self.lock().records.get(lock).map(|(raw, _)| raw.clone())
    }

    /// Ends every change feed, as a store restart or a dropped connection would: each
    /// watcher's channel closes and its elector must subscribe again.
    pub fn end_watches(&self) {
        self.lock().watchers.clear();
    }

    /// Deletes the record of `lock` behind the store's back (an operator's cleanup, an eviction).
    pub fn remove(&self, lock: &LockName) {
        self.lock().records.remove(lock);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave a half-written record: every write is one insert.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("locks", &self.lock().records.len())
            .field("last_writer_wins", &self.last_writer_wins)
            .field("watch", &self.watch)
            .finish()
    }
}

impl fmt::Display for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.last_writer_wins, self.watch) {
            (true, _) => "memory store (last-writer-wins)",
            (false, true) => "memory store (with change notifications)",
            (false, false) => "memory store",
        })
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
        let v = inner.write(self, lock, raw);
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
        crate::store::decode_record(lock, self, &current.0)?;
        let v = inner.write(self, lock, raw);
        Ok(Version::new(v.to_string()))
    }

    fn capabilities(&self) -> Capabilities {
        let caps = if self.last_writer_wins { Capabilities::last_writer_wins() } else { Capabilities::atomic() };
        caps.with_monotonic_versions(true).with_watch(self.watch)
    }

    async fn watch(&self, lock: &LockName) -> Result<Option<Changes>> {
        if !self.watch {
            return Ok(None);
        }
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        self.lock().watchers.entry(lock.clone()).or_default().push(tx);
        Ok(Some(rx))
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
    async fn delete_raw(&self, lock: &LockName) -> Result<()> {
        self.remove(lock);
        Ok(())
    }
}
