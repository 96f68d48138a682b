//! lock-spanner against the Cloud Spanner emulator: the conformance suite and the errors a caller sees.

mod conformance;
mod errors;
