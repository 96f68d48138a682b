//! The fenced-writes scenario every backend that declares
//! [`Capabilities::fenced_writes`](lock_core::Capabilities) runs against a real store:
//! a deposed leader's fenced write never commits, the new leader's does, a valid
//! leader's keep succeeding across renewals, and old and new racing leave only the new.

use crate::{Failure, ensure};
use lock_core::{Error, Fence, FencingTerm, LeaderElector, Leadership, LockName, SharedStore, Timing};
use std::{future::Future, pin::Pin, sync::Arc, time::Duration};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A write of `value` under a fence (or, for the mutation check, without one).
pub type Write = Arc<dyn Fn(Option<FencingTerm>, String) -> Pin<Box<dyn Future<Output = lock_core::Result<()>> + Send>> + Send + Sync>;
/// Reads back the value the writes write.
pub type Read = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = lock_core::Result<Option<String>>> + Send>> + Send + Sync>;

/// What the scenario measured.
#[derive(Debug, Clone, Default)]
pub struct FencingReport {
    /// Fenced writes of the valid leader that succeeded across its renewals.
    pub writes_across_renewals: usize,
    /// Renewals those writes spanned.
    pub renewals: usize,
    /// The deposed leader's racing writes that were refused.
    pub refused: usize,
}

struct Candidate {
    leaderships: mpsc::UnboundedReceiver<Leadership>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<lock_core::ElectionEnd>,
}

fn candidate(store: SharedStore, lock: &LockName, name: &str, t: Timing, recampaign: bool) -> Result<Candidate, Failure> {
    let (tx, leaderships) = mpsc::unbounded_channel();
    let elector = LeaderElector::builder(store, lock.clone(), name)
        .timing(t)
        .recampaign(recampaign)
        .on_started_leading(move |l| {
            let _ = tx.send(l.clone());
            async move { l.lost().await }
        })
        .build()
        .map_err(|e| Failure(format!("elector: {e}")))?;
    let shutdown = CancellationToken::new();
    let task = elector.spawn(shutdown.clone());
    Ok(Candidate { leaderships, shutdown, task })
}

fn fenced(e: &Error) -> bool {
    e.is_fenced()
}

