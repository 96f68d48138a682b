//! What survives when the Postgres primary fails over to a replica. A primary and a
//! streaming replica run as plain processes on 127.0.0.1 (Debian's binaries), the
//! replication link through a proxy that delays each way by 20 ms, as a replica in
//! another region would be; two
//! electors campaign through a multi-host URL with `target_session_attrs=read-write`;
//! right after a write is acknowledged (a renewal, or a takeover), the primary is
//! killed and the replica promoted. Counted over `FAILOVER_TRIES` tries (default 4; the
//! docs use 50): acknowledged writes the new primary does not have, and terms of the two
//! candidates that overlapped. Asserted: none of either with synchronous replication
//! (`remote_apply`); with asynchronous replication the figures are only reported.

use crate::support::server::{Server, TempDir, as_postgres, chown, pg_bin, run};
use lock_conformance::failover::{self, Figures, Gate, Tap, one_try, report, tries};
use lock_core::{LockName, SharedStore};
use lock_postgres::PostgresStore;
use std::{path::Path, sync::Arc, time::Duration};
use tokio::sync::watch;

fn psql(port: u16, dir: &Path, sql: &str) -> String {
    let out = as_postgres(&pg_bin().join("psql"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres", "-X", "-q", "-t", "-A", "-c", sql])
        .current_dir(dir)
        .output()
        .expect("psql");
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

const PRIMARY: &[&str] = &["fsync=off", "wal_level=replica", "max_wal_senders=8", "hot_standby=on", "wal_keep_size=64MB"];

/// One-way delay of the replication link.
const REGION_DELAY: Duration = Duration::from_millis(20);

/// A replica of `primary`, streaming through a link delayed as between regions (and,
/// if `synchronous`, the synchronous standby).
async fn replica_of(primary: &Server, dir: &Path, name: &str, synchronous: bool) -> (Server, watch::Sender<bool>) {
    let data = dir.join(name);
    let (link, cut) = failover::delaying_proxy(primary.port, REGION_DELAY).await;
    run(
        as_postgres(&pg_bin().join("pg_basebackup"))
            .args(["-h", "127.0.0.1", "-p", &link.to_string(), "-U", "postgres", "-D"])
            .arg(&data)
            .args(["-R", "-X", "stream", "--no-sync"])
            .current_dir(dir),
        "pg_basebackup",
    );
    let replica = Server::start(dir, &data, PRIMARY);
    let want = if synchronous { "state = 'streaming' AND sync_state = 'sync'" } else { "state = 'streaming'" };
    if synchronous {
        psql(primary.port, dir, "ALTER SYSTEM SET synchronous_standby_names = '*'");
        psql(primary.port, dir, "ALTER SYSTEM SET synchronous_commit = 'remote_apply'");
    } else {
        psql(primary.port, dir, "ALTER SYSTEM SET synchronous_standby_names = ''");
        psql(primary.port, dir, "ALTER SYSTEM SET synchronous_commit = 'local'");
    }
    psql(primary.port, dir, "SELECT pg_reload_conf()");
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while psql(primary.port, dir, &format!("SELECT count(*) FROM pg_stat_replication WHERE {want}")) != "1" {
        assert!(std::time::Instant::now() < until, "the replica never streamed");
        std::thread::sleep(Duration::from_millis(50));
    }
    (replica, cut)
}

async fn experiment(synchronous: bool, tries: usize) -> Figures {
    let name = if synchronous { "pg-failover-sync" } else { "pg-failover-async" };
    let dir = TempDir::new(name);
    let dir = dir.0.clone();
    let data = dir.join("node-0");
    run(as_postgres(&pg_bin().join("initdb")).arg("-D").arg(&data).args(["-U", "postgres", "-A", "trust", "--no-sync"]), "initdb");
    chown(&dir);
    let mut primary = Server::start(&dir, &data, PRIMARY);
    let mut figures = Figures::default();
    for t in 0..tries {
        let (replica, link) = replica_of(&primary, &dir, &format!("node-{}", t + 1), synchronous).await;
        let url = format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?table=failover&target_session_attrs=read-write&connect_timeout=2",
            primary.port, replica.port
        );
        let direct = |port: u16| {
            PostgresStore::builder(&format!("postgres://postgres@127.0.0.1:{port}/postgres?table=failover"))
                .expect("url")
                .build()
                .expect("store")
        };
        direct(primary.port).ensure_schema().await.expect("schema");
        let gate = Gate::new();
        let tap = || Tap::new(Arc::new(PostgresStore::builder(&url).expect("url").build().expect("store")) as SharedStore, &gate);
        let lock = LockName::new(format!("failover-{t}-{}", std::process::id())).expect("lock");
        let takeover = t % 2 == 1;
        let settle = failover::TIMING.lease + Duration::from_secs(1);
        // The primary's region is lost right after it acknowledged: the server dies and
        // what was on the way to the replica with it. The replica is promoted, and the
        // election goes on against it.
        let (kept, pause) = one_try((tap(), tap()), &gate, &lock, takeover, settle, &mut figures, async || {
            link.send_replace(true);
            let old = std::mem::replace(&mut primary, replica);
            old.crash();
            run(
                as_postgres(&pg_bin().join("pg_ctl")).arg("-D").arg(&primary.data).args(["promote", "-w"]).current_dir(&dir),
                "pg_ctl promote",
            );
            direct(primary.port)
        })
        .await;
        println!(
            "{name} try {t}: {} write {} by the new primary; next write {pause:.2?} after the primary died",
            if takeover { "takeover" } else { "renewal" },
            if kept { "kept" } else { "LOST" }
        );
        let _ = std::fs::remove_dir_all(dir.join(format!("node-{t}")));
    }
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_of_the_store_with_synchronous_replication_loses_no_acknowledged_write() {
    let f = experiment(true, tries()).await;
    report("postgres", "synchronous replication (remote_apply)", &f);
    assert_eq!(f.lost_renewals + f.lost_takeovers, 0, "{f:?}");
    assert_eq!(f.overlapping_terms, 0, "{f:?}");
    assert_eq!((f.tries, f.resumed), (tries(), tries()), "the election went on after every failover: {f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_of_the_store_with_asynchronous_replication_is_measured() {
    let f = experiment(false, tries()).await;
    report("postgres", "asynchronous replication (synchronous_commit=local)", &f);
    assert_eq!((f.tries, f.resumed), (tries(), tries()), "the election went on after every failover: {f:?}");
}
