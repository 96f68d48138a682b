//! A store with change notifications passes every check, the watch one included.

use lock_conformance::{MemoryHarness, conformance_tests};
use lock_core::MemoryStore;

conformance_tests!(MemoryHarness::with_store(MemoryStore::with_watch()));
