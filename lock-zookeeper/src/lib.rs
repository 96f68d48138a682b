//! Highlander leases in ZooKeeper: a znode per lock under a prefix, `create` for an
//! absent lock, `setData` on the expected znode version for `update`, and one persistent
//! recursive watch on the prefix for change notifications.
//!
//! ```no_run
//! use lock_core::{LeaderElector, LockName};
//! use lock_zookeeper::ZooKeeperStore;
//!
//! # async fn demo() -> Result<(), lock_core::Error> {
//! // Digest credentials from ZOOKEEPER_USERNAME / ZOOKEEPER_PASSWORD, if set.
//! let store = ZooKeeperStore::builder("zookeeper://zk1:2181,zk2:2181,zk3:2181/highlander")?.connect().await?;
//! let elector = LeaderElector::builder(store, LockName::new("nightly-billing")?, "eu-west-1/pod-2").build()?;
//! # let _ = elector;
//! # Ok(())
//! # }
//! ```
//!
//! The lease does not live in the session: no ephemeral znodes, so a session that
//! expires loses nothing; the store opens a new one and the elector's own deadline
//! decides who leads. See the README for ACLs and semantics.

use async_trait::async_trait;
use bytes::Bytes;
use lock_core::{
    Backend, Capabilities, Changes, Error, LeaderElectionRecord, LeaseStore, LockName, Observed, OpenOptions, RawAccess, Result, StoreUrl,
    Version, decode_record, encode_record,
};
use std::{fmt, sync::Arc, time::Duration};
use tokio::sync::{Mutex, watch};
use zookeeper_client::{Acls, AddWatchMode, Client, CreateMode, Error as ZkError, EventType};

/// The default prefix.
pub const DEFAULT_PREFIX: &str = "/highlander";
/// Environment variables the store reads its digest credentials from (never printed).
pub const SECRET_ENV: &[&str] = &["ZOOKEEPER_USERNAME", "ZOOKEEPER_PASSWORD"];
/// ZooKeeper refuses requests over `jute.maxbuffer` (1 MiB by default); records are small.
const MAX_RECORD_BYTES: usize = 512 * 1024;

/// Builds a [`ZooKeeperStore`].
#[derive(Clone)]
#[must_use = "a builder does nothing until .connect()"]
pub struct ZooKeeperStoreBuilder {
    hosts: Vec<String>,
    prefix: String,
    username: Option<String>,
    password: Option<String>,
    session_timeout: Duration,
    call_timeout: Duration,
}

impl fmt::Debug for ZooKeeperStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZooKeeperStoreBuilder")
            .field("server", &self.describe())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

