//! `highlander run`: runs a command only while this process leads the lock.
//!
//! - Leading: the command starts in a process group of its own, with
//!   `HIGHLANDER_LOCK`, `HIGHLANDER_IDENTITY` and `HIGHLANDER_FENCING_TOKEN` set and a
//!   [guard](crate::guard) watching over it.
//! - Leadership lost: SIGTERM to the command's group, the grace period, then SIGKILL.
//!   The grace period must end before the lease can expire for the standbys, so it is
//!   bounded by `lease - renew deadline`. Then campaign again (or exit, with `--once`).
//! - The command exits by itself: release the lease, exit with its status.
//! - SIGTERM or SIGINT: stop the command the same way, release the lease so a standby
//!   takes over at once, exit with the command's status.

use crate::{Failure, duration, guard, serve};
use highlander::{FencingToken, LeaderElector, Leadership, LockName, StoreUrl, create_if_missing, open_parsed};
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use std::{
    net::SocketAddr,
    os::unix::process::ExitStatusExt,
    process::{ExitCode, ExitStatus, Stdio},
    sync::Arc,
    time::Duration,
};
use tokio::{
    io::AsyncWriteExt,
    process::{Child, Command},
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// `1` while the command runs under this process's leadership. Label: `lock`.
pub(crate) const COMMAND_RUNNING: &str = "highlander_command_running";
/// Times the command was started. Label: `lock`.
pub(crate) const COMMAND_STARTS: &str = "highlander_command_starts_total";

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    target: crate::Target,
    /// This candidate's identity (default: HOSTNAME-PID, unique per process).
    #[arg(long)]
    identity: Option<String>,
    /// Lease duration (whole seconds).
    #[arg(long, default_value = "15s", value_parser = duration)]
    lease: Duration,
    /// How long the leader keeps trying to renew before it steps down.
    #[arg(long = "renew-deadline", default_value = "10s", value_parser = duration)]
    renew_deadline: Duration,
    /// How often to try to acquire or renew.
    #[arg(long = "retry-period", default_value = "2s", value_parser = duration)]
    retry_period: Duration,
    /// Between SIGTERM and SIGKILL when the command must stop (default: half of lease - renew deadline).
    #[arg(long, value_parser = duration)]
    grace: Option<Duration>,
    /// Create the store's table or bucket if it is missing (Postgres, DynamoDB, S3).
    #[arg(long)]
    create: bool,
    /// Exit when leadership is lost instead of campaigning again.
    #[arg(long)]
    once: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Serve a health check at http://ADDR/healthz.
    #[arg(long, value_name = "ADDR")]
    health: Option<SocketAddr>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

/// What to start and how to stop it.
struct Spec {
    program: String,
    args: Vec<String>,
    lock: LockName,
    identity: String,
    grace: Duration,
    /// This executable, run again as the guard (`/proc/self/exe` survives an upgrade that replaced the file).
    guard_exe: std::path::PathBuf,
}

/// How one run of the command ended.
enum Ended {
    /// It could not be started.
    NotStarted(String),
    /// It exited; `stopped` if we stopped it (leadership lost or shutdown).
    Exited { status: ExitStatus, stopped: bool },
}

pub(crate) async fn run(args: Args) -> Result<ExitCode, Failure> {
    let lock = LockName::new(&args.target.lock).map_err(|e| e.to_string())?;
    let identity = match args.identity {
        Some(id) => id,
        None => default_identity(),
    };
    if args.lease <= args.renew_deadline {
        return Err(format!("lease duration ({:?}) must be greater than renew deadline ({:?})", args.lease, args.renew_deadline).into());
    }
    let safe_window = args.lease - args.renew_deadline;
    let grace = args.grace.unwrap_or(safe_window / 2);
    if grace >= safe_window {
        return Err(Failure::from(format!(
            "--grace {grace:?} must be shorter than lease - renew deadline ({safe_window:?}): the command must be gone before a standby can take the lease"
        )));
    }
    let url = StoreUrl::parse(&args.target.store).map_err(|e| e.to_string())?;
    if args.create {
        create_if_missing(&url).await.map_err(|e| e.to_string())?;
    }
    let store = open_parsed(&url).await.map_err(|e| e.to_string())?;
    // A wrong URL, missing table or unreachable store fails now, in one line, rather
    // than as a candidate that never wins.
    match tokio::time::timeout(args.renew_deadline, store.get(&lock)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e.to_string().into()),
        Err(_) => return Err(format!("lock {lock:?} in {store}: no answer within {:?}", args.renew_deadline).into()),
    }
    let recorder = match args.metrics {
        Some(_) => Some(serve::install_recorder()?),
        None => None,
    };

    let mut command = args.command.into_iter();
    let program = command.next().ok_or("no command given after --")?;
    let guard_exe = if std::path::Path::new("/proc/self/exe").exists() {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().map_err(|e| format!("cannot find highlander's own executable for the guard: {e}"))?
    };
    let spec = Arc::new(Spec { program, args: command.collect(), lock: lock.clone(), identity: identity.clone(), grace, guard_exe });
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel();
    let elector = LeaderElector::builder(store.clone(), lock.clone(), identity.clone())
        .lease_duration(args.lease)
        .renew_deadline(args.renew_deadline)
        .retry_period(args.retry_period)
        .recampaign(!args.once)
        // Room to stop the command (grace, then SIGKILL) before the lease is released.
        .drain_timeout(grace + Duration::from_secs(2))
        .on_started_leading(move |leadership| supervise(spec.clone(), leadership, ended_tx.clone()))
        .build()
        .map_err(|e| e.to_string())?;
    serve::start(args.metrics, args.health, recorder, elector.health(), elector.subscribe()).await?;
    info!(lock = %lock, identity = %identity, store = %store, "campaigning");

    let mut terminate = signal(SignalKind::terminate()).map_err(|e| format!("cannot watch for SIGTERM: {e}"))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| format!("cannot watch for SIGINT: {e}"))?;
    let shutdown = CancellationToken::new();
    let mut election = elector.spawn(shutdown.clone());
    let mut last: Option<Ended> = None;
    let end = loop {
        tokio::select! {
            end = &mut election => break end,
            _ = terminate.recv() => stop_on_signal("SIGTERM", &shutdown),
            _ = interrupt.recv() => stop_on_signal("SIGINT", &shutdown),
            Some(ended) = ended_rx.recv() => {
                match &ended {
                    Ended::Exited { status, stopped: false } => {
                        info!(lock = %lock, status = %status, "the command exited: releasing the lease");
                        shutdown.cancel();
                    }
                    Ended::NotStarted(why) => {
                        error!(lock = %lock, error = %why, "the command could not be started: releasing the lease");
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
    let end = match end {
        Ok(end) => end,
        Err(e) => return Err(format!("the election task failed: {e}").into()),
    };
    info!(lock = %lock, identity = %identity, ?end, "stopped");
    match last {
        None => Ok(ExitCode::SUCCESS),
        Some(Ended::NotStarted(why)) => Err(Failure::not_started(why)),
        Some(Ended::Exited { status, .. }) => Ok(ExitCode::from(exit_code(status))),
    }
}

fn stop_on_signal(name: &str, shutdown: &CancellationToken) {
    if shutdown.is_cancelled() {
        return;
    }
    info!(signal = name, "stopping the command and releasing the lease");
    shutdown.cancel();
}

/// The shell's convention: the exit code, or 128 + the signal that ended it.
fn exit_code(status: ExitStatus) -> u8 {
    let code = status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1);
    u8::try_from(code).unwrap_or(1)
}

fn default_identity() -> String {
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).filter(|h| !h.is_empty());
    format!("{}-{}", host.as_deref().unwrap_or("unknown-host"), std::process::id())
}

/// The leader's work: run the command until it exits or leadership ends.
async fn supervise(spec: Arc<Spec>, leadership: Leadership, ended: mpsc::UnboundedSender<Ended>) {
    let labels = [("lock", spec.lock.to_string())];
    let outcome = match start(&spec, leadership.fencing_token()).await {
        Err(why) => Ended::NotStarted(why),
        Ok(mut running) => {
            metrics::counter!(COMMAND_STARTS, &labels).increment(1);
            metrics::gauge!(COMMAND_RUNNING, &labels).set(1.0);
            let exited = tokio::select! {
                status = running.child.wait() => Some(status),
                () = leadership.lost() => None,
            };
            let stopped = exited.is_none();
            let status = match exited {
                Some(status) => status,
                None => running.stop(spec.grace).await,
            };
            running.finish().await;
            metrics::gauge!(COMMAND_RUNNING, &labels).set(0.0);
            match status {
                Ok(status) => {
                    info!(lock = %spec.lock, pid = running.pid, %status, stopped, "the command ended");
                    Ended::Exited { status, stopped }
                }
                Err(e) => Ended::NotStarted(format!("lost track of {:?} (pid {}): {e}", spec.program, running.pid)),
            }
        }
    };
    let _ = ended.send(outcome);
}

/// A started command, its process group and its guard.
struct Running {
    child: Child,
    pid: u32,
    group: Pid,
    guard: Child,
}

async fn start(spec: &Spec, token: FencingToken) -> Result<Running, String> {
    // The guard first: the command must never run unguarded.
    let mut guard = Command::new(&spec.guard_exe)
        .arg(guard::ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start the guard process: {e}"))?;
    let child = Command::new(&spec.program)
        .args(&spec.args)
        .env("HIGHLANDER_LOCK", spec.lock.as_str())
        .env("HIGHLANDER_IDENTITY", &spec.identity)
        .env("HIGHLANDER_FENCING_TOKEN", token.to_string())
        .stdin(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) => {
            // Closing its stdin before naming a group lets the guard exit quietly.
            drop(guard.stdin.take());
            let _ = guard.wait().await;
            return Err(format!("cannot start {:?}: {e}", spec.program));
        }
    };
    let pid = child.id().ok_or("the command exited before its pid was read")?;
    let group = Pid::from_raw(i32::try_from(pid).map_err(|_| format!("pid {pid} out of range"))?);
    let mut running = Running { child, pid, group, guard };
    if let Some(stdin) = running.guard.stdin.as_mut()
        && let Err(e) = stdin.write_all(format!("{pid}\n").as_bytes()).await
    {
        // Without its guard the command must not run.
        running.signal(Signal::SIGKILL);
        let _ = running.child.wait().await;
        return Err(format!("cannot hand the command to its guard: {e}"));
    }
    info!(lock = %spec.lock, identity = %spec.identity, fencing_token = %token, pid, program = %spec.program, "started the command");
    Ok(running)
}

impl Running {
    fn signal(&self, signal: Signal) {
        if let Err(e) = killpg(self.group, signal)
            && e != nix::errno::Errno::ESRCH
        {
            warn!(pid = self.pid, %signal, error = %e, "cannot signal the command's process group");
        }
    }

    /// SIGTERM to the group, the grace period, then SIGKILL.
    async fn stop(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        info!(pid = self.pid, ?grace, "leadership ended: stopping the command (SIGTERM)");
        self.signal(Signal::SIGTERM);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => status,
            Err(_) => {
                warn!(pid = self.pid, ?grace, "the command did not stop within the grace period: SIGKILL");
                self.signal(Signal::SIGKILL);
                self.child.wait().await
            }
        }
    }

    /// Kills what is left of the group and lets the guard go.
    async fn finish(&mut self) {
        // Processes the command left behind in its group must not outlive the term.
        self.signal(Signal::SIGKILL);
        if let Some(mut stdin) = self.guard.stdin.take() {
            let _ = stdin.write_all(guard::DONE).await;
        }
        let _ = self.guard.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 128 + 15, "killed by SIGTERM");
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 128 + 9, "killed by SIGKILL");
    }

    #[test]
    fn the_default_identity_is_unique_per_process() {
        let id = default_identity();
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
        assert!(id.len() > format!("-{}", std::process::id()).len(), "a host name too: {id}");
    }
}
