//! lock-etcd against real etcd: conformance, auth, fencing, a cluster losing its leader or quorum, a restart.

mod auth;
mod conformance;
mod failover;
mod fencing;
mod quorum;
mod restart;

mod support;
