//! The Gist store: one file per lock in a gist, read with ETags, written with PATCH.

use crate::errors::{self, Gate};
use async_trait::async_trait;
use bytes::Bytes;
use lock_core::{
    Backend, Capabilities, Error, LeaderElectionRecord, LeaseStore, LockName, Observed, OpenOptions, RawAccess, Result, StoreUrl, Version,
    decode_record, encode_record,
};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

/// GitHub's API.
pub const DEFAULT_API: &str = "https://api.github.com";
/// File names are `prefix + escaped lock name + .json`.
pub const DEFAULT_FILE_PREFIX: &str = "highlander-";
/// GitHub's secondary limit on content-creating requests per hour.
pub const SECONDARY_LIMIT_PER_HOUR: f64 = 500.0;
/// Above this share of the secondary limit the store warns.
pub const BUDGET_WARNING_SHARE: f64 = 0.8;
/// Content over 1 MB comes back truncated; refuse to write records near it.
const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// A token that never prints.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// Wraps a GitHub token.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The content-creating requests a leader makes, against GitHub's secondary limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// PATCH requests an hour: one per renewal.
    pub writes_per_hour: f64,
    /// The share of the 500-an-hour secondary limit that uses.
    pub share: f64,
}

/// The budget of a leader renewing every `retry_period`.
#[must_use]
pub fn budget(retry_period: Duration) -> Budget {
    let writes_per_hour = 3600.0 / retry_period.as_secs_f64().max(1e-3);
    Budget { writes_per_hour, share: writes_per_hour / SECONDARY_LIMIT_PER_HOUR }
}

/// Builds a [`GistStore`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until .build()"]
pub struct GistStoreBuilder {
    gist_id: String,
    token: Option<Token>,
    api: String,
    file_prefix: String,
    retry_period: Duration,
    allow_over_budget: bool,
    call_timeout: Duration,
    retry_from_url: bool,
}

impl GistStoreBuilder {
    /// From Highlander's URL: `gist://GIST_ID?api=…&retry=10s&allow_over_budget=true`;
    /// the token from `GITHUB_TOKEN`. `retry` overrides the elector's retry period for
    /// the write budget. Anything else is refused by name.
    pub fn from_url(url: &StoreUrl) -> Result<Self> {
        if url.scheme() != "gist" {
            return Err(Error::Config(format!("not a gist:// URL: {}://", url.scheme())));
        }
        url.no_userinfo("the token comes from GITHUB_TOKEN")?;
        if !url.path().is_empty() {
            return Err(Error::Config("gist:// URL names a gist id and nothing after it, as in gist://GIST_ID?api=…".into()));
        }
        let mut b = GistStore::builder(url.single_host("gist id")?);
        let mut p = url.params();
        if let Some(api) = p.take("api")? {
            b = b.api(api);
        }
        if let Some(retry) = p.duration("retry")? {
            b = b.retry_period(retry);
            b.retry_from_url = true;
        }
        b = b.allow_over_budget(p.flag("allow_over_budget")?);
        p.finish(&["api", "retry", "allow_over_budget"])?;
        Ok(b)
    }

    /// Follows an elector's settings: the write budget from its retry period (unless
    /// the URL gave one), requests bounded by its call timeout.
    pub fn options(mut self, options: &OpenOptions) -> Self {
        if !self.retry_from_url {
            self.retry_period = options.timing.retry_period;
        }
        self.call_timeout = options.call_timeout;
        self
    }

