//! `highlander chaos` against a real Postgres (`LOCK_TEST_POSTGRES_URL` or a container):
//! every fault kind, no overlap; and the oracle catching a real overlap when the guard
//! is built to ignore its deadline.

use std::process::Command;

async fn postgres_url() -> String {
    let url =
        lock_conformance::fixtures::postgres_url().await.expect("a Postgres for the chaos tests (LOCK_TEST_POSTGRES_URL or a container)");
    lock_conformance::fixtures::ready(&lock_postgres::BACKEND, &url).await.expect("Postgres ready");
    url
}

fn chaos(url: &str, extra: &[&str], env: &[(&str, &str)]) -> (bool, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_highlander"))
        .args(["chaos", "--store", url, "--json", "--lease", "2s", "--renew-deadline", "1500ms", "--retry-period", "300ms"])
        .args(extra)
        .envs(env.iter().copied())
        .output()
        .expect("chaos runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("one JSON object ({e}):\n{}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    (out.status.success(), json, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_on_postgres_leaves_no_overlap_and_no_regression() {
    let url = postgres_url().await;
    let record = std::env::temp_dir().join(format!("highlander-chaos-record-{}", std::process::id()));
    let timeline = record.with_extension("svg");
    let (ok, json, stderr) = tokio::task::spawn_blocking({
        let (record, timeline) = (record.display().to_string(), timeline.display().to_string());
        move || chaos(&url, &["--rounds", "9", "--seed", "7", "--record", &record, "--timeline", &timeline], &[])
    })
    .await
    .expect("join");
    println!("{json}");
    assert!(ok, "{json}\n{stderr}");
    assert_eq!((json["overlaps"].as_u64(), json["token_regressions"].as_u64()), (Some(0), Some(0)), "{json}");
    assert_eq!(json["faults"]["record-loss"], 1, "every kind once in nine rounds: {json}");
    assert_eq!(json["faults"]["slow"], 1, "every kind once in nine rounds: {json}");
    assert_eq!(
        json["by_fault"]["slow"]["no_takeover"], 1,
        "a slow link (round trip a quarter of the renew deadline) keeps the term: {json}"
    );
    for kind in ["kill", "pause", "freeze", "partition", "outage", "release", "handover"] {
        assert_eq!(json["faults"][kind], 1, "every kind once in nine rounds: {json}");
        assert!(json["by_fault"][kind]["takeover_seconds"]["max"].as_f64().is_some(), "a new term after {kind}: {json}");
    }
    assert!(
        json["by_fault"]["release"]["takeover_seconds"]["max"].as_f64().is_some_and(|s| s < 1.0),
        "a release hands over at once: {json}"
    );
    assert!(
        json["by_fault"]["handover"]["takeover_seconds"]["max"].as_f64().is_some_and(|s| s < 2.0),
        "a hand-over moves the lock at the leader's next renewal: {json}"
    );
    let lines = std::fs::read_to_string(&record).expect("the record was written");
    assert!(lines.lines().all(|l| l.split_whitespace().count() == 5), "UNIX_SECONDS EVENT IDENTITY TOKEN PID");
    assert!(json["terms"].as_u64().is_some_and(|t| t >= 8), "{json}");
    let svg = std::fs::read_to_string(&timeline).expect("the timeline was written");
    assert!(svg.starts_with("<svg") && svg.contains("chaos-1") && !svg.contains("<script"), "{svg}");
    let _ = std::fs::remove_file(record);
    let _ = std::fs::remove_file(timeline);
}

/// The lock's record deleted behind the candidates' backs, the leader paused, cut off
/// or healthy: no two commands at once, and the next term's token is still larger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_loss_on_postgres_leaves_no_overlap_and_no_regression() {
    let url = postgres_url().await;
    let (ok, json, stderr) =
        tokio::task::spawn_blocking(move || chaos(&url, &["--rounds", "4", "--faults", "record-loss", "--seed", "11"], &[]))
            .await
            .expect("join");
    println!("{json}");
    assert!(ok, "{json}\n{stderr}");
    assert_eq!((json["overlaps"].as_u64(), json["token_regressions"].as_u64()), (Some(0), Some(0)), "{json}");
    assert_eq!(json["faults"]["record-loss"], 4, "{json}");
    let takeover = json["by_fault"]["record-loss"]["takeover_seconds"]["min"].as_f64();
    assert!(takeover.is_some_and(|s| s >= 2.0), "a lost record is waited out for a lease (2 s) before anyone leads: {json}");
}

/// The oracle is not decorative: with the guard's deadline disabled (a test-only
/// mutation), pausing the leader's highlander lets two commands run at once, and
/// chaos says so and fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_catches_the_overlap_of_a_guard_that_ignores_its_deadline() {
    let url = postgres_url().await;
    let (ok, json, _) = tokio::task::spawn_blocking(move || {
        chaos(&url, &["--rounds", "2", "--faults", "pause", "--seed", "3"], &[("HIGHLANDER_TEST_GUARD_IGNORES_DEADLINE", "1")])
    })
    .await
    .expect("join");
    println!("{json}");
    assert!(!ok, "chaos must fail on an overlap: {json}");
    assert!(json["overlaps"].as_u64().is_some_and(|n| n >= 1), "{json}");
    assert!(json["overlap_seconds"].as_f64().is_some_and(|s| s > 1.0), "{json}");
    assert_eq!(json["by_fault"]["pause"]["overlaps"], json["overlaps"], "{json}");
}

#[test]
fn chaos_refuses_what_it_cannot_stand_in_front_of() {
    for (url, expected) in [
        ("memory://x", "memory:// lives in one process"),
        ("s3://bucket", "needs the s3:// URL's endpoint="),
        // A bad parameter is named before any candidate starts (it was only in their logs).
        ("postgres://app:hunter2@127.0.0.1:1/db?table=", "parameter table is empty"),
        ("redis://127.0.0.1:1/0?wait_replicas=%2B1", "wait_replicas must be a whole number"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_highlander")).args(["chaos", "--store", url]).output().expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(expected) && stderr.lines().count() == 1, "{url}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{url}: {stderr}");
    }
}

/// `--create` makes what the store needs before chaos opens it: a directory that does
/// not exist yet (opening it first refused the run).
#[test]
fn chaos_creates_a_missing_directory_store_before_opening_it() {
    let dir = std::env::temp_dir().join(format!("highlander-chaos-create-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let url = format!("file://{}", dir.display());
    let (ok, json, stderr) = chaos(&url, &["--create", "--rounds", "1", "--faults", "release", "--seed", "5"], &[]);
    assert!(ok, "{json}\n{stderr}");
    assert!(dir.is_dir(), "the directory was created");
    assert_eq!((json["overlaps"].as_u64(), json["faults"]["release"].as_u64()), (Some(0), Some(1)), "{json}");
    let _ = std::fs::remove_dir_all(&dir);
}