/// Runs the scenario. `connect` opens a client of the store under test, `write`
/// writes a value (under the given term, or unfenced with `None`), `read` reads it.
pub async fn deposed_leaders_fenced_writes_never_commit<C, F>(connect: C, write: Write, read: Read) -> Result<FencingReport, Failure>
where
    C: Fn() -> F,
    F: Future<Output = lock_core::Result<SharedStore>>,
{
    let t = Timing { lease: Duration::from_secs(3), renew_deadline: Duration::from_secs(2), retry_period: Duration::from_millis(300) };
    let lock = crate::unique_lock("fencing");
    let mut report = FencingReport::default();

    // Leader A; its fenced writes succeed, 50 renewals long.
    let a_store = connect().await?;
    // Once deposed, A does not campaign again: it would race B for the released lease
    // (and on a polling store often win it), and B's term is what the scenario needs.
    let mut a = candidate(a_store.clone(), &lock, "alpha", t, false)?;
    let la = tokio::time::timeout(Duration::from_secs(30), a.leaderships.recv())
        .await
        .ok()
        .flatten()
        .ok_or_else(|| Failure("alpha never led".into()))?;
    ensure!(a_store.capabilities().fenced_writes.is_some(), "{a_store} does not declare fenced writes");
    let first = a_store.get(&lock).await?.ok_or_else(|| Failure("no record".into()))?;
    let version_ordinal = |o: &lock_core::Observed| o.version.ordinal();
    for i in 0..50 {
        write(Some(la.term()?), format!("alpha-{i}"))
            .await
            .map_err(|e| Failure(format!("alpha's fenced write {i} failed while it led: {e}")))?;
        report.writes_across_renewals += 1;
        tokio::time::sleep(t.retry_period).await;
    }
    let later = a_store.get(&lock).await?.ok_or_else(|| Failure("no record".into()))?;
    report.renewals = match (version_ordinal(&first), version_ordinal(&later)) {
        (Some(a), Some(b)) => usize::try_from(b.saturating_sub(a)).unwrap_or(0),
        _ => 50,
    };
    ensure!(later.record.renew_time > first.record.renew_time, "the leader did not renew during the writes");
    ensure!(read().await?.as_deref() == Some("alpha-49"), "the last write of alpha is not what the store holds");

    // Standby B; the lease is taken from A behind its back (released under its token).
    let b_store = connect().await?;
    let mut b = candidate(b_store.clone(), &lock, "beta", t, true)?;
    tokio::time::sleep(t.retry_period * 2).await;
    let a_term = la.term()?;
    // A's renewals race this write: read again and retry until it lands.
    let mut attempts = 0;
    loop {
        let seen = b_store.get(&lock).await?.ok_or_else(|| Failure("no record".into()))?;
        let mut released = seen.record.clone();
        released.holder_identity = String::new();
        released.lease_duration_seconds = 1;
        match b_store.update(&lock, &seen.version, &released).await {
            Ok(_) => break,
            Err(Error::Conflict { .. }) if attempts < 20 => attempts += 1,
            Err(e) => return Err(e.into()),
        }
    }
    let lb = tokio::time::timeout(Duration::from_secs(30), b.leaderships.recv())
        .await
        .ok()
        .flatten()
        .ok_or_else(|| Failure("beta never led".into()))?;
    ensure!(lb.fencing_token() > a_term.token, "beta's token {} is not above alpha's {}", lb.fencing_token(), a_term.token);

    // A's fenced write, checked by the store (the term as A knew it): refused, nothing written.
    let err = write(Some(a_term.clone()), "alpha-late".into())
        .await
        .err()
        .ok_or_else(|| Failure("the deposed leader's fenced write committed".into()))?;
    ensure!(fenced(&err), "the deposed leader's fenced write failed, but not as fenced: {err}");
    ensure!(read().await?.as_deref() == Some("alpha-49"), "the refused write changed the data");
    // Through its Leadership too (refused locally or by the store, never written).
    match la.term() {
        Err(e) => ensure!(fenced(&e), "{e}"),
        Ok(term) => {
            ensure!(write(Some(term), "alpha-late".into()).await.is_err_and(|e| fenced(&e)), "alpha's Leadership wrote after losing")
        }
    }
    // B's succeeds.
    write(Some(lb.term()?), "beta-0".into()).await.map_err(|e| Failure(format!("the new leader's fenced write failed: {e}")))?;
    ensure!(read().await?.as_deref() == Some("beta-0"), "the new leader's write is not there");

    // Old and new race: only the new commit.
    let mut racing = Vec::new();
    for i in 0..10 {
        let (w, old, new) = (write.clone(), a_term.clone(), lb.term()?);
        racing.push(tokio::spawn(async move { (true, w(Some(old), format!("alpha-race-{i}")).await) }));
        let w = write.clone();
        racing.push(tokio::spawn(async move { (false, w(Some(new), format!("beta-race-{i}")).await) }));
    }
    for r in racing {
        let (old, outcome) = r.await.map_err(|e| Failure(format!("a racing write panicked: {e}")))?;
        match (old, outcome) {
            (true, Err(e)) if fenced(&e) => report.refused += 1,
            (true, other) => return Err(Failure(format!("a deposed leader's racing write was not fenced: {other:?}"))),
            (false, Err(e)) => return Err(Failure(format!("the new leader's racing write failed: {e}"))),
            (false, Ok(())) => {}
        }
    }
    let last = read().await?.unwrap_or_default();
    ensure!(last.starts_with("beta-race-"), "after the race the store holds {last:?}, not one of the new leader's");

    // The mutation check: the same late write without the fence lands. (That is what the fence prevents.)
    write(None, "alpha-unfenced".into()).await?;
    ensure!(read().await?.as_deref() == Some("alpha-unfenced"), "an unfenced write did not land: the scenario proves nothing");

    for c in [a, b] {
        c.shutdown.cancel();
        let _ = c.task.await;
    }
    Ok(report)
}
