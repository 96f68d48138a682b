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
//! Every call is one statement and one round trip; no advisory locks, no session
//! state and no named prepared statements, so it works through a transaction-mode
//! pooler (PgBouncer). See the README for the SQL, the grants and the semantics.

mod config;
mod errors;

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

/// How to secure the connection. Whenever TLS is used the server's certificate is
/// verified, host name included, against Mozilla's root certificates or the ones
/// given by `sslrootcert` / [`PostgresStoreBuilder::root_certificates_file`]: a lock
/// store an attacker could impersonate would hand out leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tls {
    /// Follow the URL's `sslmode`: `disable` → plain; `prefer` (the default) → TLS if
    /// the server offers it; `require`, `verify-ca`, `verify-full` → TLS or no connection.
    FromUrl,
    /// Never use TLS.
    Disabled,
    /// Always use TLS.
    Required,
}

impl PostgresStoreBuilder {
    /// Validates the settings and builds the store (connections are made lazily).
    pub fn build(mut self) -> Result<PostgresStore> {
        let schema = config::valid_identifier("schema", &self.schema)?;
        let table = config::valid_identifier("table", &self.table)?;
        if self.statement_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(Error::Config("postgres statement and connect timeouts must be greater than zero".into()));
        }
        self.config.connect_timeout(self.connect_timeout);
        let tls = match self.tls {
            Tls::Disabled => false,
            Tls::Required => true,
            Tls::FromUrl => self.config.get_ssl_mode() != SslMode::Disable,
        };
        if self.tls == Tls::Required {
            self.config.ssl_mode(SslMode::Require);
        }
        let endpoint = config::endpoint(&self.config);
        // Where a cancel request for a pooled connection goes: its one TCP host (several
        // hosts: whichever the connection took, which only the driver knows).
        let cancel_to = match (self.config.get_hosts(), self.config.get_ports()) {
            ([tokio_postgres::config::Host::Tcp(host)], ports) => Some((host.clone(), ports.first().copied().unwrap_or(5432))),
            _ => None,
        };
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let mut listen_config = self.config.clone();
        if let Some((host, port)) = &self.listen {
            // Same user, database and TLS; another address.
            let mut direct = tokio_postgres::Config::new();
            if let Some(user) = self.config.get_user() {
                direct.user(user);
            }
            if let Some(password) = self.config.get_password() {
                direct.password(password);
            }
            if let Some(db) = self.config.get_dbname() {
                direct.dbname(db);
            }
            direct.ssl_mode(self.config.get_ssl_mode()).application_name("highlander-listen").host(host).port(*port);
            direct.connect_timeout(self.connect_timeout);
            listen_config = direct;
        }
        let mut connector = None;
        let manager = if tls {
            let roots = match &self.root_cert {
                None => rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
                Some(path) => root_certificates(path).map_err(|why| Error::Config(format!("postgres TLS for {endpoint}: {why}")))?,
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let client = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| Error::Config(format!("postgres TLS for {endpoint}: {e}")))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let make = tokio_postgres_rustls::MakeRustlsConnect::new(client);
            connector = Some(make.clone());
            Manager::from_config(self.config, make, manager_config)
        } else {
            Manager::from_config(self.config, tokio_postgres::NoTls, manager_config)
        };
        let pool = Pool::builder(manager)
            .max_size(self.pool_size - 1)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.connect_timeout))
            .create_timeout(Some(self.connect_timeout))
            .recycle_timeout(Some(self.connect_timeout))
            .build()
            .map_err(|e| Error::Config(format!("postgres pool for {endpoint}: {e}")))?;
        let qualified = format!("\"{schema}\".\"{table}\"");
        // NOTIFY channels are identifiers of at most 63 bytes.
        let channel: String = format!("highlander_{table}").chars().take(63).collect();
        let notify_prefix = format!("{qualified}\n");
        let inner = Inner {
            pool,
            endpoint,
            schema,
            qualified,
            tls,
            listen_config,
            connector,
            cancel_to,
            channel,
            notify_prefix,
            statement_timeout: self.statement_timeout,
            cancel: self.cancel,
            cancels: tokio::sync::Semaphore::new(1),
            hub: Arc::default(),
            stop: tokio::sync::watch::channel(()).0,
            notifications: std::sync::atomic::AtomicU8::new(if self.notify { NOTIFY_UNKNOWN } else { NOTIFY_OFF }),
        };
        Ok(PostgresStore { inner: Arc::new(inner) })
    }
}

