//! `highlander run`: runs a command only while this process leads the lock.
//!
//! - Leading: the command starts under a [guard](crate::guard) process (its parent, a
//!   child subreaper) in a process group of its own, with `HIGHLANDER_LOCK`,
//!   `HIGHLANDER_IDENTITY` and `HIGHLANDER_FENCING_TOKEN` set. The guard holds the
//!   term's deadline and stops the command on its own when it passes, however long
//!   `highlander` itself was paused.
//! - Leadership lost: SIGTERM to the command's whole tree, the grace period, SIGKILL.
//!   The grace period must end before a standby may take the lease, so it is bounded
//!   by `lease − renew deadline − clock margin`. Then campaign again (or exit, with `--once`).
//! - The guard dies: the command is stopped at once, then started again under a new
//!   guard if this process still leads; it never runs unguarded.
//! - The command exits by itself: release the lease, exit with its status.
//! - SIGTERM, SIGINT or SIGHUP: stop the command the same way, release the lease so a
//!   standby takes over at once, exit with the command's status.

use crate::{Failure, guard, serve, tree};
use highlander::{LeaderElector, Leadership, LockName, OpenOptions, check_identity, create_if_missing, open_with};
use nix::{
    sys::{
        signal::{Signal, kill},
        wait::{WaitPidFlag, waitpid},
    },
    unistd::Pid,
};
use std::{
    collections::HashSet,
    ffi::OsString,
    net::SocketAddr,
    os::{fd::OwnedFd, unix::process::ExitStatusExt},
    path::PathBuf,
    process::{ExitCode, ExitStatus, Stdio},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::UnixStream,
    process::{Child, Command},
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// `1` while the command runs under this process's leadership. Label: `lock`.
pub(crate) const COMMAND_RUNNING: &str = "highlander_command_running";
/// Times the command was started. Label: `lock`.
pub(crate) const COMMAND_STARTS: &str = "highlander_command_starts_total";

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    target: crate::Target,
    /// This candidate's identity, unique among candidates (default: HOSTNAME-PID).
    #[arg(long)]
    identity: Option<String>,
    #[command(flatten)]
    timing: crate::TimingArgs,
    /// Between SIGTERM and SIGKILL when the command must stop (default: half of
    /// lease − renew deadline − clock margin, the most it may be).
    #[arg(long, value_parser = crate::duration)]
    grace: Option<Duration>,
    /// Create what the store needs if it is missing (a table, a bucket or container, a directory, a prefix znode, a database file: each store's README says).
    #[arg(long)]
    create: bool,
    /// Exit when leadership is lost instead of campaigning again.
    #[arg(long)]
    once: bool,
    /// Let the command inherit the lock store's secrets (HIGHLANDER_STORE, PGPASSWORD, GITHUB_TOKEN,
    /// ETCD_PASSWORD, AWS_SECRET_ACCESS_KEY…), which it does not get by default.
    #[arg(long = "pass-store-secrets")]
    pass_store_secrets: bool,
    #[command(flatten)]
    candidacy: crate::CandidacyArgs,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Serve a health check at http://ADDR/healthz.
    #[arg(long, value_name = "ADDR")]
    health: Option<SocketAddr>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// What to start and how to stop it.
struct Spec {
    program: OsString,
    args: Vec<OsString>,
    lock: LockName,
    identity: String,
    grace: Duration,
    /// The environment variables the command must not inherit.
    withheld: Vec<&'static str>,
    /// This executable, run again as the guard (`/proc/self/exe` survives an upgrade that replaced the file).
    guard_exe: PathBuf,
    /// The guards alive now: the reaper must leave them to their `Child` handles.
    guards: Arc<Mutex<HashSet<i32>>>,
    /// Processes of an earlier command that were sent SIGKILL and may not have died
    /// yet (uninterruptible sleep), each with its start time so a reused pid is not theirs.
    leftovers: Arc<Mutex<Vec<(Pid, u64)>>>,
    /// The soft open-file limit this process had before raising it: the command gets it back.
    open_files: Option<u64>,
    /// The election's durations.
    timing: highlander::Timing,
}

/// How one term's command ended.
enum Ended {
    /// It could not be started.
    NotStarted(String),
    /// It exited; `stopped` if it was stopped (leadership lost, deadline, shutdown).
    Exited { status: ExitStatus, stopped: bool },
}

pub(crate) async fn run(args: Args) -> Result<ExitCode, Failure> {
    let lock = LockName::new(&args.target.lock).map_err(|e| e.to_string())?;
    let open_files = serve::raise_open_file_limit();
    let identity = args.identity.unwrap_or_else(default_identity);
    check_identity(&identity).map_err(|e| format!("--identity: {e}"))?;
    let timing = args.timing.timing()?;
    let window = timing.stop_window();
    let grace = args.grace.unwrap_or(window / 2);
    if grace > window {
        return Err(Failure::from(format!(
            "--grace {grace:?} must be at most lease - renew deadline - clock margin ({window:?}): the command must be gone before a standby can take the lease"
        )));
    }
    let mut command = args.command.into_iter();
    let program = command.next().ok_or("no command given after --")?;
    // A standby whose command cannot start would say so only when it wins: say it now.
    let resolved = resolve(&program).map_err(Failure::not_started)?;
    let store = open_store(&args.target.store, args.create, &lock, timing).await?;
    let recorder = match args.metrics {
        Some(_) => Some(serve::install_recorder()?),
        None => None,
    };
    let spec = Arc::new(Spec {
        program: resolved,
        args: command.collect(),
        lock: lock.clone(),
        identity: identity.clone(),
        grace,
        // Every backend's secrets, not only this store's: a command rarely needs any of
        // them, and the lock's URL (HIGHLANDER_STORE) may carry a password itself.
        withheld: if args.pass_store_secrets { Vec::new() } else { highlander::every_secret_env() },
        guard_exe: guard_exe()?,
        guards: as_supervisor()?,
        leftovers: Arc::default(),
        open_files,
        timing,
    });
    let (ended_tx, ended_rx) = mpsc::unbounded_channel();
    let elector = LeaderElector::builder(store.clone(), lock.clone(), identity.clone())
        .timing(timing)
        .recampaign(!args.once)
        // Room to stop the command (grace, then SIGKILL) before the lease is released.
        .drain_timeout(grace + Duration::from_secs(2))
        .on_started_leading(move |leadership| supervise(spec.clone(), leadership, ended_tx.clone()));
    let elector = args.candidacy.apply(elector).build().map_err(|e| e.to_string())?;
    serve::start(args.metrics, args.health, recorder, elector.health(), elector.subscribe()).await?;
    info!(lock = %lock, identity = %identity, store = %store, "campaigning");

    let (end, last) = until_ended(elector, ended_rx, &lock, &store.to_string()).await?;
    info!(lock = %lock, identity = %identity, ?end, "stopped");
    if let highlander::ElectionEnd::Failed { error } = &end {
        return Err(format!("lock {lock:?}: giving up: {error}").into());
    }
    match last {
        None => Ok(ExitCode::SUCCESS),
        Some(Ended::NotStarted(why)) => Err(Failure::not_started(why)),
        Some(Ended::Exited { status, .. }) => Ok(ExitCode::from(exit_code(status))),
    }
}

/// Opens the store; one that is down now may be up in a moment: a standby started during
/// an outage waits for it (a pod must not crash-loop), saying so once; a wrong URL or
/// refused credentials end the run at once.
pub(crate) async fn open_store(
    url: &str,
    create: bool,
    lock: &LockName,
    timing: highlander::Timing,
) -> Result<highlander::SharedStore, Failure> {
    let options = OpenOptions::new(timing);
    let mut unreached = 0u32;
    loop {
        let opened = async {
            if create {
                create_if_missing(url, &options).await?;
            }
            open_with(url, &options).await
        };
        match opened.await {
            Ok(store) => {
                if unreached > 0 {
                    info!(lock = %lock, attempts = unreached, "the store answers: campaigning");
                }
                return Ok(store);
            }
            Err(e) if e.is_transient() => {
                // Said once; the retries are quiet until the store answers.
                if unreached == 0 {
                    warn!(
                        lock = %lock, store = %crate::store_name(url), error = %e,
                        "the store cannot be reached yet: trying again every {:?}, quietly, until it answers", timing.retry_period
                    );
                } else {
                    debug!(lock = %lock, error = %e, "the store cannot be reached yet");
                }
                unreached = unreached.saturating_add(1);
                tokio::time::sleep(timing.retry_period).await;
            }
            Err(e) => return Err(Failure::from(e.to_string())),
        }
    }
}

/// This executable, to run again as the guard (`/proc/self/exe` survives an upgrade
/// that replaced the file).
fn guard_exe() -> Result<PathBuf, String> {
    if std::path::Path::new("/proc/self/exe").exists() {
        Ok(PathBuf::from("/proc/self/exe"))
    } else {
        std::env::current_exe().map_err(|e| format!("cannot find highlander's own executable for the guard: {e}"))
    }
}

/// Makes this process fit to supervise commands: secrets not readable back from it
/// (a non-dumpable process's /proc/PID/environ and memory are closed to other processes
/// of the same user, the command included; the flag does not pass to the guard or the
/// command), and a subreaper, so the orphans of a guard that died are re-parented here
/// to be stopped and reaped. Returns the set of live guards the reaper leaves alone.
fn as_supervisor() -> Result<Arc<Mutex<HashSet<i32>>>, String> {
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("cannot make this process non-dumpable: {e}"))?;
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("cannot become a child subreaper: {e}"))?;
    let guards = Arc::new(Mutex::new(HashSet::new()));
    reap_orphans(guards.clone())?;
    Ok(guards)
}

