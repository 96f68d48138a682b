//! Highlander leases in etcd: one key per lock, compare-and-set by transaction on its revision.
//!
//! ```no_run
//! use lock_core::{LeaderElector, LockName};
//! use lock_etcd::EtcdStore;
//!
//! # async fn demo() -> Result<(), lock_core::Error> {
//! let store = EtcdStore::builder(["http://etcd-0:2379", "http://etcd-1:2379", "http://etcd-2:2379"])
//!     .prefix("highlander/leases/")
//!     .build()?; // connects on first use
//! let elector = LeaderElector::builder(store, LockName::new("nightly-billing")?, "us-east-1/pod-3").build()?;
//! # let _ = elector;
//! # Ok(())
//! # }
//! ```
//!
//! `create` is a transaction `create_revision == 0 → put`; `update` is
//! `mod_revision == expected → put`; `get` returns the key's `mod_revision` as the
//! version. Revisions are cluster-wide and increase with every write, so versions
//! are monotonic. Requests demand a leader, so a cluster without quorum fails fast
//! instead of serving a stale read.

use async_trait::async_trait;
use bytes::Bytes;
pub use etcd_client::{Client, Txn, TxnOp, TxnResponse};
use etcd_client::{Compare, CompareOp, ConnectOptions, GetOptions, TxnOpResponse};
use lock_core::{
    Backend, Capabilities, Changes, Error, LeaderElectionRecord, LeaseStore, LockName, Observed, OpenOptions, RawAccess, Result, StoreUrl,
    Version, encode_record, url::host_port,
};
use std::{fmt, sync::Arc, time::Duration};
use tokio::sync::OnceCell;

pub use etcd_client::{Certificate, Identity, TlsOptions};

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "highlander/leases/";

/// etcd's default request size limit (1.5 MiB); records are far smaller.
const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Builds an [`EtcdStore`].
#[must_use = "a builder does nothing until .build()"]
pub struct EtcdStoreBuilder {
    endpoints: Vec<String>,
    prefix: String,
    user: Option<(String, String)>,
    tls: Option<TlsOptions>,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl fmt::Debug for EtcdStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStoreBuilder")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl EtcdStoreBuilder {
    /// From Highlander's URL: `etcd://[USER[:PASSWORD]@]HOST:2379[,HOST2:2379…][/PREFIX]`
    /// with `tls=true`, `ca=PEM`, `cert=PEM` and `key=PEM` (files; any of them means
    /// TLS, `cert` and `key` go together for mutual TLS). Credentials come from the
    /// user-info or `ETCD_USERNAME` / `ETCD_PASSWORD`; anything else is refused by name.
    pub fn from_url(url: &StoreUrl) -> Result<Self> {
        if url.scheme() != "etcd" {
            return Err(Error::Config(format!("not an etcd:// URL: {}://", url.scheme())));
        }
        let mut p = url.params();
        let ca = p.take("ca")?;
        let client = match (p.take("cert")?, p.take("key")?) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(Error::Config("etcd:// parameters cert and key go together (a client certificate and its key)".into())),
        };
        let tls = p.flag("tls")? || ca.is_some() || client.is_some();
        p.finish(&["tls", "ca", "cert", "key"])?;
        if url.hosts().is_empty() {
            return Err(Error::Config("etcd:// URL needs at least one host, as in etcd://HOST:2379,HOST2:2379/prefix".into()));
        }
        let mut endpoints = Vec::new();
        for (i, host) in url.hosts().iter().enumerate() {
            let (name, port) = host_port("etcd", i, host, 2379)?;
            let name = if name.contains(':') { format!("[{name}]") } else { name };
            endpoints.push(format!("{}://{name}:{port}", if tls { "https" } else { "http" }));
        }
        let mut b = EtcdStore::builder(&endpoints);
        if !url.path().is_empty() {
            let prefix = url.path();
            b = b.prefix(if prefix.ends_with('/') { prefix.to_string() } else { format!("{prefix}/") });
        }
        let user = match url.user() {
            Some(u) => Some((
                u.to_string(),
                url.password().map(str::to_string).or_else(|| std::env::var("ETCD_PASSWORD").ok()).unwrap_or_default(),
            )),
            None => std::env::var("ETCD_USERNAME")
                .ok()
                .filter(|u| !u.is_empty())
                .map(|u| (u, std::env::var("ETCD_PASSWORD").unwrap_or_default())),
        };
        if let Some((u, pw)) = user {
            b = b.user(u, pw);
        }
        if tls {
            let read = |what: &str, path: &str| {
                std::fs::read(path)
                    .map_err(|e| Error::Config(format!("etcd TLS for {}: cannot read the {what} {path:?}: {e}", endpoints.join(","))))
            };
            let mut options = TlsOptions::new();
            if let Some(ca) = ca {
                options = options.ca_certificate(Certificate::from_pem(read("CA certificates", ca)?));
            }
            if let Some((cert, key)) = client {
                options = options.identity(Identity::from_pem(read("client certificate", cert)?, read("client key", key)?));
            }
            b = b.tls(options);
        }
        Ok(b)
    }

    /// Follows an elector's settings: no request outlives its call timeout.
    pub fn options(mut self, options: &OpenOptions) -> Self {
        self.request_timeout = options.call_timeout;
        self.connect_timeout = self.connect_timeout.min(options.call_timeout);
        self
    }

    /// Keys are `prefix + lock name` (default `highlander/leases/`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Authenticates as `user` (etcd's auth must be enabled). The password is never printed.
    pub fn user(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.user = Some((user.into(), password.into()));
        self
    }

    /// Uses TLS (with `https://` endpoints): a CA, and a client identity for mutual TLS.
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    /// How long to wait for a connection (default 5 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// The bound on each request (default 5 s; keep it at or below the elector's call timeout).
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// Validates the settings. The connection is made on first use, and re-made by the
    /// client when an endpoint fails or the cluster restarts.
    pub fn build(self) -> Result<EtcdStore> {
        if self.endpoints.is_empty() {
            return Err(Error::Config("etcd store needs at least one endpoint".into()));
        }
        for e in &self.endpoints {
            let scheme_ok = e.starts_with("http://") || e.starts_with("https://");
            if !scheme_ok {
                return Err(Error::Config(format!("etcd endpoint {e:?} must start with http:// or https://")));
            }
            if e.starts_with("https://") && self.tls.is_none() {
                return Err(Error::Config(format!("etcd endpoint {e:?} is https:// but no TLS options were given")));
            }
        }
        if self.prefix.chars().any(char::is_control) {
            return Err(Error::Config(format!("etcd key prefix {:?} contains a control character", self.prefix)));
        }
        Ok(EtcdStore {
            inner: Arc::new(Inner {
                settings: self,
                client: OnceCell::new(),
                hub: Arc::default(),
                stop: tokio::sync::watch::channel(()).0,
            }),
        })
    }
}

