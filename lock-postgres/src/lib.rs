//! Highlander leases in a Postgres table: one row per lock, compare-and-set on the
//! row's version.
//!
//! ```no_run
//! use lock_core::{LeaderElector, LockName};
//! use lock_postgres::PostgresStore;
//!
//! # async fn demo() -> Result<(), lock_core::Error> {
//! let store = PostgresStore::builder("postgres://highlander@db.internal:5432/app?sslmode=require")?
//!     .table("highlander_leases")
//!     .build()?;
//! store.ensure_schema().await?; // or run the SQL from the README yourself
//! let elector = LeaderElector::builder(store, LockName::new("nightly-billing")?, "eu-west-1/pod-7").build()?;
//! # let _ = elector;
//! # Ok(())
//! # }
//! ```
//!
//! Every call is one statement and one round trip; no session state and no named
//! prepared statements, so it works through a transaction-mode pooler (PgBouncer).
//! Advisory-lock mode ([`PostgresStoreBuilder::advisory_locks`]) adds a session-level
//! advisory lock per held lock as a second gate. See the README for the SQL, the grants
//! and the semantics.

mod advisory;
mod builder;
mod cancel;
mod config;
mod errors;
mod notify;

use cancel::CancelOnDrop;

pub use builder::Tls;
pub use config::{BACKEND, DEFAULT_SCHEMA, DEFAULT_TABLE, PostgresBackend, PostgresStoreBuilder};
/// The pool and driver this store uses, for transactions of your own.
pub use {deadpool_postgres, tokio_postgres};

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use lock_core::{
    Capabilities, Changes, Error, Fence, LeaderElectionRecord, LeaseStore, LockName, Observed, RawAccess, Result, Version, encode_record,
};
use std::{fmt, sync::Arc, time::Duration};
use tokio_postgres::{
    Row,
    config::SslMode,
    types::{ToSql, Type},
};

struct Inner {
    pool: Pool,
    endpoint: String,
    schema: String,
    qualified: String,
    tls: bool,
    /// For the dedicated connection a watch LISTENs on (pooled ones are shared).
    listen_config: tokio_postgres::Config,
    connector: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    /// The one host and port of the pooled connections, for cancel requests.
    cancel_to: Option<(String, u16)>,
    channel: String,
    /// What every notification of this table starts with: `"schema"."table"` and a newline.
    notify_prefix: String,
    statement_timeout: Duration,
    /// Whether statements that outlive their timeout are cancelled (else closed).
    cancel: bool,
    /// One cancel request at a time: it takes the pool's last place.
    cancels: tokio::sync::Semaphore,
    /// The watchers of every lock, fed by one LISTEN connection.
    hub: Arc<lock_core::WatchHub>,
    /// Advisory-lock mode: a write naming a holder needs that holder's session lock too.
    advisory: bool,
    /// Whether sessions (LISTEN, advisory locks) go to an address of their own.
    direct: bool,
    /// Notifications were found not to reach this store's LISTEN (a transaction-mode pooler).
    pooled: std::sync::atomic::AtomicBool,
    sessions: advisory::Sessions,
    /// Dropped with the store: stops the LISTEN task (and closes the advisory sessions).
    stop: tokio::sync::watch::Sender<()>,
    /// Whether notifications reach us: unknown until a LISTEN has heard its own probe.
    notifications: std::sync::atomic::AtomicU8,
}

const NOTIFY_UNKNOWN: u8 = 0;
const NOTIFY_WORKING: u8 = 1;
/// Turned off, or found not to arrive (a transaction-mode pooler).
const NOTIFY_OFF: u8 = 2;

/// A [`LeaseStore`] on a Postgres table. Clones share one connection pool.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("endpoint", &self.inner.endpoint)
            .field("table", &self.inner.qualified)
            .field("tls", &self.inner.tls)
            .field("advisory", &self.inner.advisory)
            .finish()
    }
}

impl fmt::Display for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postgres {} table {}", self.inner.endpoint, self.inner.qualified)?;
        if self.inner.advisory { f.write_str(" (advisory locks)") } else { Ok(()) }
    }
}

/// The compare-and-set token of a row: its `version` counter and its `xmin` (the
/// transaction that wrote this row version). A writer that bypasses the store and
/// changes the row without bumping `version` still changes `xmin`, so the next
/// compare-and-set fails instead of overwriting what it wrote.
fn version_of(version: i64, xmin: &str) -> Version {
    Version::ordered(format!("{version}:{xmin}"), u64::try_from(version).unwrap_or(0))
}