/// Runs the election until it ends: signals start the shutdown, a command that exits by
/// itself (or cannot start) releases the lease. Returns how the election ended and the
/// command's last end.
async fn until_ended(
    elector: LeaderElector,
    mut ended_rx: mpsc::UnboundedReceiver<Ended>,
    lock: &LockName,
    store: &str,
) -> Result<(highlander::ElectionEnd, Option<Ended>), Failure> {
    let mut signals = ShutdownSignals::new("stopping the command and releasing the lease")?;
    let shutdown = CancellationToken::new();
    let mut election = elector.spawn(shutdown.clone());
    let mut last: Option<Ended> = None;
    let end = loop {
        tokio::select! {
            end = &mut election => break end,
            () = signals.stop(&shutdown) => {}
            Some(ended) = ended_rx.recv() => {
                match &ended {
                    Ended::Exited { status, stopped: false } => {
                        info!(lock = %lock, status = %status, "the command exited: releasing the lease");
                        shutdown.cancel();
                    }
                    Ended::NotStarted(why) => {
                        error!(lock = %lock, store = %store, error = %why, "the command could not be started: releasing the lease");
                        shutdown.cancel();
                    }
                    Ended::Exited { stopped: true, .. } => {}
                }
                last = Some(ended);
            }
        }
    };
    while let Ok(ended) = ended_rx.try_recv() {
        last = Some(ended);
    }
    let end = end.map_err(|e| format!("the election task failed: {e}"))?;
    Ok((end, last))
}

