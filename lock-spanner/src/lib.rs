//! Highlander leases in Cloud Spanner: one row per lock, `create` and `update` in
//! read-write transactions that check a version counter.
//!
//! ```no_run
//! use lock_core::{LeaderElector, LockName};
//! use lock_spanner::SpannerStore;
//!
//! # async fn demo() -> Result<(), lock_core::Error> {
//! // Application Default Credentials, or SPANNER_EMULATOR_HOST for the emulator.
//! let store = SpannerStore::builder("my-project", "my-instance", "ops").connect().await?;
//! let elector = LeaderElector::builder(store, LockName::new("nightly-billing")?, "us-east1/pod-2").build()?;
//! # let _ = elector;
//! # Ok(())
//! # }
//! ```
//!
//! Reads are strong single reads; writes are read-write transactions (the row read, the
//! version compared, the row written, committed together; Spanner retries an aborted
//! transaction, within the call timeout). Versions are a counter, so they increase with
//! every write. See the README for the table, the IAM roles and the semantics.

use async_trait::async_trait;
use bytes::Bytes;
use gcloud_gax::{conn::Environment, grpc::Code, retry::RetrySetting};
use gcloud_spanner::{
    client::{Client, ClientConfig, Error as SpannerError},
    key::Key,
    mutation::{delete, insert, insert_or_update, update},
    statement::ToKind,
    transaction::{CallOptions, ReadOptions},
    transaction_rw::CommitOptions,
};
use lock_core::{
    Backend, Capabilities, Error, LeaderElectionRecord, LeaseStore, LockName, Observed, OpenOptions, RawAccess, Result, StoreUrl, Version,
    encode_record,
};
use std::{fmt, sync::Arc, time::Duration};

