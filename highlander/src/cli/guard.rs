//! The guard: a small process that kills the command's process group if `highlander
//! run` dies without stopping it (SIGKILL, OOM kill, a crash).
//!
//! A command must never outlive the leadership it was started under: a standby takes
//! the lease once it expires, and its command must not find this one still running.
//! `highlander run` cannot act after a SIGKILL, so before it starts a command it starts
//! this guard (its own executable with [`ARG`]), in a process group of its own so that
//! signals meant for `highlander` do not reach it. The guard reads the command's
//! process-group id from its stdin and then waits for end of file. `highlander`
//! writes [`DONE`] before closing the pipe when it has stopped the command itself;
//! end of file without it means `highlander` is gone, and the guard sends SIGKILL to
//! the whole group at once.

use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use std::{
    io::{BufRead, Read},
    process::ExitCode,
};

/// The hidden first argument that turns the executable into a guard.
pub(crate) const ARG: &str = "__highlander_guard";

/// What `highlander run` writes when it stopped the command itself.
pub(crate) const DONE: &[u8] = b"done";

pub(crate) fn main() -> ExitCode {
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    if stdin.read_line(&mut line).is_err() {
        return ExitCode::FAILURE;
    }
    // Nothing was started (the parent closed the pipe first), or a group id that must
    // never be signalled (0 is our own group, 1 would be init's).
    let Some(group) = line.trim().parse::<i32>().ok().filter(|g| *g > 1) else {
        return ExitCode::SUCCESS;
    };
    let mut rest = Vec::new();
    let _ = stdin.read_to_end(&mut rest);
    if rest != DONE {
        let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
    }
    ExitCode::SUCCESS
}
