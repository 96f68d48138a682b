//! The store's settings: from a `postgres://` URL (Highlander's grammar, every
//! parameter checked), from libpq's `key=value` pairs, or set one by one; and the
//! [`Backend`] that opens a store by URL.

use crate::{PostgresStore, Tls};
use lock_core::{
    Backend, Error, OpenOptions, RawAccess, Result, StoreUrl,
    url::{host_port, percent_decode},
};
use std::{fmt, str::FromStr, sync::Arc, time::Duration};
use tokio_postgres::config::{Host, SslMode, TargetSessionAttrs};

/// The default table name.
pub const DEFAULT_TABLE: &str = "highlander_leases";
/// The default schema.
pub const DEFAULT_SCHEMA: &str = "public";

/// The URL parameters this backend takes.
const PARAMS: &[&str] = &[
    "table",
    "schema",
    "sslmode",
    "sslrootcert",
    "application_name",
    "connect_timeout",
    "target_session_attrs",
    "listen",
    "notify",
    "cancel",
    "advisory",
];

/// Builds a [`PostgresStore`].
#[must_use = "a builder does nothing until .build()"]
pub struct PostgresStoreBuilder {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) schema: String,
    pub(crate) table: String,
    pub(crate) tls: Tls,
    pub(crate) root_cert: Option<std::path::PathBuf>,
    pub(crate) pool_size: usize,
    pub(crate) statement_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    /// Where to LISTEN, if not through the same address (a pooler in front of the server).
    pub(crate) listen: Option<(String, u16)>,
    /// Whether to use change notifications at all.
    pub(crate) notify: bool,
    /// Whether to cancel statements that outlive their timeout.
    pub(crate) cancel: bool,
    /// Whether a holder's writes also need its session's advisory lock.
    pub(crate) advisory: bool,
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

pub(crate) fn valid_identifier(kind: &str, name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(name.to_string())
    } else {
        Err(Error::Config(format!(
            "postgres {kind} {} must be 1-63 letters, digits or underscores, not starting with a digit",
            lock_core::Escaped(name)
        )))
    }
}

