//! The gist store passes every conformance check that applies to a last-writer-wins
//! store, against the emulator.

use crate::support;

lock_conformance::conformance_tests!(support::harness().await);