/// The etcd backend: `etcd://` URLs.
#[derive(Debug, Clone, Copy, Default)]
pub struct EtcdBackend;

/// The etcd backend, for a front end's table of backends.
pub static BACKEND: EtcdBackend = EtcdBackend;

#[async_trait]
impl Backend for EtcdBackend {
    fn schemes(&self) -> &'static [&'static str] {
        &["etcd"]
    }

    fn grammar(&self) -> &'static str {
        "etcd://HOST:2379,HOST2:2379/PREFIX?ca=PEM&cert=PEM&key=PEM (TLS with tls=true or any file; ETCD_USERNAME / ETCD_PASSWORD)"
    }

    fn address(&self) -> lock_core::backend::Address {
        lock_core::backend::Address::Hosts { default_port: 2379 }
    }

    fn secret_env(&self) -> &'static [&'static str] {
        &["ETCD_PASSWORD"]
    }

    async fn open(&self, url: &StoreUrl, options: &OpenOptions) -> Result<Arc<dyn RawAccess>> {
        Ok(Arc::new(EtcdStoreBuilder::from_url(url)?.options(options).build()?))
    }
}

struct Inner {
    settings: EtcdStoreBuilder,
    client: OnceCell<Client>,
    /// The watchers of every lock, fed by one prefix watch.
    hub: Arc<lock_core::WatchHub>,
    /// Dropped with the store: stops the watch task.
    stop: tokio::sync::watch::Sender<()>,
}

/// A [`LeaseStore`] on etcd. Clones share one client.
#[derive(Clone)]
pub struct EtcdStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore").field("settings", &self.inner.settings).field("connected", &self.inner.client.initialized()).finish()
    }
}

