//! `highlander reset`: releases a lock by hand, deliberately. Compare-and-set on the
//! version `status` showed, so it never overwrites a record that changed since; a lock
//! whose holder may still be renewing is left alone unless forced.

use crate::{Failure, status::Expiry};
use highlander::{Escaped, LeaseStore, LockName, OpenOptions, Version, open_with};
use tracing::warn;

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    target: crate::Target,
    /// The record's version, as `highlander status` shows it: the reset is refused if
    /// the record is no longer that version.
    #[arg(long = "expect-version", value_name = "VERSION")]
    expect_version: String,
    /// Release it even if its holder's lease has not expired by this machine's clock
    /// (or the clock cannot tell): the holder may still be running its work.
    #[arg(long)]
    force: bool,
}

pub(crate) async fn reset(args: Args) -> Result<(), Failure> {
    let lock = LockName::new(&args.target.lock).map_err(|e| e.to_string())?;
    let store = open_with(&args.target.store, &OpenOptions::default()).await.map_err(|e| e.to_string())?;
    let line = release(&*store, &lock, &args.expect_version, args.force).await?;
    println!("{line}");
    Ok(())
}

/// Releases `lock` if its record is still `expected` and, unless `force`, expired.
async fn release(store: &dyn LeaseStore, lock: &LockName, expected: &str, force: bool) -> Result<String, String> {
    let Some(seen) = store.get(lock).await.map_err(|e| e.to_string())? else {
        return Err(format!("lock {lock:?} in {store} has no record: nothing to reset"));
    };
    if seen.version.as_str() != expected {
        return Err(format!(
            "lock {lock:?} in {store} is at version {} now, not {}: it changed since you looked (or the version lost its quotes on the way: paste it as status shows it); run highlander status again",
            crate::status::shell_quoted(seen.version.as_str()),
            crate::status::shell_quoted(&highlander::display::Unquoted(expected).to_string())
        ));
    }
    let r = &seen.record;
    if !r.is_held() {
        return Ok(format!("lock {lock:?} in {store} is already released (version {expected}): nothing written"));
    }
    let expiry = Expiry::by_clock(r, chrono::Utc::now());
    if expiry.expired() != Some(true) && !force {
        return Err(format!(
            "lock {lock:?} in {store} is held by {} and its lease {}: its holder may still be running its work; check it is stopped, then add --force",
            Escaped(&r.holder_identity),
            expiry.describe()
        ));
    }
    // As a graceful release writes it; the fencing token is kept, so the next term's is above it.
    let version = store.update(lock, &Version::new(expected), &r.released(chrono::Utc::now())).await.map_err(|e| match e {
        highlander::Error::Conflict { .. } => format!(
            "lock {lock:?} in {store} changed while it was being reset (compare-and-set on version {expected} failed): nothing written; run highlander status again"
        ),
        e => e.to_string(),
    })?;
    warn!(
        lock = %lock, store = %store, holder = %Escaped(&r.holder_identity), version = expected, forced = force,
        "released the lock by hand (highlander reset)"
    );
    Ok(format!(
        "lock {lock:?} in {store}: released (was held by {}, version {expected}; now version {})",
        Escaped(&r.holder_identity),
        version.as_str()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use highlander::{LeaderElectionRecord, MemoryStore};

    fn lock() -> LockName {
        LockName::new("nightly").expect("valid")
    }

    #[tokio::test]
    async fn reset_never_overwrites_a_record_that_changed_nor_a_live_holder_unless_forced() {
        let store = MemoryStore::new();
        let now = chrono::Utc::now();
        let v1 = store.create(&lock(), &LeaderElectionRecord::new("alive", 15, now)).await.expect("create");
        let live = release(&store, &lock(), v1.as_str(), false).await.expect_err("a live holder");
        assert!(live.contains("--force") && live.contains("alive"), "{live}");
        // It renews: the version the operator saw is gone.
        let mut renewed = LeaderElectionRecord::new("alive", 15, now);
        renewed.fencing_token = Some(highlander::FencingToken(7));
        let v2 = store.update(&lock(), &v1, &renewed).await.expect("renew");
        let stale = release(&store, &lock(), v1.as_str(), true).await.expect_err("a changed record, even forced");
        assert!(stale.contains("changed since you looked"), "{stale}");
        assert_eq!(store.get(&lock()).await.expect("get").expect("there").version, v2, "untouched");
        // Forced, on the version it is at: released, its token kept.
        let done = release(&store, &lock(), v2.as_str(), true).await.expect("forced");
        assert!(done.contains("released"), "{done}");
        let after = store.get(&lock()).await.expect("get").expect("there").record;
        assert!(!after.is_held());
        assert_eq!(after.fencing_token, Some(highlander::FencingToken(7)));
        // A dead holder (renewed long ago) needs no force.
        let seen = store.get(&lock()).await.expect("get").expect("there");
        let dead = LeaderElectionRecord::new("dead", 15, now - chrono::Duration::seconds(60));
        let v3 = store.update(&lock(), &seen.version, &dead).await.expect("dead holder");
        release(&store, &lock(), v3.as_str(), false).await.expect("an expired holder");
    }
}
