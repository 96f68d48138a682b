//! `highlander run`, driven as a user would, on a real compare-and-set store (Postgres
//! from the conformance fixtures: `LOCK_TEST_POSTGRES_URL` or a container on 127.0.0.1).
//!
//! Every command the candidates run appends a line to a shared log several times a
//! second: its fencing token, its identity and the wall-clock time. The log is the
//! evidence that a command never ran in two processes at once.

use crate::common::{TICKER, assert_terms_never_overlap, first_tick, http_get, last_tick, ms, now_ns, tempdir, ticks, unique};
use lock_core::{LeaderElectionRecord, LeaseStore, LockName};
use lock_postgres::PostgresStore;
use nix::{
    sys::signal::{Signal, kill, killpg},
    unistd::Pid,
};
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

const LEASE: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(300);
const GRACE: Duration = Duration::from_millis(200);
const DURATIONS: [&str; 8] = ["--lease", "2s", "--renew-deadline", "1500ms", "--retry-period", "300ms", "--grace", "200ms"];

/// As [`TICKER`], but it ignores SIGTERM (and so does its `sleep`): only SIGKILL stops it.
const STUBBORN: &str = r#"trap '' TERM
while :; do echo "$HIGHLANDER_FENCING_TOKEN $HIGHLANDER_IDENTITY tick $(date +%s%N)" >> "$TICK_LOG"; sleep 0.05; done"#;

/// The test's Postgres: a URL without its password, the password, and a store client.
struct Pg {
    url: String,
    password: String,
    store: PostgresStore,
}

async fn postgres() -> Pg {
    let full =
        lock_conformance::fixtures::postgres_url().await.expect("a Postgres for the run tests (LOCK_TEST_POSTGRES_URL or a container)");
    pg_at(&full).await
}

async fn pg_at(full: &str) -> Pg {
    let store = PostgresStore::builder(full).expect("url").build().expect("store");
    store.ensure_schema().await.expect("schema");
    // The password goes to the candidates through PGPASSWORD, never through argv.
    let (scheme, rest) = full.split_once("://").expect("a URL");
    let (userinfo, host) = rest.split_once('@').expect("user-info");
    let (user, password) = userinfo.split_once(':').map_or((userinfo, ""), |(u, p)| (u, p));
    Pg { url: format!("{scheme}://{user}@{host}"), password: password.to_string(), store }
}

/// A `highlander run` process, killed by its pid if the test ends early.
struct Candidate {
    child: Child,
    identity: String,
    stderr: mpsc::Receiver<String>,
    lines: Vec<String>,
}

impl Candidate {
    fn start(pg: &Pg, lock: &str, identity: &str, log: &Path, extra: &[&str], script: &str) -> Self {
        Self::start_with_env(pg, lock, identity, log, extra, script, &[])
    }

    fn start_with_env(pg: &Pg, lock: &str, identity: &str, log: &Path, extra: &[&str], script: &str, env: &[(&str, &str)]) -> Self {
        Self::start_wrapped(pg, lock, identity, log, (extra, script), env, &[])
    }