fn env_secret(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl ZooKeeperStoreBuilder {
    /// From Highlander's URL: `zookeeper://host:2181,host2:2181/prefix?session_timeout=10s`.
    /// Digest credentials come from `ZOOKEEPER_USERNAME` / `ZOOKEEPER_PASSWORD`, never
    /// from the URL. Anything else is refused by name.
    pub fn from_url(url: &StoreUrl) -> Result<Self> {
        if url.scheme() != "zookeeper" {
            return Err(Error::Config(format!("not a zookeeper:// URL: {}://", url.scheme())));
        }
        url.no_userinfo("digest credentials come from ZOOKEEPER_USERNAME / ZOOKEEPER_PASSWORD")?;
        if url.hosts().is_empty() {
            return Err(Error::Config("zookeeper:// URL names no server (zookeeper://host:2181/prefix)".into()));
        }
        let mut hosts = Vec::new();
        for (i, host) in url.hosts().iter().enumerate() {
            let (name, port) = lock_core::url::host_port("zookeeper", i, host, 2181)?;
            hosts.push(if name.contains(':') { format!("[{name}]:{port}") } else { format!("{name}:{port}") });
        }
        let path = url.path().trim_end_matches('/');
        let mut b = ZooKeeperStore::builder_for(hosts);
        if !path.is_empty() {
            b = b.prefix(format!("/{}", path.trim_start_matches('/')));
        }
        let mut p = url.params();
        if let Some(d) = p.duration("session_timeout")? {
            b = b.session_timeout(d);
        }
        p.finish(&["session_timeout"])?;
        b.username = env_secret("ZOOKEEPER_USERNAME");
        b.password = env_secret("ZOOKEEPER_PASSWORD");
        Ok(b)
    }

    /// The parent znode of the locks (default `/highlander`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Digest credentials: nodes this store creates are then readable and writable by
    /// this user only (`CREATOR_ALL`).
    pub fn digest(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self.password = Some(password.into());
        self
    }

    /// The session timeout asked of the servers (default 10 s; they clamp it to
    /// 2–20 ticks).
    pub fn session_timeout(mut self, d: Duration) -> Self {
        self.session_timeout = d;
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
        format!("zookeeper {}{}", self.hosts.join(","), self.prefix)
    }

    fn validate(&self) -> Result<()> {
        let ok = self.prefix.starts_with('/')
            && self.prefix.len() > 1
            && !self.prefix.ends_with('/')
            && self.prefix.split('/').skip(1).all(|s| !s.is_empty() && s != "." && s != ".." && !s.chars().any(char::is_control))
            && self.prefix != "/zookeeper"
            && !self.prefix.starts_with("/zookeeper/");
        if !ok {
            return Err(Error::Config(format!(
                "zookeeper prefix {} must be an absolute znode path such as /highlander (not /, not under /zookeeper)",
                lock_core::Escaped(&self.prefix)
            )));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err(Error::Config("zookeeper digest credentials need both ZOOKEEPER_USERNAME and ZOOKEEPER_PASSWORD".into()));
        }
        if self.username.as_deref().is_some_and(|u| u.contains(':')) {
            return Err(Error::Config("a zookeeper digest user name cannot contain ':'".into()));
        }
        Ok(())
    }

    async fn session(&self, description: &str) -> Result<Client> {
        let mut connector = Client::connector().with_session_timeout(self.session_timeout).with_connection_timeout(self.call_timeout);
        if let (Some(user), Some(password)) = (&self.username, &self.password) {
            connector = connector.with_auth("digest", format!("{user}:{password}").as_bytes());
        }
        let cluster = self.hosts.join(",");
        let client = tokio::time::timeout(self.call_timeout, connector.connect(&cluster))
            .await
            .map_err(|_| Error::Unavailable {
                store: description.to_string(),
                source: format!("no session within {:?}", self.call_timeout).into(),
            })?
            .map_err(|e| map_error(description, None, &e))?;
        Ok(client)
    }

    /// Connects (one session, reopened if it expires) and builds the store.
    pub async fn connect(self) -> Result<ZooKeeperStore> {
        self.validate()?;
        let description = self.describe();
        let client = self.session(&description).await?;
        let (stop, _) = watch::channel(());
        Ok(ZooKeeperStore { inner: Arc::new(Inner { client: Mutex::new(client), settings: self, description, hub: Arc::default(), stop }) })
    }
}

/// Maps ZooKeeper's errors in one place: `NoAuth` and `AuthFailed` are permanent; a
/// lost connection, an expired or moved session, a timeout or throttling is transient
/// (the store opens a new session); a missing parent is configuration.
fn map_error(store: &str, lock: Option<&LockName>, e: &ZkError) -> Error {
    let on = lock.map(|l| format!(" (lock {l:?})")).unwrap_or_default();
    match e {
        ZkError::NoAuth | ZkError::AuthFailed | ZkError::InvalidAcl => Error::PermissionDenied {
            store: store.to_string(),
            detail: format!("{e}{on} (the digest user needs the ACL in the lock-zookeeper README)"),
        },
        ZkError::ConnectionLoss
        | ZkError::SessionExpired
        | ZkError::SessionMoved
        | ZkError::Timeout
        | ZkError::Throttled
        | ZkError::ClientClosed
        | ZkError::NoHosts => Error::Unavailable { store: store.to_string(), source: format!("{e}{on}").into() },
        _ => Error::Backend { store: store.to_string(), source: format!("{e}{on}").into() },
    }
}

struct Inner {
    client: Mutex<Client>,
    settings: ZooKeeperStoreBuilder,
    description: String,
    hub: Arc<lock_core::WatchHub>,
    /// Dropped with the store: the feed task stops.
    stop: watch::Sender<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.stop.send(());
    }
}