/// Splits a token back into `version` and `xmin`; a token this store never issued is `None`.
fn parse_version(v: &Version) -> Option<(i64, &str)> {
    let (version, xmin) = v.as_str().split_once(':')?;
    let valid_xmin = !xmin.is_empty() && xmin.bytes().all(|b| b.is_ascii_digit());
    Some((version.parse().ok()?, xmin)).filter(|_| valid_xmin)
}

impl PostgresStore {
    /// Starts building a store from a connection string.
    pub fn builder(connection: &str) -> Result<PostgresStoreBuilder> {
        PostgresStoreBuilder::new(connection)
    }

    /// The SQL that creates the table (what [`ensure_schema`](Self::ensure_schema) runs).
    #[must_use]
    pub fn schema_sql(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\n  name       text PRIMARY KEY,\n  record     text NOT NULL,\n  version    bigint NOT NULL,\n  updated_at timestamptz NOT NULL DEFAULT now()\n)",
            self.inner.qualified
        )
    }

    /// Creates the table if it is missing. Safe to call from several processes at once.
    pub async fn ensure_schema(&self) -> Result<()> {
        let client = self.client().await?;
        match client.batch_execute(&self.schema_sql()).await {
            Ok(()) => Ok(()),
            // Two processes creating the table at once: the loser sees a duplicate type or table.
            Err(e) if e.code().is_some_and(|c| c.code() == "23505" || c.code() == "42P07") => Ok(()),
            Err(e) if e.code().is_some_and(|c| c.code() == "42501") => Err(Error::PermissionDenied {
                store: self.to_string(),
                detail: format!(
                    "cannot create the lease table: {} (grant CREATE on schema {} to this role, or have an owner run the CREATE TABLE from the lock-postgres README)",
                    errors::db_message(&e),
                    self.inner.schema
                ),
            }),
            Err(e) => Err(self.error(None, e)),
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.inner.pool.get().await.map_err(|e| errors::pool(self, e))
    }

    /// A connection from the store's pool, for transactions of your own: data in the
    /// same database as the lock can be written under a fence ([`fenced_transaction`](Self::fenced_transaction)).
    pub async fn connection(&self) -> Result<deadpool_postgres::Client> {
        self.client().await
    }

    /// Begins a transaction on `client` that can commit only while the lock's record
    /// names `fence`'s term: first (for a [`Leadership`](lock_core::Leadership)) a local
    /// check of the term's deadline, with no round trip; then one statement that locks
    /// the lease row `FOR SHARE` and checks its holder and fencing token. A rival's
    /// takeover `UPDATE` of that row waits for this transaction to end, so the term
    /// cannot move between the check and the commit: write, then `commit()`. If the term
    /// is over, the transaction is rolled back and the error is [`Error::Fenced`].
    ///
    /// The elector's own renewals wait for the transaction too: keep it short (well
    /// under the renew deadline). Renewals do not make the check fail: it compares the
    /// holder and the token, not the row's version.
    pub async fn fenced_transaction<'a>(
        &self,
        client: &'a mut deadpool_postgres::Client,
        fence: &impl Fence,
    ) -> Result<deadpool_postgres::Transaction<'a>> {
        let term = fence.term()?;
        let lock = term.lock.clone();
        let tx = client.transaction().await.map_err(|e| self.error(Some(&lock), e))?;
        let sql = format!("SELECT record FROM {} WHERE name = $1 FOR SHARE", self.inner.qualified);
        let mut cancel = CancelOnDrop { token: Some(tx.cancel_token()), held: None, store: self.clone() };
        let read = async { tx.query_typed(&sql, &[(&lock.as_str(), Type::TEXT)]).await.map_err(|e| self.error(Some(&lock), e)) };
        let rows = lock_core::bounded(&lock, self, "fence", self.inner.statement_timeout, read).await;
        cancel.answered(&rows);
        let rows = rows?;
        let record = match rows.first() {
            None => None,
            Some(row) => {
                let text: String = row.try_get(0).map_err(|e| errors::corrupt(self, &lock, &e))?;
                Some(lock_core::decode_record(&lock, self, text.as_bytes())?)
            }
        };
        match record {
            Some(rec) if term.is_named_by(&rec) => Ok(tx),
            other => Err(term.moved(self, other.as_ref())),
        }
    }

    /// Whether advisory locks would be taken through a transaction-mode pooler (found
    /// so: notifications do not arrive) with no direct address for sessions.
    pub(crate) fn advisory_without_session(&self) -> bool {
        self.inner.advisory && !self.inner.direct && self.inner.pooled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The refusal of advisory locks through a transaction-mode pooler.
    pub(crate) fn no_session_error(&self) -> Error {
        Error::Config(format!(
            "{self}: advisory locks need a session of their own, and notifications do not reach this address (a transaction-mode pooler?): add listen=HOST:PORT of the server itself to the URL, or drop advisory=true"
        ))
    }

    fn error(&self, lock: Option<&LockName>, e: tokio_postgres::Error) -> Error {
        errors::postgres(self, lock, e)
    }

    /// One statement, bounded by the statement timeout. On timeout (or if the caller
    /// gives up first) the server is asked to cancel it, so a stuck statement does not
    /// keep holding a connection or a row lock.
    async fn query(&self, lock: &LockName, sql: &str, params: &[(&(dyn ToSql + Sync), Type)]) -> Result<Vec<Row>> {
        let client = self.client().await?;
        let mut cancel = CancelOnDrop { token: Some(client.cancel_token()), held: None, store: self.clone() };
        let client = cancel.held.insert(client);
        let statement = async { client.query_typed(sql, params).await.map_err(|e| self.error(Some(lock), e)) };
        let rows = lock_core::bounded(lock, self, "statement", self.inner.statement_timeout, statement).await;
        cancel.answered(&rows);
        rows
    }
}

