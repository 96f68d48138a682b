//! Backends: how a store URL becomes a store. Each backend crate exports one
//! [`Backend`] that owns its URL grammar, its secrets and its setup; a front end
//! (the `highlander` facade, the conformance suite) only dispatches on the scheme.

use crate::{
    elector::Timing,
    error::{Error, Result},
    memory::MemoryStore,
    store::RawAccess,
    url::StoreUrl,
};
use async_trait::async_trait;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, PoisonError},
    time::Duration,
};

/// What a store needs to know of the elector that will use it: its timing (the
/// gist's write budget follows the retry period) and the bound on one call (a
/// store's own request timeout must not outlast the elector's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// The elector's durations.
    pub timing: Timing,
    /// The elector's bound on one store call.
    pub call_timeout: Duration,
}

impl OpenOptions {
    /// Options for an elector with this timing and its default call timeout.
    #[must_use]
    pub fn new(timing: Timing) -> Self {
        Self { timing, call_timeout: timing.call_timeout() }
    }
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self::new(Timing::DEFAULT)
    }
}

/// Where a store URL says its store is, for a tool that puts itself between the
/// candidates and the store (`highlander chaos` and its proxies).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Address {
    /// Not said: such a tool cannot find the store.
    Unknown,
    /// In this process only: candidates in other processes cannot share it.
    InProcess,
    /// On this machine, with no link between the candidates and it (a directory).
    Local,
    /// The URL's hosts (`host[:port],…` after any user-info), with this default port.
    Hosts {
        /// The port of a host given without one.
        default_port: u16,
    },
    /// A URL parameter: an HTTP(S) URL (`endpoint=`, `api=`), or, where `bare_port` is
    /// set, a bare `host[:port]` with that default port.
    Param {
        /// The parameter's name.
        name: &'static str,
        /// The default port of a bare `host` (`None`: the value is an HTTP(S) URL).
        bare_port: Option<u16>,
    },
}

/// A kind of store, opened by URL.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The URL schemes it answers to, canonical first (`postgres`, `postgresql`).
    fn schemes(&self) -> &'static [&'static str];

    /// Its URL grammar in one line, for help and errors.
    fn grammar(&self) -> &'static str;

    /// Where its URLs say the store is (see [`Address`]).
    fn address(&self) -> Address {
        Address::Unknown
    }

    /// The environment variables that hold its secrets (a password, a token): a
    /// supervisor keeps them from the commands it runs unless asked not to.
    fn secret_env(&self) -> &'static [&'static str] {
        &[]
    }

    /// Opens the store: parses the URL (every parameter checked, unknown ones named),
    /// reads secrets from the environment, connects lazily where it can.
    async fn open(&self, url: &StoreUrl, options: &OpenOptions) -> Result<Arc<dyn RawAccess>>;

    /// Creates what the store needs if it is missing (a table, a bucket); for stores
    /// that need nothing, opens it.
    async fn create(&self, url: &StoreUrl, options: &OpenOptions) -> Result<()> {
        self.open(url, options).await.map(drop)
    }
}

/// `memory://NAME`: an in-process store, shared by every open of the same name.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryBackend;

/// The memory backend.
pub static MEMORY: MemoryBackend = MemoryBackend;

#[async_trait]
impl Backend for MemoryBackend {
    fn schemes(&self) -> &'static [&'static str] {
        &["memory"]
    }

    fn grammar(&self) -> &'static str {
        "memory://NAME (in this process only)"
    }

    fn address(&self) -> Address {
        Address::InProcess
    }

    async fn open(&self, url: &StoreUrl, _: &OpenOptions) -> Result<Arc<dyn RawAccess>> {
        url.no_userinfo("an in-process store has no credentials")?;
        url.params().finish(&[])?;
        let name = match url.hosts() {
            [] => String::new(),
            [one] => one.clone(),
            _ => return Err(Error::Config("memory:// URL names one store, not a list".into())),
        };
        static STORES: OnceLock<Mutex<HashMap<String, MemoryStore>>> = OnceLock::new();
        let mut stores = STORES.get_or_init(Mutex::default).lock().unwrap_or_else(PoisonError::into_inner);
        Ok(Arc::new(stores.entry(name).or_default().clone()))
    }
}
