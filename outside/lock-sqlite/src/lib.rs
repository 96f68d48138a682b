//! A Highlander lease store in a SQLite database file: a lock for the processes of one
//! host (or of hosts sharing a filesystem with working POSIX locks — not NFS), through
//! SQLite's own locking.
//!
//! Built outside the Highlander workspace, as a crate of your own would be: it depends on
//! `lock-core` for the seam, on `lock-conformance` for the suite, and (with the `cli`
//! feature) on `highlander-cli` for a `highlander-sqlite` command with every subcommand.
//!
//! One table holds a row per lock (`name`, `record`, `version`); a second holds the last
//! version handed out, so versions grow across deletions of a lock's row. Every write is
//! one `BEGIN IMMEDIATE` transaction that reads the row, compares, and writes.
//!
//! URL: `sqlite:///ABSOLUTE/PATH/leases.db[?table=NAME]` (`table` defaults to
//! `highlander_leases`). `--create` creates the file and the tables.

use lock_core::{
    Backend, Capabilities, Error, LeaderElectionRecord, LeaseStore, LockName, Observed, OpenOptions, RawAccess, Result, StoreUrl, Version,
    async_trait, backend::Address, bytes::Bytes, decode_record, encode_record,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

/// The largest record this store keeps (a lease record is a few hundred bytes).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// A lease store in a SQLite database file. Clones share one connection; open the
/// store again for a connection of its own (as another process would have).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Mutex<Connection>,
    path: PathBuf,
    table: String,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.inner.path).field("table", &self.inner.table).finish_non_exhaustive()
    }
}

impl fmt::Display for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sqlite database {} (table {})", self.inner.path.display(), self.inner.table)
    }
}

