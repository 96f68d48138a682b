//! Highlander leases in Redis: a hash per lock (`record`, `version`), compare-and-set in
//! one server-side script that also publishes the new record, so standbys act on a
//! release at once.
//!
//! ```no_run
//! use lock_core::{LeaderElector, LockName};
//! use lock_redis::RedisStore;
//!
//! # async fn demo() -> Result<(), lock_core::Error> {
//! // ACL user and password from REDIS_USERNAME / REDIS_PASSWORD (or the URL's userinfo).
//! let store = RedisStore::builder("redis://cache.internal:6379/0?prefix=ops/")?.connect().await?;
//! let elector = LeaderElector::builder(store, LockName::new("nightly-billing")?, "eu-west-1/pod-2").build()?;
//! # let _ = elector;
//! # Ok(())
//! # }
//! ```
//!
//! One Redis node is atomic: its scripts run one at a time. Replication is asynchronous:
//! a failover to a replica can lose the last writes (and so hand a lease to a second
//! leader), unless `wait_replicas=N` makes every write wait for N replicas. The README
//! has the figures.

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use lock_core::{
    Backend, Capabilities, Changes, Error, LeaderElectionRecord, LeaseStore, LockName, Observed, OpenOptions, RawAccess, Result, StoreUrl,
    Version, decode_record, encode_record,
};
use redis::{
    Client, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, RedisError, Script, aio::ConnectionManager,
    aio::ConnectionManagerConfig,
};
use std::{
    fmt,
    path::PathBuf,
    sync::{Arc, LazyLock},
    time::Duration,
};
use tokio::sync::watch;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "highlander/";
/// Environment variables the store reads its ACL credentials from (never printed).
pub const SECRET_ENV: &[&str] = &["REDIS_USERNAME", "REDIS_PASSWORD"];
/// Records are small; Redis would take 512 MB.
const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Reads a lock: its record and version, nothing if absent, an error if the key holds
/// something else.
static GET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local t = redis.call('TYPE', KEYS[1]).ok
if t == 'none' then return false end
if t ~= 'hash' then return redis.error_reply('WRONGTYPE the key is a ' .. t .. ', not a highlander lease hash') end
return redis.call('HMGET', KEYS[1], 'record', 'version')",
    )
});

/// Creates a lock if absent: 1 created, 0 there already.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'version', '1')
redis.call('PUBLISH', ARGV[2], ARGV[3] .. '\n1\n' .. ARGV[1])
return 1",
    )
});

/// Replaces a lock's record if its version is the expected one (and, given ARGV[5], its
/// record is still exactly those bytes): the new version, 0 if the lock is missing, -1
/// if it moved on, -2 if the record changed under the same version. Never writes over a
/// key of another type.
static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local t = redis.call('TYPE', KEYS[1]).ok
if t == 'none' then return 0 end
if t ~= 'hash' then return redis.error_reply('WRONGTYPE the key is a ' .. t .. ', not a highlander lease hash') end
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[2] then return -1 end
if ARGV[5] and redis.call('HGET', KEYS[1], 'record') ~= ARGV[5] then return -2 end
local n = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'record', ARGV[1])
redis.call('PUBLISH', ARGV[3], ARGV[4] .. '\n' .. n .. '\n' .. ARGV[1])
return n",
    )
});

/// Writes bytes as a lock's record, whatever was there (tests, repairs).
static WRITE_RAW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local t = redis.call('TYPE', KEYS[1]).ok
if t ~= 'hash' and t ~= 'none' then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[1], 'record', ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'version', 1)",
    )
});

