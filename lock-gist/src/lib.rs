//! A Highlander lease store on a GitHub Gist — the teaching example — and, with the
//! `emulator` feature, a GitHub gist API emulator to run it against.
//!
//! ```no_run
//! # #[cfg(feature = "emulator")] {
//! use lock_core::{LeaderElector, LockName};
//! use lock_gist::{GistStore, emulator::{Emulator, EmulatorConfig}};
//! use std::time::Duration;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let emulator = Emulator::start(EmulatorConfig::default()).await?; // or api.github.com
//! let gist = emulator.control().create_gist("highlander", &[("README.md", "locks live here")]);
//! let store = GistStore::builder(gist)
//!     .api(emulator.url())
//!     .token("emulator-token")            // default: GITHUB_TOKEN
//!     .retry_period(Duration::from_secs(10)) // 360 writes an hour, under GitHub's 500
//!     .build()?;
//! let elector = LeaderElector::builder(store, LockName::new("demo")?, "stalin")
//!     .lease_duration(Duration::from_secs(60))
//!     .renew_deadline(Duration::from_secs(40))
//!     .retry_period(Duration::from_secs(10))
//!     .build()?;
//! # let _ = elector;
//! # Ok(())
//! # }
//! # }
//! ```
//!
//! A gist is **last-writer-wins**: GitHub has no conditional write for gists (PATCH
//! with `If-Match` is answered 400), so the store declares
//! [`WriteConsistency::LastWriterWins`](lock_core::WriteConsistency), reads before
//! every write and reads back after it, and the elector checks at every renewal that
//! it still holds the lease. Two writers can still both believe they won until the
//! next read: the README shows, measured, why this is a demo and what to use instead.

#[cfg(feature = "emulator")]
pub mod emulator;
mod errors;
mod store;

pub use store::{
    BACKEND, BUDGET_WARNING_SHARE, Budget, DEFAULT_API, DEFAULT_FILE_PREFIX, GistBackend, GistStore, GistStoreBuilder,
    SECONDARY_LIMIT_PER_HOUR, Token, budget, file_name,
};
