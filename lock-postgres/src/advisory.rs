//! Advisory-lock mode (`advisory=true`): a write that names a holder must also hold a
//! session-level `pg_try_advisory_lock` on a connection of the store's own for that lock
//! (one store is one process's candidate).
//!
//! The row stays the lease and its compare-and-set stays the decision; the advisory
//! lock is a second gate. The session keeps it while the lease the store last wrote
//! lasts and closes when that lease ends unrenewed, when the store releases, or when a
//! write naming a holder fails the compare-and-set. Until then no other session
//! can write a holder into the row, even after the lease has expired: a crashed
//! holder's session ends with its process, but a paused one, or one cut off by a
//! partition, keeps its lock for as long as the server keeps the session (the
//! server's TCP keepalives, `idle_session_timeout`). docs/semantics.md measures it.

use super::*;
use std::collections::HashMap;
use tokio::time::Instant;

/// The sessions of one store: one per lock it leads.
#[derive(Default)]
pub(crate) struct Sessions {
    slots: std::sync::Mutex<HashMap<LockName, Slot>>,
    /// Locks whose gate was found held by a session that outlived its lease: said once
    /// until the gate is passed again.
    warned: std::sync::Mutex<std::collections::HashSet<LockName>>,
}

/// What a write naming a holder found at the gate.
pub(crate) enum Gate {
    /// The store's session holds the lock's advisory lock.
    Held,
    /// Another session holds it: that session's server process, if it could be read.
    Refused(Option<i32>),
}

/// The store's session for one lock, if open.
type Slot = Arc<tokio::sync::Mutex<Option<Session>>>;

struct Session {
    client: tokio_postgres::Client,
    /// When the lease the store last wrote ends: the session closes then.
    lease_end: tokio::sync::watch::Sender<Instant>,
    /// The row version the store's last write left, to know its release.
    version: Option<Version>,
}

