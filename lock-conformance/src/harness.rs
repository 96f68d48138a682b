//! What the suite needs from a store under test, and how each check reports.

use async_trait::async_trait;
use lock_core::{Backend, LockName, MemoryStore, OpenOptions, RawAccess, SharedStore, StoreUrl, Timing};
use std::{fmt, future::Future, pin::Pin, sync::Arc, time::Duration};

/// A store under test, as the suite sees it.
///
/// `connect` hands out clients of the store (each as a separate process would
/// have); `put_raw` and `raw` reach the stored bytes behind the store's back, to
/// plant corrupt or foreign records and to check they were left untouched.
#[async_trait]
pub trait StoreHarness: Send + Sync {
    /// A client of the store under test.
    async fn connect(&self) -> lock_core::Result<SharedStore>;

    /// Writes `raw` as the record of `lock`, bypassing the store's encoding.
    async fn put_raw(&self, lock: &LockName, raw: &[u8]) -> lock_core::Result<()>;

    /// The bytes held for `lock`, read bypassing the store's decoding.
    async fn raw(&self, lock: &LockName) -> lock_core::Result<Option<Vec<u8>>>;

    /// Deletes the record of `lock` behind the candidates' backs (an operator's
    /// `DELETE`, a flush, an eviction): the record-loss checks' fault.
    async fn remove_raw(&self, lock: &LockName) -> lock_core::Result<()>;

    /// Durations for the elector checks; slow stores may ask for longer ones.
    fn timing(&self) -> Timing {
        SUITE_TIMING
    }
}

#[async_trait]
impl<H: StoreHarness + ?Sized> StoreHarness for Arc<H> {
    async fn connect(&self) -> lock_core::Result<SharedStore> {
        (**self).connect().await
    }
    async fn put_raw(&self, lock: &LockName, raw: &[u8]) -> lock_core::Result<()> {
        (**self).put_raw(lock, raw).await
    }
    async fn raw(&self, lock: &LockName) -> lock_core::Result<Option<Vec<u8>>> {
        (**self).raw(lock).await
    }
    async fn remove_raw(&self, lock: &LockName) -> lock_core::Result<()> {
        (**self).remove_raw(lock).await
    }
    fn timing(&self) -> Timing {
        (**self).timing()
    }
}

/// The elector durations the checks use: short, so the suite runs in seconds.
pub const SUITE_TIMING: Timing =
    Timing { lease: Duration::from_secs(2), renew_deadline: Duration::from_millis(1500), retry_period: Duration::from_millis(300) };

/// The harness of any store that offers [`RawAccess`]: `connect` makes a new client
/// (as another process would), and the raw back door goes through a client too.
pub struct Harness<F> {
    connect: F,
    timing: Timing,
}

impl<F, Fut, S> Harness<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: std::future::Future<Output = lock_core::Result<S>> + Send,
    S: RawAccess + 'static,
{
    /// A harness whose clients come from `connect`.
    pub fn new(connect: F) -> Self {
        Self { connect, timing: SUITE_TIMING }
    }

    /// Uses these elector durations (for slow stores).
    #[must_use]
    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }
}

/// How a URL harness connects: a boxed opener.
pub type Connect = Box<dyn Fn() -> Pin<Box<dyn Future<Output = lock_core::Result<Arc<dyn RawAccess>>> + Send>> + Send + Sync>;

impl Harness<Connect> {
    /// The harness of the store a URL names, opened through its backend (each connect
    /// a new client, as another process would have): how every backend's tests, the
    /// semantics report and `highlander conformance` build the store under test.
    ///
    /// The store is opened once here, so a URL the backend refuses (a misspelt
    /// parameter, a missing secret) fails now, once, with the backend's own message,
    /// rather than as every check's "cannot connect".
    pub async fn for_url(backend: &'static dyn Backend, url: &str, timing: Timing) -> lock_core::Result<Self> {
        let url = StoreUrl::parse(url)?;
        let options = OpenOptions::new(timing);
        drop(backend.open(&url, &options).await?);
        let connect: Connect = Box::new(move || {
            let url = url.clone();
            Box::pin(async move { backend.open(&url, &options).await })
        });
        Ok(Self { connect, timing })
    }
}