impl SqliteStore {
    /// Opens the database at `path` (which must exist unless `create`), waiting up to
    /// `busy` for another process's write to end before a call fails. With `create`,
    /// creates the file and the tables if they are missing.
    pub fn open(path: &Path, table: &str, busy: Duration, create: bool) -> Result<Self> {
        check_table_name(table)?;
        let described = format!("sqlite database {} (table {table})", path.display());
        if path.is_dir() {
            return Err(Error::Config(format!("{described}: {} is a directory; name the database file in it", path.display())));
        }
        let failed = |e: rusqlite::Error| classify(&described, &e);
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if create {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let connection = Connection::open_with_flags(path, flags).map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::CannotOpen) if !create => Error::Config(format!(
                "{described} cannot be opened ({e}): create it first (--create of highlander run, conformance or chaos), or check the path"
            )),
            _ => failed(e),
        })?;
        connection.busy_timeout(busy).map_err(failed)?;
        // Every commit reaches the disk before it is acknowledged: a lease write that a
        // crash could undo would let two leaders believe they won.
        connection.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;").map_err(failed)?;
        if create {
            connection
                .execute_batch(&format!(
                    "CREATE TABLE IF NOT EXISTS \"{table}\" (name TEXT PRIMARY KEY, record BLOB NOT NULL, version INTEGER NOT NULL);
                     CREATE TABLE IF NOT EXISTS \"{table}_versions\" (id INTEGER PRIMARY KEY CHECK (id = 1), last INTEGER NOT NULL);"
                ))
                .map_err(failed)?;
        }
        let store = Self { inner: Arc::new(Inner { connection: Mutex::new(connection), path: path.to_path_buf(), table: table.into() }) };
        let missing = store.with_connection(|c| {
            let n: i64 = c.query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name IN (?1, ?1 || '_versions')",
                params![table],
                |row| row.get(0),
            )?;
            Ok(n < 2)
        });
        match missing.map_err(|e| store.failed(None, &e))? {
            true => Err(Error::Config(format!(
                "{store} has no lease tables: create them first (--create of highlander run, conformance or chaos)"
            ))),
            false => Ok(store),
        }
    }

    fn with_connection<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        let mut connection = self.inner.connection.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut connection)
    }

    /// Runs `f` on the connection in a blocking thread, in a transaction that holds the
    /// database's write lock from its start (`BEGIN IMMEDIATE`) when `write`.
    async fn call<T: Send + 'static>(
        &self,
        lock: &LockName,
        write: bool,
        f: impl FnOnce(&Self, &rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (store, name) = (self.clone(), lock.clone());
        let joined = tokio::task::spawn_blocking(move || {
            let mut connection = store.inner.connection.lock().unwrap_or_else(PoisonError::into_inner);
            let behavior = if write { TransactionBehavior::Immediate } else { TransactionBehavior::Deferred };
            let tx = connection.transaction_with_behavior(behavior).map_err(|e| store.failed(Some(&name), &e))?;
            let value = f(&store, &tx)?;
            tx.commit().map_err(|e| store.failed(Some(&name), &e))?;
            Ok(value)
        })
        .await;
        joined.unwrap_or_else(|e| Err(Error::Unavailable { store: self.to_string(), source: format!("the SQLite call ended: {e}").into() }))
    }

    fn failed(&self, lock: Option<&LockName>, e: &rusqlite::Error) -> Error {
        let on = lock.map(|l| format!(" (lock {l:?})")).unwrap_or_default();
        match classify(&self.to_string(), e) {
            Error::Unavailable { store, source } => Error::Unavailable { store, source: format!("{source}{on}").into() },
            Error::Config(message) => Error::Config(format!("{message}{on}")),
            other => other,
        }
    }

    /// The row of `lock`: its record's bytes and version.
    fn row(&self, tx: &rusqlite::Transaction<'_>, lock: &LockName) -> Result<Option<(Vec<u8>, i64)>> {
        let sql = format!("SELECT record, version FROM \"{}\" WHERE name = ?1", self.inner.table);
        tx.query_row(&sql, params![lock.as_str()], |row| Ok((row.get(0)?, row.get(1)?))).optional().map_err(|e| self.failed(Some(lock), &e))
    }

    /// The next version, above every version this table ever handed out.
    fn next_version(&self, tx: &rusqlite::Transaction<'_>, lock: &LockName) -> Result<i64> {
        let sql = format!(
            "INSERT INTO \"{}_versions\" (id, last) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET last = last + 1 RETURNING last",
            self.inner.table
        );
        tx.query_row(&sql, [], |row| row.get(0)).map_err(|e| self.failed(Some(lock), &e))
    }

    /// Writes the row of `lock`, whatever is there, with a new version.
    fn put(&self, tx: &rusqlite::Transaction<'_>, lock: &LockName, raw: &[u8]) -> Result<Version> {
        let version = self.next_version(tx, lock)?;
        let sql = format!(
            "INSERT INTO \"{}\" (name, record, version) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET record = excluded.record, version = excluded.version",
            self.inner.table
        );
        tx.execute(&sql, params![lock.as_str(), raw, version]).map_err(|e| self.failed(Some(lock), &e))?;
        Ok(Version::new(version.to_string()))
    }
}

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn get(&self, lock: &LockName) -> Result<Option<Observed>> {
        let name = lock.clone();
        self.call(lock, false, move |store, tx| {
            let Some((raw, version)) = store.row(tx, &name)? else { return Ok(None) };
            Observed::decode(&name, store, Bytes::from(raw), Version::new(version.to_string())).map(Some)
        })
        .await
    }

    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
        let (name, raw) = (lock.clone(), encode_record(lock, self, rec, Some(MAX_RECORD_BYTES))?);
        self.call(lock, true, move |store, tx| {
            if store.row(tx, &name)?.is_some() {
                return Err(Error::AlreadyExists { lock: name, store: store.to_string() });
            }
            store.put(tx, &name, &raw)
        })
        .await
    }

    async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
        let (name, raw) = (lock.clone(), encode_record(lock, self, rec, Some(MAX_RECORD_BYTES))?);
        let expected = expected.as_str().to_string();
        self.call(lock, true, move |store, tx| {
            let Some((current, version)) = store.row(tx, &name)? else {
                return Err(Error::NotFound { lock: name, store: store.to_string() });
            };
            // The compare-and-set: the version the caller read must still be there.
            if version.to_string() != expected {
                return Err(Error::Conflict { lock: name, store: store.to_string() });
            }
            // Never write over what does not decode, whatever version the caller had.
            decode_record(&name, store, &current)?;
            store.put(tx, &name, &raw)
        })
        .await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::atomic().with_monotonic_versions(true).with_max_record_bytes(Some(MAX_RECORD_BYTES))
    }
}

#[async_trait]
impl RawAccess for SqliteStore {
    async fn write_raw(&self, lock: &LockName, raw: &[u8]) -> Result<()> {
        let (name, raw) = (lock.clone(), raw.to_vec());
        self.call(lock, true, move |store, tx| store.put(tx, &name, &raw).map(drop)).await
    }

