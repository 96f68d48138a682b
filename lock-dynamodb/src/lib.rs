//! Highlander leases in DynamoDB: one item per lock, conditional writes on a version number.
//!
//! ```no_run
//! use lock_core::{LeaderElector, LockName};
//! use lock_dynamodb::DynamoDbStore;
//!
//! # async fn demo() -> Result<(), lock_core::Error> {
//! // Credentials and region from the standard AWS chain (env, profile, IRSA, instance metadata).
//! let store = DynamoDbStore::builder("highlander-leases").connect().await?;
//! let elector = LeaderElector::builder(store, LockName::new("nightly-billing")?, "eu-west-1/pod-7").build()?;
//! # let _ = elector;
//! # Ok(())
//! # }
//! ```
//!
//! `get` is a strongly consistent `GetItem`; `create` a `PutItem` conditioned on
//! `attribute_not_exists`; `update` a `PutItem` conditioned on the version, which
//! returns the old item on failure so one round trip tells a conflict from an
//! absent lock. See the README for the table, the IAM policy and the semantics.

mod errors;

/// The SDK this store uses, for the items of fenced writes.
pub use aws_sdk_dynamodb;

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    Client,
    types::{
        AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, KeySchemaElement, KeyType, ReturnValuesOnConditionCheckFailure,
        ScalarAttributeType, TransactWriteItem,
    },
};
use bytes::Bytes;
use lock_aws::{AwsConfig, SendWithin};
use lock_core::{
    Backend, Capabilities, Error, LeaderElectionRecord, LeaseStore, LockName, Observed, OpenOptions, RawAccess, Result, StoreUrl, Version,
    encode_record,
};
use std::{collections::HashMap, fmt, sync::Arc, time::Duration};

/// The default partition-key attribute.
pub const DEFAULT_KEY_ATTRIBUTE: &str = "lock_name";
/// The attribute holding the record's JSON.
pub const RECORD_ATTRIBUTE: &str = "record";
/// The attribute holding the version number.
pub const VERSION_ATTRIBUTE: &str = "version";
/// The attribute holding the record's holder, for fenced writes' `ConditionCheck`.
pub const HOLDER_ATTRIBUTE: &str = "holder";
/// The attribute holding the record's fencing token, for fenced writes' `ConditionCheck`.
pub const TOKEN_ATTRIBUTE: &str = "fencing_token";
/// Marks a record written raw (a repair, a test), not by an elector: only an update that
/// names the version read from it (which `get` returns only if the record decodes)
/// may replace it — a whole new item, without the marker — and it carries no term for
/// fenced writes to accept.
pub const RAW_ATTRIBUTE: &str = "raw_write";
/// Ends the version of an item that carries [`RAW_ATTRIBUTE`].
const RAW_VERSION_SUFFIX: &str = "-raw";
/// DynamoDB's item size limit is 400 KB; records are far smaller.
const MAX_RECORD_BYTES: usize = 350 * 1024;

/// Builds a [`DynamoDbStore`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until .connect()"]
pub struct DynamoDbStoreBuilder {
    table: String,
    key_attribute: String,
    aws: AwsConfig,
}

impl DynamoDbStoreBuilder {
    /// From Highlander's URL: `dynamodb://TABLE?region=…&endpoint=…&key=…&max_in_flight=16`; credentials
    /// from the AWS chain. Anything else is refused by name.
    pub fn from_url(url: &StoreUrl) -> Result<Self> {
        if url.scheme() != "dynamodb" {
            return Err(Error::Config(format!("not a dynamodb:// URL: {}://", url.scheme())));
        }
        url.no_userinfo("AWS credentials come from the environment or the AWS chain")?;
        if !url.path().is_empty() {
            return Err(Error::Config("dynamodb:// URL names a table and nothing after it, as in dynamodb://TABLE?region=…".into()));
        }
        let mut b = DynamoDbStore::builder(url.single_host("table")?);
        let mut p = url.params();
        b.aws.take_params(&mut p, &b.subject())?;
        if let Some(key) = p.take("key")? {
            b = b.key_attribute(key);
        }
        p.finish(&["region", "endpoint", "max_in_flight", "key"])?;
        Ok(b)
    }