/// The default table.
pub const DEFAULT_TABLE: &str = "highlander_leases";
/// Spanner's `STRING(MAX)` holds 2.5 MiB; records are far smaller.
const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Builds a [`SpannerStore`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until .connect()"]
pub struct SpannerStoreBuilder {
    project: String,
    instance: String,
    database: String,
    table: String,
    emulator: Option<String>,
    call_timeout: Duration,
}

fn valid(kind: &str, value: &str, pattern: &str, ok: bool) -> Result<()> {
    if ok { Ok(()) } else { Err(Error::Config(format!("spanner {kind} {} must be {pattern}", lock_core::Escaped(value)))) }
}

impl SpannerStoreBuilder {
    /// From Highlander's URL: `spanner://PROJECT/INSTANCE/DATABASE?table=…&emulator=HOST:PORT`;
    /// credentials from Application Default Credentials, or the emulator from
    /// `emulator=` or `SPANNER_EMULATOR_HOST`. Anything else is refused by name.
    pub fn from_url(url: &StoreUrl) -> Result<Self> {
        if url.scheme() != "spanner" {
            return Err(Error::Config(format!("not a spanner:// URL: {}://", url.scheme())));
        }
        url.no_userinfo("credentials come from Application Default Credentials")?;
        let project = url.single_host("project")?;
        let mut parts = url.path().trim_end_matches('/').split('/');
        let (Some(instance), Some(database), None) = (parts.next().filter(|s| !s.is_empty()), parts.next(), parts.next()) else {
            return Err(Error::Config("spanner:// URL is spanner://PROJECT/INSTANCE/DATABASE".into()));
        };
        let mut b = SpannerStore::builder(project, instance, database);
        let mut p = url.params();
        if let Some(t) = p.take("table")? {
            b = b.table(t);
        }
        if let Some(e) = p.take("emulator")? {
            lock_core::url::host_port("spanner", 0, e, 9010)?;
            b = b.emulator(e);
        }
        p.finish(&["table", "emulator"])?;
        Ok(b)
    }

    /// The table (default `highlander_leases`).
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// Talks to the Cloud Spanner emulator at `host:port` (default: `SPANNER_EMULATOR_HOST`, if set).
    pub fn emulator(mut self, host_port: impl Into<String>) -> Self {
        self.emulator = Some(host_port.into());
        self
    }

    /// The bound on each call, retries of aborted transactions included (default 5 s).
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.call_timeout = d;
        self
    }

    /// Follows an elector's settings: no call outlives its call timeout.
    pub fn options(mut self, options: &OpenOptions) -> Self {
        self.call_timeout = options.call_timeout;
        self
    }

    fn validate(&self) -> Result<()> {
        let id = |s: &str, max: usize| {
            (2..=max).contains(&s.len())
                && s.starts_with(|c: char| c.is_ascii_lowercase())
                && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        };
        valid(
            "project",
            &self.project,
            "a project id (lower-case letters, digits, hyphens)",
            id(&self.project, 63) || self.project.contains(':'),
        )?;
        valid("instance", &self.instance, "an instance id (2-64 lower-case letters, digits, hyphens)", id(&self.instance, 64))?;
        valid("database", &self.database, "a database id (2-30 lower-case letters, digits, hyphens, underscores)", id(&self.database, 30))?;
        let table_ok = !self.table.is_empty()
            && self.table.len() <= 128
            && self.table.starts_with(|c: char| c.is_ascii_alphabetic())
            && self.table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        valid("table", &self.table, "1-128 letters, digits or underscores, starting with a letter", table_ok)
    }

    fn environment(&self) -> Option<String> {
        self.emulator.clone().or_else(|| std::env::var("SPANNER_EMULATOR_HOST").ok().filter(|h| !h.is_empty()))
    }

    fn database_path(&self) -> String {
        format!("projects/{}/instances/{}/databases/{}", self.project, self.instance, self.database)
    }

    /// Connects (a small session pool) and builds the store.
    pub async fn connect(self) -> Result<SpannerStore> {
        self.validate()?;
        let description =
            format!("spanner {}{}", self.database_path(), self.environment().map(|h| format!(" (emulator at {h})")).unwrap_or_default());
        let mut config = ClientConfig::default();
        config.channel_config.num_channels = 1;
        config.channel_config.timeout = self.call_timeout;
        config.channel_config.connect_timeout = self.call_timeout;
        config.session_config.min_opened = 2;
        config.session_config.max_opened = 16;
        match self.environment() {
            Some(host) => config.environment = Environment::Emulator(host),
            None => {
                config = config.with_auth().await.map_err(|e| Error::PermissionDenied {
                    store: description.clone(),
                    detail: format!("no Google Cloud credentials: {e} (set GOOGLE_APPLICATION_CREDENTIALS, or run where Application Default Credentials exist)"),
                })?;
            }
        }
        let client = tokio::time::timeout(self.call_timeout.max(Duration::from_secs(5)), Client::new(self.database_path(), config))
            .await
            .map_err(|_| Error::Unavailable { store: description.clone(), source: "no session within the call timeout".into() })?
            .map_err(|e| map_error(&description, None, &e))?;
        Ok(SpannerStore { inner: Arc::new(Inner { client, settings: self, description }) })
    }
}

struct Inner {
    client: Client,
    settings: SpannerStoreBuilder,
    description: String,
}

/// A [`LeaseStore`] on a Cloud Spanner table. Clones share one client.
#[derive(Clone)]
pub struct SpannerStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for SpannerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpannerStore").field("database", &self.inner.description).finish_non_exhaustive()
    }
}

impl fmt::Display for SpannerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.description)
    }
}

/// Maps Spanner's gRPC codes in one place: `Aborted` (a transaction Spanner retries
/// until the call timeout), `Unavailable`, `DeadlineExceeded` and `ResourceExhausted` are
/// transient; permissions are permanent; a missing database or table is configuration.
fn map_error(store: &str, lock: Option<&LockName>, e: &SpannerError) -> Error {
    let on = lock.map(|l| format!(" (lock {l:?})")).unwrap_or_default();
    let status = match e {
        SpannerError::GRPC(status) => status,
        other => return Error::Unavailable { store: store.to_string(), source: format!("{other}{on}").into() },
    };
    let message = status.message().to_string();
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::ResourceExhausted | Code::Cancelled => {
            Error::Unavailable { store: store.to_string(), source: format!("{message}{on}").into() }
        }
        Code::PermissionDenied | Code::Unauthenticated => Error::PermissionDenied {
            store: store.to_string(),
            detail: format!("{message} (the role needs roles/spanner.databaseUser on the database; see the lock-spanner README)"),
        },
        Code::NotFound => Error::Config(format!("{store}: {message}{on} (create the instance, database and table, or use --create)")),
        Code::InvalidArgument | Code::FailedPrecondition => Error::Config(format!("{store}: {message}{on}")),
        _ => Error::Backend { store: store.to_string(), source: format!("{message}{on}").into() },
    }
}