/// A [`LeaseStore`] on a ZooKeeper ensemble. Clones share one session.
#[derive(Clone)]
pub struct ZooKeeperStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for ZooKeeperStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZooKeeperStore").field("server", &self.inner.description).finish_non_exhaustive()
    }
}

impl fmt::Display for ZooKeeperStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.description)
    }
}

impl ZooKeeperStore {
    /// Starts building a store from a `zookeeper://` URL.
    pub fn builder(url: &str) -> Result<ZooKeeperStoreBuilder> {
        ZooKeeperStoreBuilder::from_url(&StoreUrl::parse(url)?)
    }

    /// Starts building a store on `hosts` (`host:port`).
    pub fn builder_for(hosts: Vec<String>) -> ZooKeeperStoreBuilder {
        ZooKeeperStoreBuilder {
            hosts,
            prefix: DEFAULT_PREFIX.into(),
            username: None,
            password: None,
            session_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(5),
        }
    }

    fn path(&self, lock: &LockName) -> String {
        format!("{}/{}", self.inner.settings.prefix, lock.to_path_segment())
    }

    fn acls(&self) -> Acls<'static> {
        if self.inner.settings.username.is_some() { Acls::creator_all() } else { Acls::anyone_all() }
    }

    fn error(&self, lock: Option<&LockName>, e: &ZkError) -> Error {
        map_error(&self.inner.description, lock, e)
    }

    /// The session, or a new one if it ended (expired, closed): no ephemeral state is
    /// lost with a session, so a new one carries on.
    async fn client(&self) -> Result<Client> {
        let mut client = self.inner.client.lock().await;
        if client.state().is_terminated() {
            tracing::info!(store = %self.inner.description, state = ?client.state(), "zookeeper session ended; opening a new one");
            *client = self.inner.settings.session(&self.inner.description).await?;
        }
        Ok(client.clone())
    }

    async fn bounded<T>(&self, lock: &LockName, operation: &'static str, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        lock_core::bounded(lock, self, operation, self.inner.settings.call_timeout, f).await
    }

    /// The id of the current session (a new one after an expiry).
    pub async fn session_id(&self) -> i64 {
        self.inner.client.lock().await.session_id().0
    }

    /// Creates the prefix znode (and its parents) if missing.
    pub async fn ensure_prefix(&self) -> Result<()> {
        let client = self.client().await?;
        let options = CreateMode::Persistent.with_acls(self.acls());
        match client.mkdir(&self.inner.settings.prefix, &options).await {
            Ok(()) | Err(ZkError::NodeExists) => Ok(()),
            Err(e) => Err(self.error(None, &e)),
        }
    }

    async fn start_feed(&self, generation: u64) -> Result<()> {
        let client = self.client().await?;
        let prefix = self.inner.settings.prefix.clone();
        let mut watcher = client.watch(&prefix, AddWatchMode::PersistentRecursive).await.map_err(|e| self.error(None, &e))?;
        let store = self.clone_weak();
        let hub = self.inner.hub.clone();
        let feed = async move {
            loop {
                let event = watcher.changed().await;
                // A session that ended ends the feed: electors go back to polling.
                if event.event_type == EventType::Session {
                    if event.session_state.is_terminated() {
                        break;
                    }
                    continue;
                }
                if !matches!(event.event_type, EventType::NodeCreated | EventType::NodeDataChanged) {
                    continue;
                }
                let Some(segment) = event.path.strip_prefix(&format!("{prefix}/")) else { continue };
                let Some(lock) = LockName::from_path_segment(segment) else { continue };
                if !hub.is_watched(&lock) {
                    continue;
                }
                // The event names the node, not the data: read it.
                let Some(store) = store.upgrade() else { break };
                if let Ok((data, stat)) = client.get_data(&event.path).await {
                    hub.deliver(&lock, &store.description, Bytes::from(data), Version::new(stat.version.to_string()));
                }
            }
        };
        self.inner.hub.spawn_feed(generation, self.inner.stop.subscribe(), feed);
        Ok(())
    }

    fn clone_weak(&self) -> std::sync::Weak<Inner> {
        Arc::downgrade(&self.inner)
    }
}