fn text(lock: &LockName, raw: &Bytes) -> Result<String> {
    std::str::from_utf8(raw).map(str::to_string).map_err(|e| Error::Config(format!("lock {lock:?}: record is not UTF-8: {e}")))
}

/// How long the lease a record grants lasts (at least a second).
fn lease_of(rec: &LeaderElectionRecord) -> Duration {
    Duration::from_secs(u64::from(rec.lease_duration_seconds).max(1))
}

impl PostgresStore {
    /// Whether a write must hold the lock's advisory lock: in advisory mode, when it
    /// names a holder; not for a release, nor for a claim on a lost record (it confers
    /// nothing: the claimant's later write that leads is gated), nor for a hand-over
    /// under way (`preferredHolder` names someone else: the ask, written by another
    /// process, and the leaving holder's renewals until it releases; the next holder's
    /// write clears it and is gated).
    fn gated(&self, rec: &LeaderElectionRecord) -> bool {
        let handing_over = rec.preferred_holder.as_deref().is_some_and(|p| !p.is_empty() && p != rec.holder_identity);
        self.inner.advisory && !rec.holder_identity.is_empty() && !rec.claim && !handing_over
    }

    /// After a gated write begun at `asked`: what the session keeps (a version, the
    /// lease written) or gives up.
    async fn after_gated_write(&self, lock: &LockName, rec: &LeaderElectionRecord, asked: tokio::time::Instant, result: &Result<Version>) {
        match result {
            Ok(v) => self.wrote_advisory(lock, Some((v, asked, lease_of(rec)))).await,
            Err(Error::Conflict { .. } | Error::NotFound { .. } | Error::AlreadyExists { .. }) => {
                self.wrote_advisory(lock, None).await;
            }
            // Unknown whether it was written: the session lasts until the lease it holds ends.
            Err(_) => {}
        }
    }
}

