//! ZooKeeper sessions and ACLs against a real server (Debian's ZooKeeper, started here
//! on 127.0.0.1): a leader cut off from the ensemble steps down before its lease ends,
//! its session expires meanwhile, and when the network returns the store opens a new
//! session and leads again; digest users see only what their ACL allows, and no
//! password shows.

use lock_conformance::{
    failover::{Gate, TIMING, Tap, TermLog, candidate, delaying_proxy, overlaps},
    fixtures::{random_secret, zookeeper_server},
};
use lock_core::{ElectionState, Error, LeaderElectionRecord, LeaseStore, LockName, SharedStore};
use lock_zookeeper::ZooKeeperStore;
use std::{sync::Arc, time::Duration};
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_leader_steps_down_before_its_lease_ends_and_leads_again_on_a_new_session() {
    let server = zookeeper_server("sessions").await.expect("ZooKeeper");
    let (link, cut) = delaying_proxy(server.port, Duration::ZERO).await;
    let store = ZooKeeperStore::builder(&format!("zookeeper://127.0.0.1:{link}/sessions"))
        .expect("url")
        .session_timeout(Duration::from_millis(800))
        .call_timeout(Duration::from_millis(500))
        .connect()
        .await
        .expect("connects");
    store.ensure_prefix().await.expect("prefix");
    let lock = LockName::new("session-loss").expect("lock");
    let terms = TermLog::default();
    let first_session = store.session_id().await;
    let mut leader = candidate(Tap::new(Arc::new(store.clone()) as SharedStore, &Gate::new()), &lock, "alpha", &terms);
    tokio::time::timeout(Duration::from_secs(20), leader.state.wait_for(ElectionState::is_leader)).await.expect("leads").expect("alive");

    let cut_at = Instant::now();
    cut.send_replace(true);
    tokio::time::timeout(Duration::from_secs(10), leader.state.wait_for(|s| !s.is_leader())).await.expect("steps down").expect("alive");
    let stepped_down = cut_at.elapsed();
    println!("zookeeper: the cut-off leader stepped down {:.2} s after the cut (lease {:?})", stepped_down.as_secs_f64(), TIMING.lease);
    assert!(stepped_down < TIMING.lease, "stepped down {stepped_down:?} after the cut: not before its lease ended");

    // Long past the session timeout: the server expires the session.
    tokio::time::sleep(Duration::from_secs(3)).await;
    cut.send_replace(false);
    let back = Instant::now();
    tokio::time::timeout(Duration::from_secs(20), leader.state.wait_for(ElectionState::is_leader))
        .await
        .expect("leads again on a new session")
        .expect("alive");
    println!("zookeeper: leading again {:.2} s after the network returned", back.elapsed().as_secs_f64());
    assert_ne!(store.session_id().await, first_session, "the expired session was replaced by a new one");
    assert_eq!(overlaps(&terms.terms()), vec![]);
    leader.stop.cancel();
    let _ = leader.task.await;
    server.kill();
}

fn record(holder: &str) -> LeaderElectionRecord {
    LeaderElectionRecord::new(holder, 15, chrono::Utc::now())
}

#[tokio::test]
async fn digest_acls_keep_other_users_out_and_passwords_out_of_errors() {
    let server = zookeeper_server("acl").await.expect("ZooKeeper");
    let url = format!("zookeeper://127.0.0.1:{}/acl", server.port);
    let (app, other) = (random_secret(), random_secret());
    let owner = ZooKeeperStore::builder(&url).expect("url").digest("lease_app", &app).connect().await.expect("connects");
    owner.ensure_prefix().await.expect("prefix, CREATOR_ALL");
    let lock = LockName::new("acl/nightly").expect("lock");
    let v = owner.create(&lock, &record("alpha")).await.expect("create");
    owner.update(&lock, &v, &record("alpha")).await.expect("update");
    assert!(owner.get(&lock).await.expect("get").is_some());

    for (who, store) in [
        ("another digest user", ZooKeeperStore::builder(&url).expect("url").digest("intruder", &other).connect().await.expect("connects")),
        ("no credentials", ZooKeeperStore::builder(&url).expect("url").connect().await.expect("connects")),
    ] {
        let err = store.get(&lock).await.expect_err(who);
        let text = format!("{err} {err:?}");
        assert!(matches!(err, Error::PermissionDenied { .. }), "{who}: {err:?}");
        assert!(text.contains(&format!("127.0.0.1:{}", server.port)), "{who}: names the store: {text}");
        assert!(!text.contains(&app) && !text.contains(&other), "{who}: a password leaked: {text}");
        let err = store.create(&LockName::new("acl/other").expect("lock"), &record("mallory")).await.expect_err(who);
        assert!(matches!(err, Error::PermissionDenied { .. }), "{who}: may not create under the prefix: {err:?}");
    }
    server.kill();
}