#[async_trait]
impl LeaseStore for ZooKeeperStore {
    async fn get(&self, lock: &LockName) -> Result<Option<Observed>> {
        let read = async {
            let client = self.client().await?;
            match client.get_data(&self.path(lock)).await {
                Ok((data, stat)) => Observed::decode(lock, self, Bytes::from(data), Version::new(stat.version.to_string())).map(Some),
                Err(ZkError::NoNode) => Ok(None),
                Err(e) => Err(self.error(Some(lock), &e)),
            }
        };
        self.bounded(lock, "get", read).await
    }

    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
        let raw = encode_record(lock, self, rec, Some(MAX_RECORD_BYTES))?;
        let write = async {
            let client = self.client().await?;
            let options = CreateMode::Persistent.with_acls(self.acls());
            match client.create(&self.path(lock), &raw, &options).await {
                Ok((stat, _)) => Ok(Version::new(stat.version.to_string())),
                Err(ZkError::NodeExists) => Err(Error::AlreadyExists { lock: lock.clone(), store: self.to_string() }),
                Err(ZkError::NoNode) => Err(Error::Config(format!(
                    "{self}: the prefix znode {} does not exist (create it, or use --create) (lock {lock:?})",
                    self.inner.settings.prefix
                ))),
                Err(e) => Err(self.error(Some(lock), &e)),
            }
        };
        self.bounded(lock, "create", write).await
    }

    async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
        let raw = encode_record(lock, self, rec, Some(MAX_RECORD_BYTES))?;
        let Some(expected) = expected.ordinal().and_then(|v| i32::try_from(v).ok()) else {
            return Err(Error::Conflict { lock: lock.clone(), store: self.to_string() });
        };
        let write = async {
            let client = self.client().await?;
            // Never write over what does not decode: read it first. The write below is
            // conditional on the version read, so what was checked is what is replaced.
            match client.get_data(&self.path(lock)).await {
                Ok((_, stat)) if stat.version != expected => return Err(Error::Conflict { lock: lock.clone(), store: self.to_string() }),
                Ok((data, _)) => {
                    decode_record(lock, self, &data)?;
                }
                Err(ZkError::NoNode) => return Err(Error::NotFound { lock: lock.clone(), store: self.to_string() }),
                Err(e) => return Err(self.error(Some(lock), &e)),
            }
            match client.set_data(&self.path(lock), &raw, Some(expected)).await {
                Ok(stat) => Ok(Version::new(stat.version.to_string())),
                Err(ZkError::BadVersion) => Err(Error::Conflict { lock: lock.clone(), store: self.to_string() }),
                Err(ZkError::NoNode) => Err(Error::NotFound { lock: lock.clone(), store: self.to_string() }),
                Err(e) => Err(self.error(Some(lock), &e)),
            }
        };
        self.bounded(lock, "update", write).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::atomic().with_monotonic_versions(true).with_watch(true).with_max_record_bytes(Some(MAX_RECORD_BYTES))
    }

    /// One persistent recursive watch on the prefix per store, shared by every lock:
    /// each change of a lock's znode is read and handed to that lock's watchers.
    async fn watch(&self, lock: &LockName) -> Result<Option<Changes>> {
        self.inner.hub.subscribe_starting(lock, |generation| self.start_feed(generation)).await.map(Some)
    }
}

