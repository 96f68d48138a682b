//! One change feed per store, shared by every lock: a store with notifications opens
//! one feed (a LISTEN connection, a watch stream) and a [`WatchHub`] fans each record
//! out to the watchers of its lock, so the connections a process holds do not grow with
//! the number of locks it campaigns for.

use crate::{
    error::Error,
    name::LockName,
    store::{Changes, Observed, Version},
};
use bytes::Bytes;
use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex, PoisonError},
};
use tokio::sync::{mpsc, watch};

/// How many records a slow watcher may fall behind before it misses some (it still
/// polls, so a missed notification costs latency, never correctness).
const BACKLOG: usize = 16;

/// The watchers of each lock of one store, and whether the store's feed is up.
#[derive(Debug, Default)]
pub struct WatchHub {
    state: Mutex<HubState>,
}

#[derive(Debug, Default)]
struct HubState {
    watchers: HashMap<LockName, Vec<mpsc::Sender<Observed>>>,
    /// Whether a feed delivers into this hub now.
    live: bool,
    /// Feeds started so far: a feed's generation tells a stale one to stop.
    generation: u64,
}

impl WatchHub {
    /// A hub with no feed and no watchers.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a feed is up; if not, claims the right to start one and returns its
    /// generation (the caller starts the feed and calls [`feed_ended`](Self::feed_ended) with
    /// that generation when it stops).
    pub fn needs_feed(&self) -> Option<u64> {
        let mut s = self.state();
        if s.live {
            return None;
        }
        s.live = true;
        s.generation += 1;
        Some(s.generation)
    }

    /// Claims the right to start a feed if none is up, as [`needs_feed`](Self::needs_feed),
    /// as a claim that ends the feed's generation when dropped unless
    /// [`started`](FeedClaim::started) says the feed is up: a caller that fails, or gives up
    /// half-way (a timeout), never leaves a hub that waits for a feed nobody runs.
    pub fn claim_feed(&self) -> Option<FeedClaim<'_>> {
        self.needs_feed().map(|generation| FeedClaim { hub: self, generation, armed: true })
    }

    /// A watcher of `lock`, after starting the store's one feed with `start` (given its
    /// generation) if none is up. If `start` fails, its error is returned and the next
    /// watch tries again.
    pub async fn subscribe_starting<F, Fut>(&self, lock: &LockName, start: F) -> Result<Changes, Error>
    where
        F: FnOnce(u64) -> Fut,
        Fut: std::future::Future<Output = Result<(), Error>>,
    {
        if let Some(claim) = self.claim_feed() {
            start(claim.generation()).await?;
            claim.started();
        }
        Ok(self.subscribe(lock))
    }

    /// Registers a watcher of `lock`: the records the feed delivers for it.
    pub fn subscribe(&self, lock: &LockName) -> Changes {
        let (tx, rx) = mpsc::channel(BACKLOG);
        self.state().watchers.entry(lock.clone()).or_default().push(tx);
        rx
    }

    /// Hands `seen` to every watcher of `lock`; forgets watchers that went away.
    pub fn publish(&self, lock: &LockName, seen: &Observed) {
        let mut s = self.state();
        if let Some(list) = s.watchers.get_mut(lock) {
            list.retain(|w| match w.try_send(seen.clone()) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => true,
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
            if list.is_empty() {
                s.watchers.remove(lock);
            }
        }
    }

    /// What a feed heard about `lock`: handed to its watchers if anyone watches it and it
    /// decodes (a record that does not decode is left for the elector's own read to report).
    pub fn deliver(&self, lock: &LockName, store: &dyn std::fmt::Display, raw: Bytes, version: Version) {
        if self.is_watched(lock)
            && let Ok(seen) = Observed::decode(lock, store, raw, version)
        {
            self.publish(lock, &seen);
        }
    }

    /// Runs `feed` (a loop that [`deliver`](Self::deliver)s what it hears and returns when
    /// its connection ends) as a task until it returns or `stop` fires (the store was
    /// dropped). Then the feed of `generation` has ended: watchers poll until the next
    /// watch starts a new one.
    pub fn spawn_feed(self: &Arc<Self>, generation: u64, mut stop: watch::Receiver<()>, feed: impl Future<Output = ()> + Send + 'static) {
        let hub = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.changed() => {}
                () = feed => {}
            }
            hub.feed_ended(generation);
        });
    }

    /// Whether anyone watches `lock` (a feed may skip decoding records nobody wants).
    #[must_use]
    pub fn is_watched(&self, lock: &LockName) -> bool {
        self.state().watchers.get(lock).is_some_and(|l| l.iter().any(|w| !w.is_closed()))
    }

    /// The feed of `generation` ended: every watcher's channel closes (electors go
    /// back to polling) and the next watch starts a new feed.
    pub fn feed_ended(&self, generation: u64) {
        let mut s = self.state();
        if s.generation == generation {
            s.live = false;
            s.watchers.clear();
        }
    }

    /// How many locks have watchers.
    #[must_use]
    pub fn watched_locks(&self) -> usize {
        self.state().watchers.len()
    }
}