/// SIGTERM, SIGINT and SIGHUP: each starts the shutdown (the first one said at info).
pub(crate) struct ShutdownSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
    /// What the shutdown does, for the log.
    doing: &'static str,
}

impl ShutdownSignals {
    pub(crate) fn new(doing: &'static str) -> Result<Self, String> {
        let watch = |kind: SignalKind, name: &str| signal(kind).map_err(|e| format!("cannot watch for {name}: {e}"));
        Ok(Self {
            terminate: watch(SignalKind::terminate(), "SIGTERM")?,
            interrupt: watch(SignalKind::interrupt(), "SIGINT")?,
            hangup: watch(SignalKind::hangup(), "SIGHUP")?,
            doing,
        })
    }

    /// Waits for the next of them and cancels `shutdown`.
    pub(crate) async fn stop(&mut self, shutdown: &CancellationToken) {
        let name = tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.hangup.recv() => "SIGHUP",
        };
        if !shutdown.is_cancelled() {
            info!(signal = name, "{}", self.doing);
            shutdown.cancel();
        }
    }
}

/// The shell's convention: the exit code, or 128 + the signal that ended it.
fn exit_code(status: ExitStatus) -> u8 {
    let code = status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1);
    u8::try_from(code).unwrap_or(1)
}

pub(crate) fn default_identity() -> String {
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).filter(|h| !h.is_empty() && check_identity(h).is_ok());
    format!("{}-{}", host.as_deref().unwrap_or("unknown-host"), std::process::id())
}

/// The program as the guard will run it: a path that exists and is executable, or a
/// name found on `PATH`; why not, otherwise.
fn resolve(program: &OsString) -> Result<OsString, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = program.to_string_lossy().escape_debug().to_string();
    let runnable = |p: &std::path::Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    let path = std::path::Path::new(program);
    if path.components().count() > 1 || program.to_string_lossy().contains('/') {
        return if runnable(path) { Ok(program.clone()) } else { Err(format!("cannot run \"{shown}\": no such executable file")) };
    }
    let search = std::env::var_os("PATH").unwrap_or_default();
    match std::env::split_paths(&search).map(|dir| dir.join(path)).find(|p| runnable(p)) {
        Some(found) => Ok(found.into_os_string()),
        None => Err(format!("cannot run \"{shown}\": not found on PATH")),
    }
}

/// Reaps processes re-parented to this one (the orphans of a guard that died) as
/// they exit, leaving the guards to their own handles: as a container's first
/// process, highlander must not collect zombies.
fn reap_orphans(guards: Arc<Mutex<HashSet<i32>>>) -> Result<(), String> {
    let mut children = signal(SignalKind::child()).map_err(|e| format!("cannot watch for SIGCHLD: {e}"))?;
    let own_group = nix::unistd::getpgrp().as_raw();
    tokio::spawn(async move {
        while children.recv().await.is_some() {
            let me = nix::unistd::getpid().as_raw();
            for (pid, lock_conformance::procfs::Stat { state, ppid, pgrp, .. }) in lock_conformance::procfs::processes() {
                // Not our own children (guards, or a process a library started, such as an
                // AWS credential_process, which share our process group): their handles
                // reap them. Orphans come from the commands' groups and sessions.
                if state == 'Z' && ppid == me && pgrp != own_group && !guards.lock().unwrap_or_else(PoisonError::into_inner).contains(&pid)
                {
                    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
                }
            }
        }
    });
    Ok(())
}

