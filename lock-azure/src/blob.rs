//! A blob per lock: `If-None-Match: *` creates, `If-Match: <ETag>` updates.

use crate::{
    Account, MAX_RECORD_BYTES,
    auth::{self, Service},
};
use async_trait::async_trait;
use bytes::Bytes;
use lock_core::{
    Capabilities, Error, LeaderElectionRecord, LeaseStore, LockName, Observed, OpenOptions, RawAccess, Result, StoreUrl, Version,
    encode_record,
};
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig, UpdateVersion,
    azure::{MicrosoftAzure, MicrosoftAzureBuilder},
    path::Path,
};
use std::{fmt, sync::Arc, time::Duration};

/// The blob-name prefix when the URL names none.
pub const DEFAULT_PREFIX: &str = "highlander/leases/";

struct Inner {
    store: MicrosoftAzure,
    /// The elector's call timeout: each request's bound.
    timeout: Duration,
    account: Account,
    container: String,
    prefix: String,
    description: String,
}

/// A [`LeaseStore`] on Azure blobs. Clones share one client.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobStore").field("store", &self.inner.description).field("prefix", &self.inner.prefix).finish_non_exhaustive()
    }
}

impl fmt::Display for BlobStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.description)
    }
}

impl BlobStore {
    /// From `azblob://ACCOUNT/CONTAINER[/PREFIX]?endpoint=…`, with the elector's call
    /// timeout as each request's. Anything else in the URL is refused by name.
    pub fn from_url(url: &StoreUrl, options: &OpenOptions) -> Result<Self> {
        Self::with_credential(url, options, None)
    }

    /// As [`from_url`](Self::from_url), with this credential rather than the environment's.
    pub fn with_credential(url: &StoreUrl, options: &OpenOptions, credential: Option<crate::Credential>) -> Result<Self> {
        let mut params = url.params();
        let endpoint = params.take("endpoint")?;
        params.finish(&["endpoint"])?;
        let account = Account::from_url(url, endpoint, "blob", credential)?;
        let (container, prefix) = match url.path().split_once('/') {
            Some((c, p)) if !p.is_empty() => (c, format!("{}/", p.trim_end_matches('/'))),
            Some((c, _)) => (c, DEFAULT_PREFIX.to_string()),
            None => (url.path(), DEFAULT_PREFIX.to_string()),
        };
        let valid = (3..=63).contains(&container.len())
            && container.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !container.starts_with('-')
            && !container.ends_with('-')
            && !container.contains("--");
        if !valid {
            return Err(Error::Config(format!(
                "azblob:// container {container:?} is not a container name (3–63 lower-case letters, digits and single hyphens), as in azblob://ACCOUNT/CONTAINER"
            )));
        }
        let timeout = options.call_timeout;
        let client_options = ClientOptions::new()
            .with_timeout(timeout)
            .with_connect_timeout(timeout.min(Duration::from_secs(2)))
            .with_allow_http(account.endpoint.starts_with("http://"))
            .with_pool_idle_timeout(crate::POOL_IDLE);
        // A request that met a connection the server was closing is sent again at once,
        // within the call's timeout. Safe for conditional writes: a write that did land is
        // refused on the second try (AlreadyExists / Conflict), and the elector then reads
        // its own record back and knows it by its token.
        let backoff = BackoffConfig { init_backoff: Duration::from_millis(10), max_backoff: Duration::from_millis(100), base: 2.0 };
        let retry = RetryConfig { max_retries: 2, retry_timeout: timeout, backoff };
        let mut builder = MicrosoftAzureBuilder::new()
            .with_account(&account.name)
            .with_container_name(container)
            .with_endpoint(account.endpoint.clone())
            .with_client_options(client_options)
            .with_retry(retry);
        builder = match &account.credential {
            crate::Credential::AccountKey(key) => {
                builder.with_access_key(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, key))
            }
            crate::Credential::Sas(sas) => builder.with_sas_authorization(
                sas.split('&').filter_map(|pair| pair.split_once('=')).map(|(k, v)| (k.to_string(), percent_decode(v))).collect::<Vec<_>>(),
            ),
            crate::Credential::Bearer(token) => builder.with_bearer_token_authorization(token),
        };
        let description = account.describe("azblob", container);
        let store = builder.build().map_err(|e| Error::Config(format!("{description}: {e}")))?;
        Ok(Self { inner: Arc::new(Inner { store, timeout, account, container: container.to_string(), prefix, description }) })
    }

    /// Creates the container if it is missing (Create Container).
    pub async fn ensure_container(&self) -> Result<()> {
        let url = format!("{}/{}?restype=container", self.inner.account.endpoint, self.inner.container);
        let a = &self.inner.account;
        // Only `--create` makes a request object_store does not: its client is built here.
        let http = reqwest::Client::builder()
            .timeout(self.inner.timeout)
            .build()
            .map_err(|e| Error::Config(format!("{self}: cannot build an HTTP client: {e}")))?;
        let request = auth::authorize(&http, reqwest::Method::PUT, &url, &a.name, &a.credential, Service::Blob, "")?;
        let response = request
            .header("Content-Length", "0")
            .send()
            .await
            .map_err(|e| Error::Unavailable { store: self.to_string(), source: crate::without_url(e).into() })?;
        match response.status().as_u16() {
            201 | 409 => Ok(()),
            status => Err(Error::Backend {
                store: self.to_string(),
                source: format!("Create Container answered {status}: {}", crate::error_code(&response)).into(),
            }),
        }
    }

    fn path(&self, lock: &LockName) -> Path {
        Path::from(format!("{}{}", self.inner.prefix, lock.to_path_segment()))
    }

    fn unavailable(&self, lock: &LockName, e: &dyn std::error::Error) -> Error {
        Error::Unavailable { store: self.to_string(), source: crate::redact(&format!("{e} (lock {lock:?})")).into() }
    }

    /// What an object_store error means here; `create`/`update` turn their own cases
    /// into AlreadyExists / Conflict first.
    fn error(&self, lock: &LockName, e: object_store::Error) -> Error {
        match e {
            object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => Error::Backend {
                store: self.to_string(),
                source: crate::redact(&format!("the account refused the credential (lock {lock:?}): {e}")).into(),
            },
            e => self.unavailable(lock, &e),
        }
    }

    async fn put(&self, lock: &LockName, raw: Bytes, mode: PutMode) -> Result<Version> {
        let options = PutOptions { mode, ..PutOptions::default() };
        let put = self.inner.store.put_opts(&self.path(lock), PutPayload::from(raw), options).await;
        let done = put.map_err(|e| match e {
            object_store::Error::AlreadyExists { .. } => Error::AlreadyExists { lock: lock.clone(), store: self.to_string() },
            object_store::Error::Precondition { .. } => Error::Conflict { lock: lock.clone(), store: self.to_string() },
            e => self.error(lock, e),
        })?;
        done.e_tag.map(Version::new).ok_or_else(|| Error::Backend { store: self.to_string(), source: "Put Blob returned no ETag".into() })
    }

    async fn fetch(&self, lock: &LockName) -> Result<Option<(Bytes, String)>> {
        let got = match self.inner.store.get(&self.path(lock)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error(lock, e)),
        };
        let etag =
            got.meta.e_tag.clone().ok_or_else(|| Error::Backend { store: self.to_string(), source: "Get Blob returned no ETag".into() })?;
        let raw = got.bytes().await.map_err(|e| self.error(lock, e))?;
        Ok(Some((raw, etag)))
    }
}

