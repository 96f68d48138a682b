//! lock-file on the local filesystem: the conformance suite, processes sharing one directory, a replaced directory.

mod conformance;
mod processes;
mod restart;
