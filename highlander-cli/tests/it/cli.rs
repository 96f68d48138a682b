//! The `highlander` binary, driven as a user would: the demo to its summary, status
//! in text and JSON, and one clear line for every kind of bad input.

use lock_core::{LeaderElectionRecord, LeaseStore, LockName};
use lock_gist::{
    GistStore,
    emulator::{Emulator, EmulatorConfig},
};
use std::process::{Command, Output};

fn highlander(args: &[&str], token: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_highlander"));
    cmd.args(args).env_remove("GITHUB_TOKEN").env_remove("HIGHLANDER_STORE");
    if let Some(t) = token {
        cmd.env("GITHUB_TOKEN", t);
    }
    cmd.output().expect("the binary runs")
}

/// Runs the binary off the async runtime (the emulator it talks to lives on it).
async fn highlander_async(args: &[&str], token: &'static str) -> Output {
    let args: Vec<String> = args.iter().map(|a| (*a).to_string()).collect();
    tokio::task::spawn_blocking(move || highlander(&args.iter().map(String::as_str).collect::<Vec<_>>(), Some(token))).await.expect("join")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn demo_elects_crashes_and_fails_over_to_its_summary() {
    let out = highlander(&["demo", "--lease", "2s", "--renew-deadline", "1500ms", "--retry-period", "300ms", "--crash-after", "1s"], None);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "demo failed: {}\n{stdout}", text(&out.stderr));
    let leader =
        stdout.lines().find_map(|l| l.split("] I am ").nth(1).and_then(|rest| rest.split('!').next())).expect("someone leads").to_string();
    assert!(stdout.contains(&format!("I am {leader}! I will lead you to greatness!")), "{stdout}");
    assert!(stdout.contains(&format!("All hail {leader}")), "{stdout}");
    assert!(stdout.contains(&format!("[{leader}] *** crashed without releasing ***")), "{stdout}");
    assert!(stdout.contains("transitions      1"), "{stdout}");
    let tokens: Vec<u64> = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("fencing tokens"))
        .map(|rest| rest.split(" then ").filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_default();
    assert!(tokens.len() == 2 && tokens[0] < tokens[1], "two tokens, growing: {stdout}");
    let failover_line = stdout.lines().find(|l| l.contains("failover")).expect("a failover line");
    let measured: f64 = failover_line.split_whitespace().nth(1).and_then(|s| s.trim_end_matches('s').parse().ok()).expect("seconds");
    assert!((1.0..=2.0 + 0.66 + 0.5).contains(&measured), "{failover_line}");
}

