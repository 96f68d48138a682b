//! Runs the whole suite against every backend and writes the semantics report.
//!
//! `cargo run -p lock-conformance --example semantics -- --out docs/semantics.md [--json FILE]`
//!
//! Stores come from the fixtures: `LOCK_TEST_POSTGRES_URL`, `LOCK_TEST_ETCD_ENDPOINTS`,
//! `LOCK_TEST_DYNAMODB_ENDPOINT`, `LOCK_TEST_S3_ENDPOINT`, else containers (set `LOCK_TEST_<STORE>_IMAGE` where no registry is reachable;
//! `eval "$(scripts/stores)"` does it).

use lock_conformance::{Harness, MemoryHarness, StoreHarness, fixtures, fixtures::AwsEndpoint, report};
use lock_core::{LeaseStore, LockName, MemoryStore};
use lock_dynamodb::DynamoDbStore;
use lock_etcd::EtcdStore;
use lock_gist::{
    GistStore,
    emulator::{Emulator, EmulatorConfig},
};
use lock_postgres::PostgresStore;
use lock_s3::S3Store;
use std::time::Duration;

async fn dynamodb(e: &AwsEndpoint) -> lock_core::Result<DynamoDbStore> {
    DynamoDbStore::builder("highlander-leases")
        .endpoint(&e.url)
        .region(&e.region)
        .static_credentials(&e.access_key_id, &e.secret_access_key)
        .connect()
        .await
}

async fn s3(e: &AwsEndpoint) -> lock_core::Result<S3Store> {
    S3Store::builder("highlander-leases")
        .endpoint(&e.url)
        .region(&e.region)
        .path_style(true)
        .static_credentials(&e.access_key_id, &e.secret_access_key)
        .connect()
        .await
}

/// Retries `f` until it succeeds (containers take a moment), for at most a minute.
async fn retry<F, Fut>(what: &str, f: F) -> Result<(), String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = lock_core::Result<()>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match f().await {
            Ok(()) => return Ok(()),
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(250)).await,
            Err(e) => return Err(format!("{what} not ready: {e}")),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();

    let pg_url = fixtures::postgres_url().await?;
    let etcd_endpoints = fixtures::etcd_endpoints().await?;
    let (ddb, s3e) = (fixtures::dynamodb_endpoint().await?, fixtures::s3_endpoint().await?);
    retry("postgres", || async { PostgresStore::builder(&pg_url)?.build()?.ensure_schema().await }).await?;
    retry("etcd", || async { EtcdStore::builder(&etcd_endpoints).build()?.get(&LockName::new("probe")?).await.map(drop) }).await?;
    retry("dynamodb", || async { dynamodb(&ddb).await?.ensure_table().await }).await?;
    retry("s3", || async { s3(&s3e).await?.ensure_bucket().await }).await?;

    let postgres = Harness::new(move || {
        let url = pg_url.clone();
        async move { PostgresStore::builder(&url)?.build() }
    });
    let etcd = Harness::new(move || {
        let endpoints = etcd_endpoints.clone();
        async move { EtcdStore::builder(&endpoints).build() }
    });
    let dynamodb = Harness::new(move || {
        let e = ddb.clone();
        async move { dynamodb(&e).await }
    });
    let s3 = Harness::new(move || {
        let e = s3e.clone();
        async move { s3(&e).await }
    });

    // The gist store runs against the in-process GitHub gist API emulator.
    let emulator = std::sync::Arc::new(Emulator::start(EmulatorConfig::default()).await?);
    let gist_id = emulator.control().create_gist("highlander", &[("README.md", "Highlander leases")]);
    let gist = Harness::new(move || {
        let (emulator, id) = (emulator.clone(), gist_id.clone());
        async move { GistStore::builder(id).api(emulator.url()).token("emulator-token").allow_over_budget(true).build() }
    });

    let backends: Vec<(&str, Box<dyn StoreHarness>)> = vec![
        ("memory", Box::new(MemoryHarness::new())),
        ("memory (last-writer-wins)", Box::new(MemoryHarness::with_store(MemoryStore::last_writer_wins()))),
        ("memory (notifications)", Box::new(MemoryHarness::with_store(MemoryStore::with_watch()))),
        ("postgres", Box::new(postgres)),
        ("etcd", Box::new(etcd)),
        ("dynamodb", Box::new(dynamodb)),
        ("s3", Box::new(s3)),
        ("gist (emulator)", Box::new(gist)),
    ];
    let mut reports = Vec::new();
    for (name, harness) in &backends {
        eprintln!("== {name}");
        reports.push(
            report::run(name, harness.as_ref(), |_, c| {
                eprintln!("  {:<52} {} ({:.1}s)", c.name, if c.passed { "pass" } else { "FAIL" }, c.seconds)
            })
            .await,
        );
    }
    let table = report::markdown(&reports);
    println!("{table}");
    if let Some(path) = arg("--out") {
        let sources: Vec<String> = ["POSTGRES", "ETCD", "DYNAMODB", "S3"]
            .iter()
            .map(|s| {
                let from = ["URL", "ENDPOINTS", "ENDPOINT"]
                    .iter()
                    .find_map(|k| fixtures::env(&format!("LOCK_TEST_{s}_{k}")).map(|_| "an external endpoint".to_string()));
                format!(
                    "{} ({})",
                    s.to_lowercase(),
                    from.unwrap_or_else(|| format!(
                        "image `{}`",
                        fixtures::env(&format!("LOCK_TEST_{s}_IMAGE")).unwrap_or_else(|| "official".into())
                    ))
                )
            })
            .collect();
        let doc = format!(
            "# Backend semantics\n\nGenerated by a real run of the conformance suite against every backend that exists:\n\n\
             ```sh\neval \"$(scripts/stores)\"   # official images, or locally built ones where no registry is reachable\n\
             cargo run -p lock-conformance --example semantics -- --out docs/semantics.md\n```\n\n\
             Elector checks use a 2 s lease, 1.5 s renew deadline and 300 ms retry period. Latencies are of {} sequential \
             calls from one client on this machine (containers on loopback); failover and handover are single measurements \
             against the bound each check enforces. \"Two winners\" counts races of two writers updating from the same \
             version in which both were told they won.\n\nStores in this run: {}.\n\n{table}",
            report::LATENCY_SAMPLES,
            sources.join(", ")
        );
        std::fs::write(&path, doc)?;
        eprintln!("wrote {path}");
    }
    if let Some(path) = arg("--json") {
        std::fs::write(&path, report::json(&reports)?)?;
        eprintln!("wrote {path}");
    }
    if reports.iter().all(report::BackendReport::all_passed) { Ok(()) } else { Err("some checks failed".into()) }
}
