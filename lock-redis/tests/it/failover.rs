//! What survives when a Redis primary fails over to its replica. A primary and a replica
//! (Debian's `redis-server`, plain processes on 127.0.0.1) replicate through a link that
//! delays each way by 20 ms, as a replica in another region would; the candidates reach
//! "the primary" through a switch (the address a Sentinel or a DNS name would give) that
//! moves to the replica on failover. Right after a write is acknowledged (a renewal, or a
//! takeover), the link is cut, the primary killed, the replica promoted
//! (`REPLICAOF NO ONE`) and the switch moved. Counted over `FAILOVER_TRIES` tries:
//! acknowledged writes the new primary lacks, and overlapping terms. Asserted: none lost
//! with `wait_replicas=1`; the asynchronous default is only measured (it loses them).

use lock_conformance::failover::{self, Figures, Gate, Tap, delaying_proxy, one_try, report, tries};
use lock_conformance::fixtures::{ServerProcess, redis_server};
use lock_core::{LockName, SharedStore};
use lock_redis::RedisStore;
use std::{sync::Arc, time::Duration};
use tokio::{net::TcpStream, sync::watch};

/// One-way delay of the replication link.
const REGION_DELAY: Duration = Duration::from_millis(20);

/// A TCP forwarder on 127.0.0.1 to the port in `target`; moving the target closes every
/// connection made before (clients reconnect and reach the new primary).
async fn switch(target: u16) -> (u16, watch::Sender<u16>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (to, watching) = watch::channel(target);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let mut moved = watching.clone();
            let target = *moved.borrow_and_update();
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await else { return };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    _ = moved.changed() => {}
                }
            });
        }
    });
    (port, to)
}

async fn command(port: u16, args: &[&str]) -> redis::Value {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).expect("client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("connection");
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut conn).await.expect("command")
}

async fn info_replication(port: u16) -> String {
    match command(port, &["INFO", "replication"]).await {
        redis::Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
        redis::Value::VerbatimString { text, .. } => text,
        other => format!("{other:?}"),
    }
}

/// A primary and a replica streaming from it through a delayed link.
async fn pair(t: usize) -> (ServerProcess, ServerProcess, watch::Sender<bool>) {
    let primary = redis_server(&format!("primary-{t}"), &[]).await.expect("primary");
    let (link, cut) = delaying_proxy(primary.port, REGION_DELAY).await;
    let replica = redis_server(&format!("replica-{t}"), &["--replicaof", "127.0.0.1", &link.to_string()]).await.expect("replica");
    let until = std::time::Instant::now() + Duration::from_secs(30);
    while !info_replication(replica.port).await.contains("master_link_status:up") {
        assert!(std::time::Instant::now() < until, "the replica never synced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (primary, replica, cut)
}

async fn experiment(wait_replicas: u32, tries: usize) -> Figures {
    let mut figures = Figures::default();
    for t in 0..tries {
        let (primary, replica, link) = pair(t).await;
        let (front, to) = switch(primary.port).await;
        let url = format!("redis://127.0.0.1:{front}/0?prefix=failover/&wait_replicas={wait_replicas}");
        let gate = Gate::new();
        let connect = || async {
            RedisStore::builder(&url).expect("url").call_timeout(Duration::from_millis(500)).connect().await.expect("connects")
        };
        let (store_a, store_b) = (connect().await, connect().await);
        let tap = |store: RedisStore| Tap::new(Arc::new(store) as SharedStore, &gate);
        let lock = LockName::new(format!("failover-{t}")).expect("lock");
        let takeover = t % 2 == 1;
        let settle = failover::TIMING.lease + Duration::from_secs(1);
        // The primary's region is lost right after it acknowledged: what was on the way to
        // the replica is lost with it. The replica is promoted and takes the address.
        let (kept, pause) = one_try((tap(store_a), tap(store_b)), &gate, &lock, takeover, settle, &mut figures, async || {
            link.send_replace(true);
            primary.kill();
            command(replica.port, &["REPLICAOF", "NO", "ONE"]).await;
            to.send_replace(replica.port);
            RedisStore::builder(&format!("redis://127.0.0.1:{}/0?prefix=failover/", replica.port))
                .expect("url")
                .connect()
                .await
                .expect("the new primary")
        })
        .await;
        println!(
            "redis wait_replicas={wait_replicas} try {t}: {} write {} by the promoted replica; next write {pause:.2?} after the primary died",
            if takeover { "takeover" } else { "renewal" },
            if kept { "kept" } else { "LOST" }
        );
        replica.kill();
    }
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_of_the_store_with_wait_replicas_loses_no_acknowledged_write() {
    let f = experiment(1, tries()).await;
    report("redis", "primary and replica, wait_replicas=1 (WAIT 1)", &f);
    assert_eq!(f.lost_renewals + f.lost_takeovers, 0, "{f:?}");
    assert_eq!(f.overlapping_terms, 0, "{f:?}");
    assert_eq!((f.tries, f.resumed), (tries(), tries()), "the election went on after every failover: {f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_of_the_store_with_asynchronous_replication_is_measured() {
    let f = experiment(0, tries()).await;
    report("redis", "primary and replica, asynchronous (the default)", &f);
    assert_eq!((f.tries, f.resumed), (tries(), tries()), "the election went on after every failover: {f:?}");
}

/// The Redis server restarts mid-election (stopped and started on the same port and data):
/// the leader steps down, the election resumes, and the standby's change feed comes
/// back (a release after the restart reaches it by notification).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_survives_a_redis_restart_and_notifications_come_back() {
    let server = lock_conformance::fixtures::RestartableServer::redis("election").await.expect("redis-server");
    let url = format!("redis://127.0.0.1:{}/0?prefix=restart/", server.port);
    let harness = lock_conformance::fixtures::harness(&lock_redis::BACKEND, Ok(url)).await;
    match lock_conformance::checks::restart::election_survives_store_restart(&harness, &server).await {
        Ok(obs) => println!("{obs:?}"),
        Err(failure) => panic!("election did not survive a redis restart: {failure}"),
    }
}
