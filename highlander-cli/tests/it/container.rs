//! The `highlander` image, run as its users run it: two containers on the host network
//! in front of one Postgres on 127.0.0.1, highlander as each container's first process
//! (PID 1, no init), and the lifecycle commands of a container runtime — `docker stop`,
//! `docker kill`, `docker pause` — as the faults.
//!
//! The image is `LOCK_TEST_HIGHLANDER_IMAGE` if set; otherwise this test builds one from
//! the repository's `Dockerfile` and the `highlander` binary cargo just built, on
//! `HIGHLANDER_BASE_IMAGE` (`scripts/stores` and `scripts/offline-images` print it) or
//! a local `debian:bookworm-slim`. Without docker or a base image it fails, loudly.

use crate::common::{TICKER, assert_terms_never_overlap, first_tick, http_get, last_tick, ms, now_ns, tempdir, ticks, unique};
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{Mutex, OnceLock, PoisonError},
    time::{Duration, Instant},
};

const LEASE: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_millis(300);
const DURATIONS: [&str; 8] = ["--lease", "2s", "--renew-deadline", "1500ms", "--retry-period", "300ms", "--grace", "200ms"];
/// Where the tick log's directory is mounted in the containers.
const TICKS_IN_CONTAINER: &str = "/ticks/log";

/// One container scenario at a time: they measure hand-overs in milliseconds, and the
/// machine has few cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"))
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(out.status.success(), "docker {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The image under test, built once per test process.
fn image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        if let Some(image) = std::env::var("LOCK_TEST_HIGHLANDER_IMAGE").ok().filter(|i| !i.is_empty()) {
            docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image]);
            return image;
        }
        let base = std::env::var("HIGHLANDER_BASE_IMAGE").ok().filter(|b| !b.is_empty()).unwrap_or_else(|| "debian:bookworm-slim".into());
        assert!(
            docker(&["image", "inspect", &base]).status.success(),
            "no base image {base} for the highlander test image: set HIGHLANDER_BASE_IMAGE (`ONLY_BASE=1 scripts/offline-images` \
             builds one and prints it) or LOCK_TEST_HIGHLANDER_IMAGE (`scripts/image` builds one)"
        );
        let ctx = tempdir("image");
        std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Dockerfile"), ctx.join("Dockerfile")).expect("copy the Dockerfile");
        std::fs::copy(env!("CARGO_BIN_EXE_highlander"), ctx.join("highlander")).expect("copy the binary");
        let tag = "highlander:test";
        let ctx_arg = ctx.to_str().expect("a UTF-8 temp dir");
        docker_ok(&["build", "--network", "host", "-q", "--build-arg", &format!("BASE={base}"), "-t", tag, ctx_arg]);
        let _ = std::fs::remove_dir_all(&ctx);
        tag.to_string()
    })
}

/// The test's Postgres as the containers reach it: a URL without its password (which
/// goes through the environment, never argv) and the password.
fn postgres() -> (String, String) {
    let full = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(lock_conformance::fixtures::postgres_url())
        .expect("a Postgres for the container tests (LOCK_TEST_POSTGRES_URL or a container)");
    let (scheme, rest) = full.split_once("://").expect("a URL");
    let (userinfo, host) = rest.split_once('@').expect("user-info");
    let (user, password) = userinfo.split_once(':').map_or((userinfo, ""), |(u, p)| (u, p));
    assert!(host.starts_with("127.0.0.1:") || host.starts_with("localhost:"), "the test store must be on 127.0.0.1: {host}");
    (format!("{scheme}://{user}@{host}"), password.to_string())
}

/// A directory the containers' user (uid 10001) may write the tick log into.
fn tick_dir(name: &str) -> (PathBuf, PathBuf) {
    let dir = tempdir(name);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod the tick dir");
    let log = dir.join("log");
    (dir, log)
}

/// A `highlander run` container, removed by its id when the test ends.
struct Candidate {
    id: String,
    identity: String,
}

impl Candidate {
    fn start(pg: &(String, String), lock: &str, identity: &str, dir: &Path, extra: &[&str], script: &str) -> Self {
        let mount = format!("{}:/ticks", dir.display());
        let mut args: Vec<&str> = vec![
            "run",
            "-d",
            "--network",
            "host",
            "--name",
            identity,
            "-e",
            "PGPASSWORD",
            "-e",
            "TICK_LOG",
            "-e",
            "RUST_LOG",
            "-v",
            &mount,
            image(),
            "run",
            "--store",
            &pg.0,
            "--create",
            "--lock",
            lock,
            "--identity",
            identity,
        ];
        args.extend(DURATIONS);
        args.extend(extra);
        args.extend(["--", "sh", "-c", script]);
        let out = Command::new("docker")
            .args(&args)
            .env("PGPASSWORD", &pg.1)
            .env("TICK_LOG", TICKS_IN_CONTAINER)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .output()
            .expect("docker run");
        assert!(out.status.success(), "docker run {identity}: {}", String::from_utf8_lossy(&out.stderr));
        Self { id: String::from_utf8_lossy(&out.stdout).trim().to_string(), identity: identity.to_string() }
    }