/// What a read-write transaction found.
enum Outcome {
    Written(i64),
    Exists,
    Missing,
    Moved,
    Undecodable(String),
}

const COLUMNS: [&str; 2] = ["record", "version"];

impl SpannerStore {
    /// Starts building a store on `projects/PROJECT/instances/INSTANCE/databases/DATABASE`.
    pub fn builder(project: impl Into<String>, instance: impl Into<String>, database: impl Into<String>) -> SpannerStoreBuilder {
        SpannerStoreBuilder {
            project: project.into(),
            instance: instance.into(),
            database: database.into(),
            table: DEFAULT_TABLE.into(),
            emulator: None,
            call_timeout: Duration::from_secs(5),
        }
    }

    /// The DDL of the table (what [`ensure_schema`](Self::ensure_schema) runs).
    #[must_use]
    pub fn schema_sql(&self) -> String {
        format!(
            "CREATE TABLE {} (\n  name STRING(MAX) NOT NULL,\n  record STRING(MAX) NOT NULL,\n  version INT64 NOT NULL,\n) PRIMARY KEY (name)",
            self.inner.settings.table
        )
    }

    /// Creates the table if it is missing; against an emulator also the instance and the
    /// database (in production, create those with infrastructure code).
    pub async fn ensure_schema(&self) -> Result<()> {
        ensure_schema(&self.inner.settings, &self.inner.description).await
    }

    fn error(&self, lock: Option<&LockName>, e: &SpannerError) -> Error {
        map_error(&self.inner.description, lock, e)
    }

    async fn bounded<T>(&self, lock: &LockName, operation: &'static str, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        lock_core::bounded(lock, self, operation, self.inner.settings.call_timeout, f).await
    }

    /// A read-write transaction on the lock's row: `decide` sees the current
    /// `(record, version)` (or nothing, when `read` is false: a blind insert) and says
    /// what to write. Aborted transactions are retried here, with short jittered pauses,
    /// until the call timeout: the client library's own retry waits up to a second
    /// between attempts, which is longer than a lease's renew deadline.
    async fn transact(
        &self,
        lock: &LockName,
        operation: &'static str,
        read: bool,
        decide: impl Fn(Option<(String, i64)>) -> std::result::Result<(i64, String), Outcome>,
    ) -> Result<Outcome> {
        let table = &self.inner.settings.table;
        let name = lock.as_str().to_string();
        let run = async {
            let mut pause = Duration::from_millis(2);
            loop {
                match self.attempt(table, &name, read, &decide).await {
                    Err(e) if aborted(&e) => {
                        let jittered = pause.mul_f64(rand::random::<f64>());
                        tokio::time::sleep(jittered).await;
                        pause = (pause * 2).min(Duration::from_millis(64));
                    }
                    // A blind insert meets the row: someone else created it first.
                    Err(SpannerError::GRPC(status)) if !read && status.code() == Code::AlreadyExists => return Ok(Outcome::Exists),
                    other => return other.map_err(|e| self.error(Some(lock), &e)),
                }
            }
        };
        self.bounded(lock, operation, run).await
    }

    async fn attempt(
        &self,
        table: &str,
        name: &str,
        read: bool,
        decide: &impl Fn(Option<(String, i64)>) -> std::result::Result<(i64, String), Outcome>,
    ) -> std::result::Result<Outcome, SpannerError> {
        let mut tx = self.inner.client.begin_read_write_transaction().await?;
        let result = async {
            let current = if read {
                let options = ReadOptions { call_options: quick_call(), ..ReadOptions::default() };
                match tx.read_row_with_option(table, &COLUMNS, Key::new(&name.to_string()), options).await? {
                    Some(row) => Some((row.column_by_name::<String>("record")?, row.column_by_name::<i64>("version")?)),
                    None => None,
                }
            } else {
                None
            };
            match decide(current) {
                Ok((version, record)) => {
                    let columns = ["name", "record", "version"];
                    let values: [&dyn ToKind; 3] = [&name, &record, &version];
                    tx.buffer_write(vec![if read && version > 1 {
                        update(table, &columns, &values)
                    } else {
                        insert(table, &columns, &values)
                    }]);
                    Ok::<_, SpannerError>(Outcome::Written(version))
                }
                Err(outcome) => Ok(outcome),
            }
        }
        .await;
        let commit = CommitOptions { call_options: quick_call(), ..CommitOptions::default() };
        let (_, outcome) = tx.end(result, Some(commit)).await?;
        Ok(outcome)
    }
}

