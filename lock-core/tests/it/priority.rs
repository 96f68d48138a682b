//! Priorities on the real clock (registrations are judged by wall clocks, which a
//! paused Tokio clock does not move): a primary that returns leads again after the
//! hold-down time, once; a primary that flaps faster than the hold-down never moves
//! the lock.

use lock_core::{ElectionEnd, LeaderElector, LeaseStore, LockName, MemoryStore, roster};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const HOLD_DOWN: Duration = Duration::from_secs(3);

fn lock() -> LockName {
    LockName::new("home-region").expect("valid")
}

type Leaders = Arc<Mutex<Vec<String>>>;

fn start(store: &MemoryStore, id: &str, priority: i32, leaders: &Leaders) -> (CancellationToken, JoinHandle<ElectionEnd>) {
    start_refreshing(store, id, priority, leaders, Duration::from_millis(250))
}

fn start_refreshing(
    store: &MemoryStore,
    id: &str,
    priority: i32,
    leaders: &Leaders,
    refresh: Duration,
) -> (CancellationToken, JoinHandle<ElectionEnd>) {
    let seen = leaders.clone();
    let elector = LeaderElector::builder(store.clone(), lock(), id)
        .lease_duration(Duration::from_secs(2))
        .renew_deadline(Duration::from_secs(1))
        .retry_period(Duration::from_millis(250))
        .register(priority)
        .hold_down(HOLD_DOWN)
        .registration_refresh(refresh)
        .on_started_leading(move |l| {
            let seen = seen.clone();
            async move {
                seen.lock().expect("lock").push(l.identity().to_string());
                l.lost().await;
            }
        })
        .build()
        .expect("config");
    let shutdown = CancellationToken::new();
    (shutdown.clone(), elector.spawn(shutdown))
}

fn leaders(l: &Leaders) -> Vec<String> {
    l.lock().expect("lock").clone()
}

async fn until(l: &Leaders, want: &[&str], within: Duration) {
    let end = tokio::time::Instant::now() + within;
    while leaders(l) != want {
        assert!(tokio::time::Instant::now() < end, "leaders {:?}, expected {want:?} within {within:?}", leaders(l));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_leads_again_after_the_hold_down_once_and_a_flapping_one_never_moves_the_lock() {
    let store = MemoryStore::with_watch();
    let log: Leaders = Arc::default();
    let (standby_stop, standby) = start(&store, "standby", 0, &log);
    until(&log, &["standby"], Duration::from_secs(10)).await;

    // The primary starts: not before the hold-down, then once.
    let (_, primary) = start(&store, "primary", 10, &log);
    tokio::time::sleep(HOLD_DOWN - Duration::from_millis(500)).await;
    assert_eq!(leaders(&log), ["standby"], "the primary took over before its hold-down time");
    until(&log, &["standby", "primary"], Duration::from_secs(10)).await;
    let rec = store.get(&lock()).await.expect("get").expect("record").record;
    assert_eq!((rec.holder_identity.as_str(), rec.preferred_holder.as_deref()), ("primary", None));

    // The primary dies (its task aborted, as a crash would): the standby leads.
    primary.abort();
    let _ = primary.await;
    until(&log, &["standby", "primary", "standby"], Duration::from_secs(10)).await;

    // The primary flaps every 2 s (up for 1 s, down for 1 s) for a minute; never up
    // for the hold-down.
    for _ in 0..30 {
        let (_, flapping) = start(&store, "primary", 10, &log);
        tokio::time::sleep(Duration::from_secs(1)).await;
        flapping.abort();
        let _ = flapping.await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(leaders(&log), ["standby", "primary", "standby"], "a flapping primary moved the lock");

    // It comes back for good: it leads again after the hold-down, once.
    let (primary_stop, primary) = start(&store, "primary", 10, &log);
    until(&log, &["standby", "primary", "standby", "primary"], Duration::from_secs(15)).await;
    tokio::time::sleep(HOLD_DOWN * 2).await;
    assert_eq!(leaders(&log), ["standby", "primary", "standby", "primary"], "the lock moved again after fail-back");
    let live: Vec<String> = roster::candidates(&store, &lock()).await.expect("roster").into_iter().map(|c| c.identity).collect();
    assert_eq!(live, ["primary", "standby"]);

    primary_stop.cancel();
    standby_stop.cancel();
    assert_eq!(primary.await.expect("primary"), ElectionEnd::Shutdown);
    assert_eq!(standby.await.expect("standby"), ElectionEnd::Shutdown);
}

/// A hand-over away from a higher-priority leader holds for the hold-down time before
/// the priority takes the lock back (it did not, when the new leader read the old one's
/// long registration before that was refreshed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_over_away_from_the_primary_holds_for_the_hold_down() {
    let store = MemoryStore::with_watch();
    let log: Leaders = Arc::default();
    // Refreshed every 2 s: the new leader may read the primary's entry as it was
    // before the hand-over.
    let refresh = Duration::from_secs(2);
    let (primary_stop, primary) = start_refreshing(&store, "primary", 10, &log, refresh);
    until(&log, &["primary"], Duration::from_secs(10)).await;
    // The standby refreshes half a period after the primary (which refreshed as it
    // began to lead), and the hand-over comes just after a primary refresh: the new
    // leader's next refresh comes before the primary's, when both have been registered
    // for longer than the hold-down.
    tokio::time::sleep(refresh / 2).await;
    let (standby_stop, standby) = start_refreshing(&store, "standby", 0, &log, refresh);
    tokio::time::sleep(refresh * 3 - refresh / 2 + Duration::from_millis(200)).await;
    assert_eq!(roster::hand_over(&store, &lock(), Some("standby")).await.expect("hand over"), "standby");
    until(&log, &["primary", "standby"], Duration::from_secs(5)).await;
    let moved = tokio::time::Instant::now();
    tokio::time::sleep(HOLD_DOWN - Duration::from_millis(500)).await;
    assert_eq!(leaders(&log), ["primary", "standby"], "the primary took the lock back before the hold-down");
    until(&log, &["primary", "standby", "primary"], Duration::from_secs(10)).await;
    assert!(moved.elapsed() >= HOLD_DOWN, "back after {:?}", moved.elapsed());
    primary_stop.cancel();
    standby_stop.cancel();
    assert_eq!(primary.await.expect("primary"), ElectionEnd::Shutdown);
    assert_eq!(standby.await.expect("standby"), ElectionEnd::Shutdown);
}