/// Builds a [`RedisStore`].
#[derive(Clone)]
#[must_use = "a builder does nothing until .connect()"]
pub struct RedisStoreBuilder {
    host: String,
    port: u16,
    db: i64,
    tls: bool,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    username: Option<String>,
    password: Option<String>,
    prefix: String,
    wait_replicas: u32,
    call_timeout: Duration,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("server", &self.describe())
            .field("username", &self.username.as_ref().map(|_| "<set>"))
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

fn env_secret(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl RedisStoreBuilder {
    /// From Highlander's URL: `redis://[user:password@]host:6379/DB?prefix=…&wait_replicas=N`,
    /// `rediss://` for TLS (`ca=PEM`, and `cert=PEM&key=PEM` for a client certificate).
    /// The ACL user and password come from the userinfo, else `REDIS_USERNAME` /
    /// `REDIS_PASSWORD`. Anything else is refused by name.
    pub fn from_url(url: &StoreUrl) -> Result<Self> {
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => return Err(Error::Config(format!("not a redis:// or rediss:// URL: {other}://"))),
        };
        let host = url.single_host("server")?;
        let (host, port) = lock_core::url::host_port("redis", 0, host, 6379)?;
        let db = match url.path().trim_matches('/') {
            "" => 0,
            db => Some(db)
                .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<i64>().ok())
                .filter(|d| (0..=15_000).contains(d))
                .ok_or_else(|| {
                    Error::Config(format!("redis database {} must be a number (redis://host:6379/0)", lock_core::Escaped(db)))
                })?,
        };
        let mut b = Self {
            host,
            port,
            db,
            tls,
            ca: None,
            cert: None,
            key: None,
            username: url.user().map(str::to_string).or_else(|| env_secret("REDIS_USERNAME")),
            password: url.password().map(str::to_string).or_else(|| env_secret("REDIS_PASSWORD")),
            prefix: DEFAULT_PREFIX.into(),
            wait_replicas: 0,
            call_timeout: Duration::from_secs(5),
        };
        let mut p = url.params();
        if let Some(prefix) = p.take("prefix")? {
            b = b.prefix(prefix);
        }
        match p.number::<u32>("wait_replicas")? {
            None => {}
            Some(n @ 0..=64) => b = b.wait_replicas(n),
            Some(_) => return Err(Error::Config("redis wait_replicas must be a number of replicas, 0 to 64".into())),
        }
        for (name, slot) in [("ca", &mut b.ca), ("cert", &mut b.cert), ("key", &mut b.key)] {
            if let Some(path) = p.take(name)? {
                if !tls {
                    return Err(Error::Config(format!("redis {name}= needs a rediss:// URL (TLS)")));
                }
                *slot = Some(PathBuf::from(path));
            }
        }
        p.finish(&["prefix", "wait_replicas", "ca", "cert", "key"])?;
        Ok(b)
    }

    /// The key prefix (default `highlander/`); the store's pub/sub channel is the prefix too.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Makes every write wait (Redis `WAIT`) until `n` replicas have it; a write that is
    /// not replicated within the call timeout is reported as failed (the primary kept it).
    pub fn wait_replicas(mut self, n: u32) -> Self {
        self.wait_replicas = n;
        self
    }

    /// The ACL user and password (instead of the URL's or the environment's).
    pub fn credentials(mut self, username: Option<String>, password: impl Into<String>) -> Self {
        self.username = username;
        self.password = Some(password.into());
        self
    }