impl fmt::Display for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoints: Vec<String> = self.inner.settings.endpoints.iter().map(|e| lock_core::redact_userinfo(e)).collect();
        write!(f, "etcd {} prefix {}", endpoints.join(","), lock_core::Escaped(&self.inner.settings.prefix))
    }
}

impl EtcdStore {
    /// Starts building a store for these endpoints (`http://host:2379` or `https://…`).
    pub fn builder<E: AsRef<str>>(endpoints: impl IntoIterator<Item = E>) -> EtcdStoreBuilder {
        EtcdStoreBuilder {
            endpoints: endpoints.into_iter().map(|e| e.as_ref().trim().to_string()).filter(|e| !e.is_empty()).collect(),
            prefix: DEFAULT_PREFIX.into(),
            user: None,
            tls: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
        }
    }

    fn key(&self, lock: &LockName) -> String {
        format!("{}{}", self.inner.settings.prefix, lock.as_str())
    }

    /// The key that holds the lock's current term, `holder\ntoken`, written in the same
    /// transaction as every record: what fenced transactions compare. Lock names hold no
    /// control characters, so `\0term` never collides with another lock's key.
    fn term_key(&self, lock: &LockName) -> String {
        format!("{}{}\0term", self.inner.settings.prefix, lock.as_str())
    }

    fn term_value(holder: &str, token: Option<lock_core::FencingToken>) -> String {
        format!("{holder}\n{}", token.map_or_else(String::new, |t| t.to_string()))
    }

    /// Runs `txn` (your compares and operations, in this cluster) only while the lock's
    /// record names `fence`'s term, in one etcd transaction: the term is compared in an
    /// outer transaction and `txn` runs nested in it, so nothing of it applies once the
    /// lease has moved. A [`Leadership`](lock_core::Leadership) is first checked locally
    /// against its deadline, with no round trip. Returns your transaction's response
    /// (its `succeeded()` says whether *your* compares held), or [`Error::Fenced`].
    ///
    /// The term is kept under a key of its own beside the record; renewals rewrite it
    /// unchanged, so they never make a fenced transaction fail. Writers that bypass
    /// Highlander (a client-go elector, a raw `put`) do not update it: fencing holds
    /// among Highlander candidates, as fencing tokens do.
    pub async fn fenced_txn(&self, fence: &impl lock_core::Fence, txn: Txn) -> Result<TxnResponse> {
        let term = fence.term()?;
        let lock = term.lock.clone();
        let outer = Txn::new()
            .when([Compare::value(self.term_key(&lock), CompareOp::Equal, Self::term_value(&term.holder, Some(term.token)))])
            .and_then([TxnOp::txn(txn)])
            .or_else([TxnOp::get(self.key(&lock), None)]);
        let mut kv = self.client().await?.kv_client();
        let resp = kv.txn(outer).await.map_err(|e| self.error(Some(&lock), e))?;
        if resp.succeeded() {
            return resp
                .op_responses()
                .into_iter()
                .find_map(|r| match r {
                    TxnOpResponse::Txn(inner) => Some(inner),
                    _ => None,
                })
                .ok_or_else(|| Error::Backend {
                    store: self.to_string(),
                    source: "etcd answered a nested transaction with no response".into(),
                });
        }
        let now = resp.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().and_then(|kv| LeaderElectionRecord::from_json(kv.value()).ok()),
            _ => None,
        });
        Err(term.moved(self, now.as_ref()))
    }

    /// The etcd client (connected on first use), for operations of your own; fenced
    /// ones go through [`fenced_txn`](Self::fenced_txn).
    pub async fn client(&self) -> Result<Client> {
        let s = &self.inner.settings;
        let client = self
            .inner
            .client
            .get_or_try_init(|| async {
                let mut options = ConnectOptions::new()
                    .with_connect_timeout(s.connect_timeout)
                    .with_timeout(s.request_timeout)
                    .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
                    // Fail fast without quorum instead of waiting or reading stale data.
                    .with_require_leader(true);
                if let Some((user, password)) = &s.user {
                    options = options.with_user(user.clone(), password.clone());
                }
                if let Some(tls) = &s.tls {
                    options = options.with_tls(tls.clone());
                }
                Client::connect(&s.endpoints, Some(options)).await.map_err(|e| self.error(None, e))
            })
            .await?;
        Ok(client.clone())
    }

    /// Maps etcd's failures in one place: gRPC `Unavailable` / `DeadlineExceeded` (no
    /// leader, no quorum, unreachable) are transient; auth failures are permanent.
    fn error(&self, lock: Option<&LockName>, e: etcd_client::Error) -> Error {
        use etcd_client::Error as E;
        use tonic::Code;
        let store = self.to_string();
        match e {
            // etcd reports failed authentication as InvalidArgument: recognise it by message.
            E::GRpcStatus(status)
                if status.message().contains("authentication failed") || status.message().contains("user name is empty") =>
            {
                Error::PermissionDenied {
                    store,
                    detail: format!("{} (check the user and password; this cluster has authentication enabled)", status.message()),
                }
            }
            // A certificate that is not trusted (either way) will not become trusted by retrying.
            E::GRpcStatus(status) if status.message().contains("certificate") || status.message().contains("fatal alert") => {
                Error::Config(format!(
                    "{store}: TLS: {} (check the CA, client certificate and key: the CA must have signed the members' certificates, and members run with --client-cert-auth want a client certificate)",
                    status.message()
                ))
            }
            // The connection broke below gRPC; a plain client talking to a TLS member ends here too.
            E::GRpcStatus(status) if status.message().contains("transport error") => {
                let detail = with_causes(status.message().to_string(), std::error::Error::source(&status));
                let hint = if self.inner.settings.tls.is_none() { " (if the members use TLS, add ?tls=true or a ca= file)" } else { "" };
                Error::Unavailable { store, source: format!("{detail}{hint}").into() }
            }
            E::GRpcStatus(status) => match status.code() {
                Code::Unavailable | Code::DeadlineExceeded | Code::Aborted | Code::ResourceExhausted => Error::Unavailable {
                    store,
                    source: format!("{} (is the cluster up, and does it have quorum?)", status.message()).into(),
                },
                Code::Unauthenticated | Code::PermissionDenied => Error::PermissionDenied {
                    store,
                    detail: format!("{} (check the user, its password and its role's permission on the key prefix)", status.message()),
                },
                _ => Error::Backend {
                    store,
                    source: format!("{}{}", status.message(), lock.map(|l| format!(" (lock {l:?})")).unwrap_or_default()).into(),
                },
            },
            E::TransportError(_) | E::IoError(_) => {
                // "transport error" alone says little: name the cause underneath.
                let detail = with_causes(e.to_string(), std::error::Error::source(&e));
                Error::Unavailable { store, source: detail.into() }
            }
            E::InvalidArgs(_) | E::InvalidUri(_) => Error::Config(format!("{store}: {e}")),
            other => Error::Backend { store, source: Box::new(other) },
        }
    }

    fn revision(resp_revision: Option<i64>, store: &EtcdStore) -> Result<Version> {
        resp_revision
            .map(|r| Version::new(r.to_string()))
            .ok_or_else(|| Error::Backend { store: store.to_string(), source: "etcd response without a header".into() })
    }
}

