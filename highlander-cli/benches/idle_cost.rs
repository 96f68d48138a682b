//! What an idle `highlander run` candidate costs, with client-go's default durations
//! (lease 15 s, renew deadline 10 s, retry period 2 s).
//!
//! Two `highlander run` processes share a lock on the GitHub gist API emulator (started
//! here, on 127.0.0.1): a leader running `sleep`, and a standby that polls. After a
//! warm-up, each process's resident memory (VmRSS, and its peak VmHWM) and CPU time
//! (utime + stime from /proc) are read at the start and end of a window, together with
//! the requests the store received. The budget is 20 MB resident and 1 % of a core;
//! the bench exits non-zero if a candidate is over it.
//!
//! `cargo bench -p highlander-cli --bench idle_cost` (IDLE_COST_SECONDS sets the window,
//! default 60). `IDLE_COST_BINARY=PATH` measures that `highlander` binary instead of the
//! one cargo built for the bench — CI measures the release binary it puts in the image,
//! and builds this harness (which only spawns and samples) as a debug build.

use lock_conformance::procfs;
use lock_core::{LeaseStore, LockName};
use lock_gist::{
    GistStore,
    emulator::{Emulator, EmulatorConfig},
};
use std::{
    process::{Child, Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

const TOKEN: &str = "emulator-token";
const RSS_BUDGET_MB: f64 = 20.0;
const CPU_BUDGET_PERCENT: f64 = 1.0;

struct Candidate(Child);

impl Drop for Candidate {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (CPU seconds used, resident MB, peak resident MB) of a process.
fn sample(pid: u32) -> (f64, f64, f64) {
    let stat = procfs::stat(pid).expect("the candidate is alive");
    let memory = procfs::memory(pid).expect("the candidate is alive");
    (stat.cpu_seconds(), memory.resident_mb, memory.peak_resident_mb)
}

fn main() -> ExitCode {
    let window = Duration::from_secs(std::env::var("IDLE_COST_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(60));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let emulator = runtime.block_on(Emulator::start(EmulatorConfig::default())).expect("emulator");
    let gist = emulator.control().create_gist("highlander", &[("README.md", "idle cost")]);
    let url = format!("gist://{gist}?api={}&allow_over_budget=true", emulator.url());
    let binary = std::env::var_os("IDLE_COST_BINARY")
        .filter(|p| !p.is_empty())
        .map_or_else(|| env!("CARGO_BIN_EXE_highlander").into(), std::path::PathBuf::from);
    assert!(binary.is_file(), "IDLE_COST_BINARY={} is not a file", binary.display());
    println!("measuring {}", binary.display());
    let start = |identity: &str| {
        Candidate(
            Command::new(&binary)
                .args(["run", "--store", &url, "--lock", "idle", "--identity", identity, "--", "sleep", "3600"])
                .env("GITHUB_TOKEN", TOKEN)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("highlander runs"),
        )
    };
    let leader = start("leader");
    let client = GistStore::builder(&gist).api(emulator.url()).token(TOKEN).allow_over_budget(true).build().expect("client");
    let lock = LockName::new("idle").expect("name");
    let until = Instant::now() + Duration::from_secs(30);
    while runtime.block_on(client.get(&lock)).ok().flatten().is_none_or(|r| r.record.holder_identity != "leader") {
        assert!(Instant::now() < until, "the leader never took the lock");
        std::thread::sleep(Duration::from_millis(100));
    }
    let standby = start("standby");
    std::thread::sleep(Duration::from_secs(5));

    let before = [sample(leader.0.id()), sample(standby.0.id())];
    let requests_before = emulator.control().counts();
    let started = Instant::now();
    std::thread::sleep(window);
    let seconds = started.elapsed().as_secs_f64();
    let after = [sample(leader.0.id()), sample(standby.0.id())];
    let requests = emulator.control().counts();
    let holder = runtime.block_on(client.get(&lock)).ok().flatten().map(|r| r.record.holder_identity);

    println!("idle cost of `highlander run` over {seconds:.0} s, default durations (lease 15 s, renew deadline 10 s, retry period 2 s):");
    let mut over = false;
    for (name, (b, a)) in ["leader (runs `sleep`)", "standby (polls)"].iter().zip(before.iter().zip(after.iter())) {
        let cpu = (a.0 - b.0) / seconds * 100.0;
        let within = a.1 <= RSS_BUDGET_MB && cpu <= CPU_BUDGET_PERCENT;
        over |= !within;
        println!(
            "  {name:<22} resident {:>5.1} MB (peak {:>5.1} MB)   CPU {cpu:.3} % of a core   {}",
            a.1,
            a.2,
            if within { "within budget" } else { "OVER BUDGET" }
        );
    }
    let hour = 3600.0 / seconds;
    let (gets, unchanged, patches) =
        (requests.get - requests_before.get, requests.not_modified - requests_before.not_modified, requests.patch - requests_before.patch);
    println!(
        "  store requests: {:.0} per hour for the pair ({gets} full GETs, {unchanged} GETs answered 304, {patches} PATCHes in {seconds:.0} s)",
        (gets + unchanged + patches) as f64 * hour,
    );
    println!("  budget: {RSS_BUDGET_MB} MB resident and {CPU_BUDGET_PERCENT} % of a core per candidate");
    drop(standby);
    drop(leader);
    runtime.block_on(emulator.stop());
    if holder.as_deref() != Some("leader") {
        println!("the leader lost the lock during the window (holder: {holder:?})");
        return ExitCode::FAILURE;
    }
    if over { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
