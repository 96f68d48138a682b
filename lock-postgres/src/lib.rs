//! Highlander leases in a Postgres table: one row per lock, compare-and-set on a version column.
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

mod errors;

use async_trait::async_trait;
use bytes::Bytes;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use lock_core::{
    Capabilities, Changes, Error, LeaderElectionRecord, LeaseStore, LockName, Observed, RawAccess, Result, Version, encode_record,
};
use std::{fmt, str::FromStr, sync::Arc, time::Duration};
use tokio_postgres::{
    config::{Host, SslMode},
    types::Type,
};

/// The default table name.
pub const DEFAULT_TABLE: &str = "highlander_leases";
/// The default schema.
pub const DEFAULT_SCHEMA: &str = "public";

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

/// libpq's TLS parameters that the driver does not parse, taken out of a connection
/// string: `sslmode=verify-ca` / `verify-full` (TLS required; the certificate is always
/// verified here) and `sslrootcert=PATH` (`system` for the built-in roots).
#[derive(Debug, Default, PartialEq, Eq)]
struct LibpqTls {
    required: bool,
    root_cert: Option<std::path::PathBuf>,
}

/// Splits libpq-only TLS parameters out of a URL (`?sslmode=verify-full&sslrootcert=…`)
/// or key=value connection string, so the driver parses the rest.
fn split_libpq_tls(connection: &str) -> (String, LibpqTls) {
    let mut tls = LibpqTls::default();
    let mut take = |key: &str, value: &str| -> bool {
        match (key, value) {
            ("sslmode", "verify-ca" | "verify-full") => {
                tls.required = true;
                true
            }
            ("sslrootcert", "system") => true,
            ("sslrootcert", path) => {
                tls.root_cert = Some(percent_decode(path).into());
                true
            }
            _ => false,
        }
    };
    if connection.starts_with("postgres://") || connection.starts_with("postgresql://") {
        let Some((base, query)) = connection.split_once('?') else { return (connection.to_string(), tls) };
        let kept: Vec<&str> = query.split('&').filter(|pair| !pair.split_once('=').is_some_and(|(k, v)| take(k, v))).collect();
        let rest = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
        return (rest, tls);
    }
    let kept: Vec<&str> = connection
        .split_whitespace()
        .filter(|pair| !pair.split_once('=').is_some_and(|(k, v)| take(k.trim(), v.trim().trim_matches('\''))))
        .collect();
    (kept.join(" "), tls)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Builds a [`PostgresStore`].
#[must_use = "a builder does nothing until .build()"]
pub struct PostgresStoreBuilder {
    config: tokio_postgres::Config,
    schema: String,
    table: String,
    tls: Tls,
    root_cert: Option<std::path::PathBuf>,
    pool_size: usize,
    statement_timeout: Duration,
    connect_timeout: Duration,
}

impl fmt::Debug for PostgresStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStoreBuilder")
            .field("endpoint", &endpoint(&self.config))
            .field("schema", &self.schema)
            .field("table", &self.table)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

fn valid_identifier(kind: &str, name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(name.to_string())
    } else {
        Err(Error::Config(format!("postgres {kind} {name:?} must be 1-63 letters, digits or underscores, not starting with a digit")))
    }
}

impl PostgresStoreBuilder {
    /// Starts from a connection string: a `postgres://` / `postgresql://` URL or `key=value` pairs.
    /// The password may be in it or in `PGPASSWORD`; it is never printed.
    pub fn new(connection: &str) -> Result<Self> {
        let (connection, libpq) = split_libpq_tls(connection);
        let mut config = tokio_postgres::Config::from_str(&connection)
            // The parser's message can echo the input, which may hold a password.
            .map_err(|_| {
                Error::Config("invalid postgres connection string (expected postgres://user@host:port/db or key=value pairs)".into())
            })?;
        if config.get_password().is_none()
            && let Ok(pw) = std::env::var("PGPASSWORD")
        {
            config.password(pw);
        }
        if config.get_application_name().is_none() {
            config.application_name("highlander");
        }
        Ok(Self {
            config,
            schema: DEFAULT_SCHEMA.into(),
            table: DEFAULT_TABLE.into(),
            tls: if libpq.required { Tls::Required } else { Tls::FromUrl },
            root_cert: libpq.root_cert,
            pool_size: 4,
            statement_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        })
    }