impl PostgresStoreBuilder {
    /// Starts from a connection string: a `postgres://` / `postgresql://` URL (see
    /// [`from_url`](Self::from_url)) or libpq's `key=value` pairs. The password may be
    /// in it or in `PGPASSWORD`; it is never printed.
    pub fn new(connection: &str) -> Result<Self> {
        let lower = connection.trim_start().to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Self::from_url(&StoreUrl::parse(connection)?);
        }
        let (connection, libpq) = split_libpq_tls(connection);
        let config = tokio_postgres::Config::from_str(&connection)
            // The parser's message can echo the input, which may hold a password.
            .map_err(|_| Error::Config("invalid postgres key=value connection string (expected host=… user=… dbname=…)".into()))?;
        let mut builder = Self::with_config(config);
        if libpq.required {
            builder.tls = Tls::Required;
        }
        builder.root_cert = libpq.root_cert;
        Ok(builder.with_env())
    }

    fn with_config(config: tokio_postgres::Config) -> Self {
        Self {
            config,
            schema: DEFAULT_SCHEMA.into(),
            table: DEFAULT_TABLE.into(),
            tls: Tls::FromUrl,
            root_cert: None,
            pool_size: 4,
            statement_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            listen: None,
            notify: true,
            cancel: true,
            advisory: false,
        }
    }

    /// The environment's defaults for what the string left out: `PGPASSWORD`, and
    /// `highlander` as the application name.
    fn with_env(mut self) -> Self {
        if self.config.get_password().is_none()
            && let Ok(pw) = std::env::var("PGPASSWORD")
        {
            self.config.password(pw);
        }
        if self.config.get_application_name().is_none() {
            self.config.application_name("highlander");
        }
        self
    }

    /// From Highlander's URL: `postgres://USER[:PASSWORD]@HOST[:PORT][,HOST2[:PORT]…]/DB`
    /// with `table`, `schema`, `sslmode` (`disable`, `prefer`, `require`, `verify-ca`,
    /// `verify-full`), `sslrootcert`, `application_name`, `connect_timeout` (seconds)
    /// and `target_session_attrs` (`any`, `read-write`). The user defaults to `PGUSER`,
    /// the password to `PGPASSWORD`. Anything else is refused by name.
    pub fn from_url(url: &StoreUrl) -> Result<Self> {
        let scheme = url.scheme();
        if !matches!(scheme, "postgres" | "postgresql") {
            return Err(Error::Config(format!("not a postgres:// URL: {scheme}://")));
        }
        let mut config = tokio_postgres::Config::new();
        let user = url.user().map(str::to_string).or_else(|| std::env::var("PGUSER").ok().filter(|u| !u.is_empty()));
        let Some(user) = user else {
            return Err(Error::Config(format!("{scheme}:// URL needs a user, as in {scheme}://USER@HOST:5432/DB (or set PGUSER)")));
        };
        config.user(&user);
        if let Some(password) = url.password() {
            config.password(password);
        }
        if url.hosts().is_empty() {
            return Err(Error::Config(format!("{scheme}:// URL needs a host, as in {scheme}://USER@HOST:5432/DB")));
        }
        for (i, host) in url.hosts().iter().enumerate() {
            let (name, port) = host_port(scheme, i, host, 5432)?;
            config.host(&name);
            config.port(port);
        }
        let db = url.path().trim_end_matches('/');
        if db.contains('/') {
            return Err(Error::Config(format!("{scheme}:// URL path is the database name alone, as in {scheme}://USER@HOST/DB")));
        }
        config.dbname(if db.is_empty() { &user } else { db });
        let mut p = url.params();
        let mut builder = Self::with_config(config);
        if let Some(t) = p.take("table")? {
            builder.table = t.to_string();
        }
        if let Some(s) = p.take("schema")? {
            builder.schema = s.to_string();
        }
        match p.take("sslmode")? {
            None | Some("prefer") => builder.config.ssl_mode(SslMode::Prefer),
            Some("disable") => builder.config.ssl_mode(SslMode::Disable),
            Some("require") => builder.config.ssl_mode(SslMode::Require),
            Some("verify-ca" | "verify-full") => {
                builder.tls = Tls::Required;
                builder.config.ssl_mode(SslMode::Require)
            }
            Some(_) => {
                return Err(Error::Config(format!(
                    "{scheme}:// parameter sslmode must be disable, prefer, require, verify-ca or verify-full"
                )));
            }
        };
        match p.take("sslrootcert")? {
            None | Some("system") => {}
            Some(path) => builder.root_cert = Some(path.into()),
        }
        if let Some(name) = p.take("application_name")? {
            builder.config.application_name(name);
        }
        if let Some(seconds) = p.number::<u64>("connect_timeout")? {
            if !(1..=3600).contains(&seconds) {
                return Err(Error::Config(format!("{scheme}:// parameter connect_timeout is whole seconds, from 1 to 3600")));
            }
            builder.connect_timeout = Duration::from_secs(seconds);
        }
        match p.take("target_session_attrs")? {
            None | Some("any") => {}
            Some("read-write") => {
                builder.config.target_session_attrs(TargetSessionAttrs::ReadWrite);
            }
            Some(_) => return Err(Error::Config(format!("{scheme}:// parameter target_session_attrs must be any or read-write"))),
        }
        if let Some(direct) = p.take("listen")? {
            builder.listen = Some(host_port(scheme, 0, direct, 5432).map_err(|_| {
                Error::Config(format!("{scheme}:// parameter listen is the server's HOST:PORT, for notifications past a pooler"))
            })?);
        }
        builder.notify = p.flag_or("notify", true)?;
        builder.cancel = p.flag_or("cancel", true)?;
        builder.advisory = p.flag_or("advisory", false)?;
        p.finish(PARAMS)?;
        Ok(builder.with_env())
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

    /// Connections this store may hold to the server besides its one LISTEN connection
    /// (default 4, at least 2): `n - 1` pooled for statements, and room for one cancel
    /// request at a time (a short connection that stops a statement which outlived its
    /// timeout). However many locks it serves, the store never holds more than `n + 1` (in advisory-lock mode, one more per lock it leads).
    pub fn pool_size(mut self, n: usize) -> Self {
        self.pool_size = n.max(2);
        self
    }

    /// How long one statement may run (default 5 s). Enforced by the client, which
    /// then asks the server to cancel the statement: no session setting, so it holds
    /// through a transaction-mode pooler too.
    pub fn statement_timeout(mut self, d: Duration) -> Self {
        self.statement_timeout = d;
        self
    }

    /// How long to wait for a new connection (default 5 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// LISTEN for change notifications on this server directly (`HOST`, `PORT`), with
    /// the same user, database and TLS: for a store reached through a transaction-mode
    /// pooler, which cannot deliver notifications (the URL's `listen=HOST:PORT`).
    pub fn listen_directly(mut self, host: impl Into<String>, port: u16) -> Self {
        self.listen = Some((host.into(), port));
        self
    }

    /// Cancel a statement that outlives its timeout (default true; the URL's
    /// `cancel=false` turns it off). Off, such a statement's connection is closed
    /// instead, and the server finishes or abandons the statement on its own: for
    /// PgBouncer 1.18 (and others without the fix for pgbouncer/pgbouncer#822) in
    /// transaction mode, which can crash on any cancel request.
    pub fn cancel_on_timeout(mut self, yes: bool) -> Self {
        self.cancel = yes;
        self
    }

    /// Advisory-lock mode (default false; the URL's `advisory=true`): a write that
    /// names a holder must also hold a session-level `pg_try_advisory_lock` on a
    /// connection of that holder's own, kept while the lease it wrote lasts. The row
    /// still decides; the lock is a second gate, and a session the server keeps (a
    /// paused holder, a partition) holds off every other holder until it ends. One
    /// more connection per lock held, one more round trip per write. Needs a real
    /// session: through a transaction-mode pooler, give the server's address with
    /// [`listen_directly`](Self::listen_directly).
    pub fn advisory_locks(mut self, yes: bool) -> Self {
        self.advisory = yes;
        self
    }

    /// Use change notifications (default true; the URL's `notify=false` turns them off).
    pub fn notifications(mut self, yes: bool) -> Self {
        self.notify = yes;
        self
    }

    /// Follows an elector's settings: no statement outlives its call timeout.
    pub fn options(mut self, options: &OpenOptions) -> Self {
        self.statement_timeout = options.call_timeout;
        self
    }
}