    /// The bound on each call (default 5 s).
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.call_timeout = d;
        self
    }

    /// Follows an elector's settings: no call outlives its call timeout.
    pub fn options(mut self, options: &OpenOptions) -> Self {
        self.call_timeout = options.call_timeout;
        self
    }

    fn describe(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        format!("redis {scheme}://{host}:{}/{} (prefix {:?})", self.port, self.db, self.prefix)
    }

    fn validate(&self) -> Result<()> {
        if self.prefix.is_empty() || self.prefix.len() > 512 || self.prefix.chars().any(char::is_control) {
            return Err(Error::Config(format!(
                "redis prefix {} must be 1-512 characters, no control characters",
                lock_core::Escaped(&self.prefix)
            )));
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err(Error::Config("redis cert= and key= go together (a client certificate and its key)".into()));
        }
        Ok(())
    }

    fn client(&self, description: &str) -> Result<Client> {
        let addr = if self.tls {
            ConnectionAddr::TcpTls { host: self.host.clone(), port: self.port, insecure: false, tls_params: None }
        } else {
            ConnectionAddr::Tcp(self.host.clone(), self.port)
        };
        let mut redis = RedisConnectionInfo::default().set_db(self.db);
        if let Some(user) = &self.username {
            redis = redis.set_username(user);
        }
        if let Some(password) = &self.password {
            redis = redis.set_password(password);
        }
        let info = addr.into_connection_info().map_err(|e| config_error(description, &e))?.set_redis_settings(redis);
        if self.tls {
            // The redis client's rustls uses the process's crypto provider: ring, as the
            // other stores do, unless the application installed one already.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        if !self.tls || (self.ca.is_none() && self.cert.is_none()) {
            return Client::open(info).map_err(|e| config_error(description, &e));
        }
        let read = |what: &str, path: &PathBuf| {
            std::fs::read(path).map_err(|e| Error::Config(format!("{description}: cannot read the {what} {}: {e}", path.display())))
        };
        let client_tls = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                Some(redis::ClientTlsConfig { client_cert: read("client certificate", cert)?, client_key: read("client key", key)? })
            }
            _ => None,
        };
        let root_cert = self.ca.as_ref().map(|ca| read("CA certificate", ca)).transpose()?;
        Client::build_with_tls(info, redis::TlsCertificates { client_tls, root_cert }).map_err(|e| config_error(description, &e))
    }

    /// Connects (one multiplexed connection that reconnects by itself) and checks the
    /// server answers.
    pub async fn connect(self) -> Result<RedisStore> {
        self.validate()?;
        let description = self.describe();
        let client = self.client(&description)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.call_timeout))
            .set_response_timeout(Some(self.call_timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connection = tokio::time::timeout(self.call_timeout, client.get_connection_manager_with_config(config))
            .await
            .map_err(|_| Error::Unavailable {
                store: description.clone(),
                source: format!("no connection within {:?}", self.call_timeout).into(),
            })?
            .map_err(|e| map_error(&description, None, &e))?;
        let (stop, _) = watch::channel(());
        Ok(RedisStore {
            inner: Arc::new(Inner {
                client,
                connection,
                channel: self.prefix.clone(),
                settings: self,
                description,
                hub: Arc::default(),
                stop,
                known: std::sync::Mutex::default(),
            }),
        })
    }
}

fn config_error(store: &str, e: &RedisError) -> Error {
    Error::Config(format!("{store}: {e}"))
}

/// Maps Redis's errors in one place: a missing or wrong password and missing ACL
/// permissions are permanent; a key of another type is corrupt; everything on the way
/// (I/O, timeouts, a loading or read-only server, a busy script) is transient.
fn map_error(store: &str, lock: Option<&LockName>, e: &RedisError) -> Error {
    let on = lock.map(|l| format!(" (lock {l:?})")).unwrap_or_default();
    let code = e.code().unwrap_or_default();
    if code == "NOPERM" || code == "NOAUTH" || code == "WRONGPASS" || e.kind() == redis::ErrorKind::AuthenticationFailed {
        return Error::PermissionDenied {
            store: store.to_string(),
            detail: format!("{e}{on} (the ACL user needs the commands and key pattern in the lock-redis README)"),
        };
    }
    if code == "WRONGTYPE"
        && let Some(lock) = lock
    {
        return Error::Corrupt { lock: lock.clone(), store: store.to_string(), detail: e.to_string() };
    }
    if e.is_timeout()
        || e.is_io_error()
        || e.is_connection_dropped()
        || matches!(code, "LOADING" | "READONLY" | "MASTERDOWN" | "BUSY" | "TRYAGAIN")
    {
        return Error::Unavailable { store: store.to_string(), source: format!("{e}{on}").into() };
    }
    Error::Backend { store: store.to_string(), source: format!("{e}{on}").into() }
}

struct Inner {
    client: Client,
    connection: ConnectionManager,
    settings: RedisStoreBuilder,
    channel: String,
    description: String,
    hub: Arc<lock_core::WatchHub>,
    /// Dropped with the store: the feed task stops.
    stop: watch::Sender<()>,
    /// Per lock, a version this client read or wrote and the record bytes it held, known
    /// to decode: an update from that version sends them for the script to compare, and
    /// needs no read first.
    known: std::sync::Mutex<std::collections::HashMap<LockName, (String, Bytes)>>,
}

