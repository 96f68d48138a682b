//! Highlander leases in S3: one object per lock, conditional writes on its ETag.
//!
//! ```no_run
//! use lock_core::{LeaderElector, LockName};
//! use lock_s3::S3Store;
//!
//! # async fn demo() -> Result<(), lock_core::Error> {
//! // Credentials and region from the standard AWS chain (env, profile, IRSA, instance metadata).
//! let store = S3Store::builder("my-bucket").prefix("highlander/leases/").connect().await?;
//! let elector = LeaderElector::builder(store, LockName::new("nightly-billing")?, "eu-west-1/pod-7").build()?;
//! # let _ = elector;
//! # Ok(())
//! # }
//! ```
//!
//! `create` is a `PutObject` with `If-None-Match: *`; `update` a `PutObject` with
//! `If-Match: <etag>`; `get` returns the ETag as the version. See the README for
//! which S3-compatible stores honour conditional writes, and the IAM policy.

mod errors;

/// The SDK this store uses, for objects of your own.
pub use aws_sdk_s3;

use async_trait::async_trait;
use aws_sdk_s3::{Client, primitives::ByteStream};
use bytes::Bytes;
use lock_aws::{AwsConfig, SendWithin};
use lock_core::{
    Backend, Capabilities, Error, LeaderElectionRecord, LeaseStore, LockName, Observed, OpenOptions, RawAccess, Result, StoreUrl, Version,
    encode_record,
};
use std::{fmt, sync::Arc};

pub use errors::{S3Outcome, classify};

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "highlander/leases/";
/// Records are small; refuse anything absurd before uploading it.
const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Builds an [`S3Store`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until .connect()"]
pub struct S3StoreBuilder {
    bucket: String,
    prefix: String,
    path_style: bool,
    aws: AwsConfig,
}

impl S3StoreBuilder {
    /// From Highlander's URL: `s3://BUCKET/PREFIX?region=…&endpoint=…&path_style=true&max_in_flight=16`;
    /// credentials from the AWS chain. Anything else is refused by name.
    pub fn from_url(url: &StoreUrl) -> Result<Self> {
        if url.scheme() != "s3" {
            return Err(Error::Config(format!("not an s3:// URL: {}://", url.scheme())));
        }
        url.no_userinfo("AWS credentials come from the environment or the AWS chain")?;
        let mut b = S3Store::builder(url.single_host("bucket")?);
        if !url.path().is_empty() {
            b = b.prefix(url.path());
        }
        let mut p = url.params();
        b.aws.take_params(&mut p, &b.subject())?;
        b.path_style = p.flag("path_style")?;
        p.finish(&["region", "endpoint", "max_in_flight", "path_style"])?;
        Ok(b)
    }

    lock_aws::builder_methods!();

    /// `s3 bucket BUCKET`, for messages.
    fn subject(&self) -> String {
        format!("s3 bucket {}", self.bucket)
    }

    /// Object keys are `prefix + lock name` (default `highlander/leases/`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Path-style addressing (`endpoint/bucket/key`), which most S3-compatible stores need.
    pub fn path_style(mut self, yes: bool) -> Self {
        self.path_style = yes;
        self
    }

    /// Loads the AWS configuration (credentials, region) and builds the store.
    pub async fn connect(self) -> Result<S3Store> {
        let bucket_ok = (3..=63).contains(&self.bucket.len())
            && self.bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || ".-".contains(c));
        if !bucket_ok {
            return Err(Error::Config(format!(
                "S3 bucket name {} must be 3-63 characters of a-z, 0-9, '.', '-'",
                lock_core::Escaped(&self.bucket)
            )));
        }
        if self.prefix.len() + lock_core::name::MAX_LOCK_NAME_LEN > 1024 || self.prefix.chars().any(char::is_control) {
            return Err(Error::Config(format!(
                "S3 key prefix {} is too long for 1024-byte keys or holds a control character",
                lock_core::Escaped(&self.prefix)
            )));
        }
        let shared = self.aws.load(&self.subject()).await?;
        let config = aws_sdk_s3::config::Builder::from(&shared).force_path_style(self.path_style).build();
        Ok(self.with_client(Client::from_conf(config)))
    }

    /// Builds the store on a client you configured yourself.
    pub fn with_client(self, client: Client) -> S3Store {
        let description = format!("s3://{}/{}{}", self.bucket, self.prefix, self.aws.describe());
        S3Store {
            inner: Arc::new(Inner { client, in_flight: self.aws.in_flight(), bucket: self.bucket, prefix: self.prefix, description }),
        }
    }
}

/// The S3 backend: `s3://` URLs.
#[derive(Debug, Clone, Copy, Default)]
pub struct S3Backend;

/// The S3 backend, for a front end's table of backends.
pub static BACKEND: S3Backend = S3Backend;

#[async_trait]
impl Backend for S3Backend {
    fn schemes(&self) -> &'static [&'static str] {
        &["s3"]
    }

    fn grammar(&self) -> &'static str {
        "s3://BUCKET/PREFIX?region=…&endpoint=…&path_style=true&max_in_flight=16 (the AWS credential chain)"
    }

    fn address(&self) -> lock_core::backend::Address {
        lock_core::backend::Address::Param { name: "endpoint", bare_port: None }
    }

    fn secret_env(&self) -> &'static [&'static str] {
        lock_aws::SECRET_ENV
    }

    async fn open(&self, url: &StoreUrl, options: &OpenOptions) -> Result<Arc<dyn RawAccess>> {
        Ok(Arc::new(S3StoreBuilder::from_url(url)?.options(options).connect().await?))
    }

    async fn create(&self, url: &StoreUrl, options: &OpenOptions) -> Result<()> {
        S3StoreBuilder::from_url(url)?.options(options).connect().await?.ensure_bucket().await
    }
}

