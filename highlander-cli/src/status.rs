//! `highlander status`: a lock's record, once or on every change.

use crate::Failure;
use highlander::{FencingToken, LeaseStore, LockName, OpenOptions, display::Unquoted, open_with};
use std::time::Duration;

#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    target: crate::Target,
    /// Print JSON (errors too, as {"error": …}).
    #[arg(long)]
    json: bool,
    /// Keep watching and print every change until interrupted.
    #[arg(long)]
    watch: bool,
}

pub(crate) async fn status(args: Args) -> Result<(), Failure> {
    let Args { target, json, watch } = args;
    match show(&target.store, &target.lock, json, watch).await {
        Ok(()) => Ok(()),
        Err(message) if json => {
            // A script asked for JSON: it gets JSON on stdout, and the exit code.
            println!("{}", serde_json::json!({ "lock": target.lock, "error": message }));
            Err(message.into())
        }
        Err(message) => Err(message.into()),
    }
}

async fn show(url: &str, lock: &str, json: bool, watch: bool) -> Result<(), String> {
    let lock = LockName::new(lock).map_err(|e| e.to_string())?;
    let store = open_with(url, &OpenOptions::default()).await.map_err(|e| e.to_string())?;
    let mut last: Option<String> = None;
    loop {
        let shown = describe(&*store, &lock, json).await?;
        if last.as_ref() != Some(&shown) {
            println!("{shown}");
            last = Some(shown);
        }
        if !watch {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

async fn describe(store: &dyn LeaseStore, lock: &LockName, json: bool) -> Result<String, String> {
    let Some(seen) = store.get(lock).await.map_err(|e| e.to_string())? else {
        return Ok(if json {
            serde_json::json!({ "lock": lock.as_str(), "store": store.to_string(), "exists": false }).to_string()
        } else {
            format!("lock {lock:?} in {store}: no record")
        });
    };
    let r = seen.record;
    // One look cannot observe a change over time: expiry is judged by the record's
    // renewTime against this machine's clock, and labelled as such. A time too far in
    // the future to add a lease to has not expired.
    let now = chrono::Utc::now();
    let expires = r.renew_time.and_then(|t| t.checked_add_signed(chrono::Duration::seconds(i64::from(r.lease_duration_seconds))));
    let expired = !r.is_held() || expires.is_some_and(|e| e <= now);
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    if json {
        // JSON escapes whatever the record holds.
        return Ok(serde_json::json!({
            "lock": lock.as_str(), "store": store.to_string(), "exists": true,
            "holder": if r.is_held() { Some(r.holder_identity.clone()) } else { None },
            "acquireTime": time(r.acquire_time), "renewTime": time(r.renew_time),
            "leaseDurationSeconds": r.lease_duration_seconds, "expired": expired,
            "leaderTransitions": r.leader_transitions, "fencingToken": r.fencing_token.map(FencingToken::get),
            "version": seen.version.as_str(), "claim": r.claim,
        })
        .to_string());
    }
    // The holder is another process's text: escaped, so it cannot forge a line.
    let holder = match (r.is_held(), r.claim) {
        (true, true) => format!(
            "{} (a claim: the record was missing; it leads only once the claim has stood for its lease)",
            Unquoted(&r.holder_identity)
        ),
        (true, false) => Unquoted(&r.holder_identity).to_string(),
        (false, _) => "(none: released)".into(),
    };
    Ok(format!(
        "lock           {}\nstore          {store}\nholder         {holder}\nacquired       {}\nrenewed        {}\nlease          {}s\nexpired        {} (renewTime + lease vs this machine's clock)\ntransitions    {}\nfencing token  {}",
        Unquoted(lock.as_str()),
        time(r.acquire_time).unwrap_or_else(|| "-".into()),
        time(r.renew_time).unwrap_or_else(|| "-".into()),
        r.lease_duration_seconds,
        if expired { "yes" } else { "no" },
        r.leader_transitions,
        r.fencing_token.map_or_else(|| "-".into(), |t| t.to_string()),
    ))
}
