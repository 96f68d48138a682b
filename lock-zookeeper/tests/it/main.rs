//! lock-zookeeper against a real ZooKeeper server: the conformance suite, a server restart, sessions and ACLs.

mod conformance;
mod restart;
mod sessions;