#[async_trait]
impl LeaseStore for PostgresStore {
    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
        if !self.gated(rec) {
            return self.create_row(lock, rec).await;
        }
        let asked = tokio::time::Instant::now();
        if let advisory::Gate::Refused(pid) = self.hold_advisory(lock, lease_of(rec)).await? {
            return Err(self.gate_refused(lock, None, pid).await);
        }
        let result = self.create_row(lock, rec).await;
        self.after_gated_write(lock, rec, asked, &result).await;
        result
    }

    async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
        if !self.gated(rec) {
            let result = self.update_row(lock, expected, rec).await;
            match &result {
                Ok(_) if self.inner.advisory => self.released_advisory(lock).await,
                Err(Error::Conflict { .. } | Error::NotFound { .. }) if self.inner.advisory => {
                    self.release_failed_advisory(lock, expected).await;
                }
                _ => {}
            }
            return result;
        }
        let asked = tokio::time::Instant::now();
        if let advisory::Gate::Refused(pid) = self.hold_advisory(lock, lease_of(rec)).await? {
            return Err(self.gate_refused(lock, Some(expected), pid).await);
        }
        let result = self.update_row(lock, expected, rec).await;
        self.after_gated_write(lock, rec, asked, &result).await;
        result
    }

    async fn get(&self, lock: &LockName) -> Result<Option<Observed>> {
        let sql = format!("SELECT record, version, xmin::text FROM {} WHERE name = $1", self.inner.qualified);
        let rows = self.query(lock, &sql, &[(&lock.as_str(), Type::TEXT)]).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let record: String = row.try_get(0).map_err(|e| errors::corrupt(self, lock, &e))?;
        let version: i64 = row.try_get(1).map_err(|e| errors::corrupt(self, lock, &e))?;
        let xmin: String = row.try_get(2).map_err(|e| errors::corrupt(self, lock, &e))?;
        Observed::decode(lock, self, Bytes::from(record), version_of(version, &xmin)).map(Some)
    }

    fn capabilities(&self) -> Capabilities {
        self.capabilities_now()
    }

    async fn watch(&self, lock: &LockName) -> Result<Option<Changes>> {
        self.watch_feed(lock).await
    }
}

impl PostgresStore {
    async fn create_row(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
        let record = text(lock, &encode_record(lock, self, rec, None)?)?;
        let sql = format!(
            "INSERT INTO {} (name, record, version) VALUES ($1, $2, 1) ON CONFLICT (name) DO NOTHING RETURNING version, xmin::text",
            self.inner.qualified
        );
        let rows = self.query(lock, &sql, &[(&lock.as_str(), Type::TEXT), (&record, Type::TEXT)]).await?;
        match rows.first() {
            Some(row) => {
                let version: i64 = row.try_get(0).map_err(|e| errors::corrupt(self, lock, &e))?;
                let xmin: String = row.try_get(1).map_err(|e| errors::corrupt(self, lock, &e))?;
                Ok(version_of(version, &xmin))
            }
            None => Err(Error::AlreadyExists { lock: lock.clone(), store: self.to_string() }),
        }
    }

    async fn update_row(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
        let record = text(lock, &encode_record(lock, self, rec, None)?)?;
        // A version this store never issued cannot match: it is a conflict, not a query error.
        let Some((expected, xmin)) = parse_version(expected) else {
            return Err(Error::Conflict { lock: lock.clone(), store: self.to_string() });
        };
        // One round trip: the compare-and-set on (version, xmin), and whether the row
        // exists at all (to tell Conflict from NotFound). The same statement tells
        // watchers (LISTEN) of the new record, within NOTIFY's 8000-byte payload limit;
        // larger records are left to polling.
        let sql = format!(
            "WITH cas AS (UPDATE {t} SET record = $3, version = version + 1, updated_at = now() \
             WHERE name = $1 AND version = $2 AND xmin::text = $6 RETURNING version, xmin::text AS x) \
             SELECT (SELECT version FROM cas), (SELECT x FROM cas), EXISTS (SELECT 1 FROM {t} WHERE name = $1), \
             (SELECT pg_notify($4, $5 || version::text || ':' || x || E'\\n' || $1 || E'\\n' || $3) FROM cas WHERE octet_length($3) < 7000)",
            t = self.inner.qualified
        );
        let rows = self
            .query(
                lock,
                &sql,
                &[
                    (&lock.as_str(), Type::TEXT),
                    (&expected, Type::INT8),
                    (&record, Type::TEXT),
                    (&self.inner.channel.as_str(), Type::TEXT),
                    (&self.inner.notify_prefix.as_str(), Type::TEXT),
                    (&xmin, Type::TEXT),
                ],
            )
            .await?;
        let row =
            rows.first().ok_or_else(|| Error::Backend { store: self.to_string(), source: "compare-and-set returned no row".into() })?;
        let new_version: Option<i64> = row.try_get(0).map_err(|e| errors::corrupt(self, lock, &e))?;
        let new_xmin: Option<String> = row.try_get(1).map_err(|e| errors::corrupt(self, lock, &e))?;
        let exists: bool = row.try_get(2).map_err(|e| errors::corrupt(self, lock, &e))?;
        match (new_version, new_xmin, exists) {
            (Some(v), Some(x), _) => Ok(version_of(v, &x)),
            (_, _, true) => Err(Error::Conflict { lock: lock.clone(), store: self.to_string() }),
            (_, _, false) => Err(Error::NotFound { lock: lock.clone(), store: self.to_string() }),
        }
    }

