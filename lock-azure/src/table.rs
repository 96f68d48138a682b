//! An entity per lock in an Azure Table (or Cosmos DB for Table): Insert Entity creates,
//! Update Entity with `If-Match: <ETag>` updates.

use crate::{
    Account,
    auth::{self, Service},
};
use async_trait::async_trait;
use base64::{Engine, engine::general_purpose::STANDARD};
use bytes::Bytes;
use lock_core::{
    Capabilities, Error, LeaderElectionRecord, LeaseStore, LockName, Observed, OpenOptions, RawAccess, Result, StoreUrl, Version,
    encode_record,
};
use reqwest::{Method, StatusCode};
use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

/// The partition every lock's entity is in when the URL names none.
pub const DEFAULT_PARTITION: &str = "highlander";

/// A string property holds at most 32 K UTF-16 characters: records stay well below.
const MAX_RECORD_BYTES: usize = 32 * 1024;

struct Inner {
    /// Whether the table has answered once: a table missing later was deleted.
    seen: AtomicBool,
    http: reqwest::Client,
    account: Account,
    table: String,
    partition: String,
    description: String,
}

/// A [`LeaseStore`] on Azure Table entities. Clones share one client.
#[derive(Clone)]
pub struct TableStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for TableStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TableStore")
            .field("store", &self.inner.description)
            .field("partition", &self.inner.partition)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for TableStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.description)
    }
}

/// What the service answered: its status, error code, ETag and body.
struct Answer {
    status: StatusCode,
    code: String,
    etag: Option<String>,
    body: Bytes,
}

impl TableStore {
    /// From `aztable://ACCOUNT/TABLE?endpoint=…&partition=…`, with the elector's call
    /// timeout as each request's. Anything else in the URL is refused by name.
    pub fn from_url(url: &StoreUrl, options: &OpenOptions) -> Result<Self> {
        Self::with_credential(url, options, None)
    }