impl<F> fmt::Debug for Harness<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harness").field("timing", &self.timing).finish_non_exhaustive()
    }
}

#[async_trait]
impl<F, Fut, S> StoreHarness for Harness<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: std::future::Future<Output = lock_core::Result<S>> + Send,
    S: RawAccess + 'static,
{
    async fn connect(&self) -> lock_core::Result<SharedStore> {
        Ok(Arc::new((self.connect)().await?))
    }
    async fn put_raw(&self, lock: &LockName, raw: &[u8]) -> lock_core::Result<()> {
        (self.connect)().await?.write_raw(lock, raw).await
    }
    async fn raw(&self, lock: &LockName) -> lock_core::Result<Option<Vec<u8>>> {
        Ok((self.connect)().await?.read_raw(lock).await?.map(|b| b.to_vec()))
    }
    async fn remove_raw(&self, lock: &LockName) -> lock_core::Result<()> {
        (self.connect)().await?.delete_raw(lock).await
    }
    fn timing(&self) -> Timing {
        self.timing
    }
}

/// The harness of a [`MemoryStore`]: the reference every other store is compared with.
#[derive(Debug, Clone, Default)]
pub struct MemoryHarness {
    store: MemoryStore,
}

impl MemoryHarness {
    /// A harness over a fresh atomic memory store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A harness over a given memory store (e.g. [`MemoryStore::last_writer_wins`]).
    #[must_use]
    pub fn with_store(store: MemoryStore) -> Self {
        Self { store }
    }
}

#[async_trait]
impl StoreHarness for MemoryHarness {
    async fn connect(&self) -> lock_core::Result<SharedStore> {
        Ok(Arc::new(self.store.clone()))
    }
    async fn put_raw(&self, lock: &LockName, raw: &[u8]) -> lock_core::Result<()> {
        self.store.write_raw(lock, raw).await
    }
    async fn raw(&self, lock: &LockName) -> lock_core::Result<Option<Vec<u8>>> {
        Ok(self.store.read_raw(lock).await?.map(|b| b.to_vec()))
    }
    async fn remove_raw(&self, lock: &LockName) -> lock_core::Result<()> {
        self.store.delete_raw(lock).await
    }
}

/// Why a check failed: a sentence saying what was expected and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Failure {}

impl From<lock_core::Error> for Failure {
    fn from(e: lock_core::Error) -> Self {
        Self(format!("unexpected store error: {e}"))
    }
}

/// What a passing check observed, for the semantics report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// Named figures (seconds, counts) the check measured.
    pub figures: Vec<(&'static str, f64)>,
    /// Notes on behaviour the store's capabilities allow (e.g. lost updates on a last-writer-wins store).
    pub notes: Vec<String>,
}

impl Observation {
    /// Adds a figure.
    #[must_use]
    pub fn figure(mut self, name: &'static str, value: f64) -> Self {
        self.figures.push((name, value));
        self
    }

    /// Adds a note.
    #[must_use]
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// The figure called `name`, if measured.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<f64> {
        self.figures.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

/// The result of one check.
pub type CheckResult = Result<Observation, Failure>;

/// Fails the check with a formatted message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::Failure(format!($($fmt)+)));
        }
    };
}

/// A lock name unique to one run of one check, so checks can share a store.
pub fn unique_lock(check: &str) -> LockName {
    let suffix: u32 = rand::random();
    LockName::new(format!("conformance/{check}/{suffix:08x}")).expect("check names make valid lock names")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_url_the_backend_refuses_fails_once_up_front_with_its_reason() {
        let refused = Harness::for_url(&lock_core::backend::MEMORY, "memory://x?shrad=1", crate::SUITE_TIMING).await.map(drop);
        let error = refused.expect_err("a misspelt parameter is refused here").to_string();
        assert!(error.contains("shrad"), "{error}");
        let harness = Harness::for_url(&lock_core::backend::MEMORY, "memory://x", crate::SUITE_TIMING).await.expect("a good URL");
        assert!(harness.connect().await.is_ok());
    }
}