struct Inner {
    client: Client,
    in_flight: lock_aws::InFlight,
    bucket: String,
    prefix: String,
    description: String,
}

/// A [`LeaseStore`] on S3 objects. Clones share one client.
#[derive(Clone)]
pub struct S3Store {
    inner: Arc<Inner>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store").field("bucket", &self.inner.bucket).field("prefix", &self.inner.prefix).finish_non_exhaustive()
    }
}

impl fmt::Display for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.description)
    }
}

impl S3Store {
    /// Starts building a store on `bucket`.
    pub fn builder(bucket: impl Into<String>) -> S3StoreBuilder {
        S3StoreBuilder { bucket: bucket.into(), prefix: DEFAULT_PREFIX.into(), path_style: false, aws: AwsConfig::default() }
    }

    /// The SDK client, for objects of your own (fencing by token: `docs/fencing.md`).
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The bucket.
    #[must_use]
    pub fn bucket(&self) -> &str {
        &self.inner.bucket
    }

    /// Creates the bucket if it is missing. For development and emulators.
    pub async fn ensure_bucket(&self) -> Result<()> {
        match self.inner.client.create_bucket().bucket(&self.inner.bucket).send().within(&self.inner.in_flight).await {
            Ok(_) => Ok(()),
            Err(e) => match errors::code(&e).as_deref() {
                Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists") => Ok(()),
                _ => Err(errors::map(self, None, errors::Operation::Other, e)),
            },
        }
    }

    fn key(&self, lock: &LockName) -> String {
        format!("{}{}", self.inner.prefix, lock.as_str())
    }

    /// PutObject with `If-None-Match: *` (create) or `If-Match: <etag>` (update); returns the new ETag.
    async fn put_conditional(
        &self,
        lock: &LockName,
        rec: &LeaderElectionRecord,
        op: errors::Operation,
        expected: Option<&Version>,
    ) -> Result<Version> {
        let raw = encode_record(lock, self, rec, Some(MAX_RECORD_BYTES))?;
        let request = self
            .inner
            .client
            .put_object()
            .bucket(&self.inner.bucket)
            .key(self.key(lock))
            .content_type("application/json")
            .body(ByteStream::from(raw));
        let request = match expected {
            Some(etag) => request.if_match(etag.as_str()),
            None => request.if_none_match("*"),
        };
        let out = request.send().within(&self.inner.in_flight).await.map_err(|e| errors::map(self, Some(lock), op, e))?;
        out.e_tag().map(Version::new).ok_or_else(|| Error::Backend { store: self.to_string(), source: "PutObject returned no ETag".into() })
    }

    async fn fetch(&self, lock: &LockName) -> Result<Option<(Bytes, String)>> {
        let out = match self
            .inner
            .client
            .get_object()
            .bucket(&self.inner.bucket)
            .key(self.key(lock))
            .send()
            .within(&self.inner.in_flight)
            .await
        {
            Ok(out) => out,
            Err(e) if errors::code(&e).as_deref() == Some("NoSuchKey") => return Ok(None),
            Err(e) => return Err(errors::map(self, Some(lock), errors::Operation::Get, e)),
        };
        let etag = out.e_tag().map(str::to_string);
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| Error::Unavailable { store: self.to_string(), source: e.to_string().into() })?
            .into_bytes();
        let etag = etag.ok_or_else(|| Error::Backend { store: self.to_string(), source: "GetObject returned no ETag".into() })?;
        Ok(Some((body, etag)))
    }
}

#[async_trait]
impl LeaseStore for S3Store {
    async fn get(&self, lock: &LockName) -> Result<Option<Observed>> {
        match self.fetch(lock).await? {
            Some((raw, etag)) => Observed::decode(lock, self, raw, Version::new(etag)).map(Some),
            None => Ok(None),
        }
    }

    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
        self.put_conditional(lock, rec, errors::Operation::Create, None).await
    }

    async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
        self.put_conditional(lock, rec, errors::Operation::Update, Some(expected)).await
    }

    fn capabilities(&self) -> Capabilities {
        // ETags are content hashes, not counters: not monotonic.
        Capabilities::atomic().with_max_record_bytes(Some(MAX_RECORD_BYTES))
    }
}

#[async_trait]
impl RawAccess for S3Store {
    async fn write_raw(&self, lock: &LockName, raw: &[u8]) -> Result<()> {
        self.inner
            .client
            .put_object()
            .bucket(&self.inner.bucket)
            .key(self.key(lock))
            .body(ByteStream::from(raw.to_vec()))
            .send()
            .within(&self.inner.in_flight)
            .await
            .map_err(|e| errors::map(self, Some(lock), errors::Operation::Other, e))?;
        Ok(())
    }

    async fn read_raw(&self, lock: &LockName) -> Result<Option<Bytes>> {
        Ok(self.fetch(lock).await?.map(|(raw, _)| raw))
    }

    async fn delete_raw(&self, lock: &LockName) -> Result<()> {
        self.inner
            .client
            .delete_object()
            .bucket(&self.inner.bucket)
            .key(self.key(lock))
            .send()
            .within(&self.inner.in_flight)
            .await
            .map_err(|e| errors::map(self, Some(lock), errors::Operation::Other, e))?;
        Ok(())
    }
}