    /// As [`from_url`](Self::from_url), with this credential rather than the environment's.
    pub fn with_credential(url: &StoreUrl, options: &OpenOptions, credential: Option<crate::Credential>) -> Result<Self> {
        let mut params = url.params();
        let endpoint = params.take("endpoint")?;
        let partition = params.take("partition")?.unwrap_or(DEFAULT_PARTITION).to_string();
        params.finish(&["endpoint", "partition"])?;
        let account = Account::from_url(url, endpoint, "table", credential)?;
        let table = url.path();
        let valid = (3..=63).contains(&table.len())
            && table.starts_with(|c: char| c.is_ascii_alphabetic())
            && table.chars().all(|c| c.is_ascii_alphanumeric());
        if !valid {
            return Err(Error::Config(format!(
                "aztable:// table {table:?} is not a table name (3–63 letters and digits, a letter first), as in aztable://ACCOUNT/TABLE"
            )));
        }
        if partition.is_empty() || partition.len() > 255 || !partition.chars().all(|c| c.is_ascii_alphanumeric() || "_-".contains(c)) {
            return Err(Error::Config(format!("aztable:// partition {partition:?} is not letters, digits, _ and -")));
        }
        let timeout = options.call_timeout;
        let description = account.describe("aztable", table);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .pool_idle_timeout(crate::POOL_IDLE)
            .build()
            .map_err(|e| Error::Config(format!("{description}: cannot build an HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner { seen: AtomicBool::new(false), http, account, table: table.to_string(), partition, description }),
        })
    }

    /// Creates the table if it is missing (Create Table).
    pub async fn ensure_table(&self) -> Result<()> {
        let url = format!("{}/Tables", self.inner.account.endpoint);
        let body = serde_json::json!({ "TableName": self.inner.table });
        let answer = self.send(None, Method::POST, &url, Some(body), None).await?;
        match answer.status.as_u16() {
            201 | 204 | 409 => Ok(()),
            _ => Err(self.unexpected(None, "Create Table", &answer)),
        }
    }

    /// The entity's URL. Row keys may not hold `/`, `\`, `#` or `?`: the lock's name as one
    /// path segment (`%XX` escapes) is the key, and its `%` is escaped again in the URL.
    fn entity_url(&self, lock: &LockName) -> String {
        let key = lock.to_path_segment().replace('%', "%25");
        format!("{}/{}(PartitionKey='{}',RowKey='{key}')", self.inner.account.endpoint, self.inner.table, self.inner.partition)
    }

    fn entity(&self, lock: &LockName, raw: &[u8]) -> serde_json::Value {
        let mut entity = serde_json::json!({ "PartitionKey": self.inner.partition, "RowKey": lock.to_path_segment() });
        // A record is JSON text; bytes that are not text (planted by a test or a stranger)
        // are kept as they are, as binary.
        match std::str::from_utf8(raw) {
            Ok(text) => entity["Record"] = text.into(),
            Err(_) => {
                entity["Record"] = STANDARD.encode(raw).into();
                entity["Record@odata.type"] = "Edm.Binary".into();
            }
        }
        entity
    }

    async fn send(
        &self,
        lock: Option<&LockName>,
        method: Method,
        url: &str,
        body: Option<serde_json::Value>,
        if_match: Option<&str>,
    ) -> Result<Answer> {
        let a = &self.inner.account;
        let content_type = if body.is_some() { "application/json" } else { "" };
        let mut request = auth::authorize(&self.inner.http, method, url, &a.name, &a.credential, Service::Table, content_type)?
            .header("Accept", "application/json;odata=minimalmetadata");
        if let Some(body) = body {
            request = request.header("Content-Type", content_type).header("Prefer", "return-no-content").body(body.to_string());
        }
        if let Some(etag) = if_match {
            request = request.header("If-Match", etag);
        }
        // The request's URL may carry a SAS: it never reaches an error.
        let response = request.send().await.map_err(|e| {
            let on = lock.map(|l| format!(" (lock {l:?})")).unwrap_or_default();
            Error::Unavailable { store: self.to_string(), source: format!("{}{on}", crate::without_url(e)).into() }
        })?;
        let (status, code) = (response.status(), crate::error_code(&response));
        let etag = response.headers().get("ETag").and_then(|v| v.to_str().ok()).map(str::to_string);
        let body =
            response.bytes().await.map_err(|e| Error::Unavailable { store: self.to_string(), source: crate::without_url(e).into() })?;
        let answer = Answer { status, code, etag, body };
        if answer.status.is_success() || matches!(answer.status.as_u16(), 404 | 409 | 412) && answer.code != "TableNotFound" {
            self.inner.seen.store(true, Ordering::Relaxed);
        }
        match answer.status.as_u16() {
            403 | 401 => Err(Error::Backend {
                store: self.to_string(),
                source: format!("the account refused the credential ({}): check AZURE_STORAGE_KEY / _SAS_TOKEN / _TOKEN", answer.code)
                    .into(),
            }),
            // Missing from the start, the URL is wrong; gone after it was used, someone
            // deleted it (or restored an older account): an outage the election waits out.
            404 if answer.code == "TableNotFound" && !self.inner.seen.load(Ordering::Relaxed) => {
                Err(Error::Config(format!("{self} has no table {:?}: create it with --create", self.inner.table)))
            }
            404 if answer.code == "TableNotFound" => Err(Error::Unavailable {
                store: self.to_string(),
                source: format!(
                    "the table {:?} is gone (deleted?): create it again (--create) for the election to go on",
                    self.inner.table
                )
                .into(),
            }),
            429 => Err(Error::RateLimited { store: self.to_string(), retry_after: None }),
            500..=599 => {
                Err(Error::Unavailable { store: self.to_string(), source: format!("the service answered {}", answer.code).into() })
            }
            _ => Ok(answer),
        }
    }

    fn unexpected(&self, lock: Option<&LockName>, what: &str, answer: &Answer) -> Error {
        let on = lock.map(|l| format!(" of lock {l:?}")).unwrap_or_default();
        Error::Backend { store: self.to_string(), source: format!("{what}{on} answered {} {}", answer.status.as_u16(), answer.code).into() }
    }

    fn version(&self, answer: &Answer, what: &str) -> Result<Version> {
        answer
            .etag
            .clone()
            .map(Version::new)
            .ok_or_else(|| Error::Backend { store: self.to_string(), source: format!("{what} returned no ETag").into() })
    }

    async fn fetch(&self, lock: &LockName) -> Result<Option<(Bytes, String)>> {
        let answer = self.send(Some(lock), Method::GET, &self.entity_url(lock), None, None).await?;
        match answer.status.as_u16() {
            200 => {}
            404 => return Ok(None),
            _ => return Err(self.unexpected(Some(lock), "Query Entity", &answer)),
        }
        let etag = self.version(&answer, "Query Entity")?.as_str().to_string();
        let entity: serde_json::Value = serde_json::from_slice(&answer.body).map_err(|e| Error::Corrupt {
            lock: lock.clone(),
            store: self.to_string(),
            detail: format!("the entity is not JSON: {e}"),
        })?;
        let raw = match (entity.get("Record").and_then(|r| r.as_str()), entity.get("Record@odata.type").and_then(|t| t.as_str())) {
            (Some(b64), Some("Edm.Binary")) => Bytes::from(STANDARD.decode(b64).map_err(|e| Error::Corrupt {
                lock: lock.clone(),
                store: self.to_string(),
                detail: format!("Record is not base64: {e}"),
            })?),
            (Some(text), _) => Bytes::from(text.to_string()),
            (None, _) => {
                return Err(Error::Corrupt {
                    lock: lock.clone(),
                    store: self.to_string(),
                    detail: "the entity has no Record property".into(),
                });
            }
        };
        Ok(Some((raw, etag)))
    }
}

#[async_trait]
impl LeaseStore for TableStore {
    async fn get(&self, lock: &LockName) -> Result<Option<Observed>> {
        match self.fetch(lock).await? {
            Some((raw, etag)) => Observed::decode(lock, self, raw, Version::new(etag)).map(Some),
            None => Ok(None),
        }
    }

    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
        let raw = encode_record(lock, self, rec, Some(MAX_RECORD_BYTES))?;
        let url = format!("{}/{}", self.inner.account.endpoint, self.inner.table);
        let answer = self.send(Some(lock), Method::POST, &url, Some(self.entity(lock, &raw)), None).await?;
        match answer.status.as_u16() {
            201 | 204 => self.version(&answer, "Insert Entity"),
            409 => Err(Error::AlreadyExists { lock: lock.clone(), store: self.to_string() }),
            _ => Err(self.unexpected(Some(lock), "Insert Entity", &answer)),
        }
    }