/// A [`LeaseStore`] on a Redis server. Clones share one connection.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore").field("server", &self.inner.description).finish_non_exhaustive()
    }
}

impl fmt::Display for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.description)
    }
}

impl RedisStore {
    /// Starts building a store from a `redis://` or `rediss://` URL.
    pub fn builder(url: &str) -> Result<RedisStoreBuilder> {
        RedisStoreBuilder::from_url(&StoreUrl::parse(url)?)
    }

    fn key(&self, lock: &LockName) -> String {
        format!("{}{}", self.inner.settings.prefix, lock.as_str())
    }

    fn error(&self, lock: Option<&LockName>, e: &RedisError) -> Error {
        map_error(&self.inner.description, lock, e)
    }

    async fn bounded<T>(&self, lock: &LockName, operation: &'static str, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        lock_core::bounded(lock, self, operation, self.inner.settings.call_timeout, f).await
    }

    /// After a write: with `wait_replicas`, waits until that many replicas have it.
    async fn replicated(&self, lock: &LockName, conn: &mut ConnectionManager) -> Result<()> {
        let n = self.inner.settings.wait_replicas;
        if n == 0 {
            return Ok(());
        }
        let millis = u64::try_from(self.inner.settings.call_timeout.as_millis()).unwrap_or(u64::MAX);
        let acked: u32 = redis::cmd("WAIT").arg(n).arg(millis).query_async(conn).await.map_err(|e| self.error(Some(lock), &e))?;
        if acked < n {
            return Err(Error::Unavailable {
                store: self.to_string(),
                source: format!("the write to lock {lock:?} reached {acked} of {n} replicas in time (the primary has it)").into(),
            });
        }
        Ok(())
    }

    async fn start_feed(&self, generation: u64) -> Result<()> {
        let mut pubsub = self.inner.client.get_async_pubsub().await.map_err(|e| self.error(None, &e))?;
        pubsub.subscribe(&self.inner.channel).await.map_err(|e| self.error(None, &e))?;
        let (hub, description) = (self.inner.hub.clone(), self.to_string());
        let mut messages = pubsub.into_on_message();
        let feed = async move {
            // A dropped connection ends the feed: electors go back to polling.
            while let Some(message) = messages.next().await {
                let payload: Vec<u8> = message.get_payload_bytes().to_vec();
                let mut parts = payload.splitn(3, |b| *b == b'\n');
                let (Some(name), Some(version), Some(record)) = (parts.next(), parts.next(), parts.next()) else { continue };
                let (Ok(name), Ok(version)) = (std::str::from_utf8(name), std::str::from_utf8(version)) else { continue };
                let Ok(lock) = LockName::new(name) else { continue };
                hub.deliver(&lock, &description, Bytes::copy_from_slice(record), Version::new(version));
            }
        };
        self.inner.hub.spawn_feed(generation, self.inner.stop.subscribe(), feed);
        Ok(())
    }
}

impl RedisStore {
    fn known(&self, lock: &LockName) -> Option<(String, Bytes)> {
        self.inner.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(lock).cloned()
    }

    fn remember(&self, lock: &LockName, version: &str, raw: Bytes) {
        self.inner.known.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(lock.clone(), (version.to_string(), raw));
    }

    /// Runs the update script from `expected` (and, if given, the record bytes it must still hold).
    async fn run_update(
        &self,
        lock: &LockName,
        raw: &Bytes,
        expected: &Version,
        known: Option<&Bytes>,
        conn: &mut ConnectionManager,
    ) -> Result<i64> {
        let mut invocation = UPDATE.key(self.key(lock));
        invocation.arg(raw.as_ref()).arg(expected.as_str()).arg(&self.inner.channel).arg(lock.as_str());
        if let Some(bytes) = known {
            invocation.arg(bytes.as_ref());
        }
        invocation.invoke_async(conn).await.map_err(|e| self.error(Some(lock), &e))
    }

