//! The Postgres harness: the store under test plus a back door to its rows.

use async_trait::async_trait;
use lock_conformance::{StoreHarness, fixtures};
use lock_core::{LockName, SharedStore};
use lock_postgres::PostgresStore;
use std::{sync::Arc, time::Duration};

pub(crate) struct PgHarness {
    pub(crate) url: String,
    pub(crate) store: PostgresStore,
}

/// Connects to the fixture's Postgres (waiting for it to accept connections) and creates the table.
pub(crate) async fn harness() -> PgHarness {
    let url = fixtures::postgres_url().await.unwrap_or_else(|e| panic!("no Postgres to test against: {e}"));
    let store = PostgresStore::builder(&url).expect("fixture URL parses").build().expect("store builds");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match store.ensure_schema().await {
            Ok(()) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("Postgres at the fixture never became ready: {e}"),
        }
    }
    PgHarness { url, store }
}

impl PgHarness {
    async fn raw_client(&self) -> lock_core::Result<tokio_postgres::Client> {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .map_err(|e| lock_core::Error::Unavailable { store: "postgres back door".into(), source: Box::new(e) })?;
        tokio::spawn(conn);
        Ok(client)
    }
}

fn backdoor(e: tokio_postgres::Error) -> lock_core::Error {
    lock_core::Error::Backend { store: "postgres back door".into(), source: Box::new(e) }
}

#[async_trait]
impl StoreHarness for PgHarness {
    async fn connect(&self) -> lock_core::Result<SharedStore> {
        Ok(Arc::new(PostgresStore::builder(&self.url)?.build()?))
    }

    async fn put_raw(&self, lock: &LockName, raw: &[u8]) -> lock_core::Result<()> {
        let client = self.raw_client().await?;
        let text = String::from_utf8_lossy(raw).into_owned();
        client
            .execute(
                "INSERT INTO public.highlander_leases (name, record, version) VALUES ($1, $2, 1) \
                 ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record, version = highlander_leases.version + 1",
                &[&lock.as_str(), &text],
            )
            .await
            .map_err(backdoor)?;
        Ok(())
    }

    async fn raw(&self, lock: &LockName) -> lock_core::Result<Option<Vec<u8>>> {
        let client = self.raw_client().await?;
        let row =
            client.query_opt("SELECT record FROM public.highlander_leases WHERE name = $1", &[&lock.as_str()]).await.map_err(backdoor)?;
        Ok(row.map(|r| r.get::<_, String>(0).into_bytes()))
    }
}