    async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
        let raw = encode_record(lock, self, rec, Some(MAX_RECORD_BYTES))?;
        let answer =
            self.send(Some(lock), Method::PUT, &self.entity_url(lock), Some(self.entity(lock, &raw)), Some(expected.as_str())).await?;
        match answer.status.as_u16() {
            204 => self.version(&answer, "Update Entity"),
            404 => Err(Error::NotFound { lock: lock.clone(), store: self.to_string() }),
            412 => Err(Error::Conflict { lock: lock.clone(), store: self.to_string() }),
            _ => Err(self.unexpected(Some(lock), "Update Entity", &answer)),
        }
    }

    fn capabilities(&self) -> Capabilities {
        // ETags are opaque timestamps, not counters the suite may rely on.
        Capabilities::atomic().with_max_record_bytes(Some(MAX_RECORD_BYTES))
    }
}

#[async_trait]
impl RawAccess for TableStore {
    async fn write_raw(&self, lock: &LockName, raw: &[u8]) -> Result<()> {
        // Insert Or Replace: a PUT with no If-Match.
        let answer = self.send(Some(lock), Method::PUT, &self.entity_url(lock), Some(self.entity(lock, raw)), None).await?;
        match answer.status.as_u16() {
            204 => Ok(()),
            _ => Err(self.unexpected(Some(lock), "Insert Or Replace Entity", &answer)),
        }
    }

    async fn read_raw(&self, lock: &LockName) -> Result<Option<Bytes>> {
        Ok(self.fetch(lock).await?.map(|(raw, _)| raw))
    }

    async fn delete_raw(&self, lock: &LockName) -> Result<()> {
        let answer = self.send(Some(lock), Method::DELETE, &self.entity_url(lock), None, Some("*")).await?;
        match answer.status.as_u16() {
            204 | 404 => Ok(()),
            _ => Err(self.unexpected(Some(lock), "Delete Entity", &answer)),
        }
    }
}
