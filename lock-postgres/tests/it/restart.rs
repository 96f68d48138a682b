//! The postgres server restarts mid-election (its container is stopped and started):
//! the leader steps down, nobody leads meanwhile, the election resumes, nothing is lost.

use crate::support;
use lock_conformance::{checks::restart::election_survives_store_restart, fixtures};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_survives_a_postgres_restart() {
    let harness = support::from_container().await;
    let container = fixtures::postgres_container().await.expect("the postgres container");
    match election_survives_store_restart(&harness, &container).await {
        Ok(obs) => println!("{obs:?}"),
        Err(failure) => panic!("election did not survive a postgres restart: {failure}"),
    }
}
