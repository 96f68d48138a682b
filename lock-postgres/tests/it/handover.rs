//! Hand-overs against a real Postgres: two operators asking at once, to different
//! candidates, through stores of their own: one ask wins, the other is refused, and the
//! record names the winner.

use crate::support;
use lock_conformance::fixtures;
use lock_core::{LeaderElectionRecord, LeaseStore, roster};
use lock_postgres::PostgresStore;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hand_overs_at_once_to_different_candidates_one_wins() {
    let url = support::ready(fixtures::postgres_url().await.expect("a Postgres")).await;
    let open = || PostgresStore::builder(&url).expect("url").build().expect("builds");
    let (setup, first, second) = (open(), open(), open());
    let mut wins = [0u32; 2];
    for _ in 0..10 {
        let lock = lock_conformance::unique_lock("two-hand-overs");
        setup.create(&lock, &LeaderElectionRecord::new("leader", 15, chrono::Utc::now())).await.expect("a leader");
        let now = chrono::Utc::now();
        for id in ["x", "y"] {
            roster::write_entry(&setup, &lock, id, Some(roster::Registration::new(0, now, now, Duration::from_secs(30))))
                .await
                .expect("registered");
        }
        let (a, b) = tokio::join!(roster::hand_over(&first, &lock, Some("x")), roster::hand_over(&second, &lock, Some("y")));
        let refused =
            [&a, &b].iter().filter(|r| matches!(r, Err(roster::HandOverError::Refused(m)) if m.contains("already under way"))).count();
        assert!(a.is_ok() != b.is_ok() && refused == 1, "exactly one ask wins, the other is refused: {a:?} {b:?}");
        let winner = if a.is_ok() { "x" } else { "y" };
        wins[usize::from(winner == "y")] += 1;
        let rec = setup.get(&lock).await.expect("get").expect("record").record;
        assert_eq!((rec.holder_identity.as_str(), rec.preferred_holder.as_deref()), ("leader", Some(winner)), "{rec:?}");
    }
    println!("two hand-overs at once, 10 times: x won {}, y won {}", wins[0], wins[1]);
}