    lock_aws::builder_methods!();

    /// `dynamodb table TABLE`, for messages.
    fn subject(&self) -> String {
        format!("dynamodb table {}", self.table)
    }

    /// The partition-key attribute name (default `lock_name`).
    pub fn key_attribute(mut self, name: impl Into<String>) -> Self {
        self.key_attribute = name.into();
        self
    }

    fn validate(&self) -> Result<()> {
        let table_ok = (3..=255).contains(&self.table.len()) && self.table.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !table_ok {
            return Err(Error::Config(format!(
                "DynamoDB table name {} must be 3-255 characters of a-z, A-Z, 0-9, '_', '-', '.'",
                lock_core::Escaped(&self.table)
            )));
        }
        if self.key_attribute.is_empty()
            || self.key_attribute.len() > 255
            || self.key_attribute.chars().any(char::is_control)
            || [RECORD_ATTRIBUTE, VERSION_ATTRIBUTE, HOLDER_ATTRIBUTE, TOKEN_ATTRIBUTE].contains(&self.key_attribute.as_str())
        {
            return Err(Error::Config(format!(
                "DynamoDB key attribute {} must be 1-255 characters and not one the store writes ({RECORD_ATTRIBUTE:?}, {VERSION_ATTRIBUTE:?}, {HOLDER_ATTRIBUTE:?}, {TOKEN_ATTRIBUTE:?})",
                lock_core::Escaped(&self.key_attribute)
            )));
        }
        self.aws.check(&self.subject())
    }

    /// Loads the AWS configuration (credentials, region) and builds the store.
    pub async fn connect(self) -> Result<DynamoDbStore> {
        self.validate()?;
        let shared = self.aws.load(&self.subject()).await?;
        Ok(self.with_client(Client::new(&shared)))
    }

    /// Builds the store on a client you configured yourself.
    pub fn with_client(self, client: Client) -> DynamoDbStore {
        let description = format!("{}{}", self.subject(), self.aws.describe());
        DynamoDbStore {
            inner: Arc::new(Inner { client, in_flight: self.aws.in_flight(), table: self.table, key: self.key_attribute, description }),
        }
    }
}

/// The DynamoDB backend: `dynamodb://` URLs.
#[derive(Debug, Clone, Copy, Default)]
pub struct DynamoDbBackend;

/// The DynamoDB backend, for a front end's table of backends.
pub static BACKEND: DynamoDbBackend = DynamoDbBackend;

#[async_trait]
impl Backend for DynamoDbBackend {
    fn schemes(&self) -> &'static [&'static str] {
        &["dynamodb"]
    }

    fn grammar(&self) -> &'static str {
        "dynamodb://TABLE?region=…&endpoint=…&key=…&max_in_flight=16 (the AWS credential chain)"
    }

    fn address(&self) -> lock_core::backend::Address {
        lock_core::backend::Address::Param { name: "endpoint", bare_port: None }
    }

    fn secret_env(&self) -> &'static [&'static str] {
        lock_aws::SECRET_ENV
    }

    async fn open(&self, url: &StoreUrl, options: &OpenOptions) -> Result<Arc<dyn RawAccess>> {
        Ok(Arc::new(DynamoDbStoreBuilder::from_url(url)?.options(options).connect().await?))
    }

    async fn create(&self, url: &StoreUrl, options: &OpenOptions) -> Result<()> {
        DynamoDbStoreBuilder::from_url(url)?.options(options).connect().await?.ensure_table().await
    }
}

struct Inner {
    client: Client,
    in_flight: lock_aws::InFlight,
    table: String,
    key: String,
    description: String,
}

/// A [`LeaseStore`] on a DynamoDB table. Clones share one client.
#[derive(Clone)]
pub struct DynamoDbStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for DynamoDbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoDbStore").field("table", &self.inner.table).field("key_attribute", &self.inner.key).finish_non_exhaustive()
    }
}

impl fmt::Display for DynamoDbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.description)
    }
}

