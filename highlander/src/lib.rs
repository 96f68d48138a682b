//! *There can be only one.* Leader election across clusters, on any store with
//! compare-and-set: the facade over lock-core and every backend crate.
//!
//! ```
//! use highlander::{LeaderElector, LockName, open};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), highlander::Error> {
//! // postgres://…, etcd://…, dynamodb://…, s3://…, gist://…, memory://…
//! let store = open("memory://example").await?;
//! let elector = LeaderElector::builder(store, LockName::new("nightly-billing")?, "stalin").build()?;
//! # let _ = elector;
//! # Ok(())
//! # }
//! ```
//!
//! Backends are cargo features (`postgres`, `etcd`, `dynamodb`, `s3`, `gist`, all on
//! by default); a URL whose feature is off gets an error naming the feature.

mod url;

pub use lock_core::{self, *};
#[cfg(feature = "dynamodb")]
pub use lock_dynamodb;
#[cfg(feature = "etcd")]
pub use lock_etcd;
#[cfg(feature = "gist")]
pub use lock_gist;
#[cfg(feature = "postgres")]
pub use lock_postgres;
#[cfg(feature = "s3")]
pub use lock_s3;
pub use url::{SCHEMES, StoreUrl, parse_duration};

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, OnceLock, PoisonError},
};

/// The in-process memory stores opened by name (`memory://NAME`).
fn memory(name: &str) -> MemoryStore {
    static STORES: OnceLock<Mutex<HashMap<String, MemoryStore>>> = OnceLock::new();
    let mut stores = STORES.get_or_init(Mutex::default).lock().unwrap_or_else(PoisonError::into_inner);
    stores.entry(name.to_string()).or_default().clone()
}

fn feature_off(url: &StoreUrl) -> Error {
    let feature = url.feature().unwrap_or("?");
    Error::Config(format!("the {feature} backend is not compiled in: enable the `{feature}` feature of the highlander crate"))
}

/// Opens the store a URL names (see [`StoreUrl`] for the grammar). Credentials come
/// from the environment (`PGPASSWORD`, `ETCD_USERNAME` / `ETCD_PASSWORD`, the AWS
/// chain, `GITHUB_TOKEN`) or the URL's user-info, and are never printed.
pub async fn open(url: &str) -> Result<SharedStore> {
    open_parsed(&StoreUrl::parse(url)?).await
}

/// Opens an already parsed [`StoreUrl`].
pub async fn open_parsed(url: &StoreUrl) -> Result<SharedStore> {
    Ok(open_raw_parsed(url).await?)
}

/// Opens the store a URL names with its raw back door ([`RawAccess`]): what the
/// conformance suite needs to plant and inspect records behind the store's back.
pub async fn open_raw(url: &str) -> Result<Arc<dyn RawAccess>> {
    open_raw_parsed(&StoreUrl::parse(url)?).await
}

/// Opens an already parsed [`StoreUrl`] with its raw back door.
pub async fn open_raw_parsed(url: &StoreUrl) -> Result<Arc<dyn RawAccess>> {
    Ok(match url {
        StoreUrl::Memory { name } => Arc::new(memory(name)),
        #[cfg(feature = "postgres")]
        StoreUrl::Postgres { .. } => Arc::new(postgres(url)?),
        #[cfg(feature = "etcd")]
        StoreUrl::Etcd { .. } => Arc::new(etcd(url)?),
        #[cfg(feature = "dynamodb")]
        StoreUrl::DynamoDb { .. } => Arc::new(dynamodb(url).await?),
        #[cfg(feature = "s3")]
        StoreUrl::S3 { .. } => Arc::new(s3(url).await?),
        #[cfg(feature = "gist")]
        StoreUrl::Gist { .. } => Arc::new(gist(url)?),
        #[allow(unreachable_patterns, reason = "reachable only when a backend feature is off")]
        other => return Err(feature_off(other)),
    })
}

/// Creates what the store needs if it is missing: the Postgres table, the DynamoDB
/// table, the S3 bucket. etcd, gists and memory need nothing (a gist is named by its
/// id, so it must exist already).
pub async fn create_if_missing(url: &StoreUrl) -> Result<()> {
    match url {
        #[cfg(feature = "postgres")]
        StoreUrl::Postgres { .. } => postgres(url)?.ensure_schema().await,
        #[cfg(feature = "dynamodb")]
        StoreUrl::DynamoDb { .. } => dynamodb(url).await?.ensure_table().await,
        #[cfg(feature = "s3")]
        StoreUrl::S3 { .. } => s3(url).await?.ensure_bucket().await,
        #[allow(unreachable_patterns, reason = "which arms remain depends on the backend features")]
        _ => open_raw_parsed(url).await.map(drop),
    }
}

#[cfg(feature = "postgres")]
fn postgres(url: &StoreUrl) -> Result<lock_postgres::PostgresStore> {
    let StoreUrl::Postgres { connection, table, schema } = url else { return Err(feature_off(url)) };
    let mut b = lock_postgres::PostgresStore::builder(connection)?;
    if let Some(t) = table {
        b = b.table(t);
    }
    if let Some(s) = schema {
        b = b.schema(s);
    }
    b.build()
}

