//! The lock directory is replaced mid-election: moved away (as when its mount goes) and
//! restored from a copy (a new directory with the same files, as a restore from backup
//! makes). The leader steps down, nobody leads meanwhile, the election resumes, nothing
//! is lost, and the standby's inotify feed watches the restored directory.

use async_trait::async_trait;
use lock_conformance::{Failure, checks::restart::RestartableStore, checks::restart::election_survives_store_restart};
use std::path::PathBuf;

/// The directory a [`ReplacedDirectory`] takes away and restores.
struct ReplacedDirectory {
    dir: PathBuf,
    away: PathBuf,
}

#[async_trait]
impl RestartableStore for ReplacedDirectory {
    async fn stop(&self) -> Result<(), Failure> {
        std::fs::rename(&self.dir, &self.away).map_err(|e| Failure(format!("cannot move {} away: {e}", self.dir.display())))
    }

    async fn start(&self) -> Result<(), Failure> {
        let fail = |e: std::io::Error| Failure(format!("cannot restore {}: {e}", self.dir.display()));
        std::fs::create_dir(&self.dir).map_err(fail)?;
        for entry in std::fs::read_dir(&self.away).map_err(fail)? {
            let entry = entry.map_err(fail)?;
            std::fs::copy(entry.path(), self.dir.join(entry.file_name())).map_err(fail)?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_survives_its_directory_being_replaced() {
    let base = std::env::temp_dir().join(format!("highlander-file-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let dir = base.join("leases");
    std::fs::create_dir_all(&dir).expect("directory");
    let store = ReplacedDirectory { dir: dir.clone(), away: base.join("moved-away") };
    let harness =
        lock_conformance::Harness::for_url(&lock_file::BACKEND, &format!("file://{}", dir.display()), lock_conformance::SUITE_TIMING)
            .await
            .expect("url");
    let result = election_survives_store_restart(&harness, &store).await;
    let _ = std::fs::remove_dir_all(&base);
    match result {
        Ok(obs) => println!("{obs:?}"),
        Err(failure) => panic!("election did not survive its directory being replaced: {failure}"),
    }
}