/// The leader's work: run the command until it exits or leadership ends, under a
/// guard that knows the current deadline; a new guard if one dies while we lead.
async fn supervise(spec: Arc<Spec>, leadership: Leadership, ended: mpsc::UnboundedSender<Ended>) {
    let labels = [("lock", spec.lock.to_string())];
    let mut guard_deaths = 0u32;
    let outcome = loop {
        // What SIGKILL has not ended yet of an earlier command (a process in
        // uninterruptible sleep, say) must be gone before the command starts again.
        let kill_leftovers = |signal| {
            let mut left = spec.leftovers.lock().unwrap_or_else(PoisonError::into_inner);
            left.retain(|(pid, started)| tree::start_time(*pid) == Some(*started) && kill(*pid, signal).is_ok());
            left.iter().map(|(pid, _)| *pid).collect()
        };
        let waiting = |left: usize| {
            warn!(
                lock = %spec.lock, store = %leadership.store(), left,
                "processes of the last command are still alive after SIGKILL: waiting (up to the grace period + 2 s) before starting it again"
            );
        };
        match leftovers_gone(kill_leftovers, || leadership.is_valid(), spec.grace + Duration::from_secs(2), waiting).await {
            Ok(()) => {}
            Err(Leftover::TermOver) => break Ended::Exited { status: ExitStatus::from_raw(0), stopped: true },
            Err(Leftover::Stuck(left)) => {
                let shown: Vec<String> = left.iter().map(|pid| format!("{pid} ({})", tree::state(*pid))).collect();
                break Ended::NotStarted(format!(
                    "{} process(es) of the last command did not die on SIGKILL: {}; not starting the command beside them",
                    left.len(),
                    shown.join(", ")
                ));
            }
        }
        if !room_to_run(&spec.lock, spec.timing, &leadership).await {
            break Ended::Exited { status: ExitStatus::from_raw(0), stopped: true };
        }
        let mut term = match Guarded::start(&spec, &leadership).await {
            Ok(term) => term,
            Err(Start::NotStarted(why)) => break Ended::NotStarted(why),
            Err(Start::Expired) => break Ended::Exited { status: ExitStatus::from_raw(0), stopped: true },
        };
        metrics::counter!(COMMAND_STARTS, &labels).increment(1);
        metrics::gauge!(COMMAND_RUNNING, &labels).set(1.0);
        let watched = term.watch(&spec, &leadership).await;
        metrics::gauge!(COMMAND_RUNNING, &labels).set(0.0);
        match watched {
            Watched::Exited { status, stopped } => {
                info!(lock = %spec.lock, pid = term.pid, %status, stopped, "the command ended");
                break Ended::Exited { status, stopped };
            }
            Watched::GuardDied => {
                error!(lock = %spec.lock, store = %leadership.store(), pid = term.pid, "the guard process died: stopping the command, which must not run unguarded");
                let status = term.stop_unguarded(&spec, &leadership).await;
                guard_deaths = guard_deaths.saturating_add(1);
                if !leadership.is_valid() {
                    break Ended::Exited { status, stopped: true };
                }
                // A guard that keeps dying is a leader that cannot run its command: give
                // the lease up for a standby rather than hold it with nothing running.
                if guard_deaths >= MAX_GUARD_DEATHS {
                    break Ended::NotStarted(format!(
                        "the guard process died {guard_deaths} times in this term (see the errors above: a process or file limit, a refused system call, something killing it); giving up the lease so that a standby runs the command"
                    ));
                }
                let backoff = GUARD_BACKOFF.saturating_mul(1 << (guard_deaths - 1).min(8));
                warn!(lock = %spec.lock, store = %leadership.store(), attempt = guard_deaths + 1, of = MAX_GUARD_DEATHS, "still leading: starting the command again under a new guard in {backoff:?}");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = leadership.lost() => break Ended::Exited { status, stopped: true },
                }
                continue;
            }
        }
    };
    let _ = ended.send(outcome);
}

/// How many times a guard may die within one term before the leader gives the lease up.
const MAX_GUARD_DEATHS: u32 = 3;
/// The wait before the first new guard; it doubles with each death.
const GUARD_BACKOFF: Duration = Duration::from_millis(100);