#[cfg(feature = "etcd")]
fn etcd(url: &StoreUrl) -> Result<lock_etcd::EtcdStore> {
    let StoreUrl::Etcd { endpoints, prefix, user, ca, client } = url else { return Err(feature_off(url)) };
    let mut b = lock_etcd::EtcdStore::builder(endpoints);
    if let Some(p) = prefix {
        b = b.prefix(p);
    }
    let env_user =
        std::env::var("ETCD_USERNAME").ok().filter(|u| !u.is_empty()).map(|u| (u, std::env::var("ETCD_PASSWORD").unwrap_or_default()));
    if let Some((u, p)) = user.clone().or(env_user) {
        b = b.user(u, p);
    }
    if endpoints.iter().any(|e| e.starts_with("https://")) {
        let read = |what: &str, path: &str| {
            std::fs::read(path)
                .map_err(|e| Error::Config(format!("etcd TLS for {}: cannot read the {what} {path:?}: {e}", endpoints.join(","))))
        };
        let mut tls = lock_etcd::TlsOptions::new();
        if let Some(ca) = ca {
            tls = tls.ca_certificate(lock_etcd::Certificate::from_pem(read("CA certificates", ca)?));
        }
        if let Some((cert, key)) = client {
            tls = tls.identity(lock_etcd::Identity::from_pem(read("client certificate", cert)?, read("client key", key)?));
        }
        b = b.tls(tls);
    }
    b.build()
}

#[cfg(feature = "dynamodb")]
async fn dynamodb(url: &StoreUrl) -> Result<lock_dynamodb::DynamoDbStore> {
    let StoreUrl::DynamoDb { table, region, endpoint, key_attribute } = url else { return Err(feature_off(url)) };
    let mut b = lock_dynamodb::DynamoDbStore::builder(table);
    if let Some(r) = region {
        b = b.region(r);
    }
    if let Some(e) = endpoint {
        b = b.endpoint(e);
    }
    if let Some(k) = key_attribute {
        b = b.key_attribute(k);
    }
    b.connect().await
}

#[cfg(feature = "s3")]
async fn s3(url: &StoreUrl) -> Result<lock_s3::S3Store> {
    let StoreUrl::S3 { bucket, prefix, region, endpoint, path_style } = url else { return Err(feature_off(url)) };
    let mut b = lock_s3::S3Store::builder(bucket).path_style(*path_style);
    if let Some(p) = prefix {
        b = b.prefix(p);
    }
    if let Some(r) = region {
        b = b.region(r);
    }
    if let Some(e) = endpoint {
        b = b.endpoint(e);
    }
    b.connect().await
}

#[cfg(feature = "gist")]
fn gist(url: &StoreUrl) -> Result<lock_gist::GistStore> {
    let StoreUrl::Gist { id, api, retry_period, allow_over_budget } = url else { return Err(feature_off(url)) };
    let mut b = lock_gist::GistStore::builder(id).allow_over_budget(*allow_over_budget);
    if let Some(a) = api {
        b = b.api(a);
    }
    if let Some(r) = retry_period {
        b = b.retry_period(*r);
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_urls_share_a_store_by_name() {
        let lock = LockName::new("shared").expect("valid");
        let a = open("memory://facade-test").await.expect("opens");
        let b = open("memory://facade-test").await.expect("opens");
        let c = open("memory://other").await.expect("opens");
        a.create(&lock, &LeaderElectionRecord::new("stalin", 15, chrono::Utc::now())).await.expect("create");
        assert!(b.get(&lock).await.expect("get").is_some(), "the same name is the same store");
        assert!(c.get(&lock).await.expect("get").is_none(), "another name is another store");
    }

    #[cfg(all(feature = "postgres", feature = "etcd", feature = "gist"))]
    #[tokio::test]
    async fn backend_urls_open_their_stores_without_connecting() {
        let pg = open("postgres://app@127.0.0.1:5432/db?table=locks").await.expect("postgres");
        assert!(pg.to_string().contains("\"public\".\"locks\""), "{pg}");
        let etcd = open("etcd://127.0.0.1:2379,127.0.0.1:22379/team").await.expect("etcd");
        assert!(etcd.to_string().contains("127.0.0.1:22379") && etcd.to_string().contains("team/"), "{etcd}");
        assert!(etcd.capabilities().is_atomic() && etcd.capabilities().monotonic_versions);
        // Client-go's 2 s retry period is over GitHub's write budget (or there is no token).
        let err = open("gist://abc123").await.map(drop).expect_err("over budget or no token");
        assert!(matches!(&err, Error::Config(m) if m.contains("secondary limit") || m.contains("GITHUB_TOKEN")), "{err}");
    }

    #[cfg(not(feature = "gist"))]
    #[tokio::test]
    async fn a_url_whose_feature_is_off_names_the_feature() {
        let err = open("gist://abc123").await.map(drop).expect_err("gist is off");
        assert!(err.to_string().contains("enable the `gist` feature"), "{err}");
    }
}