#[async_trait]
impl LeaseStore for EtcdStore {
    async fn get(&self, lock: &LockName) -> Result<Option<Observed>> {
        let mut kv = self.client().await?.kv_client();
        let resp = kv.get(self.key(lock), None).await.map_err(|e| self.error(Some(lock), e))?;
        let Some(kv) = resp.kvs().first() else { return Ok(None) };
        Observed::decode(lock, self, Bytes::copy_from_slice(kv.value()), Version::new(kv.mod_revision().to_string())).map(Some)
    }

    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
        let raw = encode_record(lock, self, rec, Some(MAX_RECORD_BYTES))?;
        let key = self.key(lock);
        let txn = Txn::new().when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)]).and_then([
            TxnOp::put(key, raw.to_vec(), None),
            TxnOp::put(self.term_key(lock), Self::term_value(&rec.holder_identity, rec.fencing_token), None),
        ]);
        let mut kv = self.client().await?.kv_client();
        let resp = kv.txn(txn).await.map_err(|e| self.error(Some(lock), e))?;
        if !resp.succeeded() {
            return Err(Error::AlreadyExists { lock: lock.clone(), store: self.to_string() });
        }
        Self::revision(resp.header().map(|h| h.revision()), self)
    }

    async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
        let raw = encode_record(lock, self, rec, Some(MAX_RECORD_BYTES))?;
        // A version etcd never issued cannot match any revision.
        let Ok(expected) = expected.as_str().parse::<i64>() else {
            return Err(Error::Conflict { lock: lock.clone(), store: self.to_string() });
        };
        let key = self.key(lock);
        // One round trip: on a failed compare, read the key's revision to tell Conflict from NotFound.
        let txn = Txn::new()
            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, expected)])
            .and_then([
                TxnOp::put(key.clone(), raw.to_vec(), None),
                TxnOp::put(self.term_key(lock), Self::term_value(&rec.holder_identity, rec.fencing_token), None),
            ])
            .or_else([TxnOp::get(key, Some(GetOptions::new().with_keys_only()))]);
        let mut kv = self.client().await?.kv_client();
        let resp = kv.txn(txn).await.map_err(|e| self.error(Some(lock), e))?;
        if resp.succeeded() {
            return Self::revision(resp.header().map(|h| h.revision()), self);
        }
        let present = resp.op_responses().iter().any(|r| matches!(r, TxnOpResponse::Get(g) if !g.kvs().is_empty()));
        if present {
            Err(Error::Conflict { lock: lock.clone(), store: self.to_string() })
        } else {
            Err(Error::NotFound { lock: lock.clone(), store: self.to_string() })
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::atomic()
            .with_monotonic_versions(true)
            .with_watch(true)
            .with_fenced_writes("`fenced_txn` (compare on the term)")
            .with_max_record_bytes(Some(MAX_RECORD_BYTES))
    }

    /// One etcd watch on the store's whole prefix, shared by every lock: every write
    /// arrives with its value and `mod_revision` and goes to that lock's watchers, so a
    /// standby acts on a release without reading, on one stream however many locks it
    /// watches.
    async fn watch(&self, lock: &LockName) -> Result<Option<Changes>> {
        self.inner.hub.subscribe_starting(lock, |generation| self.start_feed(generation)).await.map(Some)
    }
}

