//! The conformance suite: one contract every Highlander store must pass.
//!
//! A store that passes it can be trusted with an election. Write a
//! [`StoreHarness`] for your store (a way to connect, and a back door to its raw
//! bytes) and expand [`conformance_tests!`] in a test file: `cargo test` then shows
//! every check by name.
//!
//! ```
//! use lock_conformance::{conformance_tests, MemoryHarness};
//!
//! // In tests/conformance.rs of your store's crate (needs tokio as a dev-dependency):
//! conformance_tests!(MemoryHarness::new());
//! # fn main() {}
//! ```
//!
//! Expectations follow the store's declared [`Capabilities`](lock_core::Capabilities):
//! an atomic store must show exactly one winner of every race; a last-writer-wins
//! store is measured instead, and the [`report`] shows how often two writers both
//! believed they won. A claim is checked, not trusted.

pub mod checks;
pub mod failover;
pub mod fencing;
#[cfg(feature = "containers")]
pub mod fixtures;
pub mod harness;
pub mod procfs;
pub mod report;

pub use checks::CHECKS;
pub use harness::{CheckResult, Connect, Failure, Harness, MemoryHarness, Observation, SUITE_TIMING, StoreHarness, unique_lock};
pub use lock_core::Timing;

use std::{future::Future, pin::Pin, time::Duration};

/// Whether a check exercises the store alone or an elector on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// `get` / `create` / `update` call by call.
    Store,
    /// Real electors over the store.
    Elector,
}

/// A check's entry point.
pub type CheckFn = for<'a> fn(&'a dyn StoreHarness) -> Pin<Box<dyn Future<Output = CheckResult> + Send + 'a>>;

/// One check of the suite.
#[derive(Clone, Copy)]
pub struct Check {
    /// Its name, as `cargo test` shows it.
    pub name: &'static str,
    /// Store or elector level.
    pub level: Level,
    /// Runs it.
    pub run: CheckFn,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check").field("name", &self.name).field("level", &self.level).finish()
    }
}

/// The longest any one check may run before it fails.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs one check by name, bounded by [`CHECK_TIMEOUT`].
pub async fn check(name: &str, harness: &dyn StoreHarness) -> CheckResult {
    let Some(check) = CHECKS.iter().find(|c| c.name == name) else {
        return Err(Failure(format!("no conformance check is called {name:?}")));
    };
    match tokio::time::timeout(CHECK_TIMEOUT, (check.run)(harness)).await {
        Ok(result) => result,
        Err(_) => Err(Failure(format!("did not finish within {CHECK_TIMEOUT:?}"))),
    }
}

/// Runs one check and panics with its failure: the body of each generated test.
pub async fn run_check(name: &str, harness: &dyn StoreHarness) {
    let store = match harness.connect().await {
        Ok(store) => store.to_string(),
        Err(e) => panic!("conformance check `{name}`: cannot connect to the store under test: {e}"),
    };
    match check(name, harness).await {
        Ok(obs) => {
            for (figure, value) in &obs.figures {
                println!("{name} on {store}: {figure} = {value:.3}");
            }
            for note in &obs.notes {
                println!("{name} on {store}: {note}");
            }
        }
        Err(failure) => panic!("conformance check `{name}` failed on {store}: {failure}"),
    }
}

/// Expands into one `#[tokio::test]` per conformance check, each running against
/// the [`StoreHarness`] that `$harness` evaluates to (it may `.await`).
///
/// The calling crate needs `tokio` (with `macros` and `rt-multi-thread`) as a dev-dependency.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::__for_each_check!($crate::__emit_tests, $harness);
    };
}

/// `docs/fencing.md`, whose Rust examples compile as this crate's doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/fencing.md")]
pub struct FencingGuide;
