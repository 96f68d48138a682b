//! lock-postgres against real Postgres: conformance (direct and via PgBouncer), errors, TLS, fencing, failover, hand-overs, a restart.

mod advisory;
mod conformance;
mod connections;
mod errors;
mod failover;
mod fencing;
mod handover;
mod pooler;
mod pooler_session;
mod pooler_transaction;
mod restart;
mod tls;

mod support;