/// A gist emulator holding `rec` as `lock`'s record: the emulator (kept alive), a store
/// client and the store's URL.
async fn gist_holding(lock: &LockName, rec: &LeaderElectionRecord) -> (Emulator, GistStore, String) {
    let emulator = Emulator::start(EmulatorConfig::default()).await.expect("emulator");
    let gist = emulator.control().create_gist("highlander", &[("README.md", "leases")]);
    let store = GistStore::builder(&gist).api(emulator.url()).token("emulator-token").allow_over_budget(true).build().expect("store");
    store.create(lock, rec).await.expect("create");
    let url = format!("gist://{gist}?api={}&allow_over_budget=true", emulator.url());
    (emulator, store, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_record_in_text_and_json() {
    let lock = LockName::new("billing").expect("valid");
    let mut rec = LeaderElectionRecord::new("stalin", 60, chrono::Utc::now());
    rec.leader_transitions = 3;
    rec.fencing_token = Some(lock_core::FencingToken(4));
    let (_emulator, _store, url) = gist_holding(&lock, &rec).await;

    let out = highlander_async(&["status", "--store", &url, "--lock", "billing"], "emulator-token").await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for expected in ["holder         stalin", "lease          60s", "expired        no", "transitions    3", "fencing token  4"] {
        assert!(stdout.contains(expected), "{expected:?} not in:\n{stdout}");
    }

    let out = highlander_async(&["status", "--store", &url, "--lock", "billing", "--json"], "emulator-token").await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON status");
    assert_eq!(json["holder"], "stalin");
    assert_eq!(json["leaderTransitions"], 3);
    assert_eq!(json["fencingToken"], 4);
    assert_eq!(json["expired"], false);

    let out = highlander_async(&["status", "--store", &url, "--lock", "nobody", "--json"], "emulator-token").await;
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON status");
    assert_eq!(json["exists"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_releases_a_dead_holders_lock_only_at_the_version_status_showed() {
    let lock = LockName::new("stuck").expect("valid");
    let mut rec = LeaderElectionRecord::new("crashed-pod", 15, chrono::Utc::now() - chrono::Duration::seconds(3600));
    rec.fencing_token = Some(lock_core::FencingToken(41));
    let (_emulator, store, url) = gist_holding(&lock, &rec).await;
    let status = highlander_async(&["status", "--store", &url, "--lock", "stuck", "--json"], "emulator-token").await;
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON status");
    assert_eq!(json["expired"], true, "{json}");
    let version = json["version"].as_str().expect("a version").to_string();

    let stale = highlander_async(&["reset", "--store", &url, "--lock", "stuck", "--expect-version", "not-it"], "emulator-token").await;
    assert_eq!(stale.status.code(), Some(1));
    assert!(text(&stale.stderr).contains("changed since you looked"), "{}", text(&stale.stderr));
    assert!(store.get(&lock).await.expect("get").expect("there").record.is_held(), "untouched");

    let done = highlander_async(&["reset", "--store", &url, "--lock", "stuck", "--expect-version", &version], "emulator-token").await;
    assert!(done.status.success(), "{}", text(&done.stderr));
    assert!(text(&done.stdout).contains("released (was held by \"crashed-pod\""), "{}", text(&done.stdout));
    assert!(text(&done.stderr).contains("released the lock by hand"), "the reset is logged: {}", text(&done.stderr));
    let after = store.get(&lock).await.expect("get").expect("there").record;
    assert!(!after.is_held(), "{after:?}");
    assert_eq!(after.fencing_token, Some(lock_core::FencingToken(41)), "the token is kept, so the next term's is above it");
}

#[test]
fn bad_input_and_unreachable_stores_exit_non_zero_with_one_clear_line() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let unreachable = format!("postgres://u:hunter2@127.0.0.1:{port}/db");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let taken = taken.local_addr().expect("addr").to_string();
    for (args, expected) in [
        (vec!["status", "--store", "redis9://x", "--lock", "a"], "unknown store scheme \"redis9\""),
        (vec!["status", "--store", "localhost:5432", "--lock", "a"], "SCHEME://"),
        (vec!["demo", "--lease", "soon"], "invalid duration \"soon\""),
        (vec!["status", "--store", "memory://x", "--lock", "bad\nname"], "control character"),
        (vec!["status", "--store", unreachable.as_str(), "--lock", "a"], "unavailable"),
        (vec!["status", "--store", "gist://abc?retry=10s", "--lock", "a"], "GITHUB_TOKEN"),
        (vec!["run", "--store", "memory://x", "--lock", "a"], "required arguments were not provided"),
        (vec!["run", "--store", "memory://x", "--lock", "a", "--retry-period", "soon", "--", "true"], "invalid duration \"soon\""),
        (vec!["run", "--store", "memory://x", "--lock", "a", "--grace", "5s", "--", "true"], "--grace 5s must be at most"),
        (vec!["run", "--store", "memory://x", "--lock", "a", "--lease", "10s", "--", "true"], "must be greater than renew deadline"),
        (vec!["run", "--store", "mysql://x", "--lock", "a", "--", "true"], "unknown store scheme \"mysql\""),
        (vec!["run", "--store", "memory://x", "--lock", "a", "--health", taken.as_str(), "--", "true"], "cannot listen on"),
        (vec!["conformance", "--store", "memory://x", "--check", "nope"], "no conformance check is called \"nope\""),
        (vec!["conformance", "--store", unreachable.as_str()], "unavailable"),
        // Durations: bounded, checked, never a panic.
        (vec!["run", "--store", "memory://x", "--lock", "a", "--lease", "10000000000000000000s", "--", "true"], "longer than 86400s"),
        (vec!["run", "--store", "memory://x", "--lock", "a", "--lease", "100000000000000000000s", "--", "true"], "longer than 86400s"),
        (vec!["run", "--store", "memory://x", "--lock", "a", "--lease", "100000s", "--", "true"], "longer than 86400s"),
        (vec!["run", "--store", "memory://x", "--lock", "a", "--retry-period", "1ms", "--", "true"], "must be at least 100ms"),
        (vec!["status", "--store", "gist://abc?retry=100000000000000000000s", "--lock", "a"], "longer than 86400s"),
        // Identities are checked like lock names: no forged lines.
        (vec!["run", "--store", "memory://x", "--lock", "a", "--identity", "eve\nholder mallory", "--", "true"], "control character"),
        (vec!["run", "--store", "memory://x", "--lock", "a", "--identity", "\u{1b}[2J", "--", "true"], "control character"),
        (vec!["demo", "--candidates", "a,a"], "appears twice"),
        // URL parameters: unknown ones and repeats are named, on every scheme.
        (vec!["status", "--store", "postgres://u:hunter2@h/db?tabel=x", "--lock", "a"], "do not take parameter \"tabel\""),
        (vec!["status", "--store", "postgres://u:hunter2@h/db?table=a&table=b", "--lock", "a"], "parameter table is given twice"),
        (vec!["status", "--store", "postgres://u:hunter2@h:port/db", "--lock", "a"], "the port is not a number"),
        (vec!["status", "--store", "etcd://h:2379/p?tls=true&tls=false", "--lock", "a"], "given twice"),
        (vec!["status", "--store", "s3://bucket?regoin=x", "--lock", "a"], "do not take parameter \"regoin\""),
        (vec!["status", "--store", "gist://abc?apii=x", "--lock", "a"], "do not take parameter \"apii\""),
        (vec!["status", "--store", "dynamodb://table?colour=red", "--lock", "a"], "do not take parameter \"colour\""),
        // Credentials inside other URLs are refused without being echoed.
        (
            vec!["status", "--store", "dynamodb://tbl?endpoint=http://user:hunter2@127.0.0.1:1&region=us-east-1", "--lock", "a"],
            "must not carry a user or password",
        ),
        (
            vec!["status", "--store", "s3://bucket?endpoint=http://user:hunter2@127.0.0.1:1&region=us-east-1", "--lock", "a"],
            "must not carry a user or password",
        ),
        (vec!["status", "--store", "gist://abc?api=http://user:hunter2@127.0.0.1:1", "--lock", "a"], "must not carry a user or password"),
        (vec!["status", "--store", "etcd://ops:hunter2host:2379/p", "--lock", "a"], "host 1"),
        (vec!["status", "--store", "etcd://ops:hunter2@127.0.0.1:1/p", "--lock", "a"], "unavailable"),
    ] {
        let out = highlander(&args, None);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: not one line:\n{stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{args:?}: the password leaked: {stderr}");
    }
}

/// A standby started while its store is down waits for it (a pod must not crash-loop),
/// saying so once, without the password, and retrying quietly (at DEBUG); a store that
/// cannot work (above) ends the run at once.
#[test]
fn run_waits_for_an_unreachable_store_and_says_so_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let unreachable = format!("postgres://u:hunter2@127.0.0.1:{port}/db");
    let child = Command::new(env!("CARGO_BIN_EXE_highlander"))
        .args(["run", "--lock", "a", "--retry-period", "200ms", "--", "true"])
        .env("HIGHLANDER_STORE", &unreachable)
        .env("RUST_LOG", "error,highlander=debug")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the binary runs");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let still_running = nix::sys::signal::kill(pid, None).is_ok();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let out = child.wait_with_output().expect("exits");
    let stderr = text(&out.stderr);
    assert!(still_running, "it exited instead of waiting: {stderr}");
    let said = |level: &str| {
        stderr.lines().filter(|l| l.contains(level) && l.contains("the store cannot be reached yet") && l.contains("unavailable")).count()
    };
    assert_eq!(said("WARN"), 1, "said once: {stderr}");
    assert!(said("DEBUG") >= 2, "it did not keep trying: {stderr}");
    assert!(!stderr.contains("hunter2") && !stderr.contains("panicked"), "{stderr}");
}

#[test]
fn a_command_that_cannot_start_exits_127_and_says_why() {
    let out = highlander(&["run", "--store", "memory://x", "--lock", "a", "--", "/nonexistent/command"], None);
    assert_eq!(out.status.code(), Some(127));
    let stderr = text(&out.stderr);
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert_eq!(last, "highlander: cannot run \"/nonexistent/command\": no such executable file", "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "it never campaigned: {stderr}");
}

#[test]
fn conformance_runs_the_suite_against_a_store_url_with_progress_and_the_semantics_table() {
    let checks = ["create_on_existing_lock_fails", "concurrent_updates_have_one_winner", "five_candidates_elect_exactly_one"];
    let mut args = vec!["conformance", "--store", "memory://suite", "--create"];
    for c in checks {
        args.extend(["--check", c]);
    }
    let out = highlander(&args, None);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}\n{stdout}");
    for (i, c) in checks.iter().enumerate() {
        assert!(stderr.contains(&format!("[ {}/3] pass  {c} (", i + 1)), "progress for {c}:\n{stderr}");
        assert!(stdout.contains(&format!("| `{c}` | ")), "{c} in the table:\n{stdout}");
    }
    assert!(stderr.contains("3 of 3 checks passed"), "{stderr}");
    assert!(stdout.contains("| writes | atomic compare-and-set |"), "{stdout}");
    assert!(stdout.contains("| two-writer races with two winners (of 50) | 0 |"), "{stdout}");
    assert!(stdout.contains("| `one_candidate_acquires` | elector | – |"), "only the chosen checks run:\n{stdout}");

    let out = highlander(&["conformance", "--store", "memory://suite-json", "--check", checks[0], "--json"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(json[0]["backend"], "memory");
    assert_eq!(json[0]["checks"][0]["name"], checks[0]);
    assert_eq!(json[0]["checks"][0]["passed"], true);
}

#[test]
fn fatal_errors_reach_stderr_whatever_the_log_filter_and_status_json_stays_json() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_highlander"));
    cmd.args(["--log-format", "json", "run", "--store", "memory://x", "--lock", "a", "--", "no-such-program-highlander"])
        .env("RUST_LOG", "off");
    let out = cmd.output().expect("runs");
    assert_eq!(out.status.code(), Some(127));
    let stderr = text(&out.stderr);
    let line: serde_json::Value = serde_json::from_str(stderr.trim()).unwrap_or_else(|e| panic!("one JSON line ({e}): {stderr}"));
    assert_eq!(line["level"], "ERROR");
    assert!(line["fields"]["message"].as_str().is_some_and(|m| m.contains("not found on PATH")), "{line}");

    let out = highlander(
        &["status", "--store", "dynamodb://tbl?endpoint=http://user:hunter2@127.0.0.1:1&region=us-east-1", "--lock", "a", "--json"],
        None,
    );
    assert!(!out.status.success());
    let stdout = text(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("JSON on error too ({e}): {stdout}"));
    assert!(json["error"].as_str().is_some_and(|e| e.contains("must not carry")), "{json}");
    assert!(!stdout.contains("hunter2"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_written_by_anyone_cannot_forge_status_lines() {
    let lock = LockName::new("forged").expect("valid");
    // A forged record in a gist, read through the CLI.
    let emulator = Emulator::start(EmulatorConfig::default()).await.expect("emulator");
    let gist = emulator.control().create_gist("highlander", &[("README.md", "leases")]);
    let gist_store = GistStore::builder(&gist).api(emulator.url()).token("emulator-token").allow_over_budget(true).build().expect("store");
    let rec = LeaderElectionRecord::new("eve\nholder         mallory\u{1b}[2J", 60, chrono::Utc::now());
    gist_store.create(&lock, &rec).await.expect("create");
    let url = format!("gist://{gist}?api={}&allow_over_budget=true", emulator.url());
    let out = highlander_async(&["status", "--store", &url, "--lock", "forged"], "emulator-token").await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(stdout.lines().filter(|l| l.starts_with("holder")).count(), 1, "one holder line: {stdout}");
    assert!(stdout.contains(r"holder         eve\nholder         mallory\u{1b}[2J"), "{stdout}");
    assert!(!stdout.contains('\u{1b}'), "no escape sequence reaches the terminal: {stdout:?}");
}

/// `openssl s_server` on 127.0.0.1 with a certificate from a throwaway CA, stopped (by
/// its pid) and its directory removed when dropped.
struct TlsServer {
    child: std::process::Child,
    dir: std::path::PathBuf,
    port: u16,
}

impl TlsServer {
    fn start() -> TlsServer {
        use lock_conformance::fixtures::{free_loopback_port, test_ca, test_server_certificate};
        let dir = std::env::temp_dir().join(format!("highlander-gist-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory for the certificates");
        let ca = test_ca(&dir, "gist-api").expect("a CA (openssl)");
        let (crt, key) = test_server_certificate(&dir, &ca).expect("a server certificate (openssl)");
        let port = free_loopback_port().expect("a free port");
        let child = Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept", &format!("127.0.0.1:{port}"), "-cert"])
            .arg(&crt)
            .arg("-key")
            .arg(&key)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("openssl s_server starts");
        let server = TlsServer { child, dir, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "openssl s_server did not listen on 127.0.0.1:{port} within 30 s");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        server
    }

    fn ca(&self) -> std::path::PathBuf {
        self.dir.join("gist-api-ca.pem")
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn the_gist_api_over_https_is_verified_against_the_trust_store() {
    let server = TlsServer::start();
    let store = format!("gist://cafe0123?api=https://127.0.0.1:{}&allow_over_budget=true", server.port);
    let status = |trust: Option<&std::path::Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_highlander"));
        cmd.args(["status", "--store", &store, "--lock", "a"]).env("GITHUB_TOKEN", "ghp_tls-test-token").env_remove("HIGHLANDER_STORE");
        match trust {
            Some(ca) => cmd.env("SSL_CERT_FILE", ca),
            None => cmd.env_remove("SSL_CERT_FILE").env_remove("SSL_CERT_DIR"),
        };
        cmd.output().expect("the binary runs")
    };
    // Not in the trust store: refused at the handshake, as a certificate error naming the gist.
    let out = status(None);
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "an untrusted API must not be read: {}", text(&out.stdout));
    assert!(stderr.contains("cafe0123") && stderr.contains("certificate"), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("ghp_tls-test-token"), "{stderr}");
    // Trusted (SSL_CERT_FILE): TLS succeeds; what fails is the answer, which is not GitHub's.
    let out = status(Some(&server.ca()));
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "openssl's status page is not a gist: {}", text(&out.stdout));
    assert!(stderr.contains("cafe0123") && !stderr.contains("certificate"), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("ghp_tls-test-token"), "{stderr}");
}