/// The advisory lock's 64-bit key for a lock of a table: FNV-1a of both names, stable
/// across versions and processes (a collision makes two locks share one gate: never
/// two leaders, at worst one lock waiting for the other's holder).
pub(crate) fn key(qualified: &str, lock: &LockName) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in qualified.bytes().chain([0]).chain(lock.as_str().bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// Moves a session's end to `until` if that is later.
fn extend(lease_end: &tokio::sync::watch::Sender<Instant>, until: Instant) {
    lease_end.send_if_modified(|end| (*end < until).then(|| *end = until).is_some());
}

/// pg_locks shows a bigint key as two oids: its high and its low 32 bits.
fn halves(key: i64) -> (i64, i64) {
    let bits = u64::from_ne_bytes(key.to_ne_bytes());
    (i64::from(u32::try_from(bits >> 32).unwrap_or(0)), i64::from(u32::try_from(bits & 0xffff_ffff).unwrap_or(0)))
}

/// The server process of the session holding the key.
const HOLDER: &str = "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 \
     AND classid::bigint = $1 AND objid::bigint = $2 LIMIT 1";

/// True if this session holds the key (no second, stacked acquisition), else whether
/// it could take it now.
const HOLD: &str = "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() \
     AND granted AND objsubid = 1 AND classid::bigint = $2 AND objid::bigint = $3) THEN true ELSE pg_try_advisory_lock($1) END";

impl PostgresStore {
    /// The key of `lock`'s advisory lock in this store's table, as
    /// `pg_try_advisory_lock(bigint)` takes it. pg_locks shows it as two oids: find its
    /// holder with `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1
    /// AND (classid::bigint << 32 | objid::bigint) = KEY`.
    #[must_use]
    pub fn advisory_key(&self, lock: &LockName) -> i64 {
        key(&self.inner.qualified, lock)
    }

    fn slot(&self, lock: &LockName) -> Slot {
        let mut slots = self.inner.sessions.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.entry(lock.clone()).or_default().clone()
    }

    /// Before a write that names a holder, for a lease of `lease`: whether the store's
    /// session for `lock` holds its advisory lock, taking it if it is free.
    pub(crate) async fn hold_advisory(&self, lock: &LockName, lease: Duration) -> Result<Gate> {
        if self.advisory_without_session() {
            return Err(self.no_session_error());
        }
        let slot = self.slot(lock);
        let mut session = slot.lock().await;
        let k = key(&self.inner.qualified, lock);
        let (high, low) = halves(k);
        // Until the write it gates has answered, the session lasts at least a lease from
        // this ask (the answer then sets the lease written). A session whose own lease ran
        // out just before (its connection closing as this asks) is opened again, once.
        let mut reopened = false;
        let held = loop {
            if session.as_ref().is_some_and(|s| s.client.is_closed()) {
                *session = None;
            }
            if session.is_none() {
                let opened = self.open_session(lock, Instant::now() + lease);
                *session = Some(lock_core::bounded(lock, self, "advisory session", self.inner.statement_timeout, opened).await?);
            }
            let Some(open) = session.as_ref() else { return Ok(Gate::Refused(None)) };
            extend(&open.lease_end, Instant::now() + lease);
            let ask = async {
                open.client
                    .query_typed(HOLD, &[(&k, Type::INT8), (&high, Type::INT8), (&low, Type::INT8)])
                    .await
                    .map_err(|e| self.error(Some(lock), e))
            };
            match lock_core::bounded(lock, self, "advisory lock", self.inner.statement_timeout, ask).await {
                Ok(rows) => break rows.first().and_then(|r| r.try_get::<_, bool>(0).ok()).unwrap_or(false),
                Err(_) if !reopened && open.client.is_closed() => {
                    reopened = true;
                    *session = None;
                }
                Err(e) => {
                    // Unknown whether it holds: closing the session gives the lock up for sure.
                    *session = None;
                    return Err(e);
                }
            }
        };
        if held {
            self.inner.sessions.warned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(lock);
            return Ok(Gate::Held);
        }
        // The session stays (it holds nothing) for the next try: no reconnection per try.
        let Some(open) = session.as_ref() else { return Ok(Gate::Refused(None)) };
        let who = async {
            open.client.query_typed(HOLDER, &[(&high, Type::INT8), (&low, Type::INT8)]).await.map_err(|e| self.error(Some(lock), e))
        };
        let pid = lock_core::bounded(lock, self, "advisory lock holder", self.inner.statement_timeout, who)
            .await
            .ok()
            .and_then(|rows| rows.first().and_then(|r| r.try_get::<_, i32>(0).ok()));
        Ok(Gate::Refused(pid))
    }

    /// A takeover from `expected` was refused at the gate although the row is still at
    /// `expected`: the lease its holder wrote has expired by the taker's clock, yet that
    /// holder's session lives on the server (a paused or cut-off holder). Said once per
    /// lock until the gate is passed again: nothing can take over until the session ends.
    pub(crate) fn zombie_session(&self, lock: &LockName, pid: Option<i32>) {
        if !self.inner.sessions.warned.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(lock.clone()) {
            return;
        }
        let pid = pid.map_or_else(|| "unknown".to_string(), |p| p.to_string());
        tracing::warn!(
            lock = %lock,
            store = %self,
            pid = %pid,
            "the lease has expired, but its holder's Postgres session still holds the lock's advisory lock: no one can take over until the server ends that session (its TCP keepalives or idle_session_timeout; or SELECT pg_terminate_backend(pid) once that holder is known to be gone)"
        );
    }

    /// After a write that named a holder, begun at `asked`: the version it left and the
    /// lease it wrote (the session lasts as long: no longer, whatever an earlier ask
    /// asked for), or (`None`) that it failed the compare-and-set, which ends the session.
    pub(crate) async fn wrote_advisory(&self, lock: &LockName, wrote: Option<(&Version, Instant, Duration)>) {
        let slot = self.slot(lock);
        let mut session = slot.lock().await;
        match (wrote, session.as_mut()) {
            (Some((v, asked, lease)), Some(s)) => {
                s.version = Some(v.clone());
                let _ = s.lease_end.send(asked + lease);
            }
            (None, _) => self.close(lock, session.take()).await,
            (Some(_), None) => {}
        }
    }

    /// After this store released `lock` (a write naming no holder succeeded): it leads
    /// it no more, whatever version it last knew, so its session ends.
    pub(crate) async fn released_advisory(&self, lock: &LockName) {
        let slot = self.slot(lock);
        let mut session = slot.lock().await;
        self.close(lock, session.take()).await;
        drop(session);
        self.forget(lock, &slot);
    }

    /// Drops the lock's slot from the map when no session is open and no call holds it,
    /// so that a store that led many locks once does not keep an entry for each.
    fn forget(&self, lock: &LockName, slot: &Slot) {
        let mut slots = self.inner.sessions.slots.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Two references: the map's and the caller's.
        if Arc::strong_count(slot) == 2 && slot.try_lock().is_ok_and(|s| s.is_none()) {
            slots.remove(lock);
        }
    }

    /// Ends a session the store gives up: the lock is unlocked before this returns (a
    /// closed connection frees it too, but only once the server has noticed).
    async fn close(&self, lock: &LockName, session: Option<Session>) {
        let Some(session) = session else { return };
        let unlock = async { session.client.batch_execute("SELECT pg_advisory_unlock_all()").await.map_err(|e| self.error(Some(lock), e)) };
        let _ = lock_core::bounded(lock, self, "advisory unlock", self.inner.statement_timeout, unlock).await;
    }

    /// After a release from `expected` that failed: the session ends if this store wrote
    /// `expected` (its lease was taken from it), else it lasts its lease.
    pub(crate) async fn release_failed_advisory(&self, lock: &LockName, expected: &Version) {
        let slot = self.slot(lock);
        let mut session = slot.lock().await;
        if session.as_ref().is_some_and(|s| s.version.as_ref() == Some(expected)) {
            self.close(lock, session.take()).await;
        }
    }

    /// A write naming a holder refused because another session (server process `pid`)
    /// holds the gate: the error the row itself would give (`AlreadyExists` for a create
    /// of a row that exists, `NotFound` for an update of one that does not), else a
    /// conflict — and, when an update's row is still at `expected`, the warning that a
    /// holder's session outlived its lease. If the row cannot be read, still a conflict:
    /// the gate's answer stands, not the read's failure.
    pub(crate) async fn gate_refused(&self, lock: &LockName, expected: Option<&Version>, pid: Option<i32>) -> Error {
        let row = self.get(lock).await.ok();
        match (expected, row.as_ref()) {
            (None, Some(Some(_))) => return Error::AlreadyExists { lock: lock.clone(), store: self.to_string() },
            (Some(_), Some(None)) => return Error::NotFound { lock: lock.clone(), store: self.to_string() },
            (Some(v), Some(Some(seen))) if &seen.version == v => self.zombie_session(lock, pid),
            _ => {}
        }
        Error::Conflict { lock: lock.clone(), store: self.to_string() }
    }

    /// A connection of its own (to the server directly when `listen=` names it), driven
    /// by a task that closes it when the lease ends, the session is dropped or the
    /// store is.
    async fn open_session(&self, lock: &LockName, until: Instant) -> Result<Session> {
        let mut config = self.inner.listen_config.clone();
        config.application_name("highlander-advisory");
        let (client, driver): (_, std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) = match self.inner.connector.clone() {
            Some(tls) => {
                let (client, connection) = config.connect(tls).await.map_err(|e| self.error(Some(lock), e))?;
                (client, Box::pin(async move { drop(connection.await) }))
            }
            None => {
                let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| self.error(Some(lock), e))?;
                (client, Box::pin(async move { drop(connection.await) }))
            }
        };
        let (lease_end, mut end) = tokio::sync::watch::channel(until);
        let mut stop = self.inner.stop.subscribe();
        tokio::spawn(async move {
            let mut driver = driver;
            loop {
                let until = *end.borrow_and_update();
                // A lease extended as it ends keeps the session: the change is seen first.
                tokio::select! {
                    biased;
                    changed = end.changed() => if changed.is_err() { break },
                    () = &mut driver => break,
                    _ = stop.changed() => break,
                    () = tokio::time::sleep_until(until) => break,
                }
            }
        });
        Ok(Session { client, lease_end, version: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_split_as_pg_locks_shows_them() {
        let lock = LockName::new("nightly-billing").expect("valid");
        let k = key("\"public\".\"highlander_leases\"", &lock);
        assert_eq!(k, key("\"public\".\"highlander_leases\"", &lock));
        assert_ne!(k, key("\"public\".\"other\"", &lock));
        assert_ne!(k, key("\"public\".\"highlander_leases\"", &LockName::new("nightly-billin").expect("valid")));
        let (high, low) = halves(k);
        let bits = (u64::try_from(high).expect("32 bits") << 32) | u64::try_from(low).expect("32 bits");
        assert_eq!(bits.to_ne_bytes(), k.to_ne_bytes());
        assert_eq!(halves(-1), (0xffff_ffff, 0xffff_ffff));
    }
}