/// The CA certificates of a PEM file.
fn root_certificates(path: &std::path::Path) -> std::result::Result<rustls::RootCertStore, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read CA certificates from {}: {e}", path.display()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot read CA certificates from {}: {e}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("no usable CA certificate in {}", path.display()));
    }
    Ok(roots)
}

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
    /// Dropped with the store: stops the LISTEN task.
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
            .finish()
    }
}

impl fmt::Display for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "postgres {} table {}", self.inner.endpoint, self.inner.qualified)
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
        let rows = match tokio::time::timeout(self.inner.statement_timeout, tx.query_typed(&sql, &[(&lock.as_str(), Type::TEXT)])).await {
            Ok(rows) => rows.map_err(|e| self.error(Some(&lock), e))?,
            Err(_) => {
                return Err(Error::Timeout { lock, store: self.to_string(), operation: "fence", after: self.inner.statement_timeout });
            }
        };
        cancel.token = None;
        let record = match rows.first() {
            None => None,
            Some(row) => {
                let text: String = row.try_get(0).map_err(|e| errors::corrupt(self, &lock, &e))?;
                Some(LeaderElectionRecord::from_json(text.as_bytes()).map_err(|e| Error::Corrupt {
                    lock: lock.clone(),
                    store: self.to_string(),
                    detail: e.to_string(),
                })?)
            }
        };
        match record {
            Some(rec) if term.is_named_by(&rec) => Ok(tx),
            other => Err(term.moved(self, other.as_ref())),
        }
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
        let result = tokio::time::timeout(self.inner.statement_timeout, client.query_typed(sql, params)).await;
        match result {
            Ok(rows) => {
                cancel.token = None;
                rows.map_err(|e| self.error(Some(lock), e))
            }
            Err(_) => Err(Error::Timeout {
                lock: lock.clone(),
                store: self.to_string(),
                operation: "statement",
                after: self.inner.statement_timeout,
            }),
        }
    }
}

/// Asks the server to cancel a statement still running when its future is dropped.
///
/// Connections stay within the pool size: the pool lends `pool_size - 1` connections
/// for statements, and one cancel request at a time per store takes the last place. The
/// abandoned statement's connection (`held`) stays out of the pool until the statement
/// has ended: a cancel that arrived late would otherwise stop whatever the connection
/// ran next.
struct CancelOnDrop {
    token: Option<tokio_postgres::CancelToken>,
    held: Option<deadpool_postgres::Client>,
    store: PostgresStore,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(token) = self.token.take() else { return };
        let held = self.held.take();
        if !self.store.inner.cancel {
            // Not cancelled: the connection is closed, never reused.
            if let Some(held) = held {
                drop(deadpool_postgres::Object::take(held));
            }
            return;
        }
        let store = self.store.clone();
        // On a thread of its own, so that the request is finished even if the caller's
        // runtime is shutting down: a cancel connection dropped half-way can crash
        // PgBouncer 1.18 ("bad client state: 0", pgbouncer/pgbouncer#801).
        let _ = std::thread::Builder::new().name("highlander-pg-cancel".into()).spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            runtime.block_on(async move {
                let cancelled = tokio::time::timeout(CANCEL_TIMEOUT, async {
                    let Ok(_turn) = store.inner.cancels.acquire().await else { return false };
                    cancel(&store, token).await
                })
                .await
                .unwrap_or(false);
                let Some(held) = held else { return };
                // The server has signalled the statement when it closes the cancel
                // connection; an empty query queued behind the statement answers once
                // the statement has ended. Only then is the connection idle and clean
                // for the pool; otherwise it is closed.
                let clean =
                    cancelled && tokio::time::timeout(store.inner.statement_timeout, held.simple_query("")).await.is_ok_and(|r| r.is_ok());
                if !clean {
                    drop(deadpool_postgres::Object::take(held));
                }
            });
        });
    }
}

