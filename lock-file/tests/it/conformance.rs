//! lock-file passes the whole conformance suite in a directory of the local filesystem
//! (with inotify notifications).

async fn harness() -> lock_conformance::Harness<lock_conformance::Connect> {
    let dir = std::env::temp_dir().join(format!("highlander-file-conformance-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("directory");
    lock_conformance::Harness::for_url(&lock_file::BACKEND, &format!("file://{}", dir.display()), lock_conformance::SUITE_TIMING)
        .await
        .expect("url")
}

lock_conformance::conformance_tests!(harness().await);
