//! A three-member etcd cluster loses two members: the leader steps down by its renew
//! deadline, and the store reports the lost quorum clearly instead of hanging.

use lock_conformance::fixtures;
use lock_core::{ElectionState, Error, LeaderElector, LeaseStore, LockName};
use lock_etcd::EtcdStore;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_quorum_is_a_clear_unavailable_error_and_the_leader_steps_down() {
    let members = fixtures::etcd_cluster().await.unwrap_or_else(|e| panic!("no etcd cluster: {e}"));
    let survivor = format!("http://127.0.0.1:{}", members[0].host_port());
    let store = EtcdStore::builder([survivor.as_str()]).request_timeout(Duration::from_secs(2)).build().expect("valid");
    let lock = LockName::new("quorum/lock").expect("valid");

    // All three endpoints in one store: writes through any member are seen through every other.
    let all: Vec<String> = members.iter().map(|m| format!("http://127.0.0.1:{}", m.host_port())).collect();
    let spread = EtcdStore::builder(&all).build().expect("valid");
    let probe = LockName::new("quorum/spread").expect("valid");
    let v = spread
        .create(&probe, &lock_core::LeaderElectionRecord::new("a", 15, chrono::Utc::now()))
        .await
        .expect("create through the cluster");
    for one in &all {
        let seen = EtcdStore::builder([one.as_str()]).build().expect("valid").get(&probe).await.expect("get").expect("present");
        assert_eq!(seen.version, v, "member {one} serves the same revision");
    }

    let elector = LeaderElector::builder(store.clone(), lock.clone(), "stalin")
        .lease_duration(Duration::from_secs(4))
        .renew_deadline(Duration::from_secs(3))
        .retry_period(Duration::from_millis(500))
        .call_timeout(Duration::from_secs(1))
        .build()
        .expect("config");
    let mut state = elector.subscribe();
    let shutdown = CancellationToken::new();
    let task = elector.spawn(shutdown.clone());
    tokio::time::timeout(Duration::from_secs(30), state.wait_for(ElectionState::is_leader)).await.expect("leads in time").expect("alive");

    members[1].stop().await.expect("stop member 1");
    members[2].stop().await.expect("stop member 2");
    let lost = Instant::now();
    tokio::time::timeout(Duration::from_secs(15), state.wait_for(|s| !s.is_leader())).await.expect("steps down in time").expect("alive");
    let stepped_down = lost.elapsed();
    assert!(stepped_down <= Duration::from_secs(3) + Duration::from_secs(2), "stepped down {stepped_down:?} after quorum was lost");

    // Once the survivor knows it has no leader, calls fail fast and say why.
    let deadline = Instant::now() + Duration::from_secs(15);
    let err = loop {
        let started = Instant::now();
        match store.get(&lock).await {
            Err(e) if matches!(e, Error::Unavailable { .. }) && started.elapsed() < Duration::from_secs(3) => break e,
            other => assert!(Instant::now() < deadline, "no clear quorum error, last answer {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let text = format!("{err} {:?}", std::error::Error::source(&err).map(ToString::to_string));
    assert!(text.contains("quorum"), "{text}");
    assert!(err.is_transient());

    shutdown.cancel();
    task.await.expect("elector task");
}