    /// The table holding the leases (default `highlander_leases`).
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// The schema of the table (default `public`).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// TLS mode (default: the URL's `sslmode`).
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = tls;
        self
    }

    /// Trusts the CA certificates in this PEM file instead of Mozilla's roots (as
    /// libpq's `sslrootcert`, which the connection string may also give): for servers
    /// whose certificates come from a private CA, as many managed databases' do.
    pub fn root_certificates_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.root_cert = Some(path.into());
        self
    }

    /// Connections kept in the pool (default 4).
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(1);
        self
    }

    /// The server-side `statement_timeout` of every statement (default 5 s). Keep it
    /// at or below the elector's call timeout so the server gives up when the elector does.
    pub fn statement_timeout(mut self, d: Duration) -> Self {
        self.statement_timeout = d;
        self
    }

    /// How long to wait for a new connection (default 5 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Validates the settings and builds the store (connections are made lazily).
    pub fn build(mut self) -> Result<PostgresStore> {
        let schema = valid_identifier("schema", &self.schema)?;
        let table = valid_identifier("table", &self.table)?;
        let millis = self.statement_timeout.as_millis().max(1);
        self.config.options(format!("-c statement_timeout={millis}"));
        self.config.connect_timeout(self.connect_timeout);
        let tls = match self.tls {
            Tls::Disabled => false,
            Tls::Required => true,
            Tls::FromUrl => self.config.get_ssl_mode() != SslMode::Disable,
        };
        if self.tls == Tls::Required {
            self.config.ssl_mode(SslMode::Require);
        }
        let endpoint = endpoint(&self.config);
        let manager_config = ManagerConfig { recycling_method: RecyclingMethod::Fast };
        let listen_config = self.config.clone();
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
            .max_size(self.pool_size)
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
        let inner = Inner { pool, endpoint, qualified, tls, listen_config, connector, channel, notify_prefix };
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

/// `host:port/db` for messages: never the user's password.
fn endpoint(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or("postgres"))
}

struct Inner {
    pool: Pool,
    endpoint: String,
    qualified: String,
    tls: bool,
    /// For the dedicated connection a watch LISTENs on (pooled ones are shared).
    listen_config: tokio_postgres::Config,
    connector: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    channel: String,
    /// What every notification of this table starts with: `"schema"."table"` and a newline.
    notify_prefix: String,
}

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
            Err(e) => Err(self.error(e)),
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.inner.pool.get().await.map_err(|e| errors::pool(self, e))
    }

    fn error(&self, e: tokio_postgres::Error) -> Error {
        errors::postgres(self, None, e)
    }
}