    /// The token (default: `GITHUB_TOKEN`). Needs the `gist` scope (classic) or "Gists: write" (fine-grained).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(Token::new(token));
        self
    }

    /// The API base URL (GitHub Enterprise: `https://HOST/api/v3`; the emulator's URL).
    pub fn api(mut self, url: impl Into<String>) -> Self {
        self.api = url.into().trim_end_matches('/').to_string();
        self
    }

    /// The prefix of lock files in the gist (default `highlander-`).
    pub fn file_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.file_prefix = prefix.into();
        self
    }

    /// The elector's retry period, to check the write budget (default client-go's 2 s).
    pub fn retry_period(mut self, d: Duration) -> Self {
        self.retry_period = d;
        self
    }

    /// Accept a configuration above GitHub's 500-writes-an-hour secondary limit (for the emulator).
    pub fn allow_over_budget(mut self, yes: bool) -> Self {
        self.allow_over_budget = yes;
        self
    }

    /// The bound on each HTTP request (default 5 s).
    pub fn call_timeout(mut self, d: Duration) -> Self {
        self.call_timeout = d;
        self
    }

    /// Checks the settings and the write budget, and builds the store.
    pub fn build(self) -> Result<GistStore> {
        if self.gist_id.is_empty() || self.gist_id.len() > 64 || !self.gist_id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::Config(format!(
                "gist id {} must be the hexadecimal id from the gist's URL",
                lock_core::Escaped(&self.gist_id)
            )));
        }
        let Some((scheme, rest)) = self.api.split_once("://") else {
            return Err(Error::Config(format!("gist {}: the api URL must be http:// or https://", self.gist_id)));
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if !matches!(scheme, "http" | "https") || authority.is_empty() || rest.contains(['?', '#']) {
            return Err(Error::Config(format!("gist {}: the api URL must be http(s)://HOST[/PATH], with no query", self.gist_id)));
        }
        if authority.contains('@') {
            return Err(Error::Config(format!(
                "gist {}: the api URL must not carry a user or password (the token comes from GITHUB_TOKEN)",
                self.gist_id
            )));
        }
        let b = budget(self.retry_period);
        if b.share > 1.0 && !self.allow_over_budget {
            return Err(Error::Config(format!(
                "gist {}: a leader renewing every {:?} makes {:.0} content-creating requests an hour, over GitHub's secondary limit of {SECONDARY_LIMIT_PER_HOUR:.0}; \
                 use a retry period of at least {:.1}s (e.g. lease 60s, renew deadline 40s, retry period 10s), or allow_over_budget for an emulator",
                self.gist_id,
                self.retry_period,
                b.writes_per_hour,
                3600.0 / SECONDARY_LIMIT_PER_HOUR
            )));
        }
        let token = match self.token.clone().or_else(|| std::env::var("GITHUB_TOKEN").ok().filter(|t| !t.is_empty()).map(Token::new)) {
            Some(t) => t,
            None => return Err(Error::Config(format!("gist {}: no token (set GITHUB_TOKEN, or .token())", self.gist_id))),
        };
        if b.share > BUDGET_WARNING_SHARE && !self.allow_over_budget {
            tracing::warn!(gist = %self.gist_id, writes_per_hour = b.writes_per_hour, "the leader will use {:.0}% of GitHub's secondary write limit", b.share * 100.0);
        }
        let mut headers = header::HeaderMap::new();
        headers.insert(header::ACCEPT, header::HeaderValue::from_static("application/vnd.github+json"));
        headers.insert("X-GitHub-Api-Version", header::HeaderValue::from_static("2022-11-28"));
        let mut auth = header::HeaderValue::from_str(&format!("Bearer {}", token.0))
            .map_err(|_| Error::Config(format!("gist {}: the token is not a valid header value", self.gist_id)))?;
        auth.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, auth);
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls(&self.gist_id)?)
            .user_agent(concat!("highlander-lock-gist/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .timeout(self.call_timeout)
            .build()
            .map_err(|e| Error::Config(format!("gist {}: HTTP client: {}", self.gist_id, lock_core::error_chain(&e))))?;
        let host = lock_core::redact_userinfo(authority);
        Ok(GistStore {
            inner: Arc::new(Inner {
                http,
                url: format!("{}/gists/{}", self.api, self.gist_id),
                description: format!("gist {} at {host}", self.gist_id),
                file_prefix: self.file_prefix,
                cache: Mutex::new(None),
                gate: Gate::default(),
            }),
        })
    }
}

/// TLS for the API: rustls with ring, and the platform's certificate verifier (the
/// system's trust store on Linux, `SSL_CERT_FILE` included).
fn tls(gist_id: &str) -> Result<rustls::ClientConfig> {
    use rustls_platform_verifier::BuilderVerifierExt;
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map(|b| b.with_no_client_auth())
        .map_err(|e| Error::Config(format!("gist {gist_id}: TLS: {e}")))
}

struct Inner {
    http: reqwest::Client,
    url: String,
    description: String,
    file_prefix: String,
    /// The last 200 answer and its ETag, for `If-None-Match`.
    cache: Mutex<Option<(String, Value)>>,
    gate: Gate,
}

