//! The seam: a store that holds lease records and compares-and-sets them.

use crate::{error::Error, error::Result, name::LockName, record::LeaderElectionRecord};
use async_trait::async_trait;
use bytes::Bytes;
use std::{fmt, sync::Arc};

/// A store's compare-and-set token for one record: opaque to everyone but the store.
///
/// `get` returns it; `update` takes the version it expects to replace. A store with
/// [`Capabilities::monotonic_versions`] also gives each version its place in the
/// record's history ([`ordinal`](Self::ordinal)), which increases with every write.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Version {
    token: Arc<str>,
    ordinal: Option<u64>,
}

impl Version {
    /// Wraps a store's token (a counter, a revision, an ETag). A token that is a
    /// number is its own ordinal.
    #[must_use]
    pub fn new(token: impl AsRef<str>) -> Self {
        let token: Arc<str> = token.as_ref().into();
        Self { ordinal: token.parse().ok(), token }
    }

    /// A token whose place in the record's history is `ordinal` (for tokens that carry
    /// more than a counter, like Postgres's `version:xmin`).
    #[must_use]
    pub fn ordered(token: impl AsRef<str>, ordinal: u64) -> Self {
        Self { token: token.as_ref().into(), ordinal: Some(ordinal) }
    }

    /// The token as the store wrote it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.token
    }

    /// Where this version stands in the record's history, if the store says.
    #[must_use]
    pub fn ordinal(&self) -> Option<u64> {
        self.ordinal
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({})", self.token)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.token)
    }
}

/// A record as read from a store: the decoded record, its version and its raw bytes.
///
/// The elector compares raw bytes to notice any change, including changes that
/// decode to an equal record.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The decoded record.
    pub record: LeaderElectionRecord,
    /// The version to pass to `update`.
    pub version: Version,
    /// The bytes the store holds.
    pub raw: Bytes,
}

impl Observed {
    /// Decodes `raw` for a store, turning a malformed record into [`Error::Corrupt`]
    /// that names the lock and the store.
    pub fn decode(lock: &LockName, store: &dyn fmt::Display, raw: Bytes, version: Version) -> Result<Self> {
        let record = decode_record(lock, store, &raw)?;
        Ok(Self { record, version, raw })
    }
}

/// Decodes a stored record, or [`Error::Corrupt`] naming the lock and the store. A store
/// calls it before an update on what it is about to replace: it never writes over data it
/// did not understand, whatever the version.
pub fn decode_record(lock: &LockName, store: &dyn fmt::Display, raw: &[u8]) -> Result<LeaderElectionRecord> {
    LeaderElectionRecord::from_json(raw).map_err(|e| Error::Corrupt { lock: lock.clone(), store: store.to_string(), detail: e.to_string() })
}

/// Encodes a record for a store, refusing one larger than the store can hold.
pub fn encode_record(lock: &LockName, store: &dyn fmt::Display, rec: &LeaderElectionRecord, max_bytes: Option<usize>) -> Result<Bytes> {
    let json = rec.to_json().map_err(|e| Error::Config(format!("lock {lock:?}: record for {store} cannot be encoded: {e}")))?;
    if let Some(max) = max_bytes.filter(|max| json.len() > *max) {
        return Err(Error::Config(format!("lock {lock:?}: record is {} bytes, {store} holds at most {max}", json.len())));
    }
    Ok(Bytes::from(json))
}

/// Whether a store's writes are conditional.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteConsistency {
    /// `update` succeeds only if the record still has the expected version, atomically.
    AtomicCompareAndSet,
    /// The store cannot compare-and-set: the last write wins, whatever it expected.
    /// The elector reads before every write and checks it still holds the lease.
    LastWriterWins,
}

/// What a store promises. The conformance suite checks each claim; the elector adapts to them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Conditional writes or last-writer-wins.
    pub consistency: WriteConsistency,
    /// Versions of one record increase numerically with every write (etcd revisions, counters).
    pub monotonic_versions: bool,
    /// The store can notify standbys of a change at once (watch, LISTEN/NOTIFY).
    pub watch: bool,
    /// The largest record, in bytes, the store holds (`None`: no practical limit).
    pub max_record_bytes: Option<usize>,
    /// How the store makes a write of the user's commit only while the lock's record
    /// names the writer's term, checked in the write's own transaction (see
    /// [`crate::fence`]): the call and the mechanism, e.g. "`fenced_txn` (compare on the
    /// term)"; `None` if it cannot (pass the fencing token to the resource instead).
    pub fenced_writes: Option<&'static str>,
}

impl Capabilities {
    /// A store with atomic compare-and-set.
    #[must_use]
    pub fn atomic() -> Self {
        Self {
            consistency: WriteConsistency::AtomicCompareAndSet,
            monotonic_versions: false,
            watch: false,
            max_record_bytes: None,
            fenced_writes: None,
        }
    }

    /// A store whose last write wins.
    #[must_use]
    pub fn last_writer_wins() -> Self {
        Self { consistency: WriteConsistency::LastWriterWins, ..Self::atomic() }
    }