    /// The update script's answer as a result (remembering what was written).
    async fn updated(&self, lock: &LockName, outcome: i64, raw: Bytes, conn: &mut ConnectionManager) -> Result<Version> {
        match outcome {
            0 => Err(Error::NotFound { lock: lock.clone(), store: self.to_string() }),
            n if n < 0 => Err(Error::Conflict { lock: lock.clone(), store: self.to_string() }),
            n => {
                self.remember(lock, &n.to_string(), raw);
                self.replicated(lock, conn).await?;
                Ok(Version::new(n.to_string()))
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.stop.send(());
    }
}

#[async_trait]
impl LeaseStore for RedisStore {
    async fn get(&self, lock: &LockName) -> Result<Option<Observed>> {
        let read = async {
            let mut conn = self.inner.connection.clone();
            let found: Option<(Option<Vec<u8>>, Option<String>)> =
                GET.key(self.key(lock)).invoke_async(&mut conn).await.map_err(|e| self.error(Some(lock), &e))?;
            let Some(fields) = found else { return Ok(None) };
            let (Some(record), Some(version)) = fields else {
                return Err(Error::Corrupt {
                    lock: lock.clone(),
                    store: self.to_string(),
                    detail: "the hash has no record or no version field".into(),
                });
            };
            if version.parse::<u64>().is_err() {
                return Err(Error::Corrupt {
                    lock: lock.clone(),
                    store: self.to_string(),
                    detail: format!("version {} is not a number", lock_core::Escaped(&version)),
                });
            }
            let seen = Observed::decode(lock, self, Bytes::from(record), Version::new(version))?;
            self.remember(lock, seen.version.as_str(), seen.raw.clone());
            Ok(Some(seen))
        };
        self.bounded(lock, "get", read).await
    }

    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
        let raw = encode_record(lock, self, rec, Some(MAX_RECORD_BYTES))?;
        let write = async {
            let mut conn = self.inner.connection.clone();
            let created: i64 = CREATE
                .key(self.key(lock))
                .arg(raw.as_ref())
                .arg(&self.inner.channel)
                .arg(lock.as_str())
                .invoke_async(&mut conn)
                .await
                .map_err(|e| self.error(Some(lock), &e))?;
            if created != 1 {
                return Err(Error::AlreadyExists { lock: lock.clone(), store: self.to_string() });
            }
            self.remember(lock, "1", raw.clone());
            self.replicated(lock, &mut conn).await?;
            Ok(Version::new("1"))
        };
        self.bounded(lock, "create", write).await
    }

    async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
        let raw = encode_record(lock, self, rec, Some(MAX_RECORD_BYTES))?;
        let write = async {
            let mut conn = self.inner.connection.clone();
            // From a version this client knows decodes: one round trip, the script
            // comparing the record's bytes too (a hand edit that kept the version is
            // noticed, and read below).
            let known = self.known(lock).filter(|(version, _)| version == expected.as_str());
            if let Some((_, bytes)) = known {
                let outcome = self.run_update(lock, &raw, expected, Some(&bytes), &mut conn).await?;
                if outcome != -2 {
                    return self.updated(lock, outcome, raw.clone(), &mut conn).await;
                }
            }
            // Never write over what does not decode: read it first. The script below
            // writes only at the version read, so what was checked is what is replaced.
            let found: Option<(Option<Vec<u8>>, Option<String>)> =
                GET.key(self.key(lock)).invoke_async(&mut conn).await.map_err(|e| self.error(Some(lock), &e))?;
            match found {
                None => return Err(Error::NotFound { lock: lock.clone(), store: self.to_string() }),
                Some((_, version)) if version.as_deref() != Some(expected.as_str()) => {
                    return Err(Error::Conflict { lock: lock.clone(), store: self.to_string() });
                }
                Some((record, _)) => {
                    decode_record(lock, self, record.as_deref().unwrap_or_default())?;
                }
            }
            let outcome = self.run_update(lock, &raw, expected, None, &mut conn).await?;
            self.updated(lock, outcome, raw.clone(), &mut conn).await
        };
        self.bounded(lock, "update", write).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::atomic().with_monotonic_versions(true).with_watch(true).with_max_record_bytes(Some(MAX_RECORD_BYTES))
    }

    /// One pub/sub subscription per store, on the prefix's channel: every write's script
    /// publishes the lock name, version and record, which go to that lock's watchers.
    async fn watch(&self, lock: &LockName) -> Result<Option<Changes>> {
        self.inner.hub.subscribe_starting(lock, |generation| self.start_feed(generation)).await.map(Some)
    }
}

