//! The ZooKeeper server restarts mid-election (stopped with SIGTERM and started again on
//! its port and data directory): the leader steps down, nobody leads meanwhile, the
//! election resumes, nothing is lost, and the standby's watch comes back.

use lock_conformance::{checks::restart::election_survives_store_restart, fixtures};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_survives_a_zookeeper_restart() {
    let server = fixtures::RestartableServer::zookeeper("election").await.expect("ZooKeeper");
    let url = format!("zookeeper://127.0.0.1:{}/restart", server.port);
    let harness = fixtures::harness(&lock_zookeeper::BACKEND, Ok(url)).await;
    match election_survives_store_restart(&harness, &server).await {
        Ok(obs) => println!("{obs:?}"),
        Err(failure) => panic!("election did not survive a ZooKeeper restart: {failure}"),
    }
}
