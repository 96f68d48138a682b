//! `highlander handover`: asks a lock's leader to hand over now, to a named or the best
//! live standby.

use crate::Failure;
use highlander::{Escaped, LockName, OpenOptions, open_with, roster};
use std::time::Duration;

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    target: crate::Target,
    /// The candidate to lead next; it must be live in the lock's roster (default: the
    /// live standby of highest priority, then the longest registered).
    #[arg(long)]
    to: Option<String>,
    /// Wait up to this long for the candidate to lead, and say when it did.
    #[arg(long, value_parser = crate::duration)]
    wait: Option<Duration>,
}

pub(crate) async fn handover(args: Args) -> Result<(), Failure> {
    let lock = LockName::new(&args.target.lock).map_err(|e| e.to_string())?;
    if args.wait.is_some_and(|w| w.is_zero()) {
        return Err("--wait must be longer than zero (leave it out not to wait)".into());
    }
    let store = open_with(&args.target.store, &OpenOptions::default()).await.map_err(|e| e.to_string())?;
    let asked = tokio::time::Instant::now();
    let to = roster::hand_over(&*store, &lock, args.to.as_deref()).await.map_err(|e| e.to_string())?;
    println!("asked the leader of lock {} to hand over to {}", Escaped(lock.as_str()), Escaped(&to));
    let Some(wait) = args.wait else { return Ok(()) };
    let until = asked + wait;
    loop {
        let seen = store.get(&lock).await.map_err(|e| e.to_string())?;
        let rec = seen.map(|s| s.record);
        match rec {
            Some(r) if r.holder_identity == to && !r.claim => {
                println!(
                    "{} leads lock {} (fencing token {}), {:.2}s after the hand-over was asked",
                    Escaped(&to),
                    Escaped(lock.as_str()),
                    r.fencing_token.map_or_else(|| "-".into(), |t| t.to_string()),
                    asked.elapsed().as_secs_f64()
                );
                return Ok(());
            }
            Some(r) if r.is_held() && r.preferred_holder.as_deref() != Some(to.as_str()) && r.holder_identity != to => {
                return Err(format!(
                    "lock {} in {store}: {} leads it now, not {}: the hand-over was overtaken (another hand-over, or {} did not take the lock within a lease)",
                    Escaped(lock.as_str()),
                    Escaped(&r.holder_identity),
                    Escaped(&to),
                    Escaped(&to)
                )
                .into());
            }
            _ => {}
        }
        if tokio::time::Instant::now() >= until {
            return Err(format!(
                "lock {} in {store}: {} did not lead within {wait:?}; `highlander status` shows where the hand-over stands",
                Escaped(lock.as_str()),
                Escaped(&to)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