    fn logs(&self) -> String {
        let out = docker(&["logs", &self.id]);
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }

    /// `(running, exit code)` as docker reports them.
    fn state(&self) -> (bool, i32) {
        let s = docker_ok(&["inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", &self.id]);
        let (running, code) = s.split_once(' ').expect("state");
        (running == "true", code.parse().expect("exit code"))
    }

    /// Waits until the container's log has a line containing `what`; returns that line.
    fn logged(&self, what: &str, within: Duration) -> String {
        let until = Instant::now() + within;
        loop {
            let logs = self.logs();
            if let Some(line) = logs.lines().find(|l| l.contains(what)) {
                return line.to_string();
            }
            assert!(Instant::now() < until, "{} never logged {what:?} within {within:?}:\n{logs}", self.identity);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The processes in the container that are zombies: `(pid, parent, name)`.
    fn zombies(&self) -> Vec<(i32, i32, String)> {
        let stat = docker_ok(&["exec", &self.id, "sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null; true"]);
        stat.lines()
            .filter_map(|l| {
                let (head, rest) = l.rsplit_once(')')?;
                let (pid, name) = head.split_once(" (")?;
                let mut f = rest.split_whitespace();
                let (state, ppid) = (f.next()?, f.next()?.parse().ok()?);
                (state == "Z").then(|| (pid.trim().parse().ok(), ppid, name.to_string())).and_then(|(p, pp, n)| Some((p?, pp, n)))
            })
            .collect()
    }
}

impl Drop for Candidate {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.id]);
    }
}

