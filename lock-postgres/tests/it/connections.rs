//! A store's connections stay within its pool size plus one LISTEN connection, even
//! while statements that outlive their timeout are being cancelled (each cancel
//! request is a connection of its own) or their connections closed and replaced.

use crate::support;
use lock_conformance::fixtures;
use lock_core::{LeaderElectionRecord, LeaseStore};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A TCP proxy on 127.0.0.1 that, at each connection it accepts, counts this process's
/// established connections to it (from /proc, as the many_locks benchmark counts).
struct Counting {
    port: u16,
    most: Arc<AtomicUsize>,
    accepted: Arc<AtomicUsize>,
}

async fn counting_proxy(to: String) -> Counting {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (most, accepted) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let counters = (most.clone(), accepted.clone());
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            counters.1.fetch_add(1, Ordering::SeqCst);
            counters.0.fetch_max(established_to(port), Ordering::SeqCst);
            let to = to.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(&to).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    Counting { port, most, accepted }
}

/// This process's established TCP connections to `port` on 127.0.0.1.
fn established_to(port: u16) -> usize {
    let text = std::fs::read_to_string("/proc/self/net/tcp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            f.get(3) == Some(&"01") && f.get(2).and_then(|r| r.rsplit(':').next()) == Some(&format!("{port:04X}")[..])
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancels_keep_connections_within_the_pool_size_plus_one() {
    timeouts_keep_connections_within_the_pool_size_plus_one(true).await;
}

/// Without cancel requests every timed-out connection is closed and replaced: the
/// replacement waits until the old socket is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_connections_are_gone_before_their_replacements_open() {
    timeouts_keep_connections_within_the_pool_size_plus_one(false).await;
}

async fn timeouts_keep_connections_within_the_pool_size_plus_one(cancel: bool) {
    let url = fixtures::postgres_url().await.expect("postgres");
    fixtures::ready(&lock_postgres::BACKEND, &url).await.expect("ready");
    let parsed = lock_core::StoreUrl::parse(&url).expect("url");
    let host = parsed.hosts().first().cloned().expect("host");
    let (server_host, server_port) = lock_core::url::host_port("postgres", 0, &host, 5432).expect("host:port");
    let proxy = counting_proxy(format!("{server_host}:{server_port}")).await;
    let (user_info, rest) = url.split_once('@').expect("user-info");
    let path = rest.split_once('/').map_or("", |(_, p)| p);
    let through = format!("{user_info}@127.0.0.1:{}/{path}", proxy.port);

    let pool_size = 3;
    let store = lock_postgres::PostgresStore::builder(&through)
        .expect("url")
        .pool_size(pool_size)
        .statement_timeout(Duration::from_millis(300))
        .cancel_on_timeout(cancel)
        .build()
        .expect("builds");
    let lock = lock_conformance::unique_lock("cancel-bound");
    store.create(&lock, &LeaderElectionRecord::new("stalin", 15, chrono::Utc::now())).await.expect("create");
    let seen = store.get(&lock).await.expect("get").expect("record");
    let _watching = store.watch(&lock).await.expect("watch").expect("LISTEN works on the server itself");

    // The lease row locked on the server directly: every update waits, times out and
    // is cancelled.
    let holder = support::lock_row(&url, &lock).await;

    let mut updates = Vec::new();
    for i in 0..12 {
        let (store, lock, version) = (store.clone(), lock.clone(), seen.version.clone());
        updates.push(tokio::spawn(async move {
            let mut rec = LeaderElectionRecord::new(format!("napoleon-{i}"), 15, chrono::Utc::now());
            rec.leader_transitions = 1;
            store.update(&lock, &version, &rec).await
        }));
    }
    for update in updates {
        let result = update.await.expect("task");
        assert!(result.is_err(), "an update committed under the row lock: {result:?}");
    }
    // Every cancel has finished (each waits for the server to close it).
    tokio::time::sleep(Duration::from_secs(1)).await;
    holder.batch_execute("ROLLBACK").await.expect("rollback");
    let most = proxy.most.load(Ordering::SeqCst);
    let accepted = proxy.accepted.load(Ordering::SeqCst);
    let (missing, bound) = if cancel {
        ("no cancel request was sent", pool_size + 1)
    } else {
        // No cancel requests: the pool's connections and the LISTEN one only.
        ("no timed-out connection was replaced", pool_size)
    };
    assert!(accepted > pool_size + 1, "{missing} ({accepted} connections in all)");
    assert!(most <= bound, "{most} connections open at once: more than {bound} (pool size {pool_size}, cancels {cancel})");
    // And the store still works.
    store.get(&lock).await.expect("get after the cancels");
}