#[async_trait]
impl RawAccess for ZooKeeperStore {
    async fn write_raw(&self, lock: &LockName, raw: &[u8]) -> Result<()> {
        let write = async {
            let client = self.client().await?;
            match client.set_data(&self.path(lock), raw, None).await {
                Ok(_) => Ok(()),
                Err(ZkError::NoNode) => client
                    .create(&self.path(lock), raw, &CreateMode::Persistent.with_acls(self.acls()))
                    .await
                    .map(drop)
                    .map_err(|e| self.error(Some(lock), &e)),
                Err(e) => Err(self.error(Some(lock), &e)),
            }
        };
        self.bounded(lock, "write", write).await
    }

    async fn read_raw(&self, lock: &LockName) -> Result<Option<Bytes>> {
        let read = async {
            let client = self.client().await?;
            match client.get_data(&self.path(lock)).await {
                Ok((data, _)) => Ok(Some(Bytes::from(data))),
                Err(ZkError::NoNode) => Ok(None),
                Err(e) => Err(self.error(Some(lock), &e)),
            }
        };
        self.bounded(lock, "read", read).await
    }

    async fn delete_raw(&self, lock: &LockName) -> Result<()> {
        let delete = async {
            match self.client().await?.delete(&self.path(lock), None).await {
                Ok(()) | Err(ZkError::NoNode) => Ok(()),
                Err(e) => Err(self.error(Some(lock), &e)),
            }
        };
        self.bounded(lock, "delete", delete).await
    }
}

/// The ZooKeeper backend: `zookeeper://` URLs.
#[derive(Debug, Clone, Copy, Default)]
pub struct ZooKeeperBackend;

/// The ZooKeeper backend, for a front end's table of backends.
pub static BACKEND: ZooKeeperBackend = ZooKeeperBackend;

#[async_trait]
impl Backend for ZooKeeperBackend {
    fn schemes(&self) -> &'static [&'static str] {
        &["zookeeper"]
    }

    fn grammar(&self) -> &'static str {
        "zookeeper://host:2181,host2:2181/prefix?session_timeout=10s (digest credentials in ZOOKEEPER_USERNAME / ZOOKEEPER_PASSWORD)"
    }

    fn address(&self) -> lock_core::backend::Address {
        lock_core::backend::Address::Hosts { default_port: 2181 }
    }

    fn secret_env(&self) -> &'static [&'static str] {
        SECRET_ENV
    }

    async fn open(&self, url: &StoreUrl, options: &OpenOptions) -> Result<Arc<dyn RawAccess>> {
        Ok(Arc::new(ZooKeeperStoreBuilder::from_url(url)?.options(options).connect().await?))
    }

    async fn create(&self, url: &StoreUrl, options: &OpenOptions) -> Result<()> {
        ZooKeeperStoreBuilder::from_url(url)?.options(options).connect().await?.ensure_prefix().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> Result<ZooKeeperStoreBuilder> {
        let b = ZooKeeperStoreBuilder::from_url(&StoreUrl::parse(url)?)?;
        b.validate()?;
        Ok(b)
    }

    #[test]
    fn urls_name_servers_prefix_and_session_timeout() {
        let b = parse("zookeeper://zk1:2182,zk2/team/locks?session_timeout=4s").expect("parses");
        assert_eq!(b.hosts, ["zk1:2182", "zk2:2181"]);
        assert_eq!((b.prefix.as_str(), b.session_timeout), ("/team/locks", Duration::from_secs(4)));
        assert_eq!(parse("zookeeper://zk1").expect("parses").prefix, DEFAULT_PREFIX);
        for (bad, why) in [
            ("zookeeper://u:p@zk1/x", "no user or password"),
            ("zookeeper://zk1/x?timeout=1s", "do not take parameter \"timeout\""),
            ("zookeeper://zk1/zookeeper/x", "not under /zookeeper"),
            ("zookeeper://zk1/a/../b", "absolute znode path"),
            ("zookeeper://zk1:http/x", "port"),
        ] {
            let e = parse(bad).map(drop).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn passwords_never_reach_debug() {
        let b = ZooKeeperStore::builder_for(vec!["zk:2181".into()]).digest("app", "hunter2-secret");
        let shown = format!("{b:?}");
        assert!(!shown.contains("hunter2-secret") && shown.contains("app"), "{shown}");
    }
}
