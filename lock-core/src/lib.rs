//! Highlander's core: "there can be only one".
//!
//! A leader elector that runs client-go's algorithm over any store with
//! compare-and-set, so one copy of a singleton leads across clusters.
//!
//! ```
//! use lock_core::{LeaderElector, LockName, MemoryStore};
//! use std::time::Duration;
//! use tokio_util::sync::CancellationToken;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), lock_core::Error> {
//! let store = MemoryStore::new(); // or Postgres, etcd, DynamoDB, S3, a Gist…
//! let elector = LeaderElector::builder(store, LockName::new("nightly-billing")?, "stalin")
//!     .lease_duration(Duration::from_secs(15))
//!     .renew_deadline(Duration::from_secs(10))
//!     .retry_period(Duration::from_secs(2))
//!     .on_started_leading(|leadership| async move {
//!         println!("I am {}! I will lead you to greatness! (token {})", leadership.identity(), leadership.fencing_token());
//!         leadership.lost().await; // do the work until leadership ends
//!     })
//!     .on_new_leader(|who| println!("All hail {who}"))
//!     .build()?;
//!
//! let mut state = elector.subscribe();
//! let shutdown = CancellationToken::new();
//! let running = elector.spawn(shutdown.clone());
//! state.wait_for(|s| s.is_leader()).await.expect("elector running");
//! shutdown.cancel(); // drains the work, then releases the lease for a standby
//! running.await.expect("elector task");
//! # Ok(())
//! # }
//! ```
//!
//! The pieces:
//! - [`LeaderElectionRecord`]: the record, byte-compatible with client-go's JSON.
//! - [`LeaseStore`]: the seam every backend implements (`get` / `create` / `update`
//!   with an explicit [`Version`]), and [`Capabilities`] it declares.
//! - [`LeaderElector`]: client-go's algorithm plus fencing tokens, re-campaigning,
//!   drain-then-release, a [`Health`] check and [`metrics`](elector::metrics).
//! - [`MemoryStore`], and the [`layer`] wrappers ([`CountingStore`], [`FaultyStore`])
//!   for tests and benchmarks.

pub mod backend;
pub mod clock;
pub mod display;
pub mod elector;
pub mod error;
pub mod fence;
pub mod hub;
pub mod layer;
pub mod memory;
pub mod name;
pub mod record;
pub mod roster;
pub mod store;
pub mod terms;
pub mod url;

pub use backend::{Backend, MemoryBackend, OpenOptions};
pub use clock::Stamp;
pub use display::{Escaped, redact_userinfo};
pub use elector::{
    Candidacy, ElectionEnd, ElectionState, ElectorBuilder, ElectorConfig, Health, LeaderElector, Leadership, LeaseDeadlines, Phase, Timing,
    Unhealthy, check_identity,
};
pub use error::{BoxError, Error, Result, bounded, error_chain};
pub use fence::{Fence, FencingTerm};
pub use hub::{FeedClaim, WatchHub};
pub use layer::{CallCounts, CountingStore, FaultMode, Faults, FaultyStore};
pub use memory::MemoryStore;
pub use name::LockName;
pub use record::{FencingToken, LeaderElectionRecord};
pub use store::{
    Capabilities, Changes, LeaseStore, Observed, RawAccess, SharedStore, Version, WriteConsistency, decode_record, encode_record,
};
pub use url::{Params, StoreUrl, parse_duration};

/// Re-exported so stores and users name the same trait-macro version.
pub use async_trait::async_trait;
/// The byte buffers of [`Observed::raw`] and [`RawAccess`], for a store's own crate.
pub use bytes;
