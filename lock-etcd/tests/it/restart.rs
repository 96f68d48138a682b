//! The etcd server restarts mid-election (its container is stopped and started):
//! the leader steps down, nobody leads meanwhile, the election resumes, nothing is lost.

use lock_conformance::{checks::restart::election_survives_store_restart, fixtures};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_survives_an_etcd_restart() {
    // A container of its own: the suites beside it share the other one.
    let (url, container) = fixtures::etcd_restartable().await.expect("a etcd container");
    let harness = fixtures::harness(&lock_etcd::BACKEND, Ok(url)).await;
    match election_survives_store_restart(&harness, &container).await {
        Ok(obs) => println!("{obs:?}"),
        Err(failure) => panic!("election did not survive an etcd restart: {failure}"),
    }
}
