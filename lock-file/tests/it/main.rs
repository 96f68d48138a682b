//! lock-file on the local filesystem: the conformance suite, and processes sharing one directory.

mod conformance;
mod processes;