/// Calls inside a transaction retry only `Unavailable`, briefly; `Aborted` is retried
/// by [`SpannerStore::transact`] as a whole transaction.
fn quick_call() -> CallOptions {
    let retry =
        RetrySetting { from_millis: 2, max_delay: Some(Duration::from_millis(50)), factor: 1, take: 3, codes: vec![Code::Unavailable] };
    CallOptions { priority: None, retry: Some(retry) }
}

fn aborted(e: &SpannerError) -> bool {
    matches!(e, SpannerError::GRPC(status) if status.code() == Code::Aborted)
}

async fn ensure_schema(settings: &SpannerStoreBuilder, description: &str) -> Result<()> {
    use gcloud_googleapis::spanner::admin::{
        database::v1::{CreateDatabaseRequest, GetDatabaseDdlRequest, UpdateDatabaseDdlRequest},
        instance::v1::{CreateInstanceRequest, Instance},
    };
    use gcloud_spanner::admin::{AdminClientConfig, client::Client as AdminClient};
    let status = |e: gcloud_gax::grpc::Status| map_error(description, None, &SpannerError::GRPC(e));
    let emulator = settings.environment();
    let config = match &emulator {
        Some(host) => AdminClientConfig { environment: Environment::Emulator(host.clone()), ..AdminClientConfig::default() },
        None => AdminClientConfig::default()
            .with_auth()
            .await
            .map_err(|e| Error::PermissionDenied { store: description.to_string(), detail: format!("no Google Cloud credentials: {e}") })?,
    };
    let admin =
        AdminClient::new(config).await.map_err(|e| Error::Unavailable { store: description.to_string(), source: e.to_string().into() })?;
    let project = format!("projects/{}", settings.project);
    let instance = format!("{project}/instances/{}", settings.instance);
    let database = settings.database_path();
    let table_ddl = format!(
        "CREATE TABLE {} (name STRING(MAX) NOT NULL, record STRING(MAX) NOT NULL, version INT64 NOT NULL) PRIMARY KEY (name)",
        settings.table
    );
    if emulator.is_some() {
        let request = CreateInstanceRequest {
            parent: project.clone(),
            instance_id: settings.instance.clone(),
            instance: Some(Instance {
                name: instance.clone(),
                config: format!("{project}/instanceConfigs/emulator-config"),
                display_name: settings.instance.clone(),
                node_count: 1,
                ..Instance::default()
            }),
        };
        match admin.instance().create_instance(request, None).await {
            Ok(mut op) => {
                op.wait(None).await.map_err(status)?;
            }
            Err(e) if e.code() == Code::AlreadyExists => {}
            Err(e) => return Err(status(e)),
        }
        let request = CreateDatabaseRequest {
            parent: instance.clone(),
            create_statement: format!("CREATE DATABASE `{}`", settings.database),
            extra_statements: vec![table_ddl.clone()],
            ..CreateDatabaseRequest::default()
        };
        match admin.database().create_database(request, None).await {
            Ok(mut op) => {
                op.wait(None).await.map_err(status)?;
                return Ok(());
            }
            Err(e) if e.code() == Code::AlreadyExists => {}
            Err(e) => return Err(status(e)),
        }
    }
    let ddl = admin.database().get_database_ddl(GetDatabaseDdlRequest { database: database.clone() }, None).await.map_err(status)?;
    let prefix = format!("CREATE TABLE {} ", settings.table).to_lowercase();
    if ddl.into_inner().statements.iter().any(|s| s.to_lowercase().starts_with(&prefix)) {
        return Ok(());
    }
    let request = UpdateDatabaseDdlRequest { database, statements: vec![table_ddl], ..UpdateDatabaseDdlRequest::default() };
    match admin.database().update_database_ddl(request, None).await {
        Ok(mut op) => op.wait(None).await.map(drop).map_err(status),
        // Two processes creating the table at once: the loser is told it exists.
        Err(e) if e.code() == Code::AlreadyExists || e.code() == Code::FailedPrecondition && e.message().contains("Duplicate name") => {
            Ok(())
        }
        Err(e) => Err(status(e)),
    }
}

