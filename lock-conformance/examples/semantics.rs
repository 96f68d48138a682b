//! Runs the whole suite against every backend and writes the semantics report.
//!
//! `cargo run -p lock-conformance --example semantics -- --out docs/semantics.md [--json FILE]`
//!
//! Stores come from the fixtures: `LOCK_TEST_POSTGRES_URL`, `LOCK_TEST_ETCD_ENDPOINTS`,
//! `LOCK_TEST_DYNAMODB_ENDPOINT`, `LOCK_TEST_S3_ENDPOINT`, else containers (set `LOCK_TEST_<STORE>_IMAGE` where no registry is reachable;
//! `eval "$(scripts/stores)"` does it); `LOCK_TEST_SPANNER_EMULATOR`, `LOCK_TEST_REDIS_URL`,
//! `LOCK_TEST_ZOOKEEPER_URL`, else those servers started here as plain processes; a
//! temporary directory for the file store.

use lock_conformance::{MemoryHarness, StoreHarness, fixtures, report};
use lock_core::MemoryStore;
use lock_gist::emulator::{Access, Emulator, EmulatorConfig, Token};

/// The store-failover rows (from `FAILOVER_REPORT_DIR`, written by the backends'
/// `failover_of_the_store_*` tests) and what they mean for a lock across clusters.
fn failover_section() -> String {
    let entries = fixtures::env("FAILOVER_REPORT_DIR").map(|d| report::failover_entries(std::path::Path::new(&d))).unwrap_or_default();
    let table = if entries.is_empty() {
        "(no failover experiments in this run: set FAILOVER_REPORT_DIR and run the `failover_of_the_store_*` tests first)\n".to_string()
    } else {
        report::failover_markdown(&entries)
    };
    format!("{}{table}{}", include_str!("failover-intro.md"), include_str!("choosing.md"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();

    // Every store by URL, through its backend, as `highlander conformance` opens it.
    let postgres = fixtures::harness(&lock_postgres::BACKEND, fixtures::postgres_url().await).await;
    let advisory = fixtures::postgres_url()
        .await
        .map(|url| format!("{url}{}table=advisory_leases&advisory=true", if url.contains('?') { '&' } else { '?' }));
    let postgres_advisory = fixtures::harness(&lock_postgres::BACKEND, advisory).await;
    let etcd = fixtures::harness(&lock_etcd::BACKEND, fixtures::etcd_url().await).await;
    let dynamodb = fixtures::harness(&lock_dynamodb::BACKEND, fixtures::dynamodb_url().await).await;
    let s3 = fixtures::harness(&lock_s3::BACKEND, fixtures::s3_url().await).await;
    // The gist store runs against the in-process GitHub gist API emulator, with GITHUB_TOKEN's token.
    let token = fixtures::env("GITHUB_TOKEN").ok_or("set GITHUB_TOKEN (any value: the emulator accepts it)")?;
    let emulator = Emulator::start(EmulatorConfig { tokens: vec![Token::new(token, "highlander", Access::Write)], port: 0 }).await?;
    let gist_id = emulator.control().create_gist("highlander", &[("README.md", "Highlander leases")]);
    let gist = fixtures::harness(&lock_gist::BACKEND, Ok(format!("gist://{gist_id}?api={}&allow_over_budget=true", emulator.url()))).await;

    let spanner = fixtures::harness(&lock_spanner::BACKEND, fixtures::spanner_url().await).await;
    let redis = fixtures::harness(&lock_redis::BACKEND, fixtures::redis_url().await).await;
    let zookeeper = fixtures::harness(&lock_zookeeper::BACKEND, fixtures::zookeeper_url().await).await;
    let dir = std::env::temp_dir().join(format!("highlander-semantics-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file =
        lock_conformance::Harness::for_url(&lock_file::BACKEND, &format!("file://{}", dir.display()), lock_conformance::SUITE_TIMING)
            .await?;

    let backends: Vec<(&str, Box<dyn StoreHarness>)> = vec![
        ("memory", Box::new(MemoryHarness::new())),
        ("memory (last-writer-wins)", Box::new(MemoryHarness::with_store(MemoryStore::last_writer_wins()))),
        ("memory (notifications)", Box::new(MemoryHarness::with_store(MemoryStore::with_watch()))),
        ("postgres", Box::new(postgres)),
        ("postgres (advisory locks)", Box::new(postgres_advisory)),
        ("etcd", Box::new(etcd)),
        ("dynamodb", Box::new(dynamodb)),
        ("s3", Box::new(s3)),
        ("spanner (emulator)", Box::new(spanner)),
        ("redis", Box::new(redis)),
        ("zookeeper", Box::new(zookeeper)),
        ("file", Box::new(file)),
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
            .chain(
                ["spanner (the Cloud SDK's emulator)", "redis (redis-server 7)", "zookeeper (3.8)", "file (a local directory)"]
                    .map(String::from),
            )
            .collect();
        let doc = format!(
            "# Backend semantics\n\nGenerated by a real run of the conformance suite against every backend that exists:\n\n\
             ```sh\neval \"$(scripts/stores)\"   # official images, or locally built ones where no registry is reachable\n\
             cargo run -p lock-conformance --example semantics -- --out docs/semantics.md\n```\n\n\
             Elector checks use a 2 s lease, 1.5 s renew deadline and 300 ms retry period. Latencies are of {} sequential \
             calls from one client on this machine (containers and servers on loopback); failover and handover are single measurements \
             against the bound each check enforces. \"Two winners\" counts races of two writers updating from the same \
             version in which both were told they won.\n\nStores in this run: {}.\n\n{table}\n{}",
            report::LATENCY_SAMPLES,
            sources.join(", "),
            failover_section()
        );
        std::fs::write(&path, doc)?;
        eprintln!("wrote {path}");
    }
    if let Some(path) = arg("--json") {
        std::fs::write(&path, report::json(&reports)?)?;
        eprintln!("wrote {path}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    if reports.iter().all(report::BackendReport::all_passed) { Ok(()) } else { Err("some checks failed".into()) }
}