/// Sends one cancel request and waits for the server to close its connection: `true`
/// if it was sent and answered.
async fn cancel(store: &PostgresStore, token: tokio_postgres::CancelToken) -> bool {
    let Some((host, port)) = &store.inner.cancel_to else {
        // Several hosts: only the driver knows which one the connection took.
        return match store.inner.connector.clone() {
            Some(tls) => token.cancel_query(tls).await.is_ok(),
            None => token.cancel_query(tokio_postgres::NoTls).await.is_ok(),
        };
    };
    let Ok(stream) = tokio::net::TcpStream::connect((host.as_str(), *port)).await else { return false };
    // A second handle on the same socket outlives the driver's, which it drops (and
    // would close) as soon as the request is written.
    let Some((stream, mut kept)) = duplicate(stream) else { return false };
    let sent = match store.inner.connector.clone() {
        Some(mut tls) => match tokio_postgres::tls::MakeTlsConnect::<Lingering>::make_tls_connect(&mut tls, host) {
            Ok(tls) => token.cancel_query_raw(Lingering(stream), tls).await.is_ok(),
            Err(_) => false,
        },
        None => token.cancel_query_raw(Lingering(stream), tokio_postgres::NoTls).await.is_ok(),
    };
    if sent {
        until_closed(&mut kept).await;
    }
    sent
}

/// Two handles on one TCP connection: the connection stays open until both are dropped.
fn duplicate(stream: tokio::net::TcpStream) -> Option<(tokio::net::TcpStream, tokio::net::TcpStream)> {
    let std = stream.into_std().ok()?;
    let copy = std.try_clone().ok()?;
    Some((tokio::net::TcpStream::from_std(std).ok()?, tokio::net::TcpStream::from_std(copy).ok()?))
}

/// Reads until the server closes the connection (or it fails).
async fn until_closed(stream: &mut tokio::net::TcpStream) {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 64];
    while let Ok(n) = stream.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// How long a cancel request may take, connection and answer included.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(10);

/// A cancel request's connection that the driver cannot half-close: it is closed only
/// once the server has closed it, as libpq does. (tokio-postgres shuts the socket down
/// as soon as the request is written, and PgBouncer 1.18 crashes when a cancel request's
/// client leaves before the pooler has forwarded it: "bad client state: 0".)
struct Lingering(tokio::net::TcpStream);