#[async_trait]
impl LeaseStore for SpannerStore {
    async fn get(&self, lock: &LockName) -> Result<Option<Observed>> {
        let read = async {
            let mut tx = self.inner.client.single().await.map_err(|e| self.error(Some(lock), &e))?;
            let row = tx
                .read_row(&self.inner.settings.table, &COLUMNS, Key::new(&lock.as_str().to_string()))
                .await
                .map_err(|e| self.error(Some(lock), &SpannerError::GRPC(e)))?;
            let Some(row) = row else { return Ok(None) };
            let corrupt =
                |e: gcloud_spanner::row::Error| Error::Corrupt { lock: lock.clone(), store: self.to_string(), detail: e.to_string() };
            let record: String = row.column_by_name("record").map_err(corrupt)?;
            let version: i64 = row.column_by_name("version").map_err(corrupt)?;
            Observed::decode(lock, self, Bytes::from(record), Version::new(version.to_string())).map(Some)
        };
        self.bounded(lock, "get", read).await
    }

    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
        let raw = encode_record(lock, self, rec, Some(MAX_RECORD_BYTES))?;
        let record = String::from_utf8(raw.to_vec()).map_err(|e| Error::Config(e.to_string()))?;
        let outcome = self.transact(lock, "create", false, |_| Ok((1, record.clone()))).await?;
        match outcome {
            Outcome::Written(v) => Ok(Version::new(v.to_string())),
            _ => Err(Error::AlreadyExists { lock: lock.clone(), store: self.to_string() }),
        }
    }

    async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
        let raw = encode_record(lock, self, rec, Some(MAX_RECORD_BYTES))?;
        let record = String::from_utf8(raw.to_vec()).map_err(|e| Error::Config(e.to_string()))?;
        let Some(expected) = expected.ordinal().and_then(|v| i64::try_from(v).ok()) else {
            return Err(Error::Conflict { lock: lock.clone(), store: self.to_string() });
        };
        let outcome = self
            .transact(lock, "update", true, |current| match current {
                None => Err(Outcome::Missing),
                Some((_, v)) if v != expected => Err(Outcome::Moved),
                // Never overwrite what does not decode.
                Some((old, _)) if LeaderElectionRecord::from_json(old.as_bytes()).is_err() => Err(Outcome::Undecodable(old)),
                Some((_, v)) => v.checked_add(1).map(|next| (next, record.clone())).ok_or(Outcome::Moved),
            })
            .await?;
        match outcome {
            Outcome::Written(v) => Ok(Version::new(v.to_string())),
            Outcome::Missing => Err(Error::NotFound { lock: lock.clone(), store: self.to_string() }),
            Outcome::Undecodable(old) => Err(Error::Corrupt {
                lock: lock.clone(),
                store: self.to_string(),
                detail: LeaderElectionRecord::from_json(old.as_bytes()).err().map(|e| e.to_string()).unwrap_or_default(),
            }),
            Outcome::Moved | Outcome::Exists => Err(Error::Conflict { lock: lock.clone(), store: self.to_string() }),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::atomic().with_monotonic_versions(true).with_max_record_bytes(Some(MAX_RECORD_BYTES))
    }
}

#[async_trait]
impl RawAccess for SpannerStore {
    async fn write_raw(&self, lock: &LockName, raw: &[u8]) -> Result<()> {
        let text = String::from_utf8(raw.to_vec()).map_err(|e| Error::Config(format!("lock {lock:?}: spanner records are UTF-8: {e}")))?;
        let (table, name) = (self.inner.settings.table.clone(), lock.as_str().to_string());
        let run = self.inner.client.read_write_transaction(move |tx| {
            let (table, name, text) = (table.clone(), name.clone(), text.clone());
            Box::pin(async move {
                let row = tx.read_row(&table, &["version"], Key::new(&name)).await?;
                let next = match row {
                    Some(row) => row.column_by_name::<i64>("version")?.saturating_add(1),
                    None => 1,
                };
                tx.buffer_write(vec![insert_or_update(&table, &["name", "record", "version"], &[&name, &text, &next])]);
                Ok::<_, SpannerError>(())
            })
        });
        self.bounded(lock, "write", async { run.await.map(drop).map_err(|e| self.error(Some(lock), &e)) }).await
    }

