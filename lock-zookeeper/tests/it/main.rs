//! lock-zookeeper against a real ZooKeeper server: the conformance suite, sessions and ACLs.

mod conformance;
mod sessions;