/// libpq's TLS parameters that the driver does not parse, taken out of a `key=value`
/// connection string: `sslmode=verify-ca` / `verify-full` (TLS required; the
/// certificate is always verified here) and `sslrootcert=PATH` (`system` for the
/// built-in roots).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct LibpqTls {
    pub(crate) required: bool,
    pub(crate) root_cert: Option<std::path::PathBuf>,
}

pub(crate) fn split_libpq_tls(connection: &str) -> (String, LibpqTls) {
    let mut tls = LibpqTls::default();
    let kept: Vec<&str> = connection
        .split_whitespace()
        .filter(|pair| {
            let Some((k, v)) = pair.split_once('=') else { return true };
            match (k.trim(), v.trim().trim_matches('\'')) {
                ("sslmode", "verify-ca" | "verify-full") => {
                    tls.required = true;
                    false
                }
                ("sslrootcert", "system") => false,
                ("sslrootcert", path) => {
                    tls.root_cert = Some(percent_decode(path, "sslrootcert").unwrap_or_else(|_| path.to_string()).into());
                    false
                }
                _ => true,
            }
        })
        .collect();
    (kept.join(" "), tls)
}

/// `host:port/db` for messages: never the user's password.
pub(crate) fn endpoint(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                Host::Tcp(h) => h.clone(),
                #[cfg(unix)]
                Host::Unix(p) => p.display().to_string(),
            };
            let port = config.get_ports().get(i).or(config.get_ports().first()).copied().unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect();
    let hosts = if hosts.is_empty() { "localhost:5432".to_string() } else { hosts.join(",") };
    format!("{hosts}/{}", config.get_dbname().unwrap_or("postgres"))
}

/// The Postgres backend: `postgres://` and `postgresql://` URLs.
#[derive(Debug, Clone, Copy, Default)]
pub struct PostgresBackend;

/// The Postgres backend, for a front end's table of backends.
pub static BACKEND: PostgresBackend = PostgresBackend;

