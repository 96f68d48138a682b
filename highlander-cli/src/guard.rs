//! The guard: a small watchdog process between `highlander run` and its command,
//! with a deadline of its own.
//!
//! `highlander run` starts its own executable with [`ARG`] as the guard, in a process
//! group of its own, with one end of a socket pair as its standard input. The guard
//! is a child subreaper and the command's parent: every descendant of the command,
//! however it left the command's process group or session (`setsid`, double forks),
//! stays in the guard's process tree, so all of them can be found and stopped.
//!
//! The socket carries lines. From `highlander run`:
//! - `deadline TERM KILL`: the current term's deadlines on `CLOCK_BOOTTIME`, in
//!   nanoseconds: stop the command (SIGTERM to its whole tree) at `TERM`, kill it
//!   (SIGKILL) at `KILL`. Sent before the command starts and after every successful
//!   renewal. `TERM` is the start of the last successful renewal + the renew
//!   deadline; `KILL` is before the earliest moment a standby may take the lease.
//! - `start`: start the command.
//! - `stop GRACE`: leadership ended: SIGTERM now, SIGKILL after `GRACE` nanoseconds
//!   (and never after `KILL`).
//! - end of file: `highlander run` is gone (killed, crashed): SIGKILL at once.
//!
//! To `highlander run`: `started PID`, `failed WHY`, `expired` (the deadline passed
//! with no extension: the guard stopped the command on its own), `killed` (the grace
//! period or the kill time ran out: SIGKILL, said once, before the `exited` it leads
//! to), and `exited code N` / `exited signal N` once the command and every descendant
//! are gone.
//!
//! The deadlines are absolute times on `CLOCK_BOOTTIME`, which counts while a machine
//! is suspended, and the guard waits on a `timerfd` of that clock: a guard that was
//! paused with the rest finds its deadline passed the moment it runs again and kills
//! before reading anything else, and `highlander run` being paused (SIGSTOP, a frozen
//! cgroup, a blocked runtime) does not delay it at all.

use highlander::clock::boottime;
use nix::{
    errno::Errno,
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sys::{
        signal::{SigSet, Signal},
        signalfd::{SfdFlags, SignalFd},
        wait::{WaitPidFlag, WaitStatus, waitpid},
    },
    unistd::Pid,
};
use std::{
    ffi::{OsStr, OsString},
    os::{
        fd::{AsFd, BorrowedFd, OwnedFd},
        unix::process::CommandExt,
    },
    process::{Command, ExitCode, Stdio},
    time::Duration,
};

use crate::tree::{descendants, signal_tree};

/// The hidden first argument that turns the executable into a guard.
pub(crate) const ARG: &str = "__highlander_guard";

/// Test-only mutation, in debug builds only (a release binary has no such switch): set
/// it (to anything) in `highlander run`'s environment and the guard ignores its
/// deadline, as a build without self-fencing would. The tests that prove the deadline
/// is what prevents two commands at once use it.
#[cfg(debug_assertions)]
pub(crate) const IGNORE_DEADLINE_ENV: &str = "HIGHLANDER_TEST_GUARD_IGNORES_DEADLINE";

/// The soft open-file limit `highlander run` started with (it raises its own): the guard
/// sets it back for itself and so for the command, which gets the limit it was given.
pub(crate) const OPEN_FILES_ENV: &str = "HIGHLANDER_GUARD_OPEN_FILES";

/// The hidden first argument of the step between the guard and the command:
/// `highlander __highlander_exec GUARD_PID -- COMMAND [ARG…]` arms the kernel's death
/// signal (the command gets SIGKILL the moment its guard dies, even when highlander is
/// paused or dead too and cannot notice) and then becomes the command: without it, a
/// guard SIGKILLed beside a SIGSTOPped highlander would leave the command running
/// beside the next leader's.
pub(crate) const EXEC_ARG: &str = "__highlander_exec";