impl DynamoDbStore {
    /// Starts building a store on `table`.
    pub fn builder(table: impl Into<String>) -> DynamoDbStoreBuilder {
        DynamoDbStoreBuilder { table: table.into(), key_attribute: DEFAULT_KEY_ATTRIBUTE.into(), aws: AwsConfig::default() }
    }

    /// Creates the table (on-demand billing) if it is missing and waits until it is
    /// active. For development; in production create it with infrastructure code.
    pub async fn ensure_table(&self) -> Result<()> {
        let i = &self.inner;
        let created = i
            .client
            .create_table()
            .table_name(&i.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(&i.key)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(|e| self.config(e))?,
            )
            .key_schema(KeySchemaElement::builder().attribute_name(&i.key).key_type(KeyType::Hash).build().map_err(|e| self.config(e))?)
            .send()
            .within(&i.in_flight)
            .await;
        if let Err(e) = created {
            match errors::classify(&e) {
                errors::Class::InUse => {}
                _ => return Err(errors::map(self, None, e)),
            }
        }
        for _ in 0..120 {
            let described =
                i.client.describe_table().table_name(&i.table).send().within(&i.in_flight).await.map_err(|e| errors::map(self, None, e))?;
            if described.table().and_then(|t| t.table_status()).is_some_and(|s| s.as_str() == "ACTIVE") {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(Error::Unavailable { store: self.to_string(), source: "the table did not become ACTIVE within 60 s".into() })
    }

    /// The SDK client, for writes of your own (e.g. fenced transactions on the same table).
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The table.
    #[must_use]
    pub fn table(&self) -> &str {
        &self.inner.table
    }

    /// Writes `items` (your puts, updates, deletes and condition checks, on any tables of
    /// this account and region) in one `TransactWriteItems` whose first item is a
    /// `ConditionCheck` on the lock's item: all of it commits only while the lock's
    /// record names `fence`'s term, or none of it. A [`Leadership`](lock_core::Leadership)
    /// is first checked locally against its deadline, with no round trip. The check
    /// compares the holder and fencing-token attributes the store writes beside every
    /// record, so renewals never make it fail. A failed condition of your own items
    /// comes back as [`Error::Conflict`], naming which.
    pub async fn fenced_write(&self, fence: &impl lock_core::Fence, items: Vec<TransactWriteItem>) -> Result<()> {
        let term = fence.term()?;
        let lock = term.lock.clone();
        let check = ConditionCheck::builder()
            .table_name(&self.inner.table)
            .set_key(Some(self.key(&lock)))
            .condition_expression("#h = :h AND #t = :t")
            .expression_attribute_names("#h", HOLDER_ATTRIBUTE)
            .expression_attribute_names("#t", TOKEN_ATTRIBUTE)
            .expression_attribute_values(":h", AttributeValue::S(term.holder.clone()))
            .expression_attribute_values(":t", AttributeValue::N(term.token.to_string()))
            .build()
            .map_err(|e| self.config(e))?;
        let mut all = vec![TransactWriteItem::builder().condition_check(check).build()];
        all.extend(items);
        match self.inner.client.transact_write_items().set_transact_items(Some(all)).send().within(&self.inner.in_flight).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let reasons: Vec<Option<String>> = match e.as_service_error() {
                    Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) => {
                        c.cancellation_reasons().iter().map(|r| r.code().map(str::to_string)).collect()
                    }
                    _ => return Err(errors::map(self, Some(&lock), e)),
                };
                let failed = |r: &Option<String>| r.as_deref().is_some_and(|c| c != "None");
                if reasons.first().is_some_and(failed) {
                    let now = self.get(&lock).await.ok().flatten().map(|o| o.record);
                    return Err(term.moved(self, now.as_ref()));
                }
                let which: Vec<String> = reasons
                    .iter()
                    .enumerate()
                    .skip(1)
                    .filter(|(_, r)| failed(r))
                    .map(|(i, r)| format!("item {} ({})", i, r.as_deref().unwrap_or("?")))
                    .collect();
                if which.is_empty() {
                    Err(Error::Unavailable {
                        store: self.to_string(),
                        source: format!("the transaction was cancelled: {}", lock_aws::message(&e)).into(),
                    })
                } else {
                    // The term held; a condition of the caller's own items did not.
                    Err(Error::Backend {
                        store: self.to_string(),
                        source: format!("fenced write of lock {lock:?} cancelled: your {}", which.join(", ")).into(),
                    })
                }
            }
        }
    }

    fn config(&self, e: impl fmt::Display) -> Error {
        Error::Config(format!("{self}: {e}"))
    }

    fn key(&self, lock: &LockName) -> HashMap<String, AttributeValue> {
        HashMap::from([(self.inner.key.clone(), AttributeValue::S(lock.as_str().to_string()))])
    }

    /// Reads `(record bytes, version)` out of an item, reporting anything else as corrupt.
    fn decode_item(&self, lock: &LockName, item: &HashMap<String, AttributeValue>) -> Result<(Bytes, i64)> {
        let corrupt = |detail: String| Error::Corrupt { lock: lock.clone(), store: self.to_string(), detail };
        let record = match item.get(RECORD_ATTRIBUTE) {
            Some(AttributeValue::S(s)) => Bytes::from(s.clone()),
            Some(_) => return Err(corrupt(format!("attribute {RECORD_ATTRIBUTE:?} is not a string"))),
            None => return Err(corrupt(format!("attribute {RECORD_ATTRIBUTE:?} is missing"))),
        };
        let version = match item.get(VERSION_ATTRIBUTE) {
            Some(AttributeValue::N(n)) => {
                n.parse::<i64>().map_err(|_| corrupt(format!("attribute {VERSION_ATTRIBUTE:?} is {n:?}, not an integer")))?
            }
            Some(_) => return Err(corrupt(format!("attribute {VERSION_ATTRIBUTE:?} is not a number"))),
            None => return Err(corrupt(format!("attribute {VERSION_ATTRIBUTE:?} is missing"))),
        };
        Ok((record, version))
    }

    /// A strongly consistent read of the lock's item.
    async fn fetch_item(&self, lock: &LockName) -> Result<Option<HashMap<String, AttributeValue>>> {
        let out = self
            .inner
            .client
            .get_item()
            .table_name(&self.inner.table)
            .set_key(Some(self.key(lock)))
            .consistent_read(true)
            .send()
            .within(&self.inner.in_flight)
            .await
            .map_err(|e| errors::map(self, Some(lock), e))?;
        Ok(out.item)
    }

    async fn put(
        &self,
        lock: &LockName,
        rec: &LeaderElectionRecord,
        version: i64,
        condition: &str,
        expected: Option<i64>,
    ) -> Result<Version> {
        let raw = encode_record(lock, self, rec, Some(MAX_RECORD_BYTES))?;
        let text = std::str::from_utf8(&raw).map_err(|e| Error::Config(format!("lock {lock:?}: record is not UTF-8: {e}")))?;
        let mut item = self.key(lock);
        item.insert(RECORD_ATTRIBUTE.into(), AttributeValue::S(text.to_string()));
        item.insert(VERSION_ATTRIBUTE.into(), AttributeValue::N(version.to_string()));
        // The term, beside the record, for fenced writes to check.
        item.insert(HOLDER_ATTRIBUTE.into(), AttributeValue::S(rec.holder_identity.clone()));
        item.insert(TOKEN_ATTRIBUTE.into(), AttributeValue::N(rec.fencing_token.map_or(0, lock_core::FencingToken::get).to_string()));
        let mut request = self
            .inner
            .client
            .put_item()
            .table_name(&self.inner.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        request = if let Some(expected) = expected {
            request
                .expression_attribute_names("#v", VERSION_ATTRIBUTE)
                .expression_attribute_names("#raw", RAW_ATTRIBUTE)
                .expression_attribute_values(":expected", AttributeValue::N(expected.to_string()))
        } else {
            request.expression_attribute_names("#k", &self.inner.key)
        };
        match (request.send().within(&self.inner.in_flight).await, expected) {
            (Ok(_), _) => Ok(Version::new(version.to_string())),
            // A failed `attribute_not_exists` on create means the item is there.
            (Err(e), None) => Err(match errors::map(self, Some(lock), e) {
                Error::Conflict { lock, store } => Error::AlreadyExists { lock, store },
                other => other,
            }),
            (Err(e), Some(_)) => Err(errors::map(self, Some(lock), e)),
        }
    }
}