/// The right to start a hub's feed ([`WatchHub::claim_feed`]).
#[derive(Debug)]
pub struct FeedClaim<'a> {
    hub: &'a WatchHub,
    generation: u64,
    armed: bool,
}

impl FeedClaim<'_> {
    /// The generation the feed being started belongs to.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The feed is up: the hub stays live.
    pub fn started(mut self) {
        self.armed = false;
    }
}

impl Drop for FeedClaim<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.hub.feed_ended(self.generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{record::LeaderElectionRecord, store::Version};

    fn seen(holder: &str) -> Observed {
        let rec = LeaderElectionRecord::new(holder, 15, chrono::Utc::now());
        Observed { raw: rec.to_json().expect("encode").into(), record: rec, version: Version::new("1") }
    }

    #[tokio::test]
    async fn one_feed_fans_out_by_lock_and_its_end_closes_every_watcher() {
        let hub = WatchHub::new();
        let generation = hub.needs_feed().expect("no feed yet");
        assert_eq!(hub.needs_feed(), None, "one feed at a time");
        let (a, b) = (LockName::new("a").expect("a"), LockName::new("b").expect("b"));
        let (mut wa1, mut wa2, mut wb) = (hub.subscribe(&a), hub.subscribe(&a), hub.subscribe(&b));
        hub.publish(&a, &seen("x"));
        assert_eq!(wa1.recv().await.expect("a1").record.holder_identity, "x");
        assert_eq!(wa2.recv().await.expect("a2").record.holder_identity, "x");
        assert!(wb.try_recv().is_err(), "b's watcher hears nothing of a");
        drop(wa2);
        hub.publish(&a, &seen("y"));
        assert_eq!(wa1.recv().await.expect("a1").record.holder_identity, "y");
        assert_eq!(hub.watched_locks(), 2);
        hub.feed_ended(generation);
        assert!(wa1.recv().await.is_none() && wb.recv().await.is_none(), "channels close: back to polling");
        assert!(hub.needs_feed().is_some(), "the next watch starts a new feed");
    }

    #[tokio::test]
    async fn a_feed_that_fails_or_is_abandoned_while_starting_is_started_again_next_time() {
        let hub = WatchHub::new();
        let lock = LockName::new("a").expect("name");
        let failed = hub.subscribe_starting(&lock, |_| async { Err(Error::Config("no feed".into())) }).await;
        assert!(failed.is_err());
        // A start abandoned half-way (its future dropped): the claim is given back.
        let abandoned = hub.subscribe_starting(&lock, |_| std::future::pending::<Result<(), Error>>());
        assert!(tokio::time::timeout(std::time::Duration::from_millis(10), abandoned).await.is_err());
        let mut started = None;
        hub.subscribe_starting(&lock, |g| {
            started = Some(g);
            async { Ok(()) }
        })
        .await
        .expect("starts");
        assert!(started.is_some(), "each failed or abandoned start left the next watch free to start a feed");
        assert!(hub.claim_feed().is_none(), "a started feed stays claimed");
    }
}
