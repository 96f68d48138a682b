//! `highlander elect` as a sidecar, driven by real clients: curl for `/leader`, and the
//! shipped Python follower (`examples/sidecar/leader_watch.py`) for `/watch`, against
//! Postgres (the conformance fixtures' server).

use crate::common::unique;
use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

/// A `highlander elect` process, killed by its pid if the test ends early.
struct Sidecar {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Sidecar {
    fn start(url: &str, password: &str, lock: &str, identity: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_highlander"))
            .args(["elect", "--store", url, "--lock", lock, "--identity", identity, "--serve", "127.0.0.1:0"])
            .args(["--lease", "2s", "--renew-deadline", "1500ms", "--retry-period", "300ms"])
            .env("PGPASSWORD", password)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("highlander elect starts");
        let lines = crate::common::lines_of(child.stderr.take().expect("stderr"));
        Self { child, lines, seen: Vec::new() }
    }

    /// Waits for a log line containing `what`; returns it.
    fn line(&mut self, what: &str, within: Duration) -> String {
        let until = Instant::now() + within;
        loop {
            while let Ok(line) = self.lines.try_recv() {
                self.seen.push(line.clone());
                if line.contains(what) {
                    return line;
                }
            }
            assert!(Instant::now() < until, "no {what:?} within {within:?}:\n{}", self.seen.join("\n"));
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The address it serves, from its log.
    fn address(&mut self) -> String {
        let line = self.line("serving /leader", Duration::from_secs(15));
        let at = line.rsplit("http://").next().expect("an address");
        at.split_whitespace().next().expect("address").to_string()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl(url: &str) -> serde_json::Value {
    let out = Command::new("curl").args(["-sS", "--max-time", "5", url]).output().expect("curl runs (the CI installs it)");
    assert!(out.status.success(), "curl {url}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// When a log line was written, in ns since the epoch (its RFC 3339 timestamp).
fn logged_ns(line: &str) -> i128 {
    let stamp = line.split_whitespace().next().expect("a timestamp");
    let at = chrono::DateTime::parse_from_rfc3339(stamp).unwrap_or_else(|e| panic!("{stamp}: {e}"));
    i128::from(at.timestamp_nanos_opt().expect("in range"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_answers_curl_and_a_python_watcher_sees_a_leader_change() {
    let full = lock_conformance::fixtures::postgres_url().await.expect("a Postgres for the sidecar tests");
    lock_postgres::PostgresStore::builder(&full).expect("url").build().expect("store").ensure_schema().await.expect("schema");
    let (scheme, rest) = full.split_once("://").expect("URL");
    let (userinfo, host) = rest.split_once('@').expect("user-info");
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let url = format!("{scheme}://{user}@{host}");
    let lock = unique("sidecar");

    let mut a = Sidecar::start(&url, password, &lock, "a");
    let a_at = a.address();
    a.line("became leader", Duration::from_secs(15));
    let mut b = Sidecar::start(&url, password, &lock, "b");
    let b_at = b.address();
    assert!(a_at.starts_with("127.0.0.1:") && b_at.starts_with("127.0.0.1:"), "{a_at} {b_at}");

    // curl: who leads, and is it me?
    let until = Instant::now() + Duration::from_secs(10);
    let (on_a, on_b) = loop {
        let (on_a, on_b) = (curl(&format!("http://{a_at}/leader")), curl(&format!("http://{b_at}/leader")));
        if on_b["leader"] == "a" && on_b["candidates"].as_array().is_some_and(|c| c.len() == 2) {
            break (on_a, on_b);
        }
        assert!(Instant::now() < until, "b never saw a lead with two candidates: {on_b}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!((on_a["is_leader"].as_bool(), on_a["leader"].as_str(), on_a["name"].as_str()), (Some(true), Some("a"), Some("a")), "{on_a}");
    let a_token = on_a["fencing_token"].as_u64().expect("the leader's sidecar gives its token");
    assert!(on_a["term_valid_for_ms"].as_u64().is_some_and(|ms| ms <= 1500), "at most the renew deadline: {on_a}");
    assert_eq!((on_b["is_leader"].as_bool(), on_b["fencing_token"].as_u64()), (Some(false), None), "{on_b}");
    let bad = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://{b_at}/watch?seq=x")])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&bad.stdout), "400", "a bad query is a 400");

    // The Python follower, on b: its first line is the state now; the next, the change.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/sidecar/leader_watch.py");
    let mut watcher = Command::new("python3")
        .args([script, &format!("http://{b_at}"), "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (the CI installs it)");
    let mut out = BufReader::new(watcher.stdout.take().expect("stdout")).lines();
    let first: serde_json::Value = serde_json::from_str(&out.next().expect("a first line").expect("read")).expect("JSON");
    assert_eq!((first["leader"].as_str(), first["is_leader"].as_bool()), (Some("a"), Some(false)), "{first}");

    // a stops (SIGTERM): it releases; b leads; the watcher hears it.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(a.child.id()).expect("pid")), nix::sys::signal::Signal::SIGTERM)
        .expect("signal a");
    let released = a.line("released the lease", Duration::from_secs(10));
    let second: serde_json::Value = serde_json::from_str(&out.next().expect("a second line").expect("read")).expect("JSON");
    assert_eq!((second["leader"].as_str(), second["is_leader"].as_bool()), (Some("b"), Some(true)), "{second}");
    assert!(second["fencing_token"].as_u64().is_some_and(|t| t > a_token), "the new term's token is above a's: {second}");
    assert!(second["seq"].as_u64() > first["seq"].as_u64());
    let status = watcher.wait().expect("the watcher exits after two lines");
    assert!(status.success());
    let heard_ns = i128::from(second["received_ns"].as_i64().expect("received_ns"));
    eprintln!(
        "sidecar on Postgres: the watcher heard b lead {:.1} ms after a's release was logged",
        (heard_ns - logged_ns(&released)) as f64 / 1e6
    );
    assert!(a.child.wait().expect("a exits").success(), "a exits 0 after releasing");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(b.child.id()).expect("pid")), nix::sys::signal::Signal::SIGTERM)
        .expect("signal b");
    b.line("released the lease", Duration::from_secs(10));
    assert!(b.child.wait().expect("b exits").success());
}