/// Waits, while the term lasts, until a renewal leaves room for the next one: a retry
/// period and another write as slow as the last must fit before the deadline, or the
/// term ends at the next renewal and the command with it (a store whose round trip eats
/// the renew deadline would have the command started and stopped again and again).
/// Says so once, with the figures; `false` if the term ended.
async fn room_to_run(lock: &LockName, timing: highlander::Timing, leadership: &Leadership) -> bool {
    let mut said = false;
    let mut changes = leadership.deadline_changes();
    loop {
        let deadlines = leadership.deadlines();
        let left = deadlines.valid_until.remaining();
        let needed = timing.retry_period.saturating_add(deadlines.round_trip);
        if left > needed {
            if said {
                info!(lock = %lock, left = ?left, round_trip = ?deadlines.round_trip, "a renewal left room for the command again: starting it");
            }
            return true;
        }
        if !said {
            let round_trip = deadlines.round_trip;
            // A renewal every retry period + round trip, each answered within the deadline.
            let renew_deadline =
                round_trip.saturating_mul(2).saturating_add(timing.retry_period).saturating_add(Duration::from_millis(500));
            warn!(
                lock = %lock, store = %leadership.store(), left = ?left, round_trip = ?round_trip,
                "the store is too slow for these timings: a write took {round_trip:?} and leaves {left:?} of the term, so the next renewal (a retry period later) could not be answered in time and the command would be stopped; not starting it until a renewal leaves room. Set --renew-deadline to at least {}s (and --lease above it), or --retry-period lower",
                renew_deadline.as_secs_f64().ceil()
            );
            said = true;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return false },
            () = leadership.lost() => return false,
        }
    }
}

/// Why a command was not started beside an earlier one's processes.
#[derive(Debug, PartialEq, Eq)]
enum Leftover {
    /// The term ended while waiting: campaign again.
    TermOver,
    /// Still alive after the patience: these.
    Stuck(Vec<Pid>),
}