/// A [`LeaseStore`] in a GitHub Gist. **Last-writer-wins**: GitHub offers no
/// conditional write on gists, so two writers can both believe they won until the
/// next read. For teaching and demos; see the README for what to use instead.
#[derive(Clone)]
pub struct GistStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for GistStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GistStore").field("gist", &self.inner.description).field("token", &"<redacted>").finish_non_exhaustive()
    }
}

impl fmt::Display for GistStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.description)
    }
}

/// The gist file that holds `lock`: prefix, the name with every byte outside
/// `[A-Za-z0-9._-]` escaped as `%XX` (so distinct names stay distinct), `.json`.
#[must_use]
pub fn file_name(prefix: &str, lock: &LockName) -> String {
    let mut out = String::from(prefix);
    for b in lock.as_str().bytes() {
        if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out.push_str(".json");
    out
}

fn version_of(content: &str) -> Version {
    Version::new(hex::encode(&Sha256::digest(content.as_bytes())[..12]))
}

impl GistStore {
    /// Starts building a store on the gist with this id.
    pub fn builder(gist_id: impl Into<String>) -> GistStoreBuilder {
        GistStoreBuilder {
            gist_id: gist_id.into(),
            token: None,
            api: DEFAULT_API.into(),
            file_prefix: DEFAULT_FILE_PREFIX.into(),
            retry_period: lock_core::elector::DEFAULT_RETRY_PERIOD,
            allow_over_budget: false,
            call_timeout: Duration::from_secs(5),
            retry_from_url: false,
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Option<(String, Value)>> {
        self.inner.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// GET the gist, sending the last ETag: a 304 costs nothing against the primary limit.
    async fn fetch(&self, lock: &LockName) -> Result<Value> {
        self.inner.gate.check(self)?;
        let etag = self.cache().as_ref().map(|(etag, _)| etag.clone());
        let mut request = self.inner.http.get(&self.inner.url);
        if let Some(etag) = &etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        let response = request.send().await.map_err(|e| errors::transport(self, e))?;
        if response.status() == StatusCode::NOT_MODIFIED
            && let Some((_, gist)) = self.cache().as_ref()
        {
            return Ok(gist.clone());
        }
        let response = errors::check(self, Some(lock), &self.inner.gate, response).await?;
        let etag = response.headers().get(header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_string);
        let gist: Value =
            response.json().await.map_err(|e| Error::Backend { store: self.to_string(), source: lock_core::error_chain(&e).into() })?;
        *self.cache() = etag.map(|e| (e, gist.clone()));
        Ok(gist)
    }

    /// The content of `lock`'s file, if any; a truncated file is reported, never used.
    fn content(&self, lock: &LockName, gist: &Value) -> Result<Option<String>> {
        let name = file_name(&self.inner.file_prefix, lock);
        let Some(file) = gist.get("files").and_then(|f| f.get(&name)) else { return Ok(None) };
        if file.get("truncated").and_then(Value::as_bool) == Some(true) {
            return Err(Error::Corrupt {
                lock: lock.clone(),
                store: self.to_string(),
                detail: format!("file {name} is over 1 MB and came back truncated; it is not a lease record"),
            });
        }
        match file.get("content").and_then(Value::as_str) {
            Some(content) => Ok(Some(content.to_string())),
            None => Err(Error::Corrupt { lock: lock.clone(), store: self.to_string(), detail: format!("file {name} has no content") }),
        }
    }

    async fn patch(&self, lock: &LockName, content: &str) -> Result<()> {
        let name = file_name(&self.inner.file_prefix, lock);
        self.send_files(Some(lock), json!({ name: { "content": content } })).await
    }

    /// PATCHes the gist's `files` (a file set to `null` is deleted).
    async fn send_files(&self, lock: Option<&LockName>, files: Value) -> Result<()> {
        self.inner.gate.check(self)?;
        // Never If-Match: GitHub answers 400 to conditional headers on PATCH.
        let response =
            self.inner.http.patch(&self.inner.url).json(&json!({ "files": files })).send().await.map_err(|e| errors::transport(self, e))?;
        errors::check(self, lock, &self.inner.gate, response).await?;
        Ok(())
    }

    /// Writes, then reads back: the write stands only if the file still holds it.
    async fn write_verified(&self, lock: &LockName, content: &str) -> Result<bool> {
        self.patch(lock, content).await?;
        let gist = self.fetch(lock).await?;
        Ok(self.content(lock, &gist)?.as_deref() == Some(content))
    }
}

#[async_trait]
impl LeaseStore for GistStore {
    async fn get(&self, lock: &LockName) -> Result<Option<Observed>> {
        let gist = self.fetch(lock).await?;
        match self.content(lock, &gist)? {
            Some(content) => {
                let version = version_of(&content);
                Observed::decode(lock, self, Bytes::from(content), version).map(Some)
            }
            None => Ok(None),
        }
    }

    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
        let raw = encode_record(lock, self, rec, Some(MAX_RECORD_BYTES))?;
        let content = String::from_utf8(raw.to_vec()).map_err(|e| Error::Config(e.to_string()))?;
        let gist = self.fetch(lock).await?;
        if self.content(lock, &gist)?.is_some() {
            return Err(Error::AlreadyExists { lock: lock.clone(), store: self.to_string() });
        }
        if !self.write_verified(lock, &content).await? {
            // Another writer's content replaced ours: they created it.
            return Err(Error::AlreadyExists { lock: lock.clone(), store: self.to_string() });
        }
        Ok(version_of(&content))
    }

    async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
        let raw = encode_record(lock, self, rec, Some(MAX_RECORD_BYTES))?;
        let content = String::from_utf8(raw.to_vec()).map_err(|e| Error::Config(e.to_string()))?;
        // Read before writing (best effort, not atomic): never overwrite what we cannot
        // read, and refuse a version that is already stale.
        let gist = self.fetch(lock).await?;
        let Some(current) = self.content(lock, &gist)? else {
            return Err(Error::NotFound { lock: lock.clone(), store: self.to_string() });
        };
        decode_record(lock, self, current.as_bytes())?;
        if &version_of(&current) != expected {
            return Err(Error::Conflict { lock: lock.clone(), store: self.to_string() });
        }
        if !self.write_verified(lock, &content).await? {
            return Err(Error::Conflict { lock: lock.clone(), store: self.to_string() });
        }
        Ok(version_of(&content))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::last_writer_wins().with_max_record_bytes(Some(MAX_RECORD_BYTES))
    }
}

#[async_trait]
impl RawAccess for GistStore {
    async fn write_raw(&self, lock: &LockName, raw: &[u8]) -> Result<()> {
        let content = std::str::from_utf8(raw).map_err(|e| Error::Config(format!("lock {lock:?}: gist files are UTF-8 text: {e}")))?;
        self.patch(lock, content).await
    }

    async fn read_raw(&self, lock: &LockName) -> Result<Option<Bytes>> {
        let gist = self.fetch(lock).await?;
        Ok(self.content(lock, &gist)?.map(Bytes::from))
    }

    async fn delete_raw(&self, lock: &LockName) -> Result<()> {
        if self.read_raw(lock).await?.is_none() {
            return Ok(());
        }
        self.send_files(Some(lock), json!({ file_name(&self.inner.file_prefix, lock): null })).await
    }
}

/// The gist backend: `gist://` URLs.
#[derive(Debug, Clone, Copy, Default)]
pub struct GistBackend;

/// The gist backend, for a front end's table of backends.
pub static BACKEND: GistBackend = GistBackend;

#[async_trait]
impl Backend for GistBackend {
    fn schemes(&self) -> &'static [&'static str] {
        &["gist"]
    }

    fn grammar(&self) -> &'static str {
        "gist://GIST_ID?api=…&allow_over_budget=true (token in GITHUB_TOKEN; last-writer-wins, for teaching)"
    }

    fn address(&self) -> lock_core::backend::Address {
        lock_core::backend::Address::Param { name: "api", bare_port: None }
    }

    fn secret_env(&self) -> &'static [&'static str] {
        &["GITHUB_TOKEN"]
    }

    async fn open(&self, url: &StoreUrl, options: &OpenOptions) -> Result<Arc<dyn RawAccess>> {
        Ok(Arc::new(GistStoreBuilder::from_url(url)?.options(options).build()?))
    }
}
