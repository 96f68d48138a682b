//! Highlander leases in Azure Storage, two ways:
//!
//! - **Blob** ([`BlobStore`], `azblob://`): a blob per lock; `create` is a Put Blob with
//!   `If-None-Match: *`, `update` one with `If-Match: <ETag>`, through `object_store`'s
//!   Azure client (the Apache Arrow project's, well kept, and the crate this workspace
//!   would use for any object store: the official `azure_storage_blob` 1.1 authorises
//!   with Entra ID only, and the emulator and most deployments use an account key or
//!   SAS).
//! - **Table** ([`TableStore`], `aztable://`): an entity per lock; `create` is Insert
//!   Entity, `update` Update Entity with `If-Match: <ETag>`. Cosmos DB for Table speaks the
//!   same protocol. No maintained Rust SDK covers Table storage, so this crate speaks its
//!   REST protocol itself (JSON, `SharedKeyLite` or SAS or a bearer token).
//!
//! Both take the account's key from `AZURE_STORAGE_KEY`, a SAS from
//! `AZURE_STORAGE_SAS_TOKEN`, or an Entra ID token from `AZURE_STORAGE_TOKEN` (first
//! found), never from the URL, and never print them. `endpoint=` points at Azurite or
//! any other endpoint (`http://127.0.0.1:10000/devstoreaccount1`, the account in the
//! path); without it, the account's public endpoint.

mod auth;
mod blob;
mod table;

pub use auth::Credential;
pub use blob::{BlobStore, DEFAULT_PREFIX};
pub use table::{DEFAULT_PARTITION, TableStore};

use async_trait::async_trait;
use lock_core::{Backend, Error, OpenOptions, RawAccess, Result, StoreUrl, backend::Address};
use std::sync::Arc;

/// The environment variables that hold an Azure Storage secret.
pub const SECRET_ENV: &[&str] = &["AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_TOKEN"];

/// The Blob backend: `azblob://` URLs.
pub static BLOB: AzureBackend = AzureBackend { table: false };

/// The Table backend: `aztable://` URLs.
pub static TABLE: AzureBackend = AzureBackend { table: true };

/// `azblob://ACCOUNT/CONTAINER[/PREFIX]?endpoint=…` (a blob per lock) or
/// `aztable://ACCOUNT/TABLE?endpoint=…&partition=…` (an entity per lock).
#[derive(Debug, Clone, Copy)]
pub struct AzureBackend {
    table: bool,
}

#[async_trait]
impl Backend for AzureBackend {
    fn schemes(&self) -> &'static [&'static str] {
        if self.table { &["aztable"] } else { &["azblob"] }
    }

    fn grammar(&self) -> &'static str {
        if self.table {
            "aztable://ACCOUNT/TABLE?endpoint=…&partition=highlander (AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_TOKEN)"
        } else {
            "azblob://ACCOUNT/CONTAINER[/PREFIX]?endpoint=… (AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_TOKEN)"
        }
    }

    fn address(&self) -> Address {
        Address::Param { name: "endpoint", bare_port: None }
    }

    fn secret_env(&self) -> &'static [&'static str] {
        SECRET_ENV
    }

    async fn open(&self, url: &StoreUrl, options: &OpenOptions) -> Result<Arc<dyn RawAccess>> {
        if self.table { Ok(Arc::new(TableStore::from_url(url, options)?)) } else { Ok(Arc::new(BlobStore::from_url(url, options)?)) }
    }

    async fn create(&self, url: &StoreUrl, options: &OpenOptions) -> Result<()> {
        if self.table {
            TableStore::from_url(url, options)?.ensure_table().await
        } else {
            BlobStore::from_url(url, options)?.ensure_container().await
        }
    }
}

/// How long an idle connection is kept for the next call. Below the 5 s after which
/// Node servers (Azurite) close an idle connection: a call sent on a connection the
/// server is closing fails with "error sending request", and calls are not retried
/// here (the elector retries on its own schedule).
pub(crate) const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(3);

/// Records are small; anything larger is refused before it is sent.
pub(crate) const MAX_RECORD_BYTES: usize = 64 * 1024;

/// The account a URL names and how to reach it.
#[derive(Debug, Clone)]
pub(crate) struct Account {
    pub(crate) name: String,
    /// The service endpoint, without a trailing `/` (the account in its path for Azurite).
    pub(crate) endpoint: String,
    pub(crate) credential: Credential,
}

impl Account {
    /// The account of `url` (its one host), its `endpoint=` (or the public one for
    /// `service`), and `credential` (else the one the environment holds).
    pub(crate) fn from_url(url: &StoreUrl, endpoint: Option<&str>, service: &str, credential: Option<Credential>) -> Result<Self> {
        let scheme = url.scheme();
        url.no_userinfo("the account key, SAS or token comes from AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_TOKEN")?;
        let name = url.single_host("account")?.to_string();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()) || name.len() > 24 {
            return Err(Error::Config(format!(
                "{scheme}:// account {name:?} is not a storage account name (3–24 lower-case letters and digits)"
            )));
        }
        let endpoint = match endpoint {
            Some(e) if e.split("://").nth(1).and_then(|rest| rest.split('/').next()).is_some_and(|host| host.contains('@')) => {
                return Err(Error::Config(format!(
                    "{scheme}:// endpoint= takes no user or password: credentials come from AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or AZURE_STORAGE_TOKEN"
                )));
            }
            Some(e) if e.starts_with("http://") || e.starts_with("https://") => e.trim_end_matches('/').to_string(),
            Some(_) => return Err(Error::Config(format!("{scheme}:// endpoint= is an http:// or https:// URL"))),
            None => format!("https://{name}.{service}.core.windows.net"),
        };
        let credential = match credential {
            Some(c) => c,
            None => Credential::from_env(scheme)?,
        };
        Ok(Self { name, endpoint, credential })
    }

    /// `scheme://account` and the endpoint's host, for errors and logs (never a secret).
    pub(crate) fn describe(&self, scheme: &str, what: &str) -> String {
        let host = self.endpoint.split("://").nth(1).and_then(|r| r.split('/').next()).unwrap_or_default();
        format!("{scheme}://{}/{what} (at {host})", self.name)
    }
}

/// The `x-ms-error-code` of a response, or its status.
pub(crate) fn error_code(response: &reqwest::Response) -> String {
    response.headers().get("x-ms-error-code").and_then(|v| v.to_str().ok()).map_or_else(|| response.status().to_string(), str::to_string)
}

/// A request's failure without its URL, which may carry a SAS.
pub(crate) fn without_url(e: reqwest::Error) -> String {
    crate::redact(&e.without_url().to_string())
}

/// Text with any `sig=` value (a SAS signature) cut out: the last line of defence for
/// messages built from a library's errors.
pub(crate) fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("sig=") {
        out.push_str(&rest[..i + 4]);
        out.push_str("<redacted>");
        rest = &rest[i + 4..];
        rest = &rest[rest.find(['&', ' ', '"', ')', '\n']).unwrap_or(rest.len())..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn sas_signatures_are_cut_out_of_messages() {
        let text = "error sending request for url (http://x/t?sv=2021&sig=abc%2Bdef&se=1) and sig=zzz";
        let redacted = super::redact(text);
        assert!(!redacted.contains("abc") && !redacted.contains("zzz"), "{redacted}");
        assert!(redacted.contains("sv=2021&sig=<redacted>&se=1"), "{redacted}");
    }
}
