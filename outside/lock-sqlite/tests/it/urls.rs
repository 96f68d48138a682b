//! What the backend does with URLs and files it cannot use: one clear error, naming the
//! store, and no file created by a plain open.

use lock_core::{Backend, OpenOptions, StoreUrl};

async fn open(url: &str) -> String {
    let parsed = StoreUrl::parse(url).expect("parses");
    match lock_sqlite::BACKEND.open(&parsed, &OpenOptions::default()).await {
        Ok(store) => panic!("{url} opened {store}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn bad_urls_and_missing_files_say_what_to_do() {
    let dir = std::env::temp_dir().join(format!("lock-sqlite-urls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let missing = dir.join("missing.db");
    let error = open(&format!("sqlite://{}", missing.display())).await;
    assert!(error.contains("--create") && error.contains("missing.db"), "{error}");
    assert!(!missing.exists(), "a plain open created the file");

    let good = crate::fresh_database("urls").await;
    assert!(open(&format!("{good}?tabel=x")).await.contains("\"tabel\""));
    assert!(open(&format!("{good}?table=x;drop")).await.contains("not a plain identifier"));
    assert!(open(&format!("{good}?table=other")).await.contains("has no lease tables: create them first"));
    assert!(open("sqlite://db.example/leases.db").await.contains("by its absolute path"));
    assert!(!open("sqlite://u:hunter2@/x.db").await.contains("hunter2"));
    assert!(open(&format!("{good}?table=sqlite_master")).await.contains("SQLite's own"));
}

/// Problems that will not pass by themselves are configuration errors (the command stops
/// and says why), never "unavailable" (which the elector would retry for ever).
#[tokio::test]
async fn files_that_cannot_hold_a_database_are_configuration_errors() {
    let dir = std::env::temp_dir().join(format!("lock-sqlite-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let garbage = dir.join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 4096]).expect("a file that is not a database");
    let options = OpenOptions::default();
    for (url, says) in [
        (format!("sqlite://{}", garbage.display()), "not a SQLite database"),
        (format!("sqlite://{}", dir.display()), "is a directory"),
        (format!("sqlite://{}/missing/dir/x.db", dir.display()), "cannot be opened"),
    ] {
        for create in [false, true] {
            let parsed = StoreUrl::parse(&url).expect("url");
            let result = if create {
                lock_sqlite::BACKEND.create(&parsed, &options).await
            } else {
                lock_sqlite::BACKEND.open(&parsed, &options).await.map(drop)
            };
            match result {
                Err(lock_core::Error::Config(message)) => assert!(message.contains(says), "{url} (create: {create}): {message}"),
                other => panic!("{url} (create: {create}): expected a configuration error saying {says:?}, got {other:?}"),
            }
        }
    }
    // A keyword is a fine table name: statements quote it.
    let keyword = crate::fresh_database("keyword").await;
    let url = format!("{keyword}?table=order");
    lock_sqlite::BACKEND.create(&StoreUrl::parse(&url).expect("url"), &options).await.expect("creates the table \"order\"");
    let store = lock_sqlite::BACKEND.open(&StoreUrl::parse(&url).expect("url"), &options).await.expect("opens");
    assert!(store.get(&lock_core::LockName::new("x").expect("name")).await.expect("reads").is_none());
}

#[tokio::test]
async fn a_record_it_did_not_write_is_refused_and_kept() {
    let url = crate::fresh_database("foreign").await;
    let store = lock_sqlite::BACKEND.open(&StoreUrl::parse(&url).expect("url"), &OpenOptions::default()).await.expect("opens");
    let lock = lock_core::LockName::new("foreign").expect("name");
    store.write_raw(&lock, b"not a lease record").await.expect("plants it");
    let error = store.get(&lock).await.expect_err("does not decode").to_string();
    assert!(error.contains("foreign") && error.contains("sqlite database"), "{error}");
    let record = lock_core::LeaderElectionRecord::new("napoleon", 15, chrono::Utc::now());
    for guess in ["1", "2", "3"] {
        assert!(store.update(&lock, &lock_core::Version::new(guess), &record).await.is_err());
    }
    assert_eq!(store.read_raw(&lock).await.expect("reads").as_deref(), Some(&b"not a lease record"[..]));
}