    /// Declares numerically increasing versions.
    #[must_use]
    pub fn with_monotonic_versions(mut self, yes: bool) -> Self {
        self.monotonic_versions = yes;
        self
    }

    /// Declares change notifications.
    #[must_use]
    pub fn with_watch(mut self, yes: bool) -> Self {
        self.watch = yes;
        self
    }

    /// Declares fenced writes, and how they are made (the call and its mechanism).
    #[must_use]
    pub fn with_fenced_writes(mut self, how: &'static str) -> Self {
        self.fenced_writes = Some(how);
        self
    }

    /// Declares a record size limit.
    #[must_use]
    pub fn with_max_record_bytes(mut self, max: Option<usize>) -> Self {
        self.max_record_bytes = max;
        self
    }

    /// Whether `update` is an atomic compare-and-set.
    #[must_use]
    pub fn is_atomic(&self) -> bool {
        self.consistency == WriteConsistency::AtomicCompareAndSet
    }
}

/// A store of lease records: client-go's `resourcelock.Interface` with the
/// compare-and-set token made explicit and one store serving many locks.
///
/// Implementations must:
/// - `get`: return `Ok(None)` for an absent lock, [`Error::Corrupt`] for a record
///   that does not decode (see [`Observed::decode`]);
/// - `create`: write only if the lock is absent, else [`Error::AlreadyExists`];
/// - `update`: write only if the record still has version `expected`, else
///   [`Error::Conflict`] ([`Error::NotFound`] if absent). A store that cannot
///   check says so with [`WriteConsistency::LastWriterWins`];
/// - never overwrite a record they could not decode.
///
/// `Display` names the store for logs and errors and must never include a secret.
#[async_trait]
pub trait LeaseStore: Send + Sync + fmt::Debug + fmt::Display {
    /// Reads the record of `lock`, `None` if there is none.
    async fn get(&self, lock: &LockName) -> Result<Option<Observed>>;
    /// Creates the record of `lock`; fails with [`Error::AlreadyExists`] if present.
    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version>;
    /// Replaces the record of `lock` if it still has version `expected`; returns the new version.
    async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version>;
    /// What this store promises.
    fn capabilities(&self) -> Capabilities;
    /// Change notifications for `lock`, if the store has them (see [`Capabilities::watch`]):
    /// each new record as it is written. A hint that lets a standby act on a release at
    /// once; the elector still polls, and compare-and-set still decides. The default
    /// has none.
    async fn watch(&self, lock: &LockName) -> Result<Option<Changes>> {
        let _ = lock;
        Ok(None)
    }
}

/// The records a store's [`LeaseStore::watch`] reports, newest last. The sender side
/// stops (and the stream ends) when the store loses its watch; the receiver may be
/// dropped at any time.
pub type Changes = tokio::sync::mpsc::Receiver<Observed>;

macro_rules! forward_store {
    ($ty:ty) => {
        #[async_trait]
        impl<S: LeaseStore + ?Sized> LeaseStore for $ty {
            async fn get(&self, lock: &LockName) -> Result<Option<Observed>> {
                (**self).get(lock).await
            }
            async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
                (**self).create(lock, rec).await
            }
            async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
                (**self).update(lock, expected, rec).await
            }
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            async fn watch(&self, lock: &LockName) -> Result<Option<Changes>> {
                (**self).watch(lock).await
            }
        }
    };
}

/// Reaching a store's raw bytes, bypassing its encoding and its compare-and-set: for
/// the conformance suite (planting corrupt or foreign records) and for repair tools.
/// Never used by the elector.
#[async_trait]
pub trait RawAccess: LeaseStore {
    /// Writes `raw` as the record of `lock`, whatever is there (create or overwrite).
    async fn write_raw(&self, lock: &LockName, raw: &[u8]) -> Result<()>;
    /// The bytes held for `lock`, undecoded.
    async fn read_raw(&self, lock: &LockName) -> Result<Option<Bytes>>;
    /// Deletes the record of `lock`, whoever holds it, as an operator's `DELETE`, a
    /// flush or an eviction would (absent already is not an error): for the suite's
    /// and chaos's record-loss faults.
    async fn delete_raw(&self, lock: &LockName) -> Result<()>;
}

forward_store!(Arc<S>);
forward_store!(Box<S>);

/// A shared raw-access store (`Arc<dyn RawAccess>`, as `highlander::open_raw` gives) is one too.
#[async_trait]
impl<S: RawAccess + ?Sized> RawAccess for Arc<S> {
    async fn write_raw(&self, lock: &LockName, raw: &[u8]) -> Result<()> {
        (**self).write_raw(lock, raw).await
    }
    async fn read_raw(&self, lock: &LockName) -> Result<Option<Bytes>> {
        (**self).read_raw(lock).await
    }
    async fn delete_raw(&self, lock: &LockName) -> Result<()> {
        (**self).delete_raw(lock).await
    }
}

/// A store shared between electors and tasks.
pub type SharedStore = Arc<dyn LeaseStore>;
