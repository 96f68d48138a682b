//! `highlander status`: a lock's record, once or on every change.

use crate::Failure;
use highlander::{
    FencingToken, LeaseStore, LockName, OpenOptions,
    display::Unquoted,
    open_with,
    roster::{self, Candidate},
};
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
    /// Judge expiry as a standby does: watch the record for its lease (expired if it
    /// does not change), not by its renewTime against this machine's clock.
    #[arg(long, conflicts_with = "watch")]
    observe: bool,
}

pub(crate) async fn status(args: Args) -> Result<(), Failure> {
    let Args { target, json, watch, observe } = args;
    match show(&target.store, &target.lock, json, watch, observe).await {
        Ok(()) => Ok(()),
        Err(message) if json => {
            // A script asked for JSON: it gets JSON on stdout, and the exit code.
            println!("{}", serde_json::json!({ "lock": target.lock, "error": message }));
            Err(message.into())
        }
        Err(message) => Err(message.into()),
    }
}

async fn show(url: &str, lock: &str, json: bool, watch: bool, observe: bool) -> Result<(), String> {
    let lock = LockName::new(lock).map_err(|e| e.to_string())?;
    let store = open_with(url, &OpenOptions::default()).await.map_err(|e| e.to_string())?;
    let mut last: Option<String> = None;
    loop {
        let shown = describe(&*store, &lock, json, observe).await?;
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

/// Whether a record's lease has expired, and how that was judged.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expiry {
    /// Released: nobody holds it.
    Released,
    /// By this machine's clock: renewTime + lease passed this long ago.
    PastByClock(Duration),
    /// By this machine's clock: this much of the lease is left.
    LeftByClock(Duration),
    /// renewTime is this far ahead of this machine's clock: the clock cannot tell.
    Ahead(Duration),
    /// Watched for a lease: the record changed (renewed) meanwhile.
    RenewedWhileWatched,
    /// Watched for a lease: unchanged, so expired as a standby judges it.
    UnchangedForLease,
}

/// How far ahead of this clock a renewTime may be before the clock cannot judge it.
const CLOCK_TOLERANCE: Duration = Duration::from_secs(1);

impl Expiry {
    /// Judged by the record's renewTime against `now`.
    pub(crate) fn by_clock(r: &highlander::LeaderElectionRecord, now: chrono::DateTime<chrono::Utc>) -> Self {
        let Some(renewed) = r.renew_time.filter(|_| r.is_held()) else { return Self::Released };
        let ahead = (renewed - now).to_std().unwrap_or_default();
        if ahead > CLOCK_TOLERANCE {
            return Self::Ahead(ahead);
        }
        let age = (now - renewed).to_std().unwrap_or_default();
        let lease = Duration::from_secs(u64::from(r.lease_duration_seconds));
        match age.checked_sub(lease) {
            Some(past) => Self::PastByClock(past),
            None => Self::LeftByClock(lease.saturating_sub(age)),
        }
    }

    /// `Some(true)` expired, `Some(false)` live, `None` cannot tell.
    pub(crate) fn expired(&self) -> Option<bool> {
        match self {
            Self::Released | Self::PastByClock(_) | Self::UnchangedForLease => Some(true),
            Self::LeftByClock(_) | Self::RenewedWhileWatched => Some(false),
            Self::Ahead(_) => None,
        }
    }

    fn judged_by(&self) -> &'static str {
        match self {
            Self::Released => "record",
            Self::PastByClock(_) | Self::LeftByClock(_) | Self::Ahead(_) => "clock",
            Self::RenewedWhileWatched | Self::UnchangedForLease => "observation",
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Released => "yes (released)".into(),
            Self::PastByClock(ago) => format!(
                "yes, by this machine's clock: renewTime + lease passed {:.1}s ago (a holder whose clock is behind may still be renewing: --observe watches the record)",
                ago.as_secs_f64()
            ),
            Self::LeftByClock(left) => format!("no, by this machine's clock: {:.1}s of the lease left", left.as_secs_f64()),
            Self::Ahead(by) => format!(
                "cannot tell from this machine's clock: renewTime is {:.1}s ahead of it (a clock ahead, or a forged record); --observe judges by watching the record for its lease",
                by.as_secs_f64()
            ),
            Self::RenewedWhileWatched => "no: the record was renewed while watched".into(),
            Self::UnchangedForLease => "yes: the record did not change for its whole lease (as a standby judges)".into(),
        }
    }
}

