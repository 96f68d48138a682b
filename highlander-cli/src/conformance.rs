//! `highlander conformance --store URL`: the shared suite against a running store,
//! with a progress line per check and the semantics table at the end.

use highlander::{OpenOptions, StoreUrl, create_if_missing};
use lock_conformance::{CHECKS, Harness, StoreHarness, report};
use std::{io::Write as _, process::ExitCode};

#[derive(clap::Args)]
pub(crate) struct Args {
    // The store URL; its help lists the schemes compiled in.
    #[arg(long, env = "HIGHLANDER_STORE", hide_env_values = true, help = crate::store_help("The suite writes locks named `conformance-…` there. "))]
    store: String,
    /// Run only this check (repeatable; default: all).
    #[arg(long = "check", value_name = "NAME")]
    checks: Vec<String>,
    /// Durations for the elector checks (the suite's defaults: lease 2s, renew deadline
    /// 1500ms, retry period 300ms; slow stores need longer).
    #[command(flatten)]
    timing: crate::TimingArgs,
    /// Create what the store needs if it is missing (a table, a bucket or container, a directory, a prefix znode, a database file: each store's README says).
    #[arg(long)]
    create: bool,
    /// Print the report as JSON instead of the Markdown table.
    #[arg(long)]
    json: bool,
    /// How many checks run at once (each on locks of its own).
    #[arg(long, default_value_t = report::DEFAULT_JOBS, value_parser = clap::value_parser!(u8).range(1..=16))]
    jobs: u8,
}

pub(crate) async fn conformance(args: Args) -> Result<ExitCode, String> {
    let url = StoreUrl::parse(&args.store).map_err(|e| e.to_string())?;
    let backend = highlander::backend(&url).map_err(|e| e.to_string())?;
    if let Some(unknown) = args.checks.iter().find(|c| !CHECKS.iter().any(|k| k.name == c.as_str())) {
        let names: Vec<&str> = CHECKS.iter().map(|c| c.name).collect();
        return Err(format!("no conformance check is called {}; the checks are: {}", highlander::Escaped(unknown), names.join(", ")));
    }
    let timing = args.timing.with_defaults(lock_conformance::SUITE_TIMING)?;
    if args.create {
        create_if_missing(&args.store, &OpenOptions::new(timing)).await.map_err(|e| e.to_string())?;
    }
    // Each connect is a new client, as another process would have; the raw back door goes through one too.
    let harness = Harness::for_url(backend, &args.store, timing).await.map_err(|e| e.to_string())?;
    // Fail in one line if the store cannot be used at all.
    let store = harness.connect().await.map_err(|e| e.to_string())?;
    highlander::probe(&*store, &OpenOptions::new(timing)).await.map_err(|e| e.to_string())?;
    let backend = url.scheme().to_string();
    let total = if args.checks.is_empty() { CHECKS.len() } else { args.checks.len() };
    eprintln!("conformance of {store}: {total} checks, then latency and race measurements");
    let mut done = 0;
    let report = report::run_selected(
        &backend,
        &harness,
        |c| args.checks.is_empty() || args.checks.iter().any(|n| n == c.name),
        usize::from(args.jobs),
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
