//! `highlander conformance --store URL`: the shared suite against a running store,
//! with a progress line per check and the semantics table at the end.

use crate::duration;
use async_trait::async_trait;
use highlander::{LockName, SharedStore, StoreUrl, create_if_missing, open_parsed, open_raw_parsed};
use lock_conformance::{CHECKS, StoreHarness, Timing, report};
use std::{io::Write as _, process::ExitCode, time::Duration};

#[derive(clap::Args)]
pub(crate) struct Args {
    /// The store URL (postgres://, etcd://, dynamodb://, s3://, gist://, memory://).
    /// The suite writes locks named `conformance-…` there.
    #[arg(long)]
    store: String,
    /// Run only this check (repeatable; default: all).
    #[arg(long = "check", value_name = "NAME")]
    checks: Vec<String>,
    /// Lease duration for the elector checks (slow stores need longer).
    #[arg(long, default_value = "2s", value_parser = duration)]
    lease: Duration,
    /// Renew deadline for the elector checks.
    #[arg(long = "renew-deadline", default_value = "1500ms", value_parser = duration)]
    renew_deadline: Duration,
    /// Retry period for the elector checks.
    #[arg(long = "retry-period", default_value = "300ms", value_parser = duration)]
    retry_period: Duration,
    /// Create the store's table or bucket if it is missing (Postgres, DynamoDB, S3).
    #[arg(long)]
    create: bool,
    /// Print the report as JSON instead of the Markdown table.
    #[arg(long)]
    json: bool,
}

/// Any store a URL names, as the suite sees it.
struct UrlHarness {
    url: StoreUrl,
    timing: Timing,
}

#[async_trait]
impl StoreHarness for UrlHarness {
    async fn connect(&self) -> highlander::Result<SharedStore> {
        open_parsed(&self.url).await
    }
    async fn put_raw(&self, lock: &LockName, raw: &[u8]) -> highlander::Result<()> {
        open_raw_parsed(&self.url).await?.write_raw(lock, raw).await
    }
    async fn raw(&self, lock: &LockName) -> highlander::Result<Option<Vec<u8>>> {
        Ok(open_raw_parsed(&self.url).await?.read_raw(lock).await?.map(|b| b.to_vec()))
    }
    fn timing(&self) -> Timing {
        self.timing
    }
}

pub(crate) async fn conformance(args: Args) -> Result<ExitCode, String> {
    let url = StoreUrl::parse(&args.store).map_err(|e| e.to_string())?;
    if let Some(unknown) = args.checks.iter().find(|c| !CHECKS.iter().any(|k| k.name == c.as_str())) {
        let names: Vec<&str> = CHECKS.iter().map(|c| c.name).collect();
        return Err(format!("no conformance check is called {unknown:?}; the checks are: {}", names.join(", ")));
    }
    if args.create {
        create_if_missing(&url).await.map_err(|e| e.to_string())?;
    }
    let timing = Timing { lease: args.lease, renew_deadline: args.renew_deadline, retry_period: args.retry_period };
    let harness = UrlHarness { url, timing };
    // Fail in one line if the store cannot be reached at all.
    let store = harness.connect().await.map_err(|e| e.to_string())?;
    let probe = LockName::new("conformance-probe").map_err(|e| e.to_string())?;
    store.get(&probe).await.map_err(|e| e.to_string())?;
    let backend = args.store.split("://").next().unwrap_or("store").to_string();
    let total = if args.checks.is_empty() { CHECKS.len() } else { args.checks.len() };
    eprintln!("conformance of {store}: {total} checks, then latency and race measurements");
    let mut done = 0;
    let report = report::run_selected(
        &backend,
        &harness,
        |c| args.checks.is_empty() || args.checks.iter().any(|n| n == c.name),
        |_, outcome| {
            done += 1;
            let verdict = if outcome.passed { "pass" } else { "FAIL" };
            eprintln!("[{done:>2}/{total}] {verdict}  {} ({:.1} s)", outcome.name, outcome.seconds);
            if let Some(why) = &outcome.failure {
                eprintln!("        {why}");
            }
            let _ = std::io::stderr().flush();
        },
    )
    .await;
    let passed = report.checks.iter().filter(|c| c.passed).count();
    let all = report.all_passed();
    let reports = [report];
    if args.json {
        println!("{}", report::json(&reports).map_err(|e| format!("cannot encode the report: {e}"))?);
    } else {
        println!("{}", report::markdown(&reports));
    }
    eprintln!("{passed} of {total} checks passed");
    Ok(if all { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
