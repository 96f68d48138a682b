//! lock-sqlite's one integration-test binary.

mod conformance;
mod mutant;
mod urls;

/// A database file of its own for each caller, in a directory of this test process:
/// the URL of `sqlite:///…/NAME-N.db`, its tables created.
pub async fn fresh_database(name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("lock-sqlite-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory for the databases");
    let url = format!("sqlite://{}/{name}-{n}.db", dir.display());
    let parsed = lock_core::StoreUrl::parse(&url).expect("a valid URL");
    lock_core::Backend::create(&lock_sqlite::BACKEND, &parsed, &lock_core::OpenOptions::default()).await.expect("creates the database");
    url
}
