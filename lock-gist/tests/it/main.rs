//! lock-gist against the GitHub API emulator: conformance, the store's limits and errors, the emulator's fidelity.

mod conformance;
mod emulator;
mod store;

mod support;