#[async_trait]
impl LeaseStore for PostgresStore {
    async fn get(&self, lock: &LockName) -> Result<Option<Observed>> {
        let client = self.client().await?;
        let sql = format!("SELECT record, version FROM {} WHERE name = $1", self.inner.qualified);
        let rows = client.query_typed(&sql, &[(&lock.as_str(), Type::TEXT)]).await.map_err(|e| errors::postgres(self, Some(lock), e))?;
        let Some(row) = rows.first() else { return Ok(None) };
        let record: String = row.try_get(0).map_err(|e| errors::corrupt(self, lock, &e))?;
        let version: i64 = row.try_get(1).map_err(|e| errors::corrupt(self, lock, &e))?;
        Observed::decode(lock, self, Bytes::from(record), Version::new(version.to_string())).map(Some)
    }

    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
        let raw = encode_record(lock, self, rec, None)?;
        let record = std::str::from_utf8(&raw).map_err(|e| Error::Config(format!("lock {lock:?}: record is not UTF-8: {e}")))?;
        let client = self.client().await?;
        let sql = format!(
            "INSERT INTO {} (name, record, version) VALUES ($1, $2, 1) ON CONFLICT (name) DO NOTHING RETURNING version",
            self.inner.qualified
        );
        let rows = client
            .query_typed(&sql, &[(&lock.as_str(), Type::TEXT), (&record, Type::TEXT)])
            .await
            .map_err(|e| errors::postgres(self, Some(lock), e))?;
        match rows.first() {
            Some(row) => Ok(Version::new(row.try_get::<_, i64>(0).map_err(|e| errors::corrupt(self, lock, &e))?.to_string())),
            None => Err(Error::AlreadyExists { lock: lock.clone(), store: self.to_string() }),
        }
    }

    async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
        let raw = encode_record(lock, self, rec, None)?;
        let record = std::str::from_utf8(&raw).map_err(|e| Error::Config(format!("lock {lock:?}: record is not UTF-8: {e}")))?;
        // A version this store never issued cannot match: it is a conflict, not a query error.
        let Ok(expected) = expected.as_str().parse::<i64>() else {
            return Err(Error::Conflict { lock: lock.clone(), store: self.to_string() });
        };
        let client = self.client().await?;
        // One round trip: the compare-and-set, and whether the row exists at all (to tell Conflict from NotFound).
        // The same statement tells watchers (LISTEN) of the new record, within NOTIFY's
        // 8000-byte payload limit; larger records are left to polling.
        let sql = format!(
            "WITH cas AS (UPDATE {t} SET record = $3, version = version + 1, updated_at = now() \
             WHERE name = $1 AND version = $2 RETURNING version) \
             SELECT (SELECT version FROM cas), EXISTS (SELECT 1 FROM {t} WHERE name = $1), \
             (SELECT pg_notify($4, $5 || version::text || E'\\n' || $1 || E'\\n' || $3) FROM cas WHERE octet_length($3) < 7000)",
            t = self.inner.qualified
        );
        let rows = client
            .query_typed(
                &sql,
                &[
                    (&lock.as_str(), Type::TEXT),
                    (&expected, Type::INT8),
                    (&record, Type::TEXT),
                    (&self.inner.channel.as_str(), Type::TEXT),
                    (&self.inner.notify_prefix.as_str(), Type::TEXT),
                ],
            )
            .await
            .map_err(|e| errors::postgres(self, Some(lock), e))?;
        let row =
            rows.first().ok_or_else(|| Error::Backend { store: self.to_string(), source: "compare-and-set returned no row".into() })?;
        let new_version: Option<i64> = row.try_get(0).map_err(|e| errors::corrupt(self, lock, &e))?;
        let exists: bool = row.try_get(1).map_err(|e| errors::corrupt(self, lock, &e))?;
        match (new_version, exists) {
            (Some(v), _) => Ok(Version::new(v.to_string())),
            (None, true) => Err(Error::Conflict { lock: lock.clone(), store: self.to_string() }),
            (None, false) => Err(Error::NotFound { lock: lock.clone(), store: self.to_string() }),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::atomic().with_monotonic_versions(true).with_watch(true)
    }

    /// LISTEN on a dedicated connection: every update of the lock arrives with its
    /// record and version (NOTIFY in the update's own statement). Not through a
    /// transaction-mode pooler, which cannot LISTEN: the watch then fails and standbys poll.
    async fn watch(&self, lock: &LockName) -> Result<Option<Changes>> {
        match self.inner.connector.clone() {
            Some(tls) => self.listen(tls, lock).await.map(Some),
            None => self.listen(tokio_postgres::NoTls, lock).await.map(Some),
        }
    }
}

