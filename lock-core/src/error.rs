//! The one error type every store and the elector return.

use crate::name::LockName;
use std::time::Duration;

/// A boxed error from a store's client library.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms a caller can act on.
///
/// Each backend maps its service's quirks into these variants in one place.
/// `store` fields carry the store's `Display` form, which never contains secrets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lock has no record (returned by `update` of an absent lock).
    #[error("lock {lock:?} not found in {store}")]
    NotFound {
        /// The lock.
        lock: LockName,
        /// The store.
        store: String,
    },
    /// `create` found a record already there.
    #[error("lock {lock:?} already exists in {store}")]
    AlreadyExists {
        /// The lock.
        lock: LockName,
        /// The store.
        store: String,
    },
    /// `update` expected a version the record no longer has: someone else wrote it.
    #[error("lock {lock:?} in {store} changed since it was read (compare-and-set failed)")]
    Conflict {
        /// The lock.
        lock: LockName,
        /// The store.
        store: String,
    },
    /// The stored record is not a lease record this crate understands. It is left untouched.
    #[error("lock {lock:?} in {store} holds a corrupt record ({detail}); it was left untouched")]
    Corrupt {
        /// The lock.
        lock: LockName,
        /// The store.
        store: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The store cannot be reached or answered with a transient failure; retrying may help.
    #[error("{store} is unavailable: {source}")]
    Unavailable {
        /// The store.
        store: String,
        /// The underlying failure.
        #[source]
        source: BoxError,
    },
    /// The store refused the call for exceeding a rate limit.
    #[error("{store} rate limited the call{}", retry_after.map(|d| format!("; retry after {d:?}")).unwrap_or_default())]
    RateLimited {
        /// The store.
        store: String,
        /// How long the store asked the caller to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// A store call did not finish in time.
    #[error("{operation} of lock {lock:?} in {store} timed out after {after:?}")]
    Timeout {
        /// The lock.
        lock: LockName,
        /// The store.
        store: String,
        /// `get`, `create` or `update`.
        operation: &'static str,
        /// The bound that was exceeded.
        after: Duration,
    },
    /// The store refused the credentials or lacks a permission. Retrying will not help.
    #[error("{store} denied access: {detail}")]
    PermissionDenied {
        /// The store.
        store: String,
        /// What to check.
        detail: String,
    },
    /// A leader's write was refused because its term is over: its local deadline passed,
    /// its leadership ended, or (checked by the store in the write's own transaction) the
    /// lock's record no longer names this leader's term. Nothing of the write was applied.
    #[error("lock {lock:?} in {store}: write fenced off: {reason}; nothing was written")]
    Fenced {
        /// The lock.
        lock: LockName,
        /// The store.
        store: String,
        /// Why the term is over.
        reason: String,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Any other failure of a store's client or service.
    #[error("{store} failed: {source}")]
    Backend {
        /// The store.
        store: String,
        /// The underlying failure.
        #[source]
        source: BoxError,
    },
}

impl Error {
    /// Whether a later retry of the same call may succeed (unavailability, rate limits, timeouts).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::RateLimited { .. } | Self::Timeout { .. })
    }

    /// Whether retrying cannot help until someone changes the configuration or the
    /// grants: invalid configuration and refused credentials or permissions.
    #[must_use]
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Config(_) | Self::PermissionDenied { .. })
    }

    /// Whether a write was fenced off ([`Error::Fenced`]).
    #[must_use]
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Fenced { .. })
    }

    /// Whether this is a lost compare-and-set (`Conflict`).
    #[must_use]
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}

/// An error's message followed by each of its causes, each said once: client
/// libraries often stop at "error sending request" or "transport error", and the
/// cause underneath (refused, unknown host, a certificate) is what a reader needs.
#[must_use]
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !more.is_empty() && !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

/// `call`, bounded by `after`: its own result, or [`Error::Timeout`] naming the lock, the
/// store and the operation once `after` has passed (the call is then dropped).
pub async fn bounded<T>(
    lock: &LockName,
    store: &(dyn std::fmt::Display + Sync),
    operation: &'static str,
    after: Duration,
    call: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(after, call)
        .await
        .unwrap_or_else(|_| Err(Error::Timeout { lock: lock.clone(), store: store.to_string(), operation, after }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_lock_and_the_store() {
        let lock = LockName::new("billing").unwrap();
        let e = Error::Corrupt { lock: lock.clone(), store: "memory store".into(), detail: "expected value at line 1".into() };
        let text = e.to_string();
        assert!(text.contains("\"billing\"") && text.contains("memory store") && text.contains("left untouched"), "{text}");
        let e = Error::RateLimited { store: "gist".into(), retry_after: Some(Duration::from_secs(3)) };
        assert!(e.is_transient() && e.to_string().contains("3s"), "{e}");
        assert!(Error::Conflict { lock, store: "s".into() }.is_conflict());
    }
}
