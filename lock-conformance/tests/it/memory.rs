//! The reference store passes the whole suite.

use lock_conformance::{MemoryHarness, conformance_tests};

conformance_tests!(MemoryHarness::new());