#[async_trait]
impl LeaseStore for DynamoDbStore {
    async fn get(&self, lock: &LockName) -> Result<Option<Observed>> {
        let Some(item) = self.fetch_item(lock).await? else { return Ok(None) };
        let (raw, version) = self.decode_item(lock, &item)?;
        // An item written behind the store's back has its own kind of version: only a
        // writer that read (and could decode) it may replace it.
        let version = if item.contains_key(RAW_ATTRIBUTE) { format!("{version}{RAW_VERSION_SUFFIX}") } else { version.to_string() };
        Observed::decode(lock, self, raw, Version::new(version)).map(Some)
    }

    async fn create(&self, lock: &LockName, rec: &LeaderElectionRecord) -> Result<Version> {
        self.put(lock, rec, 1, "attribute_not_exists(#k)", None).await
    }

    async fn update(&self, lock: &LockName, expected: &Version, rec: &LeaderElectionRecord) -> Result<Version> {
        // A version this store never issued cannot match. One read from an item written
        // behind the store's back matches only while that item is there; the write
        // replaces the whole item, marker included.
        let (number, condition) = match expected.as_str().strip_suffix(RAW_VERSION_SUFFIX) {
            Some(number) => (number, "#v = :expected AND attribute_exists(#raw)"),
            None => (expected.as_str(), "#v = :expected AND attribute_not_exists(#raw)"),
        };
        let Ok(expected) = number.parse::<i64>() else {
            return Err(Error::Conflict { lock: lock.clone(), store: self.to_string() });
        };
        let Some(next) = expected.checked_add(1) else {
            return Err(Error::Corrupt { lock: lock.clone(), store: self.to_string(), detail: format!("version {expected} cannot grow") });
        };
        self.put(lock, rec, next, condition, Some(expected)).await
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::atomic()
            .with_monotonic_versions(true)
            .with_fenced_writes("`fenced_write` (`ConditionCheck`)")
            .with_max_record_bytes(Some(MAX_RECORD_BYTES))
    }
}

