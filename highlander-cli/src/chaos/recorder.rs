//! The recorder: the command chaos runs under each candidate. It appends a line when
//! it starts, every 100 ms while it runs, and when it is asked to stop (SIGTERM,
//! SIGINT, SIGHUP), each line `UNIX_SECONDS EVENT IDENTITY TOKEN PID` in one `write`
//! to a file opened for appending, so lines from several recorders never interleave.

use super::oracle::{Event, Kind};
use nix::{
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sys::{
        signal::{SigSet, Signal},
        signalfd::{SfdFlags, SignalFd},
    },
};
use std::{io::Write, os::fd::AsFd, process::ExitCode, time::SystemTime};

/// The hidden first argument that turns the executable into a recorder.
pub(crate) const ARG: &str = "__highlander_recorder";

pub(crate) fn main() -> ExitCode {
    match record() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("highlander recorder: {e}");
            ExitCode::FAILURE
        }
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn record() -> Result<(), String> {
    let path = std::env::args_os().nth(2).ok_or("usage: highlander __highlander_recorder FILE (run by highlander chaos)")?;
    let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set: the recorder runs under highlander run"));
    let identity = var("HIGHLANDER_IDENTITY")?;
    let token = var("HIGHLANDER_FENCING_TOKEN")?.parse::<u64>().map_err(|e| format!("HIGHLANDER_FENCING_TOKEN: {e}"))?;
    let pid = std::process::id();
    let mut file =
        std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(|e| format!("{}: {e}", path.to_string_lossy()))?;
    let mut write = |kind: Kind| -> Result<(), String> {
        let line = format!("{}\n", Event { at: now(), kind, identity: identity.clone(), token, pid }.line());
        file.write_all(line.as_bytes()).map_err(|e| format!("cannot record: {e}"))
    };
    let mut mask = SigSet::empty();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(signal);
    }
    mask.thread_block().map_err(|e| format!("cannot block signals: {e}"))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).map_err(|e| format!("signalfd: {e}"))?;
    write(Kind::Start)?;
    loop {
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, PollTimeout::from(100u8)).unwrap_or(0);
        if ready > 0 {
            write(Kind::Stop)?;
            return Ok(());
        }
        write(Kind::Tick)?;
    }
}
