//! Separate processes on one directory, as candidates on one host (or one NFSv4 share)
//! would be: their compare-and-sets exclude each other, and a writer killed with SIGKILL
//! in the middle of its writes never leaves a record that fails to decode.
//!
//! The workers are this test binary run again with `LOCK_FILE_WORKER` set.

use lock_core::{LeaderElectionRecord, LeaseStore, LockName};
use lock_file::FileStore;
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

fn dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("highlander-file-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("directory");
    dir
}

fn spawn_worker(kind: &str, dir: &Path, id: usize) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "processes::worker", "--nocapture", "--test-threads", "1"])
        .env("LOCK_FILE_WORKER", kind)
        .env("LOCK_FILE_DIR", dir)
        .env("LOCK_FILE_ID", id.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("a worker process")
}

fn lock() -> LockName {
    LockName::new("shared/counter").expect("valid")
}

/// A counter in the record's `leaderTransitions`, incremented by compare-and-set.
async fn increment(store: &FileStore) {
    loop {
        match store.get(&lock()).await.expect("get") {
            None => {
                let _ = store.create(&lock(), &LeaderElectionRecord::new("counter", 15, chrono::Utc::now())).await;
            }
            Some(seen) => {
                let mut rec = seen.record.clone();
                rec.leader_transitions += 1;
                if store.update(&lock(), &seen.version, &rec).await.is_ok() {
                    return;
                }
            }
        }
    }
}

const INCREMENTS: usize = 100;

/// The body of the worker processes (a no-op when run as an ordinary test).
#[tokio::test]
async fn worker() {
    let Ok(kind) = std::env::var("LOCK_FILE_WORKER") else { return };
    let store = FileStore::new(std::env::var("LOCK_FILE_DIR").expect("dir")).expect("store");
    match kind.as_str() {
        "increment" => {
            for _ in 0..INCREMENTS {
                increment(&store).await;
            }
        }
        // Writes for ever, until killed.
        "churn" => loop {
            increment(&store).await;
        },
        other => panic!("unknown worker {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_and_set_across_processes_loses_no_increment() {
    let dir = dir("race");
    let store = FileStore::new(&dir).expect("store");
    store.create(&lock(), &LeaderElectionRecord::new("counter", 15, chrono::Utc::now())).await.expect("create");
    let processes = 4;
    let mut workers: Vec<Child> = (0..processes).map(|i| spawn_worker("increment", &dir, i)).collect();
    for w in &mut workers {
        assert!(w.wait().expect("wait").success(), "a worker failed");
    }
    let seen = store.get(&lock()).await.expect("get").expect("record");
    assert_eq!(seen.record.leader_transitions as usize, processes * INCREMENTS, "every increment of every process counted");
    assert_eq!(seen.version.ordinal(), Some(1 + (processes * INCREMENTS) as u64), "one version per write");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_mid_write_never_leaves_a_torn_record() {
    let dir = dir("kill");
    let store = FileStore::new(&dir).expect("store");
    let mut last = 0;
    for round in 0..20u64 {
        let mut w = spawn_worker("churn", &dir, 0);
        // Let it write for a moment, then kill it wherever it is.
        std::thread::sleep(Duration::from_millis(30 + (round * 37) % 120));
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(w.id()).expect("pid")), nix::sys::signal::Signal::SIGKILL);
        let _ = w.wait();
        let seen = store.get(&lock()).await.unwrap_or_else(|e| panic!("round {round}: the record does not decode after SIGKILL: {e}"));
        let n = seen.map_or(0, |s| s.record.leader_transitions);
        assert!(n >= last, "round {round}: the counter went back from {last} to {n}");
        last = n;
    }
    assert!(last > 0, "the workers wrote");
    let leftovers: Vec<_> =
        std::fs::read_dir(&dir).expect("dir").flatten().map(|e| e.file_name()).filter(|n| n.to_string_lossy().ends_with(".tmp")).collect();
    println!("after 20 kills: counter {last}, {} temporary files left behind (harmless, never read)", leftovers.len());
    let _ = std::fs::remove_dir_all(dir);
}