#[async_trait]
impl RawAccess for DynamoDbStore {
    async fn write_raw(&self, lock: &LockName, raw: &[u8]) -> Result<()> {
        let text = std::str::from_utf8(raw).map_err(|e| Error::Config(format!("lock {lock:?}: a DynamoDB record must be UTF-8: {e}")))?;
        self.inner
            .client
            .update_item()
            .table_name(&self.inner.table)
            .set_key(Some(self.key(lock)))
            .update_expression("SET #r = :r, #v = if_not_exists(#v, :zero) + :one, #raw = :one REMOVE #h, #t")
            .expression_attribute_names("#r", RECORD_ATTRIBUTE)
            .expression_attribute_names("#v", VERSION_ATTRIBUTE)
            .expression_attribute_names("#raw", RAW_ATTRIBUTE)
            .expression_attribute_names("#h", HOLDER_ATTRIBUTE)
            .expression_attribute_names("#t", TOKEN_ATTRIBUTE)
            .expression_attribute_values(":r", AttributeValue::S(text.to_string()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .send()
            .within(&self.inner.in_flight)
            .await
            .map_err(|e| errors::map(self, Some(lock), e))?;
        Ok(())
    }

    async fn read_raw(&self, lock: &LockName) -> Result<Option<Bytes>> {
        Ok(self.fetch_item(lock).await?.and_then(|item| match item.get(RECORD_ATTRIBUTE) {
            Some(AttributeValue::S(s)) => Some(Bytes::from(s.clone())),
            _ => None,
        }))
    }

    async fn delete_raw(&self, lock: &LockName) -> Result<()> {
        self.inner
            .client
            .delete_item()
            .table_name(&self.inner.table)
            .set_key(Some(self.key(lock)))
            .send()
            .within(&self.inner.in_flight)
            .await
            .map_err(|e| errors::map(self, Some(lock), e))?;
        Ok(())
    }
}