impl tokio::io::AsyncRead for Lingering {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Lingering {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    /// No half-close: the server ends the exchange.
    fn poll_shutdown(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

fn text(lock: &LockName, raw: &Bytes) -> Result<String> {
    std::str::from_utf8(raw).map(str::to_string).map_err(|e| Error::Config(format!("lock {lock:?}: record is not UTF-8: {e}")))
}

#[async_trait]
impl LeaseStore for PostgresStore {
    async fn get(&self, lock: &LockName) -> Result<Option<Observed>> {
        let sql = format!("SELECT record, version, xmin::text FROM {} WHERE name = $1", self.inner.qualified);
        let rows = self.query(lock, &sql, &[(&lock.as_str(), Type::TEXT)]).await?;
        let Some(row) = rows.first() else { return Ok(None) };
        let record: String = row.try_get(0).map_err(|e| errors::corrupt(self, lock, &e))?;
        let version: i64 = row.try_get(1).map_err(|e| errors::corrupt(self, lock, &e))?;
        let xmin: String = row.try_get(2).map_err(|e| errors::corrupt(self, lock, &e))?;
        Observed::decode(lock, self, Bytes::from(record), version_of(version, &xmin)).map(Some)
    }

    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
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

    async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
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

    fn capabilities(&self) -> Capabilities {
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
    async fn watch(&self, lock: &LockName) -> Result<Option<Changes>> {
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

impl PostgresStore {
    /// Finds out whether change notifications reach this store's LISTEN connection (a
    /// transaction-mode pooler does not deliver them), starting the shared feed if
    /// none runs. Afterwards [`capabilities`](LeaseStore::capabilities) says what is so.
    pub async fn check_notifications(&self) -> Result<bool> {
        if self.inner.notifications.load(std::sync::atomic::Ordering::Relaxed) == NOTIFY_OFF {
            return Ok(false);
        }
        let probe = LockName::new("highlander-notification-probe")?;
        let watching = self.watch(&probe).await?;
        Ok(watching.is_some())
    }

    /// Opens the LISTEN connection and a task that fans its notifications out; then
    /// proves delivery with a NOTIFY sent through the pool, which a transaction-mode
    /// pooler never hands to the listening client. `Ok(false)`: notifications do not
    /// arrive here, and the store says so from now on.
    async fn listen<T>(&self, tls: T, generation: u64) -> Result<bool>
    where
        T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> + Send + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as tokio_postgres::tls::TlsConnect<tokio_postgres::Socket>>::Future: Send,
    {
        if self.inner.notifications.load(std::sync::atomic::Ordering::Relaxed) == NOTIFY_WORKING {
            return self.open_feed(tls, generation, None).await.map(|_| true);
        }
        let nonce = format!("{:016x}", rand_u64());
        let (heard_tx, heard) = tokio::sync::oneshot::channel();
        self.open_feed(tls, generation, Some((nonce.clone(), heard_tx))).await?;
        let client = self.client().await?;
        let payload = format!("{}probe\n{nonce}", self.inner.notify_prefix);
        client
            .query_typed("SELECT pg_notify($1, $2)", &[(&self.inner.channel.as_str(), Type::TEXT), (&payload.as_str(), Type::TEXT)])
            .await
            .map_err(|e| self.error(None, e))?;
        let wait = self.inner.statement_timeout.min(Duration::from_secs(2));
        if tokio::time::timeout(wait, heard).await.is_ok_and(|r| r.is_ok()) {
            self.inner.notifications.store(NOTIFY_WORKING, std::sync::atomic::Ordering::Relaxed);
            return Ok(true);
        }
        self.inner.notifications.store(NOTIFY_OFF, std::sync::atomic::Ordering::Relaxed);
        // Stops the feed that hears nothing.
        self.inner.hub.feed_ended(generation);
        tracing::warn!(
            store = %self,
            "change notifications do not reach this store's LISTEN connection (a transaction-mode pooler?): standbys poll; add listen=HOST:PORT of the server itself to the URL to have them"
        );
        Ok(false)
    }

    async fn open_feed<T>(&self, tls: T, generation: u64, mut probe: Option<(String, tokio::sync::oneshot::Sender<()>)>) -> Result<()>
    where
        T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> + Send + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as tokio_postgres::tls::TlsConnect<tokio_postgres::Socket>>::Future: Send,
    {
        let (client, mut connection) = self.inner.listen_config.connect(tls).await.map_err(|e| self.error(None, e))?;
        let client = Arc::new(client);
        let hub = self.inner.hub.clone();
        let (prefix, description) = (self.inner.notify_prefix.clone(), self.to_string());
        let mut stop = self.inner.stop.subscribe();
        let session = client.clone();
        tokio::spawn(async move {
            let _session = session;
            loop {
                let message = tokio::select! {
                    // The store was dropped.
                    _ = stop.changed() => break,
                    message = std::future::poll_fn(|cx| connection.poll_message(cx)) => message,
                };
                match message {
                    Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                        if let Some((nonce, _)) = &probe
                            && n.payload().strip_prefix(&prefix).and_then(|p| p.strip_prefix("probe\n")) == Some(nonce.as_str())
                            && let Some((_, heard)) = probe.take()
                        {
                            let _ = heard.send(());
                            continue;
                        }
                        if let Some((lock, seen)) = notified(&hub, &prefix, &description, n.payload()) {
                            hub.publish(&lock, &seen);
                        }
                    }
                    Some(Ok(_)) => {}
                    // The connection ended: every watcher's channel closes and electors poll.
                    _ => break,
                }
            }
            hub.feed_ended(generation);
        });
        client.batch_execute(&format!("LISTEN \"{}\"", self.inner.channel)).await.map_err(|e| self.error(None, e))?;
        Ok(())
    }
}

fn rand_u64() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    u64::try_from(nanos % u128::from(u64::MAX)).unwrap_or(0) ^ u64::from(std::process::id()).rotate_left(32)
}

/// A notification's lock and record, if it is about a watched lock of this table:
/// `schema.table`, version, lock, record.
fn notified(hub: &lock_core::WatchHub, prefix: &str, store: &str, payload: &str) -> Option<(LockName, Observed)> {
    let rest = payload.strip_prefix(prefix)?;
    let (version, rest) = rest.split_once('\n')?;
    let (name, record) = rest.split_once('\n')?;
    let lock = LockName::new(name).ok()?;
    if !hub.is_watched(&lock) {
        return None;
    }
    let (number, xmin) = version.split_once(':')?;
    let seen = Observed::decode(&lock, &store, Bytes::from(record.to_string()), version_of(number.parse().ok()?, xmin)).ok()?;
    Some((lock, seen))
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