impl EtcdStore {
    async fn start_feed(&self, generation: u64) -> Result<()> {
        let prefix = self.inner.settings.prefix.clone();
        let options = etcd_client::WatchOptions::new().with_prefix();
        let mut stream = self.client().await?.watch_client().watch(prefix.clone(), Some(options)).await.map_err(|e| self.error(None, e))?;
        let (hub, description) = (self.inner.hub.clone(), self.to_string());
        let feed = async move {
            // An ended or failed watch closes every watcher's channel: electors go back to polling.
            while let Ok(Some(response)) = stream.message().await {
                for event in response.events() {
                    let Some(kv) = event.kv().filter(|_| event.event_type() == etcd_client::EventType::Put) else { continue };
                    let Some(name) = kv.key().strip_prefix(prefix.as_bytes()).and_then(|k| std::str::from_utf8(k).ok()) else { continue };
                    // Term keys hold no record; names that are no lock name are someone else's keys.
                    let Ok(lock) = LockName::new(name) else { continue };
                    let version = Version::new(kv.mod_revision().to_string());
                    hub.deliver(&lock, &description, Bytes::copy_from_slice(kv.value()), version);
                }
            }
        };
        self.inner.hub.spawn_feed(generation, self.inner.stop.subscribe(), feed);
        Ok(())
    }
}

#[async_trait]
impl RawAccess for EtcdStore {
    async fn write_raw(&self, lock: &LockName, raw: &[u8]) -> Result<()> {
        let mut kv = self.client().await?.kv_client();
        kv.put(self.key(lock), raw.to_vec(), None).await.map_err(|e| self.error(Some(lock), e))?;
        Ok(())
    }

    async fn read_raw(&self, lock: &LockName) -> Result<Option<Bytes>> {
        let mut kv = self.client().await?.kv_client();
        let resp = kv.get(self.key(lock), None).await.map_err(|e| self.error(Some(lock), e))?;
        Ok(resp.kvs().first().map(|kv| Bytes::copy_from_slice(kv.value())))
    }

    async fn delete_raw(&self, lock: &LockName) -> Result<()> {
        let mut kv = self.client().await?.kv_client();
        kv.delete(self.key(lock), None).await.map_err(|e| self.error(Some(lock), e))?;
        Ok(())
    }
}

/// `message: cause: cause…`, each cause once (tonic repeats "transport error").
fn with_causes(message: String, cause: Option<&(dyn std::error::Error + 'static)>) -> String {
    match cause {
        Some(c) => {
            let rest = lock_core::error_chain(c);
            if message.ends_with(&rest) { message } else { format!("{message}: {rest}") }
        }
        None => message,
    }
}