/// Watches `lock` for `seen`'s lease: renewed (changed) or not, as a standby judges.
async fn observe_expiry(store: &dyn LeaseStore, lock: &LockName, seen: &highlander::Observed) -> Result<Expiry, String> {
    if !seen.record.is_held() {
        return Ok(Expiry::Released);
    }
    let lease = Duration::from_secs(u64::from(seen.record.lease_duration_seconds));
    let until = tokio::time::Instant::now() + lease;
    eprintln!("watching {lock} for its lease ({lease:?}) to judge whether its holder still renews");
    loop {
        tokio::time::sleep(Duration::from_millis(500).min(until.saturating_duration_since(tokio::time::Instant::now()))).await;
        match store.get(lock).await.map_err(|e| e.to_string())? {
            Some(now) if now.raw != seen.raw => return Ok(Expiry::RenewedWhileWatched),
            None => return Ok(Expiry::Released),
            Some(_) if tokio::time::Instant::now() >= until => return Ok(Expiry::UnchangedForLease),
            Some(_) => {}
        }
    }
}

async fn describe(store: &dyn LeaseStore, lock: &LockName, json: bool, observe: bool) -> Result<String, String> {
    let seen = match store.get(lock).await {
        Ok(seen) => seen,
        Err(e @ highlander::Error::Corrupt { .. }) => {
            return Err(format!(
                "{e}. Every candidate waits rather than overwrite it. Read it with the store's own tools; to start the lock afresh, delete the record there once no process runs the work (a new record gets a fencing token above the wall clock's microseconds, so tokens still grow)"
            ));
        }
        Err(e) => return Err(e.to_string()),
    };
    let Some(seen) = seen else {
        return Ok(if json {
            serde_json::json!({ "lock": lock.as_str(), "store": store.to_string(), "exists": false }).to_string()
        } else {
            format!("lock {lock:?} in {store}: no record")
        });
    };
    let expiry = if observe { observe_expiry(store, lock, &seen).await? } else { Expiry::by_clock(&seen.record, chrono::Utc::now()) };
    let expired = expiry.expired();
    let r = seen.record;
    let now = chrono::Utc::now();
    let leader = (r.is_held() && !r.claim).then(|| r.holder_identity.clone());
    let roster: Result<Vec<Candidate>, String> = roster::candidates(store, lock)
        .await
        .map(|all| all.into_iter().filter(|c| c.registration.is_live(now)).collect())
        .map_err(|e| e.to_string());
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    if json {
        // JSON escapes whatever the record holds.
        return Ok(serde_json::json!({
            "lock": lock.as_str(), "store": store.to_string(), "exists": true,
            "holder": if r.is_held() { Some(r.holder_identity.clone()) } else { None },
            "acquireTime": time(r.acquire_time), "renewTime": time(r.renew_time),
            "leaseDurationSeconds": r.lease_duration_seconds, "expired": expired, "expiredJudgedBy": expiry.judged_by(),
            "expiry": expiry.describe(),
            "leaderTransitions": r.leader_transitions, "fencingToken": r.fencing_token.map(FencingToken::get),
            "version": seen.version.as_str(), "claim": r.claim,
            "preferredHolder": r.preferred_holder.as_ref().filter(|p| !p.is_empty()),
            "candidates": roster.as_ref().ok().map(|live| live.iter().map(|c| serde_json::json!({
                "identity": c.identity, "priority": c.registration.priority, "leader": Some(&c.identity) == leader.as_ref(),
                "since": time(Some(c.registration.since)), "lastSeen": time(Some(c.registration.last_seen)),
                "version": c.registration.version,
            })).collect::<Vec<_>>()),
            "standbys": roster.as_ref().ok().map(|live| roster::standbys(live, leader.as_deref())),
            "candidatesError": roster.as_ref().err(),
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
    let mut text = format!(
        "lock           {}\nstore          {store}\nholder         {holder}\nacquired       {}\nrenewed        {}\nlease          {}s\nexpired        {}\ntransitions    {}\nfencing token  {}\nversion        {}",
        Unquoted(lock.as_str()),
        time(r.acquire_time).unwrap_or_else(|| "-".into()),
        time(r.renew_time).unwrap_or_else(|| "-".into()),
        r.lease_duration_seconds,
        expiry.describe(),
        r.leader_transitions,
        r.fencing_token.map_or_else(|| "-".into(), |t| t.to_string()),
        shell_quoted(seen.version.as_str()),
    );
    if let Some(to) = r.preferred_holder.as_ref().filter(|p| !p.is_empty()) {
        text.push_str(&format!("\nhand-over      to {} (asked; the leader stops its work and releases)", Unquoted(to)));
    }
    text.push_str(&candidates_text(&roster, leader.as_deref(), now));
    Ok(text)
}

/// The live candidates, one line each, and how many could take over.
fn candidates_text(roster: &Result<Vec<Candidate>, String>, leader: Option<&str>, now: chrono::DateTime<chrono::Utc>) -> String {
    let live = match roster {
        Err(e) => return format!("\ncandidates     cannot be read: {e}"),
        Ok(live) if live.is_empty() => {
            return "\ncandidates     none registered (candidates of `highlander run` register unless run with --no-register)".into();
        }
        Ok(live) => live,
    };
    let mut text = String::new();
    for (i, c) in live.iter().enumerate() {
        let seen = (now - c.registration.last_seen).to_std().unwrap_or_default();
        text.push_str(&format!(
            "\n{}{}  priority {}  {}  registered {:.0}s  seen {:.0}s ago  highlander {}",
            if i == 0 { "candidates     " } else { "               " },
            Unquoted(&c.identity),
            c.registration.priority,
            if Some(c.identity.as_str()) == leader { "leader " } else { "standby" },
            c.registration.registered_for(now).as_secs_f64(),
            seen.as_secs_f64(),
            Unquoted(&c.registration.version),
        ));
    }
    let n = roster::standbys(live, leader);
    text.push_str(&format!(
        "\nstandbys       {n}{}",
        if n == 0 { " (no live candidate could take over: one crash from an outage)" } else { "" }
    ));
    text
}

/// A store's version as a shell word, to paste after `reset --expect-version` (an ETag
/// carries double quotes).
pub(crate) fn shell_quoted(version: &str) -> String {
    if version.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:/+=".contains(c)) {
        version.to_string()
    } else {
        format!("'{}'", version.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use highlander::LeaderElectionRecord;

    fn held(renewed: chrono::DateTime<chrono::Utc>) -> LeaderElectionRecord {
        LeaderElectionRecord::new("holder", 15, renewed)
    }

    #[test]
    fn versions_are_shown_as_shell_words_reset_takes_back() {
        assert_eq!(shell_quoted("42"), "42");
        assert_eq!(shell_quoted("7:1234"), "7:1234");
        assert_eq!(shell_quoted("\"0x8DC1\""), "'\"0x8DC1\"'");
        assert_eq!(shell_quoted("it's"), r"'it'\''s'");
        let word = shell_quoted("\"0x8DC1\"");
        let echoed = std::process::Command::new("sh").args(["-c", &format!("printf %s {word}")]).output().expect("sh");
        assert_eq!(String::from_utf8_lossy(&echoed.stdout), "\"0x8DC1\"", "the shell gives back the version");
    }

    #[test]
    fn expiry_by_clock_never_says_live_for_a_renewtime_ahead_of_this_clock() {
        let now = chrono::Utc::now();
        let secs = chrono::Duration::seconds;
        assert_eq!(Expiry::by_clock(&held(now - secs(5)), now), Expiry::LeftByClock(Duration::from_secs(10)));
        assert_eq!(Expiry::by_clock(&held(now - secs(20)), now), Expiry::PastByClock(Duration::from_secs(5)));
        // A holder whose clock is two hours ahead, or a renewTime in 2300: not "no".
        for ahead in [held(now + secs(7200)), held(now + chrono::Duration::days(100_000))] {
            let e = Expiry::by_clock(&ahead, now);
            assert!(matches!(e, Expiry::Ahead(_)), "{e:?}");
            assert_eq!(e.expired(), None);
            assert!(e.describe().starts_with("cannot tell"), "{}", e.describe());
        }
        let mut released = held(now);
        released.holder_identity.clear();
        assert_eq!(Expiry::by_clock(&released, now), Expiry::Released);
    }

    #[tokio::test(start_paused = true)]
    async fn observe_judges_as_a_standby_does() {
        let store = highlander::MemoryStore::new();
        let lock = LockName::new("observed").expect("valid");
        // Renewed by a holder whose clock is two hours behind: live, though the clock says expired.
        let behind = held(chrono::Utc::now() - chrono::Duration::seconds(7200));
        let v = store.create(&lock, &behind).await.expect("create");
        let seen = store.get(&lock).await.expect("get").expect("there");
        assert!(matches!(Expiry::by_clock(&seen.record, chrono::Utc::now()), Expiry::PastByClock(_)));
        let renewer = {
            let (store, lock) = (store.clone(), lock.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3)).await;
                let mut again = behind.clone();
                again.renew_time = again.renew_time.map(|t| t + chrono::Duration::seconds(3));
                store.update(&lock, &v, &again).await.expect("renew");
            })
        };
        assert_eq!(observe_expiry(&store, &lock, &seen).await.expect("observed"), Expiry::RenewedWhileWatched);
        renewer.await.expect("renewer");
        // A holder dead with renewTime in 2300: unchanged for its lease, so expired.
        let seen = store.get(&lock).await.expect("get").expect("there");
        let mut future = seen.record.clone();
        future.renew_time = Some(chrono::Utc::now() + chrono::Duration::days(100_000));
        store.update(&lock, &seen.version, &future).await.expect("forge");
        let seen = store.get(&lock).await.expect("get").expect("there");
        let started = tokio::time::Instant::now();
        assert_eq!(observe_expiry(&store, &lock, &seen).await.expect("observed"), Expiry::UnchangedForLease);
        assert!(started.elapsed() >= Duration::from_secs(15), "watched for the whole lease: {:?}", started.elapsed());
    }
}