#[async_trait]
impl LeaseStore for BlobStore {
    async fn get(&self, lock: &LockName) -> Result<Option<Observed>> {
        match self.fetch(lock).await? {
            Some((raw, etag)) => Observed::decode(lock, self, raw, Version::new(etag)).map(Some),
            None => Ok(None),
        }
    }

    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
        let raw = encode_record(lock, self, rec, Some(MAX_RECORD_BYTES))?;
        self.put(lock, raw, PutMode::Create).await
    }

    async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
        let raw = encode_record(lock, self, rec, Some(MAX_RECORD_BYTES))?;
        let mode = PutMode::Update(UpdateVersion { e_tag: Some(expected.as_str().to_string()), version: None });
        match self.put(lock, raw, mode).await {
            // If-Match on a blob that is gone fails the same way as on one that moved.
            Err(Error::Conflict { .. }) if self.fetch(lock).await?.is_none() => {
                Err(Error::NotFound { lock: lock.clone(), store: self.to_string() })
            }
            other => other,
        }
    }

    fn capabilities(&self) -> Capabilities {
        // ETags are opaque, not counters.
        Capabilities::atomic().with_max_record_bytes(Some(MAX_RECORD_BYTES))
    }
}

#[async_trait]
impl RawAccess for BlobStore {
    async fn write_raw(&self, lock: &LockName, raw: &[u8]) -> Result<()> {
        self.put(lock, Bytes::copy_from_slice(raw), PutMode::Overwrite).await.map(drop)
    }

    async fn read_raw(&self, lock: &LockName) -> Result<Option<Bytes>> {
        Ok(self.fetch(lock).await?.map(|(raw, _)| raw))
    }

    async fn delete_raw(&self, lock: &LockName) -> Result<()> {
        match self.inner.store.delete(&self.path(lock)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(lock, e)),
        }
    }
}

/// Decodes a SAS value's `%XX` escapes (object_store encodes the pairs again).
fn percent_decode(value: &str) -> String {
    lock_core::url::percent_decode(value, "SAS").unwrap_or_else(|_| value.to_string())
}