/// [`EXEC_ARG`]'s step: returns only if the command cannot run.
pub(crate) fn exec_main() -> ExitCode {
    let mut args = std::env::args_os().skip(2);
    let guard = args.next().and_then(|g| g.to_str().and_then(|g| g.parse::<i32>().ok()));
    let (Some(guard), Some("--"), Some(program)) = (guard, args.next().as_deref().and_then(OsStr::to_str), args.next()) else {
        eprintln!("usage: highlander {EXEC_ARG} GUARD_PID -- COMMAND [ARG…] (started by the guard, not by hand)");
        return ExitCode::from(2);
    };
    if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
        eprintln!("highlander: cannot tie the command to its guard: {e}");
        return ExitCode::from(127);
    }
    // The guard died before the death signal was armed: the command must not run at all.
    if nix::unistd::getppid().as_raw() != guard {
        return ExitCode::from(128 + 9);
    }
    let e = Command::new(&program).args(args).exec();
    eprintln!("highlander: cannot start {}: {e}", program.to_string_lossy().escape_debug());
    ExitCode::from(127)
}

pub(crate) fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("highlander guard: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What the guard is doing to the command.
#[derive(Clone, Copy)]
enum State {
    /// Running under the deadlines.
    Running { term: Duration, kill: Duration },
    /// SIGTERM sent; SIGKILL at `kill`.
    Stopping { kill: Duration },
}

/// The socket to `highlander run`, on the guard's standard input.
struct Control {
    buffer: Vec<u8>,
    closed: bool,
}

enum Message {
    Deadline { term: Duration, kill: Duration },
    Start,
    Stop { grace: Duration },
}

impl Control {
    fn fd() -> BorrowedFd<'static> {
        // Standard input lives as long as the process.
        static STDIN: std::sync::LazyLock<std::io::Stdin> = std::sync::LazyLock::new(std::io::stdin);
        STDIN.as_fd()
    }

    fn send(&self, line: &str) {
        // `highlander run` may be gone: nothing to do about it here.
        let mut data = format!("{line}\n").into_bytes();
        while !data.is_empty() {
            match nix::unistd::write(Self::fd(), &data) {
                Ok(n) => {
                    data.drain(..n);
                }
                Err(Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }

    /// Reads what is there (call when the socket polled readable) and returns the
    /// complete messages; sets `closed` at end of file.
    fn receive(&mut self) -> Result<Vec<Message>, String> {
        let mut chunk = [0u8; 4096];
        match nix::unistd::read(Self::fd(), &mut chunk) {
            Ok(0) => self.closed = true,
            Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(_) => self.closed = true,
        }
        let mut messages = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            messages.push(parse(&line)?);
        }
        Ok(messages)
    }
}

fn parse(line: &str) -> Result<Message, String> {
    let nanos = |s: Option<&str>| -> Result<Duration, String> {
        s.and_then(|s| s.parse::<u64>().ok()).map(Duration::from_nanos).ok_or_else(|| format!("bad message {line:?}"))
    };
    let mut words = line.split_whitespace();
    match words.next() {
        Some("deadline") => Ok(Message::Deadline { term: nanos(words.next())?, kill: nanos(words.next())? }),
        Some("start") => Ok(Message::Start),
        Some("stop") => Ok(Message::Stop { grace: nanos(words.next())? }),
        _ => Err(format!("unknown message {line:?}")),
    }
}

fn run() -> Result<(), String> {
    let mut args = std::env::args_os().skip(2);
    if args.next().as_deref() != Some(OsStr::new("--")) {
        return Err("usage: highlander __highlander_guard -- COMMAND [ARG…] (started by highlander run, not by hand)".into());
    }
    let program = args.next().ok_or("no command")?;
    let rest: Vec<OsString> = args.collect();
    if let Some(soft) = std::env::var(OPEN_FILES_ENV).ok().and_then(|v| v.parse::<u64>().ok()) {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| format!("getrlimit: {e}"))?;
        setrlimit(Resource::RLIMIT_NOFILE, soft.min(hard), hard).map_err(|e| format!("cannot restore the open-file limit: {e}"))?;
    }
    #[cfg(debug_assertions)]
    let ignore_deadline = std::env::var_os(IGNORE_DEADLINE_ENV).is_some();
    #[cfg(not(debug_assertions))]
    let ignore_deadline = false;

    nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("cannot become a child subreaper: {e}"))?;
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.thread_block().map_err(|e| format!("cannot block SIGCHLD: {e}"))?;
    let children = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(|e| format!("signalfd: {e}"))?;
    // Made and armed with raw system calls (rustix), so that a library preloaded to shift
    // time (libfaketime wraps timerfd_settime) cannot move the deadline.
    let timer = rustix::time::timerfd_create(
        rustix::time::TimerfdClockId::Boottime,
        rustix::time::TimerfdFlags::NONBLOCK | rustix::time::TimerfdFlags::CLOEXEC,
    )
    .map_err(|e| format!("timerfd: {e}"))?;
    let mut control = Control { buffer: Vec::new(), closed: false };

    // The deadlines first, then `start`.
    let mut deadline = None;
    loop {
        wait_readable(&[Control::fd()], None)?;
        for message in control.receive()? {
            match message {
                Message::Deadline { term, kill } => deadline = Some((term, kill)),
                Message::Start => {
                    let (term, kill) = deadline.ok_or("start before any deadline")?;
                    if boottime() >= term && !ignore_deadline {
                        control.send("expired");
                        return Ok(());
                    }
                    return supervise(&mut control, &children, &timer, program, rest, State::Running { term, kill }, ignore_deadline);
                }
                Message::Stop { .. } => return Ok(()),
            }
        }
        if control.closed {
            return Ok(());
        }
    }
}

fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> Result<Vec<bool>, String> {
    let mut polled: Vec<PollFd<'_>> = fds.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)).collect();
    let timeout = match timeout {
        None => PollTimeout::NONE,
        Some(d) => PollTimeout::try_from(d).unwrap_or(PollTimeout::MAX),
    };
    match poll(&mut polled, timeout) {
        Ok(_) | Err(Errno::EINTR) => {}
        Err(e) => return Err(format!("poll: {e}")),
    }
    Ok(polled.iter().map(|p| p.revents().is_some_and(|r| !r.is_empty())).collect())
}

/// Arms `timer` to fire at `at` on `CLOCK_BOOTTIME` (absolute), or disarms it.
fn arm(timer: &OwnedFd, at: Option<Duration>) -> Result<(), String> {
    use rustix::time::{Itimerspec, TimerfdTimerFlags, Timespec, timerfd_settime};
    let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
    let value = match at {
        // Zero disarms: an absolute deadline is at least one nanosecond after boot.
        Some(at) => {
            let at = at.max(Duration::from_nanos(1));
            Timespec { tv_sec: i64::try_from(at.as_secs()).unwrap_or(i64::MAX), tv_nsec: at.subsec_nanos().into() }
        }
        None => zero,
    };
    timerfd_settime(timer, TimerfdTimerFlags::ABSTIME, &Itimerspec { it_interval: zero, it_value: value })
        .map(drop)
        .map_err(|e| format!("timerfd: {e}"))
}