impl PostgresStore {
    async fn listen<T>(&self, tls: T, lock: &LockName) -> Result<Changes>
    where
        T: tokio_postgres::tls::MakeTlsConnect<tokio_postgres::Socket> + Send + 'static,
        T::Stream: Send + 'static,
        T::TlsConnect: Send,
        <T::TlsConnect as tokio_postgres::tls::TlsConnect<tokio_postgres::Socket>>::Future: Send,
    {
        let (client, mut connection) = self.inner.listen_config.connect(tls).await.map_err(|e| errors::postgres(self, Some(lock), e))?;
        let client = Arc::new(client);
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let (store, name, session) = (self.clone(), lock.clone(), client.clone());
        tokio::spawn(async move {
            let _session = session;
            loop {
                let message = tokio::select! {
                    () = tx.closed() => return,
                    message = std::future::poll_fn(|cx| connection.poll_message(cx)) => message,
                };
                match message {
                    Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                        let Some(seen) = store.notified(&name, n.payload()) else { continue };
                        if tx.send(seen).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                    // The connection ended: the channel closes and the elector polls.
                    _ => return,
                }
            }
        });
        client.batch_execute(&format!("LISTEN \"{}\"", self.inner.channel)).await.map_err(|e| errors::postgres(self, Some(lock), e))?;
        Ok(rx)
    }

    /// A notification's record if it is about `lock` in this table: `schema.table`, version, lock, record.
    fn notified(&self, lock: &LockName, payload: &str) -> Option<Observed> {
        let rest = payload.strip_prefix(&self.inner.notify_prefix)?;
        let (version, rest) = rest.split_once('\n')?;
        let (name, record) = rest.split_once('\n')?;
        if name != lock.as_str() {
            return None;
        }
        Observed::decode(lock, self, Bytes::from(record.to_string()), Version::new(version)).ok()
    }
}

#[async_trait]
impl RawAccess for PostgresStore {
    async fn write_raw(&self, lock: &LockName, raw: &[u8]) -> Result<()> {
        let text =
            std::str::from_utf8(raw).map_err(|e| Error::Config(format!("lock {lock:?}: a postgres record must be UTF-8 text: {e}")))?;
        let client = self.client().await?;
        let sql = format!(
            "INSERT INTO {t} (name, record, version) VALUES ($1, $2, 1) \
             ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record, version = {t}.version + 1, updated_at = now()",
            t = self.inner.qualified
        );
        client
            .query_typed(&sql, &[(&lock.as_str(), Type::TEXT), (&text, Type::TEXT)])
            .await
            .map_err(|e| errors::postgres(self, Some(lock), e))?;
        Ok(())
    }

    async fn read_raw(&self, lock: &LockName) -> Result<Option<Bytes>> {
        let client = self.client().await?;
        let sql = format!("SELECT record FROM {} WHERE name = $1", self.inner.qualified);
        let rows = client.query_typed(&sql, &[(&lock.as_str(), Type::TEXT)]).await.map_err(|e| errors::postgres(self, Some(lock), e))?;
        rows.first().map(|row| row.try_get::<_, String>(0).map(Bytes::from).map_err(|e| errors::corrupt(self, lock, &e))).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_tls_parameters_are_taken_out_of_urls_and_key_value_strings() {
        let (rest, tls) = split_libpq_tls("postgres://app@db:5432/ops?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x");
        assert_eq!(rest, "postgres://app@db:5432/ops?application_name=x");
        assert_eq!(tls, LibpqTls { required: true, root_cert: Some("/etc/ca.pem".into()) });

        let (rest, tls) = split_libpq_tls("postgresql://app@db/ops?sslrootcert=system&sslmode=require");
        assert_eq!(rest, "postgresql://app@db/ops?sslmode=require", "require is the driver's own");
        assert_eq!(tls, LibpqTls::default());

        let (rest, tls) = split_libpq_tls("host=db user=app sslmode=verify-ca sslrootcert='/run/ca.pem'");
        assert_eq!(rest, "host=db user=app");
        assert_eq!(tls, LibpqTls { required: true, root_cert: Some("/run/ca.pem".into()) });

        let (rest, tls) = split_libpq_tls("postgres://app@db/ops");
        assert_eq!((rest.as_str(), tls), ("postgres://app@db/ops", LibpqTls::default()));
    }

    #[test]
    fn verify_full_urls_parse_and_a_missing_ca_file_is_a_clear_error() {
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
