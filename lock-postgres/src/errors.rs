//! Postgres failures mapped into lock-core's error, in one place.

use crate::PostgresStore;
use lock_core::{Error, LockName};

/// What the server (or a pooler in front of it) said: its message, detail and hint,
/// and the SQLSTATE. The driver's own `Display` says only "db error".
pub(crate) fn db_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; {detail}"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => with_causes(e),
    }
}

fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    lock_core::error_chain(e)
}

/// Maps a driver error. SQLSTATE classes decide: connection loss, shutdown, timeouts,
/// resource limits and a read-only server (a standby after failover) are transient;
/// authentication and privilege errors are permanent; a missing table is configuration.
pub(crate) fn postgres(store: &PostgresStore, lock: Option<&LockName>, e: tokio_postgres::Error) -> Error {
    let text = store.to_string();
    let Some(db) = e.as_db_error() else {
        // A certificate that cannot be trusted will not become trusted by retrying.
        if let Some(why) = tls_failure(&e) {
            return Error::Config(format!(
                "{text}: TLS: {why} (trust the server's CA with sslrootcert=PATH in the connection string, or use sslmode=disable on a trusted network)"
            ));
        }
        // The server asked for a password and none was configured: retrying cannot help.
        if with_causes(&e).contains("password missing") {
            return Error::Config(format!(
                "{text}: the server asks for a password and none was given: set PGPASSWORD (or pass the URL in HIGHLANDER_STORE with the password in it, which keeps it out of argv)"
            ));
        }
        // No SQLSTATE: the connection broke, or could not be made.
        return Error::Unavailable { store: text, source: with_causes(&e).into() };
    };
    let code = db.code().code();
    let message = db_message(&e);
    let on_lock = lock.map(|l| format!(" (lock {l:?})")).unwrap_or_default();
    match code {
        "28000" | "28P01" => {
            Error::PermissionDenied { store: text, detail: format!("authentication failed: {message} (check the user and password)") }
        }
        "42501" => Error::PermissionDenied {
            store: text,
            detail: format!("{message} (grant SELECT, INSERT, UPDATE on the lease table; see the lock-postgres README)"),
        },
        "42P01" => Error::Config(format!(
            "{text}: the lease table does not exist{on_lock} ({message}); create it with --create (highlander) or ensure_schema(), or run the SQL from the lock-postgres README"
        )),
        "3F000" => Error::Config(format!("{text}: the schema does not exist: {message}")),
        "3D000" => Error::Config(format!("{text}: {message}")),
        // A pooler that refuses a startup parameter (PgBouncer: "unsupported startup parameter").
        "08P01" if message.contains("startup parameter") => {
            Error::Config(format!("{text}: the server or pooler refused the connection: {message}"))
        }
        "25006" => Error::Unavailable {
            store: text,
            source: format!("the server is read-only (a standby, e.g. during failover): {message}").into(),
        },
        "57014" => Error::Unavailable { store: text, source: format!("statement cancelled: {message}").into() },
        c if c.starts_with("08") || c.starts_with("57P") || c.starts_with("53") || c == "40001" || c == "40P01" => {
            Error::Unavailable { store: text, source: message.into() }
        }
        _ => Error::Backend { store: text, source: format!("{message}{on_lock}").into() },
    }
}

/// The certificate problem behind a failed TLS handshake, if that is what failed.
fn tls_failure(e: &tokio_postgres::Error) -> Option<String> {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(rustls) = cause.downcast_ref::<rustls::Error>() {
            return Some(rustls.to_string());
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && let Some(rustls) = io.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(rustls.to_string());
        }
        source = cause.source();
    }
    None
}

/// Maps a failure to get a pooled connection.
pub(crate) fn pool(store: &PostgresStore, e: deadpool_postgres::PoolError) -> Error {
    match e {
        deadpool_postgres::PoolError::Backend(e) => postgres(store, None, e),
        other => Error::Unavailable { store: store.to_string(), source: format!("no connection: {}", with_causes(&other)).into() },
    }
}

/// A row whose columns do not have the types this store wrote.
pub(crate) fn corrupt(store: &PostgresStore, lock: &LockName, e: &tokio_postgres::Error) -> Error {
    Error::Corrupt { lock: lock.clone(), store: store.to_string(), detail: format!("unexpected column type: {e}") }
}