    async fn read_raw(&self, lock: &LockName) -> Result<Option<Bytes>> {
        let read = async {
            let mut tx = self.inner.client.single().await.map_err(|e| self.error(Some(lock), &e))?;
            let row = tx
                .read_row(&self.inner.settings.table, &["record"], Key::new(&lock.as_str().to_string()))
                .await
                .map_err(|e| self.error(Some(lock), &SpannerError::GRPC(e)))?;
            row.map(|r| r.column_by_name::<String>("record").map(Bytes::from)).transpose().map_err(|e| Error::Corrupt {
                lock: lock.clone(),
                store: self.to_string(),
                detail: e.to_string(),
            })
        };
        self.bounded(lock, "read", read).await
    }

    async fn delete_raw(&self, lock: &LockName) -> Result<()> {
        let (table, name) = (self.inner.settings.table.clone(), lock.as_str().to_string());
        let run = self.inner.client.read_write_transaction(move |tx| {
            let (table, name) = (table.clone(), name.clone());
            Box::pin(async move {
                tx.buffer_write(vec![delete(&table, Key::new(&name))]);
                Ok::<_, SpannerError>(())
            })
        });
        self.bounded(lock, "delete", async { run.await.map(drop).map_err(|e| self.error(Some(lock), &e)) }).await
    }
}

/// The Spanner backend: `spanner://` URLs.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpannerBackend;

/// The Spanner backend, for a front end's table of backends.
pub static BACKEND: SpannerBackend = SpannerBackend;

#[async_trait]
impl Backend for SpannerBackend {
    fn schemes(&self) -> &'static [&'static str] {
        &["spanner"]
    }

    fn grammar(&self) -> &'static str {
        "spanner://PROJECT/INSTANCE/DATABASE?table=…&emulator=HOST:PORT (Application Default Credentials, or SPANNER_EMULATOR_HOST)"
    }

    fn address(&self) -> lock_core::backend::Address {
        lock_core::backend::Address::Param { name: "emulator", bare_port: Some(9010) }
    }

    async fn open(&self, url: &StoreUrl, options: &OpenOptions) -> Result<Arc<dyn RawAccess>> {
        Ok(Arc::new(SpannerStoreBuilder::from_url(url)?.options(options).connect().await?))
    }

    async fn create(&self, url: &StoreUrl, options: &OpenOptions) -> Result<()> {
        let b = SpannerStoreBuilder::from_url(url)?.options(options);
        b.validate()?;
        let description = format!("spanner {}", b.database_path());
        ensure_schema(&b, &description).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<SpannerStoreBuilder> {
        let b = SpannerStoreBuilder::from_url(&StoreUrl::parse(url)?)?;
        b.validate()?;
        Ok(b)
    }

    #[test]
    fn urls_name_project_instance_database_and_table() {
        let b = parse("spanner://my-project/my-instance/ops?table=leases&emulator=127.0.0.1:9010").expect("parses");
        assert_eq!(b.database_path(), "projects/my-project/instances/my-instance/databases/ops");
        assert_eq!((b.table.as_str(), b.emulator.as_deref()), ("leases", Some("127.0.0.1:9010")));
        for (bad, why) in [
            ("spanner://p/i", "PROJECT/INSTANCE/DATABASE"),
            ("spanner://p/i/d/x", "PROJECT/INSTANCE/DATABASE"),
            ("spanner://my-project/my-instance/ops?tabel=x", "do not take parameter \"tabel\""),
            ("spanner://my-project/my-instance/ops?table=1x", "spanner table \"1x\""),
            ("spanner://u:pw@my-project/i/d", "no user or password"),
            ("spanner://my-project/my-instance/ops?emulator=host:port", "port"),
        ] {
            let e = parse(bad).map(drop).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