    fn capabilities_now(&self) -> Capabilities {
        let watch = self.inner.notifications.load(std::sync::atomic::Ordering::Relaxed) != NOTIFY_OFF;
        Capabilities::atomic()
            .with_monotonic_versions(true)
            .with_watch(watch)
            .with_fenced_writes("`fenced_transaction` (row lock `FOR SHARE`)")
    }

    /// LISTEN on one connection of this store's own (outside the pool), shared by every
    /// lock: each update arrives with its record and version (NOTIFY in the update's own
    /// statement) and goes to that lock's watchers. Not through a transaction-mode
    /// pooler, which cannot LISTEN: the watch then fails and standbys poll.
    async fn watch_feed(&self, lock: &LockName) -> Result<Option<Changes>> {
        if self.inner.notifications.load(std::sync::atomic::Ordering::Relaxed) == NOTIFY_OFF {
            return Ok(None);
        }
        // A caller that gives up half-way (a timeout) must not leave a feed that never
        // delivers: the claim ends its generation unless the LISTEN is up.
        if let Some(claim) = self.inner.hub.claim_feed() {
            let generation = claim.generation();
            let started = match self.inner.connector.clone() {
                Some(tls) => self.listen(tls, generation).await,
                None => self.listen(tokio_postgres::NoTls, generation).await,
            };
            match started {
                Ok(true) => claim.started(),
                Ok(false) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok(Some(self.inner.hub.subscribe(lock)))
    }
}

#[async_trait]
impl RawAccess for PostgresStore {
    async fn write_raw(&self, lock: &LockName, raw: &[u8]) -> Result<()> {
        let text =
            std::str::from_utf8(raw).map_err(|e| Error::Config(format!("lock {lock:?}: a postgres record must be UTF-8 text: {e}")))?;
        let sql = format!(
            "INSERT INTO {t} (name, record, version) VALUES ($1, $2, 1) \
             ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record, version = {t}.version + 1, updated_at = now()",
            t = self.inner.qualified
        );
        self.query(lock, &sql, &[(&lock.as_str(), Type::TEXT), (&text, Type::TEXT)]).await?;
        Ok(())
    }

    async fn read_raw(&self, lock: &LockName) -> Result<Option<Bytes>> {
        let sql = format!("SELECT record FROM {} WHERE name = $1", self.inner.qualified);
        let rows = self.query(lock, &sql, &[(&lock.as_str(), Type::TEXT)]).await?;
        rows.first().map(|row| row.try_get::<_, String>(0).map(Bytes::from).map_err(|e| errors::corrupt(self, lock, &e))).transpose()
    }

    async fn delete_raw(&self, lock: &LockName) -> Result<()> {
        let sql = format!("DELETE FROM {} WHERE name = $1", self.inner.qualified);
        self.query(lock, &sql, &[(&lock.as_str(), Type::TEXT)]).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_carry_the_counter_and_the_row_version() {
        let v = version_of(7, "1234");
        assert_eq!((v.as_str(), v.ordinal()), ("7:1234", Some(7)));
        assert_eq!(parse_version(&v), Some((7, "1234")));
        for foreign in ["7", "7:", "x:1", "7:1;DROP", ""] {
            assert_eq!(parse_version(&Version::new(foreign)), None, "{foreign}");
        }
    }

    #[test]
    fn verify_full_urls_build_and_a_missing_ca_file_is_a_clear_error() {
        let store = PostgresStore::builder("postgres://app@db.example/ops?sslmode=verify-full").expect("parses").build().expect("builds");
        assert!(store.inner.tls, "verify-full means TLS");
        let err = PostgresStore::builder("postgres://app:hunter2@db.example/ops?sslrootcert=/nonexistent/ca.pem")
            .expect("parses")
            .build()
            .map(drop)
            .expect_err("no such file");
        let text = err.to_string();
        assert!(text.contains("/nonexistent/ca.pem") && text.contains("db.example"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }
}