    async fn read_raw(&self, lock: &LockName) -> Result<Option<Bytes>> {
        let name = lock.clone();
        self.call(lock, false, move |store, tx| Ok(store.row(tx, &name)?.map(|(raw, _)| Bytes::from(raw)))).await
    }

    async fn delete_raw(&self, lock: &LockName) -> Result<()> {
        let name = lock.clone();
        self.call(lock, true, move |store, tx| {
            let sql = format!("DELETE FROM \"{}\" WHERE name = ?1", store.inner.table);
            tx.execute(&sql, params![name.as_str()]).map(drop).map_err(|e| store.failed(Some(&name), &e))
        })
        .await
    }
}

/// A table name is a plain identifier (it is written, quoted, into statements), and not
/// one of SQLite's own (`sqlite_…`).
fn check_table_name(table: &str) -> Result<()> {
    let mut chars = table.chars();
    let plain = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && table.len() <= 48;
    if !plain {
        return Err(Error::Config(format!("sqlite:// table {table:?} is not a plain identifier (letters, digits, _)")));
    }
    if table.to_ascii_lowercase().starts_with("sqlite_") {
        return Err(Error::Config(format!("sqlite:// table {table:?}: names starting with sqlite_ are SQLite's own")));
    }
    Ok(())
}

/// What a SQLite failure means. A database another process holds too long, or a full or
/// failing disk, may pass: `Unavailable`, and the elector tries again. A file that is not
/// a database, a read-only one, a path that cannot be opened will not: `Config`, and the
/// command says so and stops.
fn classify(store: &str, e: &rusqlite::Error) -> Error {
    use rusqlite::ErrorCode::{
        CannotOpen, DatabaseBusy, DatabaseLocked, DiskFull, FileLockingProtocolFailed, NotADatabase, OperationInterrupted, OutOfMemory,
        PermissionDenied, ReadOnly, SystemIoFailure,
    };
    match e.sqlite_error_code() {
        Some(
            DatabaseBusy | DatabaseLocked | DiskFull | SystemIoFailure | OutOfMemory | FileLockingProtocolFailed | OperationInterrupted,
        )
        | None => Error::Unavailable { store: store.to_string(), source: e.to_string().into() },
        Some(NotADatabase) => Error::Config(format!("{store}: the file is not a SQLite database ({e})")),
        Some(ReadOnly | PermissionDenied) => {
            Error::Config(format!("{store}: the database cannot be written ({e}): check the file's and its directory's permissions"))
        }
        Some(CannotOpen) => Error::Config(format!("{store}: the database file cannot be opened ({e}): check that its directory exists")),
        Some(_) => Error::Config(format!("{store}: {e}")),
    }
}

/// `sqlite:///PATH?table=NAME`: opens SQLite lease stores by URL.
#[derive(Debug, Clone, Copy, Default)]
pub struct SqliteBackend;

/// The SQLite backend, to install in a `highlander` of your own.
pub static BACKEND: SqliteBackend = SqliteBackend;

impl SqliteBackend {
    fn open_url(url: &StoreUrl, options: &OpenOptions, create: bool) -> Result<SqliteStore> {
        let path = url.local_path("database file")?;
        let mut params = url.params();
        let table = params.take("table")?.unwrap_or("highlander_leases").to_string();
        params.finish(&["table"])?;
        SqliteStore::open(&path, &table, options.call_timeout, create)
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    fn schemes(&self) -> &'static [&'static str] {
        &["sqlite"]
    }

    fn grammar(&self) -> &'static str {
        "sqlite:///ABSOLUTE/PATH/leases.db[?table=NAME]"
    }

    fn address(&self) -> Address {
        Address::Local
    }

    async fn open(&self, url: &StoreUrl, options: &OpenOptions) -> Result<Arc<dyn RawAccess>> {
        let store = blocking(url, options, false).await?;
        Ok(Arc::new(store))
    }

    async fn create(&self, url: &StoreUrl, options: &OpenOptions) -> Result<()> {
        blocking(url, options, true).await.map(drop)
    }
}

/// Opens a store in a blocking thread: opening may wait for another process's lock.
async fn blocking(url: &StoreUrl, options: &OpenOptions, create: bool) -> Result<SqliteStore> {
    let (url, options) = (url.clone(), *options);
    tokio::task::spawn_blocking(move || SqliteBackend::open_url(&url, &options, create))
        .await
        .unwrap_or_else(|e| Err(Error::Config(format!("opening the SQLite database ended: {e}"))))
}