    /// Started through `wrapper` (a program and its arguments that then run highlander).
    fn start_wrapped(
        pg: &Pg,
        lock: &str,
        identity: &str,
        log: &Path,
        (extra, script): (&[&str], &str),
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Self {
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(env!("CARGO_BIN_EXE_highlander"));
                cmd
            }
            None => Command::new(env!("CARGO_BIN_EXE_highlander")),
        };
        cmd.envs(env.iter().copied());
        cmd.args(["run", "--store", &pg.url, "--lock", lock, "--identity", identity])
            .args(DURATIONS)
            .args(extra)
            .args(["--", "sh", "-c", script])
            .env("PGPASSWORD", &pg.password)
            .env("TICK_LOG", log)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("highlander starts");
        let stderr = crate::common::lines_of(child.stderr.take().expect("stderr"));
        Self { child, identity: identity.to_string(), stderr, lines: Vec::new() }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid"))
    }

    fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal the candidate");
    }

    /// Waits for the process to exit, up to `within`.
    fn wait(&mut self, within: Duration) -> ExitStatus {
        let until = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() >= until {
                let logs = self.logs();
                panic!("{} did not exit within {within:?}:\n{logs}", self.identity);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the next "started the command" line; returns (command pid, guard pid).
    fn started(&mut self, within: Duration) -> (i32, i32) {
        let until = Instant::now() + within;
        loop {
            while let Ok(line) = self.stderr.try_recv() {
                self.lines.push(line.clone());
                if line.contains("started the command") {
                    let field = |name: &str| {
                        line.split_whitespace()
                            .find_map(|w| w.strip_prefix(&format!("{name}=")))
                            .and_then(|v| v.parse::<i32>().ok())
                            .unwrap_or_else(|| panic!("no {name}= in {line}"))
                    };
                    return (field("pid"), field("guard"));
                }
            }
            assert!(Instant::now() < until, "{} never started its command within {within:?}:\n{}", self.identity, self.lines.join("\n"));
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// What it logged so far.
    fn logs(&mut self) -> String {
        while let Ok(line) = self.stderr.try_recv() {
            self.lines.push(line);
        }
        self.lines.join("\n")
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_leader_hands_over_within_its_bound_and_its_command_dies_with_it() {
    let pg = postgres().await;
    let dir = tempdir("sigkill");
    let log = dir.join("ticks");
    let lock = unique("run-sigkill");
    let mut a = Candidate::start(&pg, &lock, "alpha", &log, &[], TICKER);
    first_tick(&log, "alpha", 0, Duration::from_secs(10));
    let mut b = Candidate::start(&pg, &lock, "beta", &log, &[], TICKER);
    std::thread::sleep(Duration::from_secs(1));
    assert!(ticks(&log).iter().all(|t| t.identity == "alpha"), "beta ran its command while alpha led:\n{}", b.logs());

    let killed_at = now_ns();
    a.signal(Signal::SIGKILL);
    a.wait(Duration::from_secs(5));
    let took_over = first_tick(&log, "beta", killed_at, Duration::from_secs(10));
    let handover = ms(took_over - killed_at);
    let bound = ms((LEASE + RETRY.mul_f64(2.2)).as_nanos());
    println!("SIGKILL of the leader: beta's command started {handover:.0} ms later (bound: lease + 2.2 × retry = {bound:.0} ms)");
    // The bound is the election's; starting `sh` and `date` gets 300 ms on top.
    assert!(handover <= bound + 300.0, "handover took {handover:.0} ms, bound {bound:.0} ms");
    assert!(handover >= ms(LEASE.as_nanos()) - ms(RETRY.as_nanos()), "beta cannot take an unexpired lease: {handover:.0} ms");
    let alpha_last = ticks(&log).iter().filter(|t| t.identity == "alpha").map(|t| t.at_ns).max().expect("alpha ticked");
    // The guard kills alpha's command as soon as alpha dies, not when the lease expires.
    assert!(alpha_last < killed_at + 300_000_000, "alpha's command outlived alpha by {:.0} ms", ms(alpha_last.saturating_sub(killed_at)));

    std::thread::sleep(Duration::from_millis(500));
    b.signal(Signal::SIGTERM);
    let status = b.wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(7), "the exit status follows the command's (its TERM trap exits 7):\n{}", b.logs());
    let terms = assert_terms_never_overlap(&log);
    assert_eq!(terms.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(), ["alpha", "beta"]);
    assert!(terms[1].0 > terms[0].0, "fencing tokens increase: {terms:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_command_releases_and_hands_over_within_about_a_retry_period() {
    let pg = postgres().await;
    let dir = tempdir("sigterm");
    let log = dir.join("ticks");
    let lock = unique("run-sigterm");
    let mut a = Candidate::start(&pg, &lock, "alpha", &log, &[], TICKER);
    first_tick(&log, "alpha", 0, Duration::from_secs(10));
    let mut b = Candidate::start(&pg, &lock, "beta", &log, &[], TICKER);
    let mut c = Candidate::start(&pg, &lock, "gamma", &log, &[], TICKER);
    std::thread::sleep(Duration::from_secs(1));
    // A standby told to stop just stops: nothing to release, nothing ran.
    c.signal(Signal::SIGTERM);
    assert_eq!(c.wait(Duration::from_secs(2)).code(), Some(0), "{}", c.logs());

    let signalled_at = now_ns();
    a.signal(Signal::SIGTERM);
    let status = a.wait(Duration::from_secs(5));
    let exited_at = now_ns();
    let exited_after = ms(exited_at - signalled_at);
    assert_eq!(status.code(), Some(7), "the exit status follows the command's:\n{}", a.logs());
    assert!(ticks(&log).iter().any(|t| t.identity == "alpha" && t.kind == "stop"), "alpha's command got SIGTERM");
    assert!(a.logs().contains("released the lease"), "alpha released:\n{}", a.logs());
    let took_over = first_tick(&log, "beta", signalled_at, Duration::from_secs(10));
    let handover = ms(took_over - signalled_at);
    let after_exit = ms(took_over.saturating_sub(exited_at));
    println!(
        "SIGTERM to the leader: it exited after {exited_after:.0} ms, beta's command started {handover:.0} ms after the signal, {after_exit:.0} ms after alpha exited (retry period {} ms, jittered up to {} ms)",
        RETRY.as_millis(),
        RETRY.mul_f64(2.2).as_millis()
    );
    // A standby polls once per jittered retry period (client-go's: 1 to 2.2 × the
    // period); the rest is stopping one command and starting the next.
    assert!(handover <= ms(RETRY.as_nanos()) * 2.2 + 300.0, "handover took {handover:.0} ms");
    // Postgres notifies (LISTEN/NOTIFY): beta acts on the release, not at its next poll.
    // Counted from alpha's exit, which follows its release: the time alpha's command
    // took to stop is not the notification's.
    assert!(
        after_exit < ms(RETRY.as_nanos()),
        "beta's command started {after_exit:.0} ms after alpha exited, released: the release notification did not wake beta"
    );
    assert!(handover < ms(LEASE.as_nanos()), "released, not expired: {handover:.0} ms");
    b.signal(Signal::SIGINT);
    assert_eq!(b.wait(Duration::from_secs(5)).code(), Some(7));
    let terms = assert_terms_never_overlap(&log);
    assert_eq!(terms.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(), ["alpha", "beta"], "gamma never ran");
    let rec = pg.store.get(&LockName::new(&lock).expect("name")).await.expect("get").expect("record");
    assert!(!rec.record.is_held(), "the last one released too: {:?}", rec.record);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_leadership_stops_a_stubborn_command_with_sigkill_after_the_grace_period() {
    let pg = postgres().await;
    let dir = tempdir("lost");
    let log = dir.join("ticks");
    let lock = unique("run-lost");
    let name = LockName::new(&lock).expect("name");
    let mut a = Candidate::start(&pg, &lock, "alpha", &log, &["--once"], STUBBORN);
    first_tick(&log, "alpha", 0, Duration::from_secs(10));

    // Someone else takes the lease behind alpha's back.
    let seen = pg.store.get(&name).await.expect("get").expect("record");
    let mut rec = LeaderElectionRecord::new("usurper", 60, chrono::Utc::now());
    rec.leader_transitions = seen.record.leader_transitions + 1;
    let usurped_at = now_ns();
    pg.store.update(&name, &seen.version, &rec).await.expect("usurp");

    let status = a.wait(Duration::from_secs(5));
    let logs = a.logs();
    assert_eq!(status.code(), Some(128 + 9), "a command that ignores SIGTERM is killed, and the exit status says so:\n{logs}");
    assert!(logs.contains("did not stop within the grace period"), "{logs}");
    let last = ticks(&log).iter().map(|t| t.at_ns).max().expect("ticks");
    let stopped_after = ms(last.saturating_sub(usurped_at));
    let bound = ms((RETRY.mul_f64(1.2) + GRACE).as_nanos()) + 200.0;
    println!(
        "lease taken: the stubborn command's last tick came {stopped_after:.0} ms later (retry × 1.2 + grace + 200 ms = {bound:.0} ms)"
    );
    assert!(stopped_after <= bound, "the command ran {stopped_after:.0} ms after the lease was taken");
    let after = pg.store.get(&name).await.expect("get").expect("record");
    assert_eq!(after.record.holder_identity, "usurper", "a lease held by another is not released");
}

/// The guard's own SIGKILL at the end of a grace period can come before highlander's
/// (they end the same grace): it says `killed` before `exited`, so that highlander says
/// why the command was killed whichever sent it first.
#[test]
fn the_guard_says_it_killed_a_command_that_outlived_its_grace_before_it_says_exited() {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    let (mut ours, theirs) = UnixStream::pair().expect("socket pair");
    let ready = tempdir("guard-killed").join("ready");
    let mut guard = Command::new(env!("CARGO_BIN_EXE_highlander"))
        .args(["__highlander_guard", "--", "sh", "-c", "trap '' TERM; : > \"$0\"; while :; do sleep 0.05; done"])
        .arg(&ready)
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .spawn()
        .expect("start the guard");
    // Deadlines an hour away on CLOCK_BOOTTIME (which /proc/uptime counts).
    let uptime: f64 =
        std::fs::read_to_string("/proc/uptime").expect("uptime").split(' ').next().and_then(|s| s.parse().ok()).expect("uptime");
    let term = Duration::from_secs_f64(uptime + 3600.0).as_nanos();
    write!(ours, "deadline {term} {}\nstart\n", term + 1).expect("write");
    let mut lines = BufReader::new(ours.try_clone().expect("clone")).lines().map(|l| l.expect("a line from the guard"));
    assert!(lines.next().is_some_and(|l| l.starts_with("started ")), "the guard starts the command");
    // Stopped only once it ignores SIGTERM.
    let waiting = Instant::now();
    while !ready.exists() {
        assert!(waiting.elapsed() < Duration::from_secs(10), "the command never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let asked = Instant::now();
    writeln!(ours, "stop {}", GRACE.as_nanos()).expect("write");
    let said: Vec<String> = lines.by_ref().take(2).collect();
    let took = asked.elapsed();
    assert_eq!(said, ["killed", "exited signal 9"], "after the grace, SIGKILL, said before the exit it leads to");
    assert!(took >= GRACE, "killed after the grace period, not before: {took:?}");
    assert!(guard.wait().expect("the guard exits").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_gets_its_lease_in_the_environment_and_its_exit_status_is_highlanders() {
    let pg = postgres().await;
    let dir = tempdir("env");
    let env_file = dir.join("env");
    let lock = unique("run-env");
    let script = format!("env > {}; exit 3", env_file.display());
    // No --identity: the default is unique per process.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_highlander"));
    cmd.args(["run", "--store", &pg.url, "--lock", &lock, "--", "sh", "-c", &script]).env("PGPASSWORD", &pg.password);
    let out = tokio::task::spawn_blocking(move || {
        let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        let pid = child.id();
        (pid, child.wait_with_output().expect("output"))
    })
    .await
    .expect("join");
    let (pid, out) = out;
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let env = std::fs::read_to_string(&env_file).expect("the command wrote its environment");
    let var = |name: &str| env.lines().find_map(|l| l.strip_prefix(&format!("{name}="))).map(str::to_string);
    assert_eq!(var("HIGHLANDER_LOCK").as_deref(), Some(lock.as_str()));
    let token: u64 = var("HIGHLANDER_FENCING_TOKEN").and_then(|t| t.parse().ok()).expect("a numeric fencing token");
    let identity = var("HIGHLANDER_IDENTITY").expect("identity");
    assert!(identity.ends_with(&format!("-{pid}")) && identity.len() > format!("-{pid}").len(), "host-pid: {identity}");
    let rec = pg.store.get(&LockName::new(&lock).expect("name")).await.expect("get").expect("record");
    assert!(!rec.record.is_held(), "released when the command exited: {:?}", rec.record);
    assert_eq!(rec.record.fencing_token.map(|t| t.get()), Some(token), "the command's token is the term's");
}

#[test]
fn metrics_health_and_json_logs() {
    let lock = unique("run-metrics");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_highlander"));
    cmd.args(["run", "--store", "memory://metrics", "--lock", &lock, "--log-format", "json"])
        .args(["--metrics", "127.0.0.1:0", "--health", "127.0.0.1:0", "--", "sleep", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let _stop = KillOnDrop(child.id());
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let (mut metrics, mut health, mut started) = (None, None, false);
    let until = Instant::now() + Duration::from_secs(20);
    while metrics.is_none() || health.is_none() || !started {
        let line = rx.recv_timeout(until.saturating_duration_since(Instant::now())).expect("the expected log lines");
        let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let fields = &json["fields"];
        match fields["paths"].as_str() {
            Some("/metrics") => metrics = fields["address"].as_str().map(str::to_string),
            Some("/healthz") => health = fields["address"].as_str().map(str::to_string),
            _ => {}
        }
        started |= fields["message"] == "started the command";
        lines.push(json);
    }
    let (status, body) = http_get(metrics.as_deref().expect("metrics address"), "/metrics");
    assert_eq!(status, 200);
    assert!(body.contains(&format!("highlander_leader{{lock=\"{lock}\",identity=")), "{body}");
    let leader_line = body.lines().find(|l| l.starts_with("highlander_leader{")).expect("leader gauge");
    assert!(leader_line.ends_with(" 1"), "{leader_line}");
    assert!(body.contains(&format!("highlander_command_running{{lock=\"{lock}\"}} 1")), "{body}");
    assert!(body.contains(&format!("highlander_command_starts_total{{lock=\"{lock}\"}} 1")), "{body}");
    let (status, body) = http_get(health.as_deref().expect("health address"), "/healthz");
    let token = body.trim().strip_prefix("ok: leading (fencing token ").and_then(|t| t.strip_suffix(')')).map(str::parse::<u64>);
    assert_eq!((status, token.and_then(Result::ok).is_some()), (200, true), "{body}");

    kill(pid, Signal::SIGTERM).expect("SIGTERM");
    let status = child.wait().expect("wait");
    // `sleep` dies of the SIGTERM: 128 + 15, as a shell would report it.
    assert_eq!(status.code(), Some(143));
    reader.join().expect("reader");
    for line in rx.try_iter() {
        let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        lines.push(json);
    }
    assert!(lines.iter().any(|l| l["fields"]["message"] == "released the lease"), "{lines:?}");
    assert!(lines.iter().all(|l| l["level"].is_string() && l["timestamp"].is_string()), "{lines:?}");
}

/// SIGKILL to a pid when dropped (the test failed before stopping it).
struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

fn pid(raw: i32) -> Pid {
    Pid::from_raw(raw)
}

/// Leader alpha (its command ticking), standby beta; then alpha's highlander alone is
/// SIGSTOPped for 10 s. Returns the log, alpha's stop time and both candidates.
fn pause_the_leaders_highlander(name: &str, alpha_env: &[(&str, &str)]) -> (Pg, PathBuf, u128, Candidate, Candidate) {
    pause_the_leaders_highlander_wrapped(name, alpha_env, &[], TICKER)
}

fn pause_the_leaders_highlander_wrapped(
    name: &str,
    alpha_env: &[(&str, &str)],
    wrapper: &[&str],
    alpha_script: &str,
) -> (Pg, PathBuf, u128, Candidate, Candidate) {
    let pg = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(postgres());
    let dir = tempdir(name);
    let log = dir.join("ticks");
    let lock = unique(name);
    let mut a = Candidate::start_wrapped(&pg, &lock, "alpha", &log, (&[], alpha_script), alpha_env, wrapper);
    a.started(Duration::from_secs(10));
    first_tick(&log, "alpha", 0, Duration::from_secs(10));
    let b = Candidate::start(&pg, &lock, "beta", &log, &[], TICKER);
    std::thread::sleep(Duration::from_secs(1));
    let stopped_at = now_ns();
    a.signal(Signal::SIGSTOP);
    std::thread::sleep(Duration::from_secs(10));
    a.signal(Signal::SIGCONT);
    (pg, log, stopped_at, a, b)
}

#[test]
fn a_paused_leaders_command_is_stopped_by_its_guard_before_the_standby_starts() {
    let (_pg, log, stopped_at, mut a, mut b) = pause_the_leaders_highlander("run-pause", &[]);
    let alpha_last = ticks(&log).iter().filter(|t| t.identity == "alpha").map(|t| t.at_ns).max().expect("alpha ticked");
    let beta_first = first_tick(&log, "beta", stopped_at, Duration::from_secs(5));
    let gap = ms(beta_first) - ms(alpha_last);
    println!(
        "SIGSTOP of the leader's highlander for 10 s: its command's last tick {:.0} ms after the stop, the standby's first {:.0} ms after it: {gap:.0} ms apart, no overlap",
        ms(alpha_last - stopped_at),
        ms(beta_first - stopped_at)
    );
    assert!(alpha_last < beta_first, "alpha's command ran {:.0} ms into beta's term", -gap);
    // The guard stops it at the renew deadline after the last renewal, not whenever highlander wakes.
    assert!(
        alpha_last - stopped_at <= 1_500_000_000 + 300_000_000,
        "alpha's command ran {:.0} ms after its highlander stopped",
        ms(alpha_last - stopped_at)
    );
    assert!(ticks(&log).iter().any(|t| t.identity == "alpha" && t.kind == "stop"), "alpha's command got SIGTERM from its guard");
    // Back from the pause, alpha knows it lost and runs nothing.
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        ticks(&log).iter().filter(|t| t.identity == "alpha").all(|t| t.at_ns <= alpha_last),
        "alpha ran its command again:\n{}",
        a.logs()
    );
    let logs = a.logs();
    assert!(logs.contains("the guard stopped the command on its own"), "{logs}");
    // And nothing after the pause says the command was still running: it had stopped.
    for false_alarm in ["did not stop within the grace period", "leadership ended: stopping the command"] {
        assert!(!logs.contains(false_alarm), "a false alarm after the pause ({false_alarm}):\n{logs}");
    }
    b.signal(Signal::SIGTERM);
    b.wait(Duration::from_secs(5));
    let terms = assert_terms_never_overlap(&log);
    assert!(terms.windows(2).all(|w| w[0].0 < w[1].0), "tokens strictly increase: {terms:?}");
}

/// The mutation check of the test above: a guard that ignores its deadline leaves the
/// paused leader's command running into the standby's term. (If this stops failing to
/// prevent the overlap, the test above proves nothing.)
#[test]
fn without_the_guards_deadline_a_paused_leaders_command_overlaps_the_next() {
    let (_pg, log, stopped_at, _a, mut b) =
        pause_the_leaders_highlander("run-pause-mutant", &[("HIGHLANDER_TEST_GUARD_IGNORES_DEADLINE", "1")]);
    let beta_first = first_tick(&log, "beta", stopped_at, Duration::from_secs(5));
    let alpha_last = ticks(&log).iter().filter(|t| t.identity == "alpha").map(|t| t.at_ns).max().expect("alpha ticked");
    println!(
        "with the guard's deadline disabled: alpha's command ran {:.0} ms into beta's term",
        ms(alpha_last.saturating_sub(beta_first))
    );
    assert!(alpha_last > beta_first + 2_000_000_000, "the overlap the deadline prevents did not happen");
    b.signal(Signal::SIGTERM);
    b.wait(Duration::from_secs(5));
}

#[test]
fn a_frozen_leader_resumed_command_first_stops_within_moments() {
    let pg = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(postgres());
    let dir = tempdir("freeze");
    let log = dir.join("ticks");
    let lock = unique("run-freeze");
    let mut a = Candidate::start(&pg, &lock, "alpha", &log, &[], TICKER);
    let (command, guard) = a.started(Duration::from_secs(10));
    first_tick(&log, "alpha", 0, Duration::from_secs(10));
    let mut b = Candidate::start(&pg, &lock, "beta", &log, &[], TICKER);
    std::thread::sleep(Duration::from_secs(1));
    // The whole machine of alpha freezes: highlander, guard and the command's group.
    let frozen_at = now_ns();
    a.signal(Signal::SIGSTOP);
    kill(pid(guard), Signal::SIGSTOP).expect("stop the guard");
    killpg(pid(command), Signal::SIGSTOP).expect("stop the command");
    let beta_first = first_tick(&log, "beta", frozen_at, Duration::from_secs(8));
    std::thread::sleep(Duration::from_secs(10).saturating_sub(Duration::from_nanos(u64::try_from(now_ns() - frozen_at).unwrap_or(0))));
    // Resumed in the worst order: the command first, then its guard, then highlander.
    let resumed_at = now_ns();
    killpg(pid(command), Signal::SIGCONT).expect("resume the command");
    kill(pid(guard), Signal::SIGCONT).expect("resume the guard");
    a.signal(Signal::SIGCONT);
    std::thread::sleep(Duration::from_secs(2));
    let alpha_last = last_tick(&log, "alpha").expect("alpha ticked");
    let overlap = ms(alpha_last.saturating_sub(resumed_at));
    println!(
        "alpha frozen 10 s, resumed command first: its command ran {overlap:.0} ms after resuming (beta had led since {:.0} ms into the freeze)",
        ms(beta_first - frozen_at)
    );
    assert!(beta_first > frozen_at, "beta took over during the freeze");
    assert!(overlap < 500.0, "the resumed command ran {overlap:.0} ms before something stopped it");
    assert!(!a.logs().contains("renewed"), "no renewal attempt after the deadline");
    b.signal(Signal::SIGTERM);
    b.wait(Duration::from_secs(5));
    let token = |who: &str| ticks(&log).iter().find(|t| t.identity == who).map(|t| t.token).expect("ticked");
    assert!(
        token("beta") > token("alpha"),
        "beta's term has the higher fencing token: a resource that checks it refuses alpha's late writes"
    );
}

#[test]
fn a_killed_guard_never_leaves_the_command_unguarded() {
    let pg = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(postgres());
    let dir = tempdir("guard");
    let log = dir.join("ticks");
    let lock = unique("run-guard");
    let mut a = Candidate::start(&pg, &lock, "alpha", &log, &[], TICKER);
    let (first_command, first_guard) = a.started(Duration::from_secs(10));
    first_tick(&log, "alpha", 0, Duration::from_secs(10));
    let killed_at = now_ns();
    kill(pid(first_guard), Signal::SIGKILL).expect("kill the guard");
    // The old command dies with its guard (the kernel's death signal, SIGKILL; highlander,
    // its new parent, reaps it), then is started again under a new guard.
    let gone_at = loop {
        if kill(pid(first_command), None).is_err() {
            break now_ns();
        }
        assert!(now_ns() < killed_at + 5_000_000_000, "the first command outlived its guard by 5 s");
        std::thread::sleep(Duration::from_millis(5));
    };
    let (second_command, second_guard) = a.started(Duration::from_secs(5));
    assert_ne!((second_command, second_guard), (first_command, first_guard));
    println!("guard SIGKILLed: its command was gone {:.0} ms later and restarted under a new guard", ms(gone_at - killed_at));
    assert!(gone_at - killed_at < 1_000_000_000, "the command ran unguarded for {:.0} ms", ms(gone_at - killed_at));
    assert!(kill(pid(first_command), None).is_err(), "the first command is gone");
    assert!(a.logs().contains("the guard process died"), "{}", a.logs());
    // The new guard does its job: highlander killed, its command dies with it.
    first_tick(&log, "alpha", gone_at, Duration::from_secs(5));
    let killed_at = now_ns();
    a.signal(Signal::SIGKILL);
    a.wait(Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    let last = last_tick(&log, "alpha").expect("ticks");
    assert!(last < killed_at + 300_000_000, "the second command outlived highlander by {:.0} ms", ms(last.saturating_sub(killed_at)));
    assert!(kill(pid(second_command), None).is_err(), "the second command is gone");
}

#[test]
fn a_guard_killed_while_highlander_is_paused_takes_its_command_with_it() {
    let pg = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(postgres());
    let dir = tempdir("guard-paused");
    let log = dir.join("ticks");
    let lock = unique("run-guard-paused");
    let mut a = Candidate::start(&pg, &lock, "alpha", &log, &[], TICKER);
    let (_, guard) = a.started(Duration::from_secs(10));
    first_tick(&log, "alpha", 0, Duration::from_secs(10));
    // Highlander cannot notice (paused), the guard is gone: only the kernel can stop the command.
    a.signal(Signal::SIGSTOP);
    let killed_at = now_ns();
    kill(pid(guard), Signal::SIGKILL).expect("kill the guard");
    std::thread::sleep(Duration::from_millis(1_500));
    let last = last_tick(&log, "alpha").expect("ticks");
    a.signal(Signal::SIGCONT);
    println!("guard SIGKILLed beside a paused highlander: the command's last tick {:.0} ms later", ms(last.saturating_sub(killed_at)));
    assert!(
        last < killed_at + 300_000_000,
        "the command outlived its guard by {:.0} ms while highlander was paused",
        ms(last.saturating_sub(killed_at))
    );
}

/// A command that escapes its process group and session: `setsid` in the background.
const ESCAPER: &str = r#"setsid sh -c 'while :; do echo "$HIGHLANDER_FENCING_TOKEN $HIGHLANDER_IDENTITY tick $(date +%s%N)" >> "$TICK_LOG"; sleep 0.05; done' &
wait"#;

#[test]
fn a_setsid_grandchild_is_stopped_with_the_command_and_sighup_releases() {
    let pg = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(postgres());
    let dir = tempdir("setsid");
    let log = dir.join("ticks");
    let lock = unique("run-setsid");
    let mut a = Candidate::start(&pg, &lock, "alpha", &log, &[], ESCAPER);
    first_tick(&log, "alpha", 0, Duration::from_secs(10));
    let hung_up = now_ns();
    a.signal(Signal::SIGHUP);
    a.wait(Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    let last = last_tick(&log, "alpha").expect("ticks");
    assert!(last < hung_up + 300_000_000, "the setsid grandchild outlived the term by {:.0} ms", ms(last.saturating_sub(hung_up)));
    assert!(a.logs().contains("released the lease"), "SIGHUP is a shutdown, with release:\n{}", a.logs());
}

#[test]
fn two_processes_with_one_identity_never_run_the_command_at_once() {
    let pg = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(postgres());
    let dir = tempdir("twins");
    let log = dir.join("ticks");
    let lock = unique("run-twins");
    let mut a = Candidate::start(&pg, &lock, "twin", &log, &[], TICKER);
    first_tick(&log, "twin", 0, Duration::from_secs(10));
    let mut b = Candidate::start(&pg, &lock, "twin", &log, &[], TICKER);
    std::thread::sleep(Duration::from_secs(4));
    let tokens: std::collections::BTreeSet<u64> = ticks(&log).iter().map(|t| t.token).collect();
    assert_eq!(tokens.len(), 1, "the second twin ran its command while the first led: {tokens:?}\n{}", b.logs());
    // A twin is told from an earlier run of itself by its renewals: loudly, once.
    let loud: Vec<String> = b
        .logs()
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("under this candidate's own identity and renews it"))
        .map(String::from)
        .collect();
    assert_eq!(loud.len(), 1, "the twin was reported once, at ERROR:\n{}", b.logs());
    a.signal(Signal::SIGKILL);
    a.wait(Duration::from_secs(5));
    // b leads next: a tick of a new term (a's command, stopped by its guard, may still
    // tick once after a is gone: same identity, its own token).
    let until = Instant::now() + Duration::from_secs(10);
    while !ticks(&log).iter().any(|t| !tokens.contains(&t.token)) {
        assert!(Instant::now() < until, "the second twin never led after the first was killed:\n{}", b.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    b.signal(Signal::SIGTERM);
    b.wait(Duration::from_secs(5));
    let terms = assert_terms_never_overlap(&log);
    assert_eq!(terms.len(), 2, "{terms:?}");
}

#[test]
fn a_standby_whose_command_cannot_run_says_so_before_campaigning() {
    let pg = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(postgres());
    let lock = unique("run-missing");
    let out = Command::new(env!("CARGO_BIN_EXE_highlander"))
        .args(["run", "--store", &pg.url, "--lock", &lock, "--", "no-such-program-highlander"])
        .env("PGPASSWORD", &pg.password)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    assert!(stderr.contains("not found on PATH") && stderr.lines().count() == 1, "{stderr}");
    let rec = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(pg.store.get(&LockName::new(&lock).expect("name")))
        .expect("get");
    assert!(rec.is_none(), "it never campaigned: {rec:?}");
}

#[test]
fn the_command_does_not_get_the_stores_secrets_unless_asked() {
    let pg = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(postgres());
    let dir = tempdir("secrets");
    // Once with the password in PGPASSWORD and the URL in argv, once with the whole URL,
    // password included, in HIGHLANDER_STORE (as a Kubernetes Secret would give it).
    let (scheme, rest) = pg.url.split_once("://").expect("a URL");
    let (user, host) = rest.split_once('@').expect("user-info");
    // A server that trusts its clients ignores the password; the check needs one anyway.
    let password = if pg.password.is_empty() { "ignored-by-a-trusting-server".to_string() } else { pg.password.clone() };
    let with_password = format!("{scheme}://{user}:{password}@{host}");
    for (extra, expect_secrets) in [(&[][..], false), (&["--pass-store-secrets"][..], true)] {
        for via_env in [false, true] {
            let env_file = dir.join(format!("env-{expect_secrets}-{via_env}"));
            let script = format!("env > {}", env_file.display());
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_highlander"));
            cmd.arg("run");
            if via_env {
                cmd.env("HIGHLANDER_STORE", &with_password);
            } else {
                cmd.args(["--store", &pg.url]).env("PGPASSWORD", &password);
            }
            let out = cmd.args(["--lock", &unique("run-secrets")]).args(extra).args(["--", "sh", "-c", &script]).output().expect("runs");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let env = std::fs::read_to_string(&env_file).expect("the command wrote its environment");
            assert_eq!(env.contains(&password), expect_secrets, "{extra:?}, URL in the environment: {via_env}");
            assert_eq!(env.contains("HIGHLANDER_STORE="), expect_secrets && via_env, "{extra:?}");
            assert!(env.contains("HIGHLANDER_FENCING_TOKEN="), "{env}");
        }
    }
}

/// SIGTERM handover through PgBouncer in transaction mode: notifications do not pass a
/// transaction pooler, so the standby learns of the release at its next poll; with
/// `listen=` naming the server itself, it learns at once. Both measured.
#[test]
fn sigterm_handover_through_a_transaction_pooler_polls_and_with_listen_is_notified() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (bouncer, server) = runtime.block_on(lock_conformance::fixtures::pgbouncer_url("transaction")).expect("pgbouncer");
    let pooled = runtime.block_on(pg_at(&bouncer));
    let dir = tempdir("pooler");
    let mut figures = Vec::new();
    // PgBouncer 1.18 in transaction mode can crash on cancel requests (pgbouncer#822): cancel=false, as the README says.
    for (label, suffix) in [("polling", "?cancel=false".to_string()), ("notified (listen=)", format!("?cancel=false&listen={server}"))] {
        let pg = Pg { url: format!("{}{suffix}", pooled.url), password: pooled.password.clone(), store: pooled.store.clone() };
        let log = dir.join(format!("ticks-{}", figures.len()));
        let lock = unique("run-pooler");
        let mut a = Candidate::start(&pg, &lock, "alpha", &log, &[], TICKER);
        first_tick(&log, "alpha", 0, Duration::from_secs(15));
        let mut b = Candidate::start(&pg, &lock, "beta", &log, &[], TICKER);
        std::thread::sleep(Duration::from_secs(3));
        let signalled_at = now_ns();
        a.signal(Signal::SIGTERM);
        a.wait(Duration::from_secs(5));
        let took_over = first_tick(&log, "beta", signalled_at, Duration::from_secs(10));
        let handover = ms(took_over - signalled_at);
        println!("through PgBouncer (transaction mode), {label}: beta's command started {handover:.0} ms after SIGTERM to the leader");
        figures.push(handover);
        b.signal(Signal::SIGTERM);
        b.wait(Duration::from_secs(5));
        assert_terms_never_overlap(&log);
    }
    assert!(figures[0] <= ms(RETRY.as_nanos()) * 2.2 + 400.0, "polling hands over within a jittered retry period: {figures:?}");
    assert!(figures[1] < ms(RETRY.as_nanos()), "with listen= the release is notified: {figures:?}");
}

/// A leader under a library that shifts its clocks (libfaketime, two hours either way)
/// is fenced like any other: its guard arms the deadline with raw system calls on
/// `CLOCK_BOOTTIME`, which the library cannot move (it wraps `timerfd_settime`).
#[test]
fn a_paused_leader_under_faketime_is_stopped_before_the_standby_starts() {
    // The command's own ticks must be stamped with the true time: it drops the library.
    let ticker = format!("unset LD_PRELOAD FAKETIME\n{TICKER}");
    // Preloaded directly (`env` execs highlander): the `faketime` command would stay
    // between the test and highlander as a parent process, and SIGSTOP would stop it instead.
    let library = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|dir| dir.path().join("faketime/libfaketime.so.1"))
        .find(|lib| lib.exists())
        .expect("libfaketime (Debian's faketime package, which scripts/setup installs)");
    let preload = format!("LD_PRELOAD={}", library.display());
    for shift in ["+2h", "-2h"] {
        let fake = format!("FAKETIME={shift}");
        let (_pg, log, stopped_at, mut a, mut b) =
            pause_the_leaders_highlander_wrapped(&format!("run-faketime{shift}"), &[], &["env", &preload, &fake], &ticker);
        let alpha_last = ticks(&log).iter().filter(|t| t.identity == "alpha").map(|t| t.at_ns).max().expect("alpha ticked");
        let beta_first = first_tick(&log, "beta", stopped_at, Duration::from_secs(5));
        println!(
            "faketime {shift}: alpha's command's last tick {:.0} ms after its highlander stopped, beta's first {:.0} ms after",
            ms(alpha_last - stopped_at),
            ms(beta_first - stopped_at)
        );
        assert!(alpha_last < beta_first, "faketime {shift}: alpha's command ran {:.0} ms into beta's term", ms(alpha_last - beta_first));
        assert!(
            alpha_last - stopped_at <= 1_500_000_000 + 300_000_000,
            "faketime {shift}: alpha's command ran {:.0} ms after its highlander stopped:\n{}",
            ms(alpha_last - stopped_at),
            a.logs()
        );
        b.signal(Signal::SIGTERM);
        b.wait(Duration::from_secs(5));
        assert_terms_never_overlap(&log);
    }
}

/// A guard that keeps dying (here SIGKILLed as soon as it has started the command, as an
/// OOM killer or a broken sandbox would) is a leader that cannot run its command: after
/// three deaths in one term highlander stops, releases the lease and exits 127, and the
/// standby's command runs at once instead of never.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_that_keeps_dying_gives_the_lease_up_to_the_standby() {
    let pg = postgres().await;
    let dir = tempdir("guard-dies");
    let log = dir.join("ticks");
    let lock = unique("run-guard-dies");
    let mut a = Candidate::start(&pg, &lock, "alpha", &log, &[], TICKER);
    let (_, guard) = a.started(Duration::from_secs(10));
    let mut b = Candidate::start(&pg, &lock, "beta", &log, &[], TICKER);
    let mut guard = guard;
    let mut killed_at = now_ns();
    for death in 1..=3 {
        kill(Pid::from_raw(guard), Signal::SIGKILL).expect("kill the guard");
        killed_at = now_ns();
        if death < 3 {
            guard = a.started(Duration::from_secs(5)).1;
        }
    }
    let status = a.wait(Duration::from_secs(5));
    let logs = a.logs();
    assert_eq!(status.code(), Some(127), "{logs}");
    assert!(logs.contains("died 3 times"), "alpha says why it gave up:\n{logs}");
    assert!(logs.contains("released the lease"), "{logs}");
    let beta_first = first_tick(&log, "beta", killed_at, Duration::from_secs(5));
    println!("a guard killed three times: beta's command started {:.0} ms after the third death", ms(beta_first - killed_at));
    assert!(beta_first - killed_at < 1_500_000_000, "the standby waited past the renew deadline: {:.0} ms", ms(beta_first - killed_at));
    b.signal(Signal::SIGTERM);
    b.wait(Duration::from_secs(5));
    assert_terms_never_overlap(&log);
}

/// `GET /healthz` that must be answered within `within`: the status and the body.
fn probe(addr: std::net::SocketAddr, within: Duration) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, within)?;
    stream.set_read_timeout(Some(within))?;
    stream.set_write_timeout(Some(within))?;
    write!(stream, "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

/// A flood of connections to `--health` — 3,000 idle ones and 200 that send their
/// request a byte every half second — against a candidate started with the common soft
/// limit of 1,024 open files: `/healthz` keeps answering within a second, the leader
/// keeps its term, and its command still gets the limit it was started with.
#[test]
fn the_health_port_answers_through_a_flood_of_idle_and_slow_connections() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    use std::io::Write;
    let pg = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(postgres());
    let dir = tempdir("health-flood");
    let log = dir.join("ticks");
    let limit_file = dir.join("command-open-files");
    let lock = unique("run-health-flood");
    let script = format!("ulimit -n > {}\n{TICKER}", limit_file.display());
    let mut a =
        Candidate::start_wrapped(&pg, &lock, "alpha", &log, (&["--health", "127.0.0.1:0"], &script), &[], &["prlimit", "--nofile=1024:"]);
    a.started(Duration::from_secs(10));
    first_tick(&log, "alpha", 0, Duration::from_secs(10));
    let logs = a.logs();
    let addr: std::net::SocketAddr = logs
        .lines()
        .filter(|l| l.contains("serving /healthz"))
        .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("address=")).and_then(|a| a.parse().ok()))
        .unwrap_or_else(|| panic!("no health address in:\n{logs}"));
    assert!(addr.ip().is_loopback(), "{addr}");
    assert_eq!(std::fs::read_to_string(&limit_file).expect("the command wrote its limit").trim(), "1024", "the command's own limit");

    // This test's side of the flood needs more than 1,024 descriptors itself.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    let idle: Vec<std::net::TcpStream> =
        (0..3000).filter_map(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()).collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut conns: Vec<std::net::TcpStream> =
                (0..200).filter_map(|_| std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()).collect();
            for c in &mut conns {
                let _ = c.write_all(b"GET /healthz HTTP/1.1\r\n");
            }
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for c in &mut conns {
                    let _ = c.write_all(b"X");
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    });
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let asked = Instant::now();
        let answer = probe(addr, Duration::from_secs(1));
        let took = asked.elapsed();
        assert!(
            matches!(&answer, Ok((200, body)) if body.starts_with("ok: leading")),
            "/healthz during the flood ({} idle connections open): {answer:?} after {took:?}\n{}",
            idle.len(),
            a.logs()
        );
        worst = worst.max(took);
        std::thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    slow.join().expect("the slow clients");
    println!("{} idle and 200 slow connections: /healthz answered 20 of 20 probes, the slowest in {worst:?}", idle.len());
    drop(idle);
    let terms = assert_terms_never_overlap(&log);
    assert_eq!(terms.len(), 1, "the leader kept its one term through the flood: {terms:?}");
    a.signal(Signal::SIGTERM);
    a.wait(Duration::from_secs(5));
}

/// A server that asks for a password and none given: a configuration error, said once,
/// naming the variable to set — not a store "not reached yet", retried forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_password_exits_at_once_naming_the_variable() {
    let pg = postgres().await;
    assert!(!pg.password.is_empty(), "this test needs a Postgres that asks for a password (the fixture's container does)");
    let started = Instant::now();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_highlander"))
        .args(["run", "--store", &pg.url, "--lock", &unique("no-password")])
        .args(DURATIONS)
        .args(["--", "true"])
        .env_remove("PGPASSWORD")
        .env_remove("HIGHLANDER_STORE")
        .stdin(Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out).await.expect("exits rather than retrying").expect("runs");
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(10), "exited after {took:?}: {stderr}");
    assert_eq!(stderr.matches("PGPASSWORD").count(), 1, "named once: {stderr}");
    assert!(stderr.contains("asks for a password"), "{stderr}");
    assert!(!stderr.contains("trying again"), "not retried: {stderr}");
    println!("exit 1 after {took:?}: {}", stderr.trim());
}

/// `highlander` with `args` against the test's Postgres: (success, stdout, stderr).
fn highlander(pg: &Pg, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_highlander"))
        .args(args)
        .env("HIGHLANDER_STORE", &pg.url)
        .env("PGPASSWORD", &pg.password)
        .stdin(Stdio::null())
        .output()
        .expect("highlander runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Waits until `highlander status` prints a line containing each of `lines`.
fn status_shows(pg: &Pg, lock: &str, lines: &[&str], within: Duration) -> String {
    let until = Instant::now() + within;
    loop {
        let (_, out, _) = highlander(pg, &["status", "--lock", lock]);
        if lines.iter().all(|want| out.lines().any(|l| l.contains(want))) {
            return out;
        }
        assert!(Instant::now() < until, "status never showed {lines:?} within {within:?}:\n{out}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_the_candidates_and_a_hand_over_moves_the_command_with_no_overlap() {
    let pg = postgres().await;
    let lock = unique("handover");
    let log = tempdir("handover").join("ticks");
    let mut east = Candidate::start(&pg, &lock, "east", &log, &[], TICKER);
    east.started(Duration::from_secs(15));
    let mut west = Candidate::start(&pg, &lock, "west", &log, &["--priority", "-1"], TICKER);
    status_shows(&pg, &lock, &["east  priority 0  leader", "west  priority -1  standby", "standbys       1"], Duration::from_secs(10));
    let json = highlander(&pg, &["status", "--lock", &lock, "--json"]).1;
    let parsed: serde_json::Value = serde_json::from_str(&json).expect("status --json");
    assert_eq!(parsed["standbys"], 1, "{json}");
    assert_eq!(parsed["candidates"].as_array().map(Vec::len), Some(2), "{json}");

    // Refused, nothing written: an unknown candidate, the leader itself.
    let (ok, _, err) = highlander(&pg, &["handover", "--lock", &lock, "--to", "nobody"]);
    assert!(!ok && err.contains("\"nobody\" is not a live candidate") && err.contains(&lock) && err.contains("postgres"), "{err}");
    let (ok, _, err) = highlander(&pg, &["handover", "--lock", &lock, "--to", "east"]);
    assert!(!ok && err.contains("already leads"), "{err}");
    assert!(!err.contains(&pg.password) || pg.password.is_empty(), "the password leaked: {err}");

    // Without --to: the best live standby, the only one here.
    let asked = now_ns();
    let (ok, out, err) = highlander(&pg, &["handover", "--lock", &lock, "--wait", "10s"]);
    assert!(ok, "{out}{err}\n{}", east.logs());
    assert!(out.contains("\"west\" leads lock"), "{out}");
    west.started(Duration::from_secs(5));
    let west_first = first_tick(&log, "west", asked, Duration::from_secs(5));
    let terms = assert_terms_never_overlap(&log);
    let ids: Vec<&str> = terms.iter().map(|t| t.1.as_str()).collect();
    assert_eq!(ids, ["east", "west"], "the command moved to west, once");
    let east_stop =
        ticks(&log).iter().filter(|t| t.identity == "east" && t.kind == "stop").map(|t| t.at_ns).max().expect("east stopped on SIGTERM");
    eprintln!(
        "hand-over on Postgres: asked → east's command stopped {:.0} ms, → west's first tick {:.0} ms ({:.0} ms after east's stop)",
        ms(east_stop - asked),
        ms(west_first - asked),
        ms(west_first - east_stop)
    );
    status_shows(&pg, &lock, &["east  priority 0  standby", "west  priority -1  leader"], Duration::from_secs(10));
    let rec = pg.store.get(&LockName::new(&lock).expect("name")).await.expect("get").expect("record").record;
    assert_eq!(rec.preferred_holder, None, "the done hand-over is cleared from the record: {rec:?}");
    // A higher priority and no hold-down passed: east (0 > -1) takes it back only after
    // its hold-down (two leases, counted from when it stopped leading).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(assert_terms_never_overlap(&log).len(), 2, "east took the lock back before its hold-down time");
    first_tick(&log, "east", west_first, Duration::from_secs(15));
    assert_eq!(assert_terms_never_overlap(&log).iter().map(|t| t.1.clone()).collect::<Vec<_>>(), ["east", "west", "east"]);

    east.signal(Signal::SIGTERM);
    west.signal(Signal::SIGTERM);
    east.wait(Duration::from_secs(10));
    west.wait(Duration::from_secs(10));
    status_shows(&pg, &lock, &["candidates     none registered"], Duration::from_secs(5));
}
