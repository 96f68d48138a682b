//! A store that honestly declares last-writer-wins passes every check that applies to it.

use lock_conformance::{MemoryHarness, conformance_tests};
use lock_core::MemoryStore;

conformance_tests!(MemoryHarness::with_store(MemoryStore::last_writer_wins()));
