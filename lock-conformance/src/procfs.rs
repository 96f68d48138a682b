//! What Linux's `/proc` says about a process: its state, family, CPU time, start time
//! and memory. Shared by the fixtures (which know a server by pid and start time),
//! `highlander run`'s process tree and the benchmarks' figures.

/// The fields of `/proc/PID/stat` this project reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `R`, `S`, `D` (uninterruptible sleep), `Z` (zombie), `X` (dead), …
    pub state: char,
    /// The parent's pid.
    pub ppid: i32,
    /// The process group.
    pub pgrp: i32,
    /// CPU time in user mode, in clock ticks.
    pub utime: u64,
    /// CPU time in kernel mode, in clock ticks.
    pub stime: u64,
    /// When it started, in clock ticks since boot: with the pid, it names the process
    /// uniquely (pids are reused).
    pub start_time: u64,
}

impl Stat {
    /// Whether it has exited (a zombie, or dead).
    #[must_use]
    pub fn exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }

    /// CPU seconds used, user and kernel.
    #[must_use]
    pub fn cpu_seconds(&self) -> f64 {
        self.utime.saturating_add(self.stime) as f64 / TICKS_PER_SECOND
    }
}

/// `/proc/PID/stat` of `pid`, or `None` if it is gone.
#[must_use]
pub fn stat(pid: impl std::fmt::Display) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses a `stat` line. The command name is in parentheses and may hold anything,
/// so fields are counted from the last `)`.
fn parse_stat(line: &str) -> Option<Stat> {
    let fields: Vec<&str> = line.rsplit_once(')')?.1.split_whitespace().collect();
    let number = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        utime: number(11)?,
        stime: number(12)?,
        start_time: number(19)?,
    })
}

/// Resident memory of a process, now and at its peak, in MB.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Memory {
    /// Resident now (`VmRSS`).
    pub resident_mb: f64,
    /// The most it was resident (`VmHWM`).
    pub peak_resident_mb: f64,
}

/// `pid`'s memory from `/proc/PID/status`, or `None` if it is gone.
#[must_use]
pub fn memory(pid: impl std::fmt::Display) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let mb = |key: &str| -> Option<f64> {
        Some(status.lines().find_map(|l| l.strip_prefix(key))?.split_whitespace().next()?.parse::<f64>().ok()? / 1024.0)
    };
    Some(Memory { resident_mb: mb("VmRSS:")?, peak_resident_mb: mb("VmHWM:")? })
}

/// Every process `/proc` lists now, with its `stat` (those that vanish while it is read
/// are left out).
pub fn processes() -> impl Iterator<Item = (i32, Stat)> {
    std::fs::read_dir("/proc").into_iter().flatten().flatten().filter_map(|entry| {
        let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
        Some((pid, stat(pid)?))
    })
}

/// Whether this process runs as root (effective uid 0).
#[must_use]
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|u| u.split_whitespace().nth(1).map(|e| e == "0")))
        .unwrap_or(false)
}

/// Clock ticks per second (`USER_HZ`), which Linux fixes at 100 on every architecture
/// this project builds for.
const TICKS_PER_SECOND: f64 = 100.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_name_with_spaces_and_parentheses_is_skipped() {
        let line = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        let stat = parse_stat(line).expect("parses");
        assert_eq!((stat.state, stat.ppid, stat.pgrp), ('S', 1, 4242));
        assert_eq!((stat.utime, stat.stime, stat.start_time), (250, 50, 987_654));
        assert!((stat.cpu_seconds() - 3.0).abs() < 1e-9);
        assert!(!stat.exited());
        assert!(parse_stat("4242 (truncated").is_none());
    }

    #[test]
    fn this_process_is_found_alive_with_its_parent_and_memory() {
        let me = stat(std::process::id()).expect("this process has a stat");
        assert!(!me.exited());
        assert_eq!(i64::from(me.ppid), i64::from(std::os::unix::process::parent_id()));
        let found = processes().find(|(pid, _)| i64::from(*pid) == i64::from(std::process::id()));
        assert_eq!(found.map(|(_, s)| s.start_time), Some(me.start_time));
        let memory = memory("self").expect("memory");
        assert!(memory.resident_mb > 0.0 && memory.peak_resident_mb >= memory.resident_mb);
        assert!(stat(u32::MAX).is_none());
    }
}