fn supervise(
    control: &mut Control,
    children: &SignalFd,
    timer: &OwnedFd,
    program: OsString,
    args: Vec<OsString>,
    mut state: State,
    ignore_deadline: bool,
) -> Result<(), String> {
    // This very executable (the guard is Linux-only), even if an upgrade replaced the file.
    let child = match Command::new("/proc/self/exe")
        .arg(EXEC_ARG)
        .arg(Pid::this().to_string())
        .arg("--")
        .arg(&program)
        .args(&args)
        .env_remove(OPEN_FILES_ENV)
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            control.send(&format!("failed cannot start {}: {e}", program.to_string_lossy().escape_debug()));
            return Ok(());
        }
    };
    let pid = Pid::from_raw(i32::try_from(child.id()).map_err(|_| "pid out of range")?);
    // The child is reaped below with waitpid: the handle is not needed.
    drop(child);
    control.send(&format!("started {pid}"));
    let me = Pid::this();
    let mut status: Option<WaitStatus> = None;
    let mut said_killed = false;
    loop {
        let wake_at = match state {
            State::Running { term, .. } if !ignore_deadline => Some(term),
            State::Running { .. } => None,
            State::Stopping { kill } => Some(kill),
        };
        arm(timer, wake_at)?;
        // While the tree dies, look again every few milliseconds: not every death is our SIGCHLD.
        let linger = status.is_some().then_some(Duration::from_millis(10));
        let ready = wait_readable(&[Control::fd(), children.as_fd(), timer.as_fd()], linger)?;
        // The deadline comes before anything `highlander run` wrote meanwhile: a
        // deadline message is only ever an extension, and a stale one would be ignored
        // anyway; a guard that was paused must not wait for anyone to kill.
        let now = boottime();
        if let State::Running { term, kill } = state
            && !ignore_deadline
            && now >= term
        {
            // Messages that were waiting may extend the deadline: take them first.
            let mut extended = false;
            if ready[0] {
                for message in control.receive()? {
                    if let Message::Deadline { term: t, kill: k } = message
                        && t > now
                    {
                        state = State::Running { term: t, kill: k };
                        extended = true;
                    }
                }
            }
            if !extended {
                control.send("expired");
                signal_tree(me, Some(pid), Signal::SIGTERM);
                state = State::Stopping { kill };
            }
        } else if ready[0] {
            for message in control.receive()? {
                match (message, state) {
                    (Message::Deadline { term, kill }, State::Running { .. }) => state = State::Running { term, kill },
                    (Message::Stop { grace }, State::Running { kill, .. }) => {
                        signal_tree(me, Some(pid), Signal::SIGTERM);
                        state = State::Stopping { kill: now.saturating_add(grace).min(kill) };
                    }
                    _ => {}
                }
            }
        }
        if control.closed {
            // `highlander run` is gone: nothing may outlive it.
            kill_everything(me, pid);
            return Ok(());
        }
        if let State::Stopping { kill } = state
            && boottime() >= kill
        {
            if !said_killed {
                control.send("killed");
                said_killed = true;
            }
            signal_tree(me, Some(pid), Signal::SIGKILL);
        }
        // Reap whatever died: the command, and orphans re-parented to us.
        while children.read_signal().ok().flatten().is_some() {}
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(s) if s.pid() == Some(pid) => status = Some(s),
                Ok(_) => {}
            }
        }
        if let Some(s) = status {
            // The command is gone; nothing it started may stay behind.
            if signal_tree(me, Some(pid), Signal::SIGKILL) == 0 && descendants(me).is_empty() {
                let report = match s {
                    WaitStatus::Exited(_, code) => format!("exited code {code}"),
                    WaitStatus::Signaled(_, signal, _) => format!("exited signal {}", signal as i32),
                    _ => "exited code 1".to_string(),
                };
                control.send(&report);
                return Ok(());
            }
        }
    }
}

/// SIGKILL to the whole tree until nothing is left, reaping as it goes.
fn kill_everything(me: Pid, group: Pid) {
    for _ in 0..500 {
        let left = signal_tree(me, Some(group), Signal::SIGKILL);
        while let Ok(s) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            if s == WaitStatus::StillAlive {
                break;
            }
        }
        if left == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_parse_and_garbage_is_refused() {
        assert!(matches!(parse("deadline 5 7"), Ok(Message::Deadline { term, kill }) if term.as_nanos() == 5 && kill.as_nanos() == 7));
        assert!(matches!(parse("start"), Ok(Message::Start)));
        assert!(matches!(parse("stop 100"), Ok(Message::Stop { grace }) if grace.as_nanos() == 100));
        for bad in ["deadline", "deadline x 1", "stop -1", "rm -rf /", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