#[async_trait]
impl RawAccess for RedisStore {
    async fn write_raw(&self, lock: &LockName, raw: &[u8]) -> Result<()> {
        let write = async {
            let mut conn = self.inner.connection.clone();
            let _: i64 = WRITE_RAW.key(self.key(lock)).arg(raw).invoke_async(&mut conn).await.map_err(|e| self.error(Some(lock), &e))?;
            Ok(())
        };
        self.bounded(lock, "write", write).await
    }

    async fn read_raw(&self, lock: &LockName) -> Result<Option<Bytes>> {
        let read = async {
            let mut conn = self.inner.connection.clone();
            let found: Option<(Option<Vec<u8>>, Option<String>)> =
                GET.key(self.key(lock)).invoke_async(&mut conn).await.map_err(|e| self.error(Some(lock), &e))?;
            Ok(found.and_then(|(record, _)| record).map(Bytes::from))
        };
        self.bounded(lock, "read", read).await
    }

    async fn delete_raw(&self, lock: &LockName) -> Result<()> {
        let delete = async {
            let mut conn = self.inner.connection.clone();
            let _: i64 = redis::cmd("DEL").arg(self.key(lock)).query_async(&mut conn).await.map_err(|e| self.error(Some(lock), &e))?;
            Ok(())
        };
        self.bounded(lock, "delete", delete).await
    }
}

/// The Redis backend: `redis://` and `rediss://` URLs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RedisBackend;

/// The Redis backend, for a front end's table of backends.
pub static BACKEND: RedisBackend = RedisBackend;

#[async_trait]
impl Backend for RedisBackend {
    fn schemes(&self) -> &'static [&'static str] {
        &["redis", "rediss"]
    }

    fn grammar(&self) -> &'static str {
        "redis://host:6379/DB?prefix=…&wait_replicas=N, rediss:// for TLS (ca=, cert=, key=); ACL user and password in REDIS_USERNAME / REDIS_PASSWORD"
    }

    fn address(&self) -> lock_core::backend::Address {
        lock_core::backend::Address::Hosts { default_port: 6379 }
    }

    fn secret_env(&self) -> &'static [&'static str] {
        SECRET_ENV
    }

    async fn open(&self, url: &StoreUrl, options: &OpenOptions) -> Result<Arc<dyn RawAccess>> {
        Ok(Arc::new(RedisStoreBuilder::from_url(url)?.options(options).connect().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<RedisStoreBuilder> {
        let b = RedisStoreBuilder::from_url(&StoreUrl::parse(url)?)?;
        b.validate()?;
        Ok(b)
    }

    #[test]
    fn urls_name_server_database_prefix_and_tls() {
        let b = parse("redis://127.0.0.1:6380/2?prefix=ops/&wait_replicas=1").expect("parses");
        assert_eq!((b.host.as_str(), b.port, b.db, b.prefix.as_str(), b.wait_replicas, b.tls), ("127.0.0.1", 6380, 2, "ops/", 1, false));
        let b = parse("rediss://cache.internal?ca=/etc/ca.pem").expect("parses");
        assert_eq!((b.port, b.db, b.tls, b.ca.is_some()), (6379, 0, true, true));
        for (bad, why) in [
            ("redis://h/x", "database \"x\""),
            ("redis://h/+5", "database \"+5\""),
            ("redis://h?prefx=a", "do not take parameter \"prefx\""),
            ("redis://h?ca=/x", "needs a rediss://"),
            ("rediss://h?cert=/x", "go together"),
            ("redis://h?wait_replicas=-1", "wait_replicas"),
            ("redis://a,b", "one"),
        ] {
            let e = parse(bad).map(drop).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn passwords_never_reach_debug_or_descriptions() {
        let b = parse("redis://app:hunter2-secret@127.0.0.1:6379/0").expect("parses");
        assert_eq!(b.username.as_deref(), Some("app"));
        let shown = format!("{b:?} {}", b.describe());
        assert!(!shown.contains("hunter2-secret"), "{shown}");
    }
}
