//! URLs and credentials: every mistake is one clear error that names the store, and no
//! secret reaches an error, a log or `Debug`.

use lock_core::{Backend, LeaseStore, LockName, OpenOptions, StoreUrl};

async fn refused(backend: &dyn Backend, url: &str) -> String {
    match backend.open(&StoreUrl::parse(url).expect("parses"), &OpenOptions::default()).await {
        Ok(store) => panic!("{url} opened {store}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn bad_urls_are_refused_by_name() {
    let b = &lock_azure::BLOB;
    assert!(refused(b, "azblob://devstoreaccount1/Bad_Container").await.contains("is not a container name"));
    assert!(refused(b, "azblob://devstoreaccount1/leases?endpont=http://x").await.contains("\"endpont\""));
    assert!(refused(b, "azblob://devstoreaccount1/leases?endpoint=ftp://x").await.contains("http:// or https://"));
    assert!(refused(b, "azblob://Dev_Account/leases").await.contains("is not a storage account name"));
    let secret = refused(b, "azblob://user:hunter2@devstoreaccount1/leases").await;
    assert!(secret.contains("AZURE_STORAGE_KEY") && !secret.contains("hunter2"), "{secret}");
    let t = &lock_azure::TABLE;
    assert!(refused(t, "aztable://devstoreaccount1/1table").await.contains("is not a table name"));
    assert!(refused(t, "aztable://devstoreaccount1/leases?partition=a/b").await.contains("partition"));
    assert!(refused(t, "aztable://devstoreaccount1/leases?partition=").await.contains("partition"));
}

#[tokio::test]
async fn a_missing_table_or_a_wrong_key_says_what_to_do_and_shows_no_key() {
    let (_, table_url) = lock_conformance::fixtures::azure_urls().await.expect("azurite");
    let lock = LockName::new("urls").expect("name");
    let missing = table_url.replace("/conformance?", "/nosuchtable?");
    let store = lock_azure::TABLE.open(&StoreUrl::parse(&missing).expect("url"), &OpenOptions::default()).await.expect("opens lazily");
    let error = store.get(&lock).await.expect_err("no table").to_string();
    assert!(error.contains("create it with --create") && error.contains("aztable://devstoreaccount1/nosuchtable"), "{error}");
    // A wrong key: the service refuses it, and the error shows no key.
    let (blob_url, table_url) = lock_conformance::fixtures::azure_urls().await.expect("azurite");
    let wrong = lock_azure::Credential::AccountKey(b"not the account key".to_vec());
    assert!(!format!("{wrong:?}").contains("not the account key"));
    let options = OpenOptions::default();
    let table =
        lock_azure::TableStore::with_credential(&StoreUrl::parse(&table_url).expect("url"), &options, Some(wrong.clone())).expect("builds");
    let error = table.get(&lock).await.expect_err("a wrong key").to_string();
    assert!(error.contains("refused the credential") && !error.contains("not the account key"), "{error}");
    let blob = lock_azure::BlobStore::with_credential(&StoreUrl::parse(&blob_url).expect("url"), &options, Some(wrong)).expect("builds");
    let error = blob.get(&lock).await.expect_err("a wrong key").to_string();
    assert!(error.contains("refused the credential") && !error.contains("not the account key"), "{error}");
}

/// A SAS is part of every request's URL: a failed request's error must not carry it.
#[tokio::test]
async fn a_failed_request_shows_no_shared_access_signature() {
    let closed = lock_conformance::fixtures::free_loopback_port().expect("a port");
    let lock = LockName::new("sas").expect("name");
    let sas = lock_azure::Credential::Sas("sv=2021-12-02&ss=t&sig=TOPSECRETSIGNATURE".into());
    let options = OpenOptions::default();
    for url in [
        format!("aztable://devstoreaccount1/leases?endpoint=http://127.0.0.1:{closed}/devstoreaccount1"),
        format!("azblob://devstoreaccount1/leases?endpoint=http://127.0.0.1:{closed}/devstoreaccount1"),
    ] {
        let parsed = StoreUrl::parse(&url).expect("url");
        let error = if url.starts_with("aztable") {
            lock_azure::TableStore::with_credential(&parsed, &options, Some(sas.clone())).expect("builds").get(&lock).await
        } else {
            lock_azure::BlobStore::with_credential(&parsed, &options, Some(sas.clone())).expect("builds").get(&lock).await
        }
        .expect_err("nothing listens there")
        .to_string();
        assert!(!error.contains("TOPSECRET"), "{error}");
        assert!(error.contains("is unavailable"), "{error}");
    }
    let with_password = refused(&lock_azure::TABLE, "aztable://devstoreaccount1/leases?endpoint=http://u:hunter2@127.0.0.1:1/x").await;
    assert!(with_password.contains("takes no user or password") && !with_password.contains("hunter2"), "{with_password}");
}
