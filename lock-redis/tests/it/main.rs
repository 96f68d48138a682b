//! lock-redis against real Redis servers: the conformance suite, ACLs and TLS, failover to a replica, a restart.

mod conformance;
mod failover;
mod security;