#[lock_core::async_trait]
impl Backend for PostgresBackend {
    fn schemes(&self) -> &'static [&'static str] {
        &["postgres", "postgresql"]
    }

    fn grammar(&self) -> &'static str {
        "postgres://USER@HOST:5432/DB?table=…&schema=…&sslmode=verify-full&sslrootcert=PEM (password in PGPASSWORD)"
    }

    fn address(&self) -> lock_core::backend::Address {
        lock_core::backend::Address::Hosts { default_port: 5432 }
    }

    fn secret_env(&self) -> &'static [&'static str] {
        &["PGPASSWORD"]
    }

    async fn open(&self, url: &StoreUrl, options: &OpenOptions) -> Result<Arc<dyn RawAccess>> {
        let store = PostgresStoreBuilder::from_url(url)?.options(options).build()?;
        // Learn now whether notifications arrive (they do not through a transaction-mode
        // pooler), so the store declares what it delivers; an unreachable server is
        // left for the first call to report.
        let _ = tokio::time::timeout(Duration::from_secs(10), store.check_notifications()).await;
        if store.advisory_without_session() {
            return Err(store.no_session_error());
        }
        Ok(Arc::new(store))
    }

    async fn create(&self, url: &StoreUrl, options: &OpenOptions) -> Result<()> {
        let store: PostgresStore = PostgresStoreBuilder::from_url(url)?.options(options).build()?;
        store.ensure_schema().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<PostgresStoreBuilder> {
        PostgresStoreBuilder::from_url(&StoreUrl::parse(url)?)
    }

    #[test]
    fn urls_set_hosts_database_table_and_tls() {
        let b = parse("postgres://app@db1:6543,db2/ops?table=locks&schema=ha&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&target_session_attrs=read-write&connect_timeout=3").expect("parses");
        assert_eq!(endpoint(&b.config), "db1:6543,db2:5432/ops");
        assert_eq!((b.table.as_str(), b.schema.as_str(), b.tls), ("locks", "ha", Tls::Required));
        assert_eq!(b.root_cert.as_deref(), Some(std::path::Path::new("/etc/ca.pem")));
        assert_eq!(b.connect_timeout, Duration::from_secs(3));
        assert_eq!(b.config.get_user(), Some("app"));
        assert!(!b.advisory, "advisory locks are off unless asked for");
        assert!(parse("postgres://app@db/ops?advisory=true").expect("parses").advisory);
        let several = parse("postgres://app@db1,db2/ops?advisory=true").expect("parses").build().map(drop).expect_err("ambiguous");
        assert!(several.to_string().contains("target_session_attrs=read-write"), "{several}");
        parse("postgres://app@db1,db2/ops?advisory=true&target_session_attrs=read-write").expect("parses").build().expect("one server");
        let b = parse("postgresql://app@db").expect("parses");
        assert_eq!(endpoint(&b.config), "db:5432/app", "the database defaults to the user's name");
    }

    #[test]
    fn bad_parameters_are_named_and_passwords_never_shown() {
        for (url, expected) in [
            ("postgres://app:hunter2@db/x?tabel=t", "do not take parameter \"tabel\""),
            ("postgres://app:hunter2@db:abc/x", "host 1: the port is not a number"),
            ("postgres://app:hunter2@db/x?sslmode=maybe", "sslmode must be"),
            ("postgres://app:hunter2@db/x?table=a&table=b", "given twice"),
            ("postgres://app:hunter2@db/x?table=1bad", "postgres table \"1bad\""),
            ("postgres://app:hunter2@/x", "needs a host"),
            ("postgres://app:hunter2@db/x/y", "database name alone"),
            ("postgres://app:hunter2@db/x?connect_timeout=0", "connect_timeout"),
            ("postgres://app:hunter2@db/x?advisory=maybe", "advisory"),
        ] {
            let e = match parse(url).and_then(PostgresStoreBuilder::build) {
                Ok(_) => panic!("{url} was accepted"),
                Err(e) => e.to_string(),
            };
            assert!(e.contains(expected), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{url}: {e}");
        }
    }

    #[test]
    fn libpq_tls_parameters_are_taken_out_of_key_value_strings() {
        let (rest, tls) = split_libpq_tls("host=db user=app sslmode=verify-ca sslrootcert='/run/ca.pem'");
        assert_eq!(rest, "host=db user=app");
        assert_eq!(tls, LibpqTls { required: true, root_cert: Some("/run/ca.pem".into()) });
        let (rest, tls) = split_libpq_tls("host=db sslrootcert=system sslmode=require");
        assert_eq!((rest.as_str(), tls), ("host=db sslmode=require", LibpqTls::default()));
    }
}
