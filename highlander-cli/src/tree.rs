//! Process trees, read from `/proc`: every descendant of a process, however it left
//! its process group or session (`setsid`, double forks). With the root a child
//! subreaper (`PR_SET_CHILD_SUBREAPER`), orphans are re-parented to it, so they stay
//! in its tree and can be found and stopped.

use nix::{
    errno::Errno,
    sys::signal::{Signal, kill, killpg},
    unistd::Pid,
};
use std::collections::HashMap;

use lock_conformance::procfs;

/// The live (not zombie) descendants of `root`, parents before children.
pub(crate) fn descendants(root: Pid) -> Vec<Pid> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (pid, stat) in procfs::processes().filter(|(_, s)| !s.exited()) {
        children.entry(stat.ppid).or_default().push(pid);
    }
    let mut found = Vec::new();
    let mut queue = vec![root.as_raw()];
    while let Some(parent) = queue.pop() {
        for &child in children.get(&parent).map(Vec::as_slice).unwrap_or_default() {
            found.push(Pid::from_raw(child));
            queue.push(child);
        }
    }
    found
}

/// The live descendants of `root` outside this process's own process group: a process
/// a library started (an AWS credential_process) or one inherited through `exec` shares
/// our group and is not a command's.
pub(crate) fn foreign_descendants(root: Pid) -> Vec<Pid> {
    let own = nix::unistd::getpgrp();
    descendants(root).into_iter().filter(|pid| nix::unistd::getpgid(Some(*pid)).ok() != Some(own)).collect()
}

/// A live (not zombie) process's start time (clock ticks since boot), which with its
/// pid names it uniquely; `None` if it is gone.
pub(crate) fn start_time(pid: Pid) -> Option<u64> {
    procfs::stat(pid).filter(|s| !s.exited()).map(|s| s.start_time)
}

/// A process's state letter from `/proc` (`D`: uninterruptible sleep), `?` if gone.
pub(crate) fn state(pid: Pid) -> char {
    procfs::stat(pid).map_or('?', |s| s.state)
}

/// The live children of `parent`.
pub(crate) fn children(parent: Pid) -> Vec<Pid> {
    procfs::processes().filter(|(_, s)| !s.exited() && s.ppid == parent.as_raw()).map(|(pid, _)| Pid::from_raw(pid)).collect()
}

/// Sends `signal` to the process group `group` (if any) and to every descendant of
/// `root` (`root` itself excluded). Returns how many descendants there were.
pub(crate) fn signal_tree(root: Pid, group: Option<Pid>, signal: Signal) -> usize {
    signal_each(group, &descendants(root), signal)
}

/// [`signal_tree`] for the stopping of a command whose guard died (its orphans are
/// ours): every descendant outside our own process group.
pub(crate) fn signal_foreign(root: Pid, group: Option<Pid>, signal: Signal) -> usize {
    signal_each(group, &foreign_descendants(root), signal)
}

fn signal_each(group: Option<Pid>, all: &[Pid], signal: Signal) -> usize {
    if let Some(g) = group.filter(|g| g.as_raw() > 1) {
        let _ = killpg(g, signal);
    }
    for pid in all {
        // Gone in between: fine.
        let _ = kill(*pid, signal).or_else(|e| if e == Errno::ESRCH { Ok(()) } else { Err(e) });
    }
    all.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    #[test]
    fn only_processes_outside_our_group_are_foreign_and_start_times_name_them() {
        use std::os::unix::process::CommandExt;
        // A child in our own group (as a library's helper is) and one in a group of its own (as a command is).
        let mut ours = Command::new("sleep").arg("30").stdin(Stdio::null()).spawn().expect("sleep");
        let mut theirs = Command::new("sleep").arg("30").stdin(Stdio::null()).process_group(0).spawn().expect("sleep");
        let (ours_pid, theirs_pid) = (Pid::from_raw(ours.id().cast_signed()), Pid::from_raw(theirs.id().cast_signed()));
        let foreign = foreign_descendants(Pid::this());
        assert!(foreign.contains(&theirs_pid) && !foreign.contains(&ours_pid), "{foreign:?}");
        assert!(descendants(Pid::this()).contains(&ours_pid));
        let started = start_time(theirs_pid).expect("alive");
        assert_eq!(start_time(theirs_pid), Some(started), "a start time does not change");
        assert_eq!(state(theirs_pid), 'S');
        assert_eq!(signal_each(None, &[theirs_pid], Signal::SIGKILL), 1);
        let _ = theirs.wait();
        assert_eq!(start_time(theirs_pid), None, "gone");
        assert!(ours.try_wait().expect("status").is_none(), "our own group was spared");
        let _ = ours.kill();
        let _ = ours.wait();
    }

    #[test]
    fn a_setsid_grandchild_is_still_a_descendant() {
        // sh starts a child in a session of its own, which starts a grandchild, then waits.
        let mut child =
            Command::new("sh").args(["-c", "setsid sh -c 'sleep 30 & wait' & wait"]).stdin(Stdio::null()).spawn().expect("sh starts");
        let root = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        let mut seen = Vec::new();
        for _ in 0..200 {
            seen = descendants(root);
            if seen.len() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(seen.len(), 2, "the setsid child and its grandchild: {seen:?}");
        assert_eq!(signal_tree(root, None, Signal::SIGKILL), 2);
        let status = child.wait().expect("sh exits once its children are gone");
        assert!(status.success() || status.code().is_some(), "{status:?}");
        assert!(descendants(root).is_empty());
    }
}