/// Until `kill_left(SIGKILL)` — which signals every process left and lists those still
/// alive — finds none, every 100 ms; gives up once `patience` has passed or `leading`
/// says the term is over. `waiting` hears once, with the count, that it has to wait.
async fn leftovers_gone(
    mut kill_left: impl FnMut(Signal) -> Vec<Pid>,
    leading: impl Fn() -> bool,
    patience: Duration,
    waiting: impl FnOnce(usize),
) -> Result<(), Leftover> {
    let until = tokio::time::Instant::now() + patience;
    let mut waiting = Some(waiting);
    loop {
        let left = kill_left(Signal::SIGKILL);
        if left.is_empty() {
            return Ok(());
        }
        if !leading() {
            return Err(Leftover::TermOver);
        }
        if tokio::time::Instant::now() >= until {
            return Err(Leftover::Stuck(left));
        }
        if let Some(say) = waiting.take() {
            say(left.len());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

enum Start {
    NotStarted(String),
    /// The term's deadline passed before the command could start.
    Expired,
}

enum Watched {
    Exited { status: ExitStatus, stopped: bool },
    GuardDied,
}

/// A command running under its guard.
struct Guarded {
    guard: Child,
    guard_pid: i32,
    pid: i32,
    lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    writer: tokio::net::unix::OwnedWriteHalf,
    guards: Arc<Mutex<HashSet<i32>>>,
    leftovers: Arc<Mutex<Vec<(Pid, u64)>>>,
}

fn nanos(d: Duration) -> u128 {
    d.as_nanos()
}

fn deadline_line(leadership: &Leadership) -> String {
    let d = leadership.deadlines();
    format!("deadline {} {}\n", nanos(d.valid_until.boottime), nanos(d.kill_by.boottime))
}

/// However a command's supervision ends — even a supervising task aborted mid-wait —
/// its guard's pid leaves the set the reaper skips, so that a later process that reuses
/// the pid is reaped.
impl Drop for Guarded {
    fn drop(&mut self) {
        // A guard that was waited for reported its command's end only when every process
        // of it was gone. One still running means supervision was cut short (the drain
        // time ran out): it and everything under it get SIGKILL and are remembered, so
        // that no command starts while one of them lives.
        if matches!(self.guard.try_wait(), Ok(None)) {
            let guard = Pid::from_raw(self.guard_pid);
            let mut all = tree::descendants(guard);
            all.push(guard);
            let mut left = self.leftovers.lock().unwrap_or_else(PoisonError::into_inner);
            for pid in all {
                if let Some(started) = tree::start_time(pid) {
                    let _ = kill(pid, Signal::SIGKILL);
                    left.push((pid, started));
                }
            }
        }
        self.guards.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.guard_pid);
    }
}

impl Guarded {
    async fn start(spec: &Spec, leadership: &Leadership) -> Result<Self, Start> {
        let (ours, theirs) =
            std::os::unix::net::UnixStream::pair().map_err(|e| Start::NotStarted(format!("cannot make the guard's socket: {e}")))?;
        let mut command = Command::new(&spec.guard_exe);
        command
            .arg(guard::ARG)
            .arg("--")
            .arg(&spec.program)
            .args(&spec.args)
            .env("HIGHLANDER_LOCK", spec.lock.as_str())
            .env("HIGHLANDER_IDENTITY", &spec.identity)
            .env("HIGHLANDER_FENCING_TOKEN", leadership.fencing_token().to_string())
            .envs(spec.open_files.map(|soft| (guard::OPEN_FILES_ENV, soft.to_string())))
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .process_group(0)
            .kill_on_drop(false);
        for var in &spec.withheld {
            command.env_remove(var);
        }
        let guard = command.spawn().map_err(|e| Start::NotStarted(format!("cannot start the guard process: {e}")))?;
        let guard_pid =
            guard.id().and_then(|p| i32::try_from(p).ok()).ok_or_else(|| Start::NotStarted("the guard exited at once".into()))?;
        spec.guards.lock().unwrap_or_else(PoisonError::into_inner).insert(guard_pid);
        ours.set_nonblocking(true).map_err(|e| Start::NotStarted(format!("guard socket: {e}")))?;
        let stream = UnixStream::from_std(ours).map_err(|e| Start::NotStarted(format!("guard socket: {e}")))?;
        let (reader, writer) = stream.into_split();
        let mut term = Self {
            guard,
            guard_pid,
            pid: 0,
            lines: BufReader::new(reader).lines(),
            writer,
            guards: spec.guards.clone(),
            leftovers: spec.leftovers.clone(),
        };
        let hello = format!("{}start\n", deadline_line(leadership));
        if let Err(e) = term.writer.write_all(hello.as_bytes()).await {
            term.abandon().await;
            return Err(Start::NotStarted(format!("cannot hand the command to its guard: {e}")));
        }
        match term.lines.next_line().await {
            Ok(Some(line)) if line.starts_with("started ") => {
                term.pid = line["started ".len()..].trim().parse().unwrap_or(0);
                info!(lock = %spec.lock, identity = %spec.identity, fencing_token = %leadership.fencing_token(), pid = term.pid, guard = guard_pid, program = %spec.program.to_string_lossy(), "started the command");
                Ok(term)
            }
            Ok(Some(line)) if line == "expired" => {
                term.abandon().await;
                Err(Start::Expired)
            }
            Ok(Some(line)) if line.starts_with("failed ") => {
                term.abandon().await;
                Err(Start::NotStarted(line["failed ".len()..].to_string()))
            }
            other => {
                term.abandon().await;
                Err(Start::NotStarted(format!("the guard did not start the command: {other:?}")))
            }
        }
    }

    /// Waits for the guard to exit (its pid leaves the reaper's skip-set on drop).
    async fn abandon(&mut self) {
        let _ = self.guard.wait().await;
    }

    fn group(&self) -> Option<Pid> {
        (self.pid > 1).then(|| Pid::from_raw(self.pid))
    }

    /// Until the command has ended (and the guard reported it) or the guard died.
    async fn watch(&mut self, spec: &Spec, leadership: &Leadership) -> Watched {
        let mut deadlines = leadership.deadline_changes();
        let mut stopping: Option<tokio::time::Instant> = None;
        let mut stopped = false;
        let mut killed = false;
        // Whether the SIGKILL comes at once because the term's kill-by time had passed
        // (a process paused past it), not after a grace period the command outlived.
        let mut no_grace = false;
        let mut guard_stopped = false;
        let mut deadlines_open = true;
        loop {
            let kill_at = async {
                match stopping {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // What the guard already reported comes first: after a pause, its
                // "expired" and "exited" are waiting beside the lost leadership.
                biased;
                line = self.lines.next_line() => match line {
                    Ok(Some(line)) if line == "expired" => {
                        warn!(lock = %spec.lock, store = %leadership.store(), pid = self.pid, "the renewal deadline passed: the guard stopped the command on its own");
                        stopped = true;
                        guard_stopped = true;
                    }
                    // The guard's own SIGKILL can come before ours (both end the same
                    // grace period): said as ours would be.
                    Ok(Some(line)) if line == "killed" => {
                        if !killed {
                            say_killed(spec, leadership, self.pid, no_grace, guard_stopped);
                        }
                        killed = true;
                    }
                    Ok(Some(line)) if line.starts_with("exited ") => {
                        let status = parse_exit(&line);
                        self.abandon().await;
                        return Watched::Exited { status, stopped: stopped || !leadership.is_valid() };
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        self.abandon().await;
                        return Watched::GuardDied;
                    }
                },
                changed = deadlines.changed(), if stopping.is_none() && deadlines_open => {
                    // The term is over when the elector drops its side: stop asking, or
                    // this branch, always ready, would starve the ones after it.
                    deadlines_open = changed.is_ok();
                    if changed.is_ok() && !leadership.deadlines().valid_until.has_passed() {
                        // A guard that cannot be told its new deadline stops the command at the old one.
                        let _ = self.writer.write_all(deadline_line(leadership).as_bytes()).await;
                    }
                }
                () = leadership.lost(), if stopping.is_none() => {
                    // Past the deadline (this process was paused) the guard, which holds
                    // the deadline on its own clock, has stopped the command or is
                    // stopping it, and says so: this is only the backstop.
                    if stopped || leadership.deadlines().valid_until.has_passed() {
                        debug!(lock = %spec.lock, pid = self.pid, "leadership ended past the term's deadline: the guard stops the command");
                    } else {
                        info!(lock = %spec.lock, pid = self.pid, grace = ?spec.grace, "leadership ended: stopping the command (SIGTERM)");
                    }
                    stopped = true;
                    let _ = self.writer.write_all(format!("stop {}\n", nanos(spec.grace)).as_bytes()).await;
                    // Our own enforcement too, in case the guard is stuck: SIGTERM now,
                    // SIGKILL when the grace (bounded by the kill-by time) is over.
                    tree::signal_tree(Pid::from_raw(self.guard_pid), self.group(), Signal::SIGTERM);
                    let kill_by = leadership.deadlines().kill_by.remaining();
                    no_grace = kill_by.is_zero();
                    // With the kill-by time gone, a moment for the guard's reports (read
                    // only once the runtime polls the pipe again after a pause).
                    let wait = if no_grace { Duration::from_millis(100) } else { spec.grace.min(kill_by) };
                    stopping = Some(tokio::time::Instant::now() + wait);
                }
                () = kill_at => {
                    // Said once; SIGKILL is repeated quietly until the guard reports the end.
                    if !killed {
                        say_killed(spec, leadership, self.pid, no_grace, guard_stopped);
                    }
                    killed = true;
                    tree::signal_tree(Pid::from_raw(self.guard_pid), self.group(), Signal::SIGKILL);
                    stopping = Some(tokio::time::Instant::now() + Duration::from_millis(100));
                }
            }
        }
    }

    /// The guard is gone; its orphans are ours now (we are a subreaper). SIGTERM to
    /// all of them, the grace period (bounded by the kill-by time), SIGKILL.
    async fn stop_unguarded(&mut self, spec: &Spec, leadership: &Leadership) -> ExitStatus {
        let me = Pid::this();
        tree::signal_foreign(me, self.group(), Signal::SIGTERM);
        let until = tokio::time::Instant::now() + spec.grace.min(leadership.deadlines().kill_by.remaining());
        while tokio::time::Instant::now() < until && !tree::foreign_descendants(me).is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for _ in 0..500 {
            if tree::signal_foreign(me, self.group(), Signal::SIGKILL) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // What outlived SIGKILL is remembered: the command is not started beside it.
        let mut left = self.leftovers.lock().unwrap_or_else(PoisonError::into_inner);
        left.extend(tree::foreign_descendants(me).into_iter().filter_map(|pid| Some((pid, tree::start_time(pid)?))));
        // The exit status went to the dead guard; SIGTERM is what it was sent.
        ExitStatus::from_raw(Signal::SIGTERM as i32)
    }
}

/// `exited code N` or `exited signal N`, as the shell would see it.
fn parse_exit(line: &str) -> ExitStatus {
    let mut words = line.split_whitespace().skip(1);
    match (words.next(), words.next().and_then(|n| n.parse::<i32>().ok())) {
        (Some("code"), Some(code)) => ExitStatus::from_raw((code & 0xff) << 8),
        (Some("signal"), Some(signal)) => ExitStatus::from_raw(signal & 0x7f),
        _ => ExitStatus::from_raw(1 << 8),
    }
}

/// Why the command got SIGKILL, said once per command (by whichever of highlander and
/// the guard sent it first).
fn say_killed(spec: &Spec, leadership: &Leadership, pid: i32, no_grace: bool, guard_stopped: bool) {
    if no_grace && guard_stopped {
        debug!(lock = %spec.lock, pid, "the term's kill-by time had passed (this process was paused): SIGKILL to whatever is left");
    } else if no_grace {
        warn!(
            lock = %spec.lock, store = %leadership.store(), pid,
            "the term's kill-by time passed while highlander and the guard could not act (both paused?): SIGKILL at once"
        );
    } else {
        warn!(lock = %spec.lock, store = %leadership.store(), pid, grace = ?spec.grace, "the command did not stop within the grace period: SIGKILL");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A leader on a store whose round trip eats its renew deadline gets no command in
    /// any of its terms; one whose round trip is a quarter of it keeps one term and runs.
    #[tokio::test(start_paused = true)]
    async fn a_store_too_slow_for_the_timings_gets_no_command_until_a_renewal_leaves_room() {
        use lock_core::{FaultyStore, LeaderElector, MemoryStore};
        let timing = highlander::Timing {
            lease: Duration::from_secs(3),
            renew_deadline: Duration::from_secs(2),
            retry_period: Duration::from_millis(500),
        };
        let lock = LockName::new("slow").expect("valid");
        let (store, faults) = FaultyStore::new(MemoryStore::new());
        // Each term, as `supervise` would: whether the command was let start, and when.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let elector = LeaderElector::builder(store, lock.clone(), "slowpoke")
            .lease_duration(timing.lease)
            .renew_deadline(timing.renew_deadline)
            .retry_period(timing.retry_period)
            .on_started_leading(move |l| {
                let (tx, lock) = (tx.clone(), LockName::new("slow").expect("valid"));
                async move {
                    let room = room_to_run(&lock, timing, &l).await;
                    let _ = tx.send((room, tokio::time::Instant::now(), l.clone()));
                    l.lost().await;
                }
            })
            .build()
            .expect("valid timings");
        let shutdown = tokio_util::sync::CancellationToken::new();
        let election = tokio::spawn(elector.run(shutdown.clone()));
        // A write answered in 0.8 s: 1.2 s of the term left, and the next renewal, 0.5 s
        // later, would be answered 0.1 s after the deadline.
        faults.set_delay(Duration::from_millis(400));
        faults.set_response_delay(Duration::from_millis(400));
        tokio::time::sleep(Duration::from_secs(20)).await;
        let mut terms = 0;
        while let Ok((room, _, _)) = rx.try_recv() {
            terms += 1;
            assert!(!room, "a command was let start in a term the slow store could not renew");
        }
        assert!(terms >= 2, "the leader's terms ended at their first renewal ({terms} ended in 20 s)");
        // A write answered in 0.5 s (a quarter of the renew deadline): room, and one term
        // that lasts.
        faults.set_delay(Duration::from_millis(250));
        faults.set_response_delay(Duration::from_millis(250));
        let (room, allowed_at, leadership) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a term with room within 10 s")
            .expect("the elector runs");
        assert!(room, "the command was not let start with a write answered in 0.5 s");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(leadership.is_valid(), "the term that started the command ended within 60 s of {allowed_at:?}");
        assert!(rx.try_recv().is_err(), "another term began");
        shutdown.cancel();
        let _ = election.await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_command_never_starts_beside_an_unkillable_leftover() {
        use std::cell::Cell;
        let patience = Duration::from_secs(3);
        // Nothing left: starts at once, having looked once.
        let calls = Cell::new(0);
        let none = |_| {
            calls.set(calls.get() + 1);
            Vec::new()
        };
        assert_eq!(leftovers_gone(none, || true, patience, |_| {}).await, Ok(()));
        assert_eq!(calls.get(), 1);
        // A leftover that dies on the third SIGKILL: waited for, then started.
        let calls = Cell::new(0);
        let dies = |signal| {
            assert_eq!(signal, Signal::SIGKILL);
            calls.set(calls.get() + 1);
            if calls.get() < 3 { vec![Pid::from_raw(4242)] } else { Vec::new() }
        };
        let started = tokio::time::Instant::now();
        let said = Cell::new(Vec::new());
        let waiting = |n| said.set([said.take(), vec![n]].concat());
        assert_eq!(leftovers_gone(dies, || true, patience, waiting).await, Ok(()));
        assert_eq!(said.take(), [1], "the wait is said once, with the count");
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        // One that never dies (uninterruptible sleep): not started, after the patience.
        let started = tokio::time::Instant::now();
        let stuck = |_| vec![Pid::from_raw(4242)];
        assert_eq!(leftovers_gone(stuck, || true, patience, |_| {}).await, Err(Leftover::Stuck(vec![Pid::from_raw(4242)])));
        assert!(started.elapsed() >= patience && started.elapsed() < patience + Duration::from_millis(200));
        // …or, the term over meanwhile, campaign again (not an error).
        let started = tokio::time::Instant::now();
        assert_eq!(leftovers_gone(stuck, || false, patience, |_| {}).await, Err(Leftover::TermOver));
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 128 + 15, "killed by SIGTERM");
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 128 + 9, "killed by SIGKILL");
        assert_eq!(exit_code(parse_exit("exited code 7")), 7);
        assert_eq!(exit_code(parse_exit("exited signal 9")), 137);
        assert_eq!(exit_code(parse_exit("exited garbage")), 1);
    }

    #[test]
    fn the_default_identity_is_unique_per_process() {
        let id = default_identity();
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
        assert!(id.len() > format!("-{}", std::process::id()).len(), "a host name too: {id}");
        assert!(check_identity(&id).is_ok());
    }

    #[test]
    fn programs_are_resolved_before_campaigning() {
        assert!(resolve(&OsString::from("sh")).is_ok_and(|p| p.to_string_lossy().ends_with("/sh")));
        assert!(resolve(&OsString::from("/bin/sh")).is_ok());
        let err = resolve(&OsString::from("no-such-program-highlander")).expect_err("not on PATH");
        assert!(err.contains("not found on PATH"), "{err}");
        let plain = std::env::temp_dir().join(format!("highlander-not-executable-{}", std::process::id()));
        std::fs::write(&plain, "#!/bin/sh\n").expect("write");
        let err = resolve(&plain.clone().into_os_string()).expect_err("not executable");
        assert!(err.contains("no such executable"), "{err}");
        let _ = std::fs::remove_file(plain);
    }
}