/// Leader alpha (its command ticking) and standby beta, on a fresh lock.
fn two_candidates(name: &str, script: &str) -> (PathBuf, PathBuf, Candidate, Candidate) {
    let pg = postgres();
    let (dir, log) = tick_dir(name);
    let lock = unique(name);
    let a = Candidate::start(&pg, &lock, &unique("alpha"), &dir, &[], script);
    first_tick(&log, &a.identity, 0, Duration::from_secs(30));
    let b = Candidate::start(&pg, &lock, &unique("beta"), &dir, &[], script);
    b.logged("campaigning", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    (dir, log, a, b)
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

#[test]
fn docker_stop_stops_the_command_releases_and_the_standby_container_starts_within_a_retry_period() {
    let _one = serial();
    let (dir, log, a, b) = two_candidates("container-stop", TICKER);
    let stop_at = now_ns();
    let began = Instant::now();
    docker_ok(&["stop", "--time", "10", &a.id]);
    let stop_took = began.elapsed();
    let (running, code) = a.state();
    assert!(!running);
    // highlander exits with its command's status (the ticker exits 7 on SIGTERM), not
    // 137: docker never had to SIGKILL it at the stop timeout.
    assert_eq!(code, 7, "the leader's container exit code:\n{}", a.logs());
    assert!(a.logs().contains("released the lease"), "{}", a.logs());
    let alpha_stop =
        ticks(&log).iter().find(|t| t.identity == a.identity && t.kind == "stop").map(|t| t.at_ns).expect("alpha's command got SIGTERM");
    let beta_first = first_tick(&log, &b.identity, stop_at, Duration::from_secs(10));
    let handover = ms(beta_first - stop_at);
    let after_release = ms(beta_first.saturating_sub(alpha_stop));
    println!(
        "docker stop of the leader's container: it exited (code {code}) after {:.0} ms; the standby's command started {handover:.0} ms \
         after `docker stop` and {after_release:.0} ms after the leader's command stopped (retry period {} ms)",
        stop_took.as_secs_f64() * 1e3,
        RETRY.as_millis()
    );
    assert!(stop_took < Duration::from_secs(5), "docker stop took {stop_took:?} of its 10 s");
    // The release is notified (LISTEN/NOTIFY): the standby does not wait for its next poll.
    assert!(after_release < ms(RETRY.as_nanos()), "the standby started {after_release:.0} ms after the release");
    assert!(handover < ms(RETRY.as_nanos()) * 2.2 + 1000.0, "hand-over took {handover:.0} ms");
    docker_ok(&["stop", "--time", "10", &b.id]);
    assert_eq!(b.state(), (false, 7), "{}", b.logs());
    assert_terms_never_overlap(&log);
    drop((a, b));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn docker_kill_takes_the_command_with_the_container_and_the_standby_leads_within_the_lease_bound() {
    let _one = serial();
    let (dir, log, a, b) = two_candidates("container-kill", TICKER);
    let killed_at = now_ns();
    docker_ok(&["kill", &a.id]);
    let beta_first = first_tick(&log, &b.identity, killed_at, Duration::from_secs(15));
    let failover = ms(beta_first - killed_at);
    let alpha_last = last_tick(&log, &a.identity).expect("alpha ticked");
    println!(
        "docker kill of the leader's container: its command's last tick {:.0} ms after the kill; the standby's command started \
         {failover:.0} ms after it (lease {} ms + jittered retry up to {} ms)",
        ms(alpha_last.saturating_sub(killed_at)),
        LEASE.as_millis(),
        RETRY.mul_f64(2.2).as_millis()
    );
    assert_eq!(a.state(), (false, 137), "SIGKILLed");
    assert!(alpha_last < killed_at + 300_000_000, "alpha's command outlived its container by {:.0} ms", ms(alpha_last - killed_at));
    let bound = ms((LEASE + RETRY.mul_f64(2.2)).as_nanos()) + 500.0;
    assert!(failover <= bound, "the standby took {failover:.0} ms, over the {bound:.0} ms bound");
    assert!(failover >= ms(LEASE.as_nanos()) - 600.0, "the standby took over {failover:.0} ms after a kill: before the lease ran out");
    docker_ok(&["stop", &b.id]);
    assert_terms_never_overlap(&log);
    drop((a, b));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn docker_pause_past_the_lease_hands_over_and_unpause_stops_the_old_command_at_once() {
    let _one = serial();
    let (dir, log, a, b) = two_candidates("container-pause", TICKER);
    let paused_at = now_ns();
    docker_ok(&["pause", &a.id]);
    let beta_first = first_tick(&log, &b.identity, paused_at, Duration::from_secs(10));
    // Frozen well past the lease: every process of the container, guard included.
    std::thread::sleep((LEASE * 2).saturating_sub(Duration::from_nanos(u64::try_from(now_ns() - paused_at).unwrap_or(0))));
    let unpaused_at = now_ns();
    docker_ok(&["unpause", &a.id]);
    a.logged("lost leadership", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    let alpha_last = last_tick(&log, &a.identity).expect("alpha ticked");
    let overlap = ms(alpha_last.saturating_sub(unpaused_at));
    println!(
        "docker pause of the leader's container for {:.0} ms: the standby's command started {:.0} ms into the pause; after \
         unpause the old command ran on for {overlap:.0} ms before its guard stopped it",
        ms(unpaused_at - paused_at),
        ms(beta_first - paused_at)
    );
    assert!(overlap < 500.0, "the resumed command ran {overlap:.0} ms beside the new leader's");
    assert!(a.state().0, "alpha's highlander lives on as a standby:\n{}", a.logs());
    let token = |who: &str| ticks(&log).iter().find(|t| t.identity == who).map(|t| t.token).expect("ticked");
    assert!(token(&b.identity) > token(&a.identity), "the new term has the higher fencing token");
    // Nothing of alpha's runs after that, and alpha is a standby again.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(last_tick(&log, &a.identity), Some(alpha_last), "alpha's command came back while beta leads");
    drop((a, b));
    let _ = std::fs::remove_dir_all(dir);
}

/// A command that leaves orphans behind all the time: each backgrounded `sleep` outlives
/// the subshell that started it.
const ORPHANS: &str = r#"while :; do (sleep 0.05 &); (sleep 0.05 &); echo "$HIGHLANDER_FENCING_TOKEN $HIGHLANDER_IDENTITY tick $(date +%s%N)" >> "$TICK_LOG"; sleep 0.05; done"#;

#[test]
fn as_pid_1_highlander_leaves_no_zombies_even_when_its_guard_is_killed() {
    let _one = serial();
    let pg = postgres();
    let (dir, log) = tick_dir("container-zombies");
    let lock = unique("container-zombies");
    let a = Candidate::start(&pg, &lock, &unique("alpha"), &dir, &[], ORPHANS);
    let started = a.logged("started the command", Duration::from_secs(30));
    let guard = started.split_whitespace().find_map(|w| w.strip_prefix("guard=")).expect("guard= in the log").to_string();
    first_tick(&log, &a.identity, 0, Duration::from_secs(10));
    let pid1 = docker_ok(&["exec", &a.id, "cat", "/proc/1/cmdline"]);
    assert!(pid1.contains("highlander"), "highlander is the container's first process: {pid1:?}");
    std::thread::sleep(Duration::from_secs(2));
    let zombies = a.zombies();
    assert!(zombies.len() <= 2, "orphans of the command are reaped as they exit: {zombies:?}");
    // The guard dies: its command and the command's orphans are re-parented to PID 1,
    // which stops them, reaps them and starts the command again under a new guard.
    let killed_at = now_ns();
    docker_ok(&["exec", &a.id, "sh", "-c", &format!("kill -KILL {guard}")]);
    a.logged("the guard process died", Duration::from_secs(5));
    first_tick(&log, &a.identity, killed_at + 100_000_000, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    let zombies = a.zombies();
    let of_pid1: Vec<_> = zombies.iter().filter(|z| z.1 == 1).collect();
    println!("zombies 2 s after the guard was killed: {zombies:?}");
    assert!(of_pid1.is_empty(), "zombies left to PID 1: {of_pid1:?}");
    assert!(zombies.len() <= 2, "zombies pile up: {zombies:?}");
    docker_ok(&["stop", &a.id]);
    let stopped = ticks(&log).iter().map(|t| t.at_ns).max().expect("ticks");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(ticks(&log).iter().map(|t| t.at_ns).max(), Some(stopped), "nothing ticks after docker stop");
    drop(a);
    let _ = std::fs::remove_dir_all(dir);
}

/// The health endpoint a liveness probe uses answers from inside a container too.
#[test]
fn the_health_endpoint_answers_for_a_liveness_probe() {
    let _one = serial();
    let pg = postgres();
    let (dir, log) = tick_dir("container-health");
    let lock = unique("container-health");
    let port = lock_conformance::fixtures::free_loopback_port().expect("a free port on 127.0.0.1");
    let health = format!("127.0.0.1:{port}");
    let a = Candidate::start(&pg, &lock, &unique("alpha"), &dir, &["--health", &health], TICKER);
    first_tick(&log, &a.identity, 0, Duration::from_secs(30));
    let (status, body) = http_get(&health, "/healthz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("leading"), "{body}");
    docker_ok(&["stop", &a.id]);
    drop(a);
    let _ = std::fs::remove_dir_all(dir);
}

/// In a pod, the command runs as the same user as highlander (PID 1): the store's URL
/// and password, which highlander holds, must not be readable from `/proc/1/environ`,
/// nor be in the command's own environment.
#[test]
fn the_command_cannot_read_the_stores_secrets_even_from_pid_1() {
    let _one = serial();
    let (url, password) = postgres();
    let (dir, _log) = tick_dir("container-secrets");
    let password = if password.is_empty() { "ignored-by-a-trusting-server".to_string() } else { password };
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (user, host) = rest.split_once('@').expect("user-info");
    let with_password = format!("{scheme}://{user}:{password}@{host}");
    let script =
        "env > /ticks/env; { tr '\\0' '\\n' < /proc/1/environ > /ticks/pid1; } 2> /ticks/pid1.err; echo done > /ticks/done; sleep 60";
    let mount = format!("{}:/ticks", dir.display());
    let lock = unique("container-secrets");
    let out = Command::new("docker")
        .args(["run", "-d", "--network", "host", "-e", "HIGHLANDER_STORE", "-v", &mount, image(), "run", "--create", "--lock", &lock])
        .args(["--", "sh", "-c", script])
        .env("HIGHLANDER_STORE", &with_password)
        .stdin(Stdio::null())
        .output()
        .expect("docker run");
    assert!(out.status.success(), "docker run: {}", String::from_utf8_lossy(&out.stderr));
    let a = Candidate { id: String::from_utf8_lossy(&out.stdout).trim().to_string(), identity: "secrets".into() };
    let until = Instant::now() + Duration::from_secs(30);
    while !dir.join("done").exists() {
        assert!(Instant::now() < until, "the command never ran:\n{}", a.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    assert!(!read("env").contains(&password) && !read("env").contains("HIGHLANDER_STORE="), "the command's environment: {}", read("env"));
    assert!(read("env").contains("HIGHLANDER_FENCING_TOKEN="), "{}", read("env"));
    assert!(!read("pid1").contains(&password), "PID 1's environment was readable by the command");
    assert!(read("pid1.err").contains("Permission denied"), "reading PID 1's environment: {:?} / {:?}", read("pid1"), read("pid1.err"));
    assert!(!a.logs().contains(&password), "the password is in the logs");
    docker_ok(&["stop", &a.id]);
    drop(a);
    let _ = std::fs::remove_dir_all(dir);
}
