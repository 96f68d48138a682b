//! Fenced writes on Postgres: a deposed leader's transaction never commits, against a
//! real server (`LOCK_TEST_POSTGRES_URL` or a container).

use crate::support;
use lock_conformance::{fencing, fixtures};
use lock_core::{Fence, FencingTerm, SharedStore};
use lock_postgres::PostgresStore;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fenced_transactions_of_a_deposed_leader_never_commit() {
    let url = support::ready(fixtures::postgres_url().await.expect("a Postgres")).await;
    let store = PostgresStore::builder(&url).expect("url").build().expect("store");
    let key = lock_conformance::unique_lock("fenced-data").to_string();
    {
        let client = store.connection().await.expect("connection");
        client.batch_execute("CREATE TABLE IF NOT EXISTS fenced_data (k text PRIMARY KEY, v text NOT NULL)").await.expect("data table");
    }
    let write: fencing::Write = {
        let (store, key) = (store.clone(), key.clone());
        Arc::new(move |term: Option<FencingTerm>, value: String| {
            let (store, key) = (store.clone(), key.clone());
            Box::pin(async move {
                let mut client = store.connection().await?;
                let tx = match &term {
                    Some(t) => store.fenced_transaction(&mut client, t).await?,
                    None => client
                        .transaction()
                        .await
                        .map_err(|e| lock_core::Error::Backend { store: store.to_string(), source: Box::new(e) })?,
                };
                let sql = "INSERT INTO fenced_data (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v";
                let fail =
                    |e: lock_postgres::tokio_postgres::Error| lock_core::Error::Backend { store: store.to_string(), source: Box::new(e) };
                tx.execute(sql, &[&key, &value]).await.map_err(fail)?;
                tx.commit().await.map_err(fail)
            })
        })
    };
    let read: fencing::Read = {
        let (store, key) = (store.clone(), key.clone());
        Arc::new(move || {
            let (store, key) = (store.clone(), key.clone());
            Box::pin(async move {
                let client = store.connection().await?;
                let row = client
                    .query_opt("SELECT v FROM fenced_data WHERE k = $1", &[&key])
                    .await
                    .map_err(|e| lock_core::Error::Backend { store: store.to_string(), source: Box::new(e) })?;
                Ok(row.map(|r| r.get::<_, String>(0)))
            })
        })
    };
    let connect = || {
        let url = url.clone();
        async move { Ok(Arc::new(PostgresStore::builder(&url)?.build()?) as SharedStore) }
    };
    match fencing::deposed_leaders_fenced_writes_never_commit(connect, write, read).await {
        Ok(report) => println!("postgres fenced writes: {report:?}"),
        Err(f) => panic!("{f}"),
    }
}

#[tokio::test]
async fn a_fenced_transaction_of_a_term_that_never_was_is_refused_before_any_write() {
    let url = support::ready(fixtures::postgres_url().await.expect("a Postgres")).await;
    let store = PostgresStore::builder(&url).expect("url").build().expect("store");
    let term =
        FencingTerm { lock: lock_conformance::unique_lock("fence-nothing"), holder: "ghost".into(), token: lock_core::FencingToken(1) };
    let mut client = store.connection().await.expect("connection");
    let err = store.fenced_transaction(&mut client, &term).await.map(drop).expect_err("no record");
    assert!(err.is_fenced() && err.to_string().contains("no record"), "{err}");
    assert_eq!(term.term().expect("a plain term needs no local check"), term);
}
