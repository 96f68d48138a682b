//! `highlander chaos`: real `highlander run` candidates on one lock, real faults, and
//! an oracle that reads only what the candidates' commands recorded.
//!
//! Each candidate reaches the store through a TCP proxy of its own ([`proxy`]), so a
//! partition (one candidate cut off) and an outage (all of them) need nothing of the
//! store. Each round waits for a leader whose command is running, injects one fault
//! (seeded, so a run can be replayed), heals it, and waits for the next term. The
//! [`oracle`] then counts overlaps (two commands alive at once), token regressions and
//! gaps from the recorders' lines alone.

mod messages;
pub(crate) mod oracle;
mod proxy;
pub(crate) mod recorder;
mod timeline;
mod url;

use crate::Failure;
use highlander::{OpenOptions, Timing, create_if_missing};
use nix::{
    sys::signal::{Signal, kill, killpg},
    unistd::Pid,
};
use oracle::{Event, Kind, Verdict, judge, percentile};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::SliceRandom};
use std::{
    collections::BTreeMap,
    io::{BufRead, Seek, SeekFrom},
    path::PathBuf,
    process::{ExitCode, Stdio},
    time::{Duration, SystemTime},
};
use tokio::process::{Child, Command};

/// The faults a round can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Fault {
    /// SIGKILL of the leader's highlander (its guard takes the command down).
    Kill,
    /// SIGSTOP of the leader's highlander past the lease, then SIGCONT.
    Pause,
    /// The leader's highlander, guard and command all stopped past the lease, then thawed together.
    Freeze,
    /// The leader's link to the store cut past the lease, then healed.
    Partition,
    /// Every candidate's link cut past the lease, then healed.
    Outage,
    /// SIGTERM to the leader's highlander (a graceful handover).
    Release,
    /// The lock's record deleted behind every candidate's back (an operator's DELETE, a
    /// flush, an eviction), with the leader healthy, paused or cut off (drawn per round).
    RecordLoss,
    /// Every candidate's link slowed to a round trip of a quarter of the renew deadline
    /// for the fault's length: the leader must keep its term.
    Slow,
    /// A planned hand-over (`highlander handover`) to the best live standby: the leader
    /// stops its command and releases, and that standby, and no other, leads next.
    Handover,
}

const ALL: [Fault; 9] = [
    Fault::Kill,
    Fault::Pause,
    Fault::Freeze,
    Fault::Partition,
    Fault::Outage,
    Fault::Release,
    Fault::RecordLoss,
    Fault::Slow,
    Fault::Handover,
];

impl Fault {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Pause => "pause",
            Self::Freeze => "freeze",
            Self::Partition => "partition",
            Self::Outage => "outage",
            Self::Release => "release",
            Self::RecordLoss => "record-loss",
            Self::Slow => "slow",
            Self::Handover => "handover",
        }
    }
}

/// The default durations of a chaos run: short, so rounds are quick.
const CHAOS_TIMING: Timing =
    Timing { lease: Duration::from_secs(3), renew_deadline: Duration::from_secs(2), retry_period: Duration::from_millis(500) };

#[derive(clap::Args)]
pub(crate) struct Args {
    // The store URL; its help lists what chaos can stand in front of.
    #[arg(long, env = "HIGHLANDER_STORE", hide_env_values = true, help = url::store_help())]
    store: String,
    /// Create what the store needs if it is missing (a table, a bucket or container, a directory, a prefix znode, a database file).
    #[arg(long)]
    create: bool,
    /// How many faults to inject, one per round.
    #[arg(long, default_value_t = 12)]
    rounds: usize,
    /// How many `highlander run` candidates race for the lock (2 to 9).
    #[arg(long, default_value_t = 3)]
    candidates: usize,
    /// Which faults to draw from (comma-separated; each is used once before any repeats).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = ALL.to_vec())]
    faults: Vec<Fault>,
    /// The candidates' durations (chaos's defaults: lease 3s, renew deadline 2s, retry period 500ms).
    #[command(flatten)]
    timing: crate::TimingArgs,
    /// The seed of the fault sequence (default: random, and printed, so a run can be replayed).
    #[arg(long)]
    seed: Option<u64>,
    /// The lock's name (default: a fresh one).
    #[arg(long)]
    lock: Option<String>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Write the recorders' raw lines here (`UNIX_SECONDS EVENT IDENTITY TOKEN PID`).
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Draw the run as an SVG picture here.
    #[arg(long, value_name = "FILE.svg")]
    timeline: Option<PathBuf>,
}

/// One round, as the table shows it.
#[derive(Debug, Clone)]
pub(crate) struct RoundResult {
    pub(crate) fault: Fault,
    /// When the fault began (unix seconds) and how long it was held.
    pub(crate) at: f64,
    pub(crate) held: f64,
    target: String,
    from_token: u64,
    to_token: Option<u64>,
    /// From the fault to the next term's start.
    takeover: Option<f64>,
    /// Whether the fault ends the leader's term (a healthy leader keeps its term when its record is lost).
    ends_term: bool,
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The recorders' file, read as it grows.
struct Recording {
    path: PathBuf,
    offset: u64,
    events: Vec<Event>,
}

impl Recording {
    fn refresh(&mut self) {
        let Ok(mut file) = std::fs::File::open(&self.path) else { return };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut reader = std::io::BufReader::new(file);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            if !line.ends_with('\n') {
                break; // a line still being written: read it next time
            }
            self.offset += line.len() as u64;
            if let Some(e) = Event::parse(&line) {
                self.events.push(e);
            }
            line.clear();
        }
    }

    /// The term running now: the newest recorder that has not stopped and ticked lately.
    fn running(&self, now: f64) -> Option<Event> {
        let mut last: BTreeMap<u32, &Event> = BTreeMap::new();
        for e in &self.events {
            last.insert(e.pid, e);
        }
        last.values().filter(|e| e.kind != Kind::Stop && now - e.at < 0.4).max_by(|a, b| a.token.cmp(&b.token)).map(|e| (*e).clone())
    }

    /// The first `start` after `after` with a token above `token`.
    fn next_start(&self, after: f64, token: u64) -> Option<&Event> {
        self.events.iter().find(|e| e.kind == Kind::Start && e.at >= after && e.token > token)
    }
}

/// One `highlander run` process.
struct Candidate {
    identity: String,
    url: String,
    proxies: Vec<proxy::Proxy>,
    child: Option<Child>,
}

struct Run {
    exe: PathBuf,
    lock: String,
    timing: Timing,
    /// The store's raw access, for the record-loss fault.
    raw: Option<std::sync::Arc<dyn highlander::RawAccess>>,
    /// The store, for the hand-over fault.
    store: Option<highlander::SharedStore>,
    /// Whether candidates reach the store over the network (a directory cannot be cut off).
    networked: bool,
    record: PathBuf,
    logs: PathBuf,
}

impl Run {
    fn spawn(&self, c: &mut Candidate) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{}.log", c.identity)))
            .map_err(|e| format!("candidate log: {e}"))?;
        let t = self.timing;
        // The URL may carry a password: through the environment, never argv.
        let child = Command::new(&self.exe)
            .env("HIGHLANDER_STORE", &c.url)
            .args(["run", "--lock", &self.lock, "--identity", &c.identity])
            .arg("--lease")
            .arg(format!("{}ms", t.lease.as_millis()))
            .arg("--renew-deadline")
            .arg(format!("{}ms", t.renew_deadline.as_millis()))
            .arg("--retry-period")
            .arg(format!("{}ms", t.retry_period.as_millis()))
            .arg("--")
            .arg(&self.exe)
            .arg(recorder::ARG)
            .arg(&self.record)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start a candidate: {e}"))?;
        c.child = Some(child);
        Ok(())
    }
}

fn pid_of(c: &Candidate) -> Option<Pid> {
    c.child.as_ref().and_then(Child::id).and_then(|p| i32::try_from(p).ok()).map(Pid::from_raw)
}

pub(crate) async fn chaos(args: Args) -> Result<ExitCode, Failure> {
    let timing = args.timing.with_defaults(CHAOS_TIMING)?;
    if !(2..=9).contains(&args.candidates) {
        return Err("--candidates must be from 2 to 9".into());
    }
    if args.rounds == 0 || args.faults.is_empty() {
        return Err("chaos needs at least one round and one fault".into());
    }
    let route = url::Route::of(&args.store)?;
    // What the store needs first (a directory or a Spanner instance must exist to be opened).
    if args.create {
        create_if_missing(&args.store, &OpenOptions::new(timing)).await.map_err(|e| e.to_string())?;
    }
    // The URL as the candidates will read it (parameters, credentials in the wrong place):
    // refused here, naming what is wrong, not in candidates' logs after a silent round.
    highlander::open_unchecked(&args.store, &OpenOptions::new(timing)).await.map_err(|e| format!("chaos: {e}"))?;
    let lock = args.lock.clone().unwrap_or_else(|| format!("chaos-{:08x}", rand::random::<u32>()));
    let raw = if args.faults.contains(&Fault::RecordLoss) {
        Some(highlander::open_raw(&args.store, &OpenOptions::new(timing)).await.map_err(|e| format!("chaos: {e}"))?)
    } else {
        None
    };
    let store = if args.faults.contains(&Fault::Handover) {
        Some(highlander::open_with(&args.store, &OpenOptions::new(timing)).await.map_err(|e| format!("chaos: {e}"))?)
    } else {
        None
    };
    let mut faults = args.faults.clone();
    if route.is_none() {
        // No network between the candidates and a directory: nothing to partition or slow down.
        faults.retain(|f| !matches!(f, Fault::Partition | Fault::Outage | Fault::Slow));
        if faults.is_empty() {
            return Err(
                "a directory store has no network to partition or slow down: choose kill, pause, freeze, release or record-loss".into()
            );
        }
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let work = std::env::temp_dir().join(format!("highlander-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let run = Run {
        exe: std::env::current_exe().map_err(|e| format!("cannot find highlander's own executable: {e}"))?,
        lock,
        timing,
        raw,
        store,
        networked: route.is_some(),
        record: work.join("record"),
        logs: work.clone(),
    };
    eprintln!(
        "chaos on {}: {} candidates, {} rounds, faults {}, lease {:?} / renew deadline {:?} / retry period {:?}, seed {seed}, logs in {}",
        crate::store_name(&args.store),
        args.candidates,
        args.rounds,
        faults.iter().map(|f| f.name()).collect::<Vec<_>>().join(","),
        timing.lease,
        timing.renew_deadline,
        timing.retry_period,
        work.display()
    );
    let mut candidates = Vec::new();
    for i in 1..=args.candidates {
        let mut proxies = Vec::new();
        for target in route.iter().flat_map(|r| &r.targets) {
            proxies.push(proxy::Proxy::start(target.clone()).await.map_err(|e| format!("cannot start a proxy: {e}"))?);
        }
        let url =
            route.as_ref().map_or_else(|| args.store.clone(), |r| r.through(&proxies.iter().map(proxy::Proxy::addr).collect::<Vec<_>>()));
        let mut c = Candidate { identity: format!("chaos-{i}"), url, proxies, child: None };
        run.spawn(&mut c)?;
        candidates.push(c);
    }
    let mut recording = Recording { path: run.record.clone(), offset: 0, events: Vec::new() };
    // Every kind once (in a seeded order), then seeded draws.
    let mut plan: Vec<Fault> = faults.clone();
    plan.sort();
    plan.dedup();
    plan.shuffle(&mut rng);
    while plan.len() < args.rounds {
        plan.push(faults[rng.random_range(0..faults.len())]);
    }
    plan.truncate(args.rounds);

    let hold = timing.lease + timing.renew_deadline;
    let patience = timing.lease * 4 + hold;
    let mut rounds = Vec::new();
    let mut stuck = 0;
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    for (n, fault) in plan.iter().copied().enumerate() {
        let outcome = tokio::select! {
            r = round(&run, &mut candidates, &mut recording, fault, hold, patience, &mut rng) => r,
            _ = &mut interrupted => {
                eprintln!("interrupted: stopping the candidates");
                break;
            }
        };
        match outcome {
            Ok(r) => {
                if !args.json {
                    eprintln!(
                        "round {:>3}  {:<9}  {:<8}  token {:>4} -> {:<5}  takeover {}",
                        n + 1,
                        r.fault.name(),
                        r.target,
                        r.from_token,
                        r.to_token.map_or_else(|| "-".into(), |t| t.to_string()),
                        r.takeover.map_or_else(|| "none".into(), |s| format!("{s:.2}s"))
                    );
                }
                if r.to_token.is_none() && r.ends_term {
                    stuck += 1;
                }
                rounds.push(r);
            }
            Err(e) => {
                eprintln!("round {}: {e}", n + 1);
                stuck += 1;
            }
        }
    }
    stop_all(&mut candidates).await;
    recording.refresh();
    let verdict = judge(&recording.events);
    let names: Vec<String> = candidates.iter().map(|c| c.identity.clone()).collect();
    if let Some(path) = &args.record {
        std::fs::copy(&run.record, path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.timeline {
        let title = format!("highlander chaos on {}: {} rounds, seed {seed}", crate::store_name(&args.store), rounds.len());
        std::fs::write(path, timeline::svg(&title, &names, &verdict, &rounds))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let starts: Vec<f64> = rounds.iter().map(|r| r.at).collect();
    let said = messages::audit(&work, &names, &starts);
    let mut summary = summarize(&args.store, args.candidates, seed, &rounds, &verdict);
    summary["messages"] = said.json();
    if args.json {
        println!("{summary}");
    } else {
        print_summary(&rounds, &verdict, &summary);
        print_messages(&said);
    }
    let clean = verdict.clean() && stuck == 0 && said.clean();
    if clean {
        let _ = std::fs::remove_dir_all(&work);
    } else {
        eprintln!("candidates' logs kept in {}", work.display());
    }
    Ok(if clean { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn print_messages(said: &messages::Audit) {
    println!(
        "log lines           {} read: {} at ERROR, {} warnings without the lock and store, {} repeated more than {} times in a round",
        said.lines,
        said.errors.len(),
        said.unnamed.len(),
        said.repeated.len(),
        messages::MAX_REPEATS
    );
    for finding in said.findings() {
        println!("  {finding}");
    }
}

async fn round(
    run: &Run,
    candidates: &mut [Candidate],
    recording: &mut Recording,
    fault: Fault,
    hold: Duration,
    patience: Duration,
    rng: &mut StdRng,
) -> Result<RoundResult, String> {
    // A leader whose command is running.
    let until = tokio::time::Instant::now() + patience;
    let leader = loop {
        recording.refresh();
        if let Some(e) = recording.running(unix_now()) {
            break e;
        }
        if tokio::time::Instant::now() > until {
            return Err(format!("no command ran within {patience:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(run.timing.retry_period.mul_f64(rng.random_range(1.0..3.0))).await;
    let i = candidates.iter().position(|c| c.identity == leader.identity).ok_or("the leader is no candidate of this run")?;
    let at = unix_now();
    let pid = pid_of(&candidates[i]).ok_or("the leader's process is gone")?;
    let mut held = 0.0;
    let mut ends_term = true;
    let mut target_note = None;
    let mut handed_to = None;
    match fault {
        Fault::Kill => {
            let _ = kill(pid, Signal::SIGKILL);
            if let Some(child) = candidates[i].child.as_mut() {
                let _ = child.wait().await;
            }
        }
        Fault::Release => {
            let _ = kill(pid, Signal::SIGTERM);
            if let Some(child) = candidates[i].child.as_mut() {
                let _ = tokio::time::timeout(patience, child.wait()).await;
            }
        }
        Fault::Pause => {
            let _ = kill(pid, Signal::SIGSTOP);
            tokio::time::sleep(hold).await;
            let _ = kill(pid, Signal::SIGCONT);
            held = hold.as_secs_f64();
        }
        Fault::Freeze => {
            let guards = crate::tree::children(pid);
            let command = Pid::from_raw(i32::try_from(leader.pid).unwrap_or(0));
            let _ = kill(pid, Signal::SIGSTOP);
            for g in &guards {
                let _ = kill(*g, Signal::SIGSTOP);
            }
            let _ = killpg(command, Signal::SIGSTOP);
            tokio::time::sleep(hold).await;
            // Thawed supervisor first: the guard gets its moment to act on the deadline
            // that passed before the command is scheduled. (Thawed command first, the old
            // command runs for a moment before its guard kills it: the self-fencing tests
            // measure that window, and fencing tokens close it.)
            for g in &guards {
                let _ = kill(*g, Signal::SIGCONT);
            }
            let _ = kill(pid, Signal::SIGCONT);
            for _ in 0..20 {
                if kill(command, None).is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = killpg(command, Signal::SIGCONT);
            held = hold.as_secs_f64();
        }
        Fault::Partition => {
            candidates[i].proxies.iter().for_each(|p| p.set_cut(true));
            tokio::time::sleep(hold).await;
            candidates[i].proxies.iter().for_each(|p| p.set_cut(false));
            held = hold.as_secs_f64();
        }
        Fault::Outage => {
            candidates.iter().flat_map(|c| &c.proxies).for_each(|p| p.set_cut(true));
            tokio::time::sleep(hold).await;
            candidates.iter().flat_map(|c| &c.proxies).for_each(|p| p.set_cut(false));
            held = hold.as_secs_f64();
        }
        Fault::Slow => {
            let one_way = run.timing.renew_deadline / 8;
            candidates.iter().flat_map(|c| &c.proxies).for_each(|p| p.set_delay(one_way));
            tokio::time::sleep(hold * 2).await;
            candidates.iter().flat_map(|c| &c.proxies).for_each(|p| p.set_delay(Duration::ZERO));
            held = (hold * 2).as_secs_f64();
            ends_term = false;
        }
        Fault::Handover => {
            let store = run.store.as_ref().ok_or("handover needs the store")?;
            let lock = highlander::LockName::new(&run.lock).map_err(|e| e.to_string())?;
            // Standbys whose registrations could not be refreshed lately (a slow link or
            // an outage just ended, a candidate just restarted) cannot be named yet:
            // asked again until one can, within the round's patience.
            let until = tokio::time::Instant::now() + patience;
            let to = loop {
                match highlander::roster::hand_over(&**store, &lock, None).await {
                    Ok(to) => break to,
                    Err(highlander::roster::HandOverError::NoStandby(_)) if tokio::time::Instant::now() < until => {
                        tokio::time::sleep(run.timing.retry_period).await;
                    }
                    Err(e) => return Err(format!("cannot hand over: {e}")),
                }
            };
            target_note = Some(format!("to {to}"));
            handed_to = Some(to);
        }
        Fault::RecordLoss => {
            let raw = run.raw.as_ref().ok_or("record-loss needs the store's raw access")?;
            let lock = highlander::LockName::new(&run.lock).map_err(|e| e.to_string())?;
            let how = match rng.random_range(0..3) {
                0 => LeaderDuringLoss::Healthy,
                1 => LeaderDuringLoss::Paused,
                _ if run.networked => LeaderDuringLoss::CutOff,
                _ => LeaderDuringLoss::Paused,
            };
            match how {
                LeaderDuringLoss::Healthy => {}
                LeaderDuringLoss::Paused => drop(kill(pid, Signal::SIGSTOP)),
                LeaderDuringLoss::CutOff => candidates[i].proxies.iter().for_each(|p| p.set_cut(true)),
            }
            raw.delete_raw(&lock).await.map_err(|e| format!("cannot delete the record: {e}"))?;
            tokio::time::sleep(hold).await;
            match how {
                LeaderDuringLoss::Healthy => {
                    // A leader within its term writes its record again at its next renewal and keeps its term.
                    let back = raw.read_raw(&lock).await.map_err(|e| e.to_string())?;
                    let back = back.as_deref().and_then(|b| highlander::LeaderElectionRecord::from_json(b).ok());
                    if back.as_ref().map(|r| r.holder_identity.as_str()) != Some(leader.identity.as_str()) {
                        return Err(format!("the healthy leader did not write its record again within {hold:?}: {back:?}"));
                    }
                }
                LeaderDuringLoss::Paused => drop(kill(pid, Signal::SIGCONT)),
                LeaderDuringLoss::CutOff => candidates[i].proxies.iter().for_each(|p| p.set_cut(false)),
            }
            held = hold.as_secs_f64();
            ends_term = how != LeaderDuringLoss::Healthy;
            target_note = Some(how.name().to_string());
        }
    }
    if matches!(fault, Fault::Kill | Fault::Release) {
        // K candidates stay in the race: the same identity, a new process.
        run.spawn(&mut candidates[i])?;
    }
    let until = tokio::time::Instant::now() + if ends_term { patience } else { Duration::ZERO };
    let next = loop {
        recording.refresh();
        if let Some(e) = recording.next_start(at, leader.token) {
            break Some(e.clone());
        }
        if tokio::time::Instant::now() >= until {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    if let (Some(to), Some(next)) = (&handed_to, &next)
        && next.identity != *to
    {
        return Err(format!("a hand-over to {to} went to {} instead", next.identity));
    }
    Ok(RoundResult {
        fault,
        at,
        held,
        target: match target_note {
            Some(note) => format!("{} ({note})", leader.identity),
            None => leader.identity,
        },
        from_token: leader.token,
        to_token: next.as_ref().map(|e| e.token),
        takeover: next.map(|e| e.at - at),
        ends_term,
    })
}

/// What the leader is doing while its record is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaderDuringLoss {
    Healthy,
    Paused,
    CutOff,
}

impl LeaderDuringLoss {
    fn name(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Paused => "paused",
            Self::CutOff => "cut off",
        }
    }
}

async fn stop_all(candidates: &mut [Candidate]) {
    for c in candidates.iter() {
        if let Some(pid) = pid_of(c) {
            let _ = kill(pid, Signal::SIGCONT);
            let _ = kill(pid, Signal::SIGTERM);
        }
        c.proxies.iter().for_each(|p| p.set_cut(false));
    }
    for c in candidates.iter_mut() {
        if let Some(child) = c.child.as_mut()
            && tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err()
        {
            let _ = child.kill().await;
        }
    }
}

fn stats(values: &[f64]) -> serde_json::Value {
    let r = |v: Option<f64>| v.map(|x| (x * 1000.0).round() / 1000.0);
    serde_json::json!({
        "min": r(values.iter().copied().reduce(f64::min)),
        "p50": r(percentile(values, 50.0)),
        "p99": r(percentile(values, 99.0)),
        "max": r(values.iter().copied().reduce(f64::max)),
    })
}

/// The round a moment belongs to.
fn round_of(rounds: &[RoundResult], t: f64) -> Option<&RoundResult> {
    rounds.iter().rev().find(|r| r.at <= t)
}

fn summarize(store: &str, candidates: usize, seed: u64, rounds: &[RoundResult], verdict: &Verdict) -> serde_json::Value {
    let mut faults: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_fault: BTreeMap<&str, serde_json::Value> = BTreeMap::new();
    for kind in ALL {
        let these: Vec<&RoundResult> = rounds.iter().filter(|r| r.fault == kind).collect();
        if these.is_empty() {
            continue;
        }
        faults.insert(kind.name(), these.len());
        let takeovers: Vec<f64> = these.iter().filter_map(|r| r.takeover).collect();
        let overlaps = verdict.overlaps.iter().filter(|o| round_of(rounds, o.second.start).is_some_and(|r| r.fault == kind)).count();
        by_fault.insert(
            kind.name(),
            serde_json::json!({ "rounds": these.len(), "takeover_seconds": stats(&takeovers), "no_takeover": these.len() - takeovers.len(), "overlaps": overlaps }),
        );
    }
    let takeovers: Vec<f64> = rounds.iter().filter_map(|r| r.takeover).collect();
    serde_json::json!({
        "store": crate::store_name(store),
        "rounds": rounds.len(),
        "candidates": candidates,
        "seed": seed,
        "faults": faults,
        "terms": verdict.terms.len(),
        "overlaps": verdict.overlaps.len(),
        "overlap_seconds": (verdict.overlap_seconds() * 1000.0).round() / 1000.0,
        "token_regressions": verdict.regressions.len(),
        "takeover_seconds": stats(&takeovers),
        "unavailable_seconds_max": (verdict.longest_gap * 1000.0).round() / 1000.0,
        "by_fault": by_fault,
    })
}

fn print_summary(rounds: &[RoundResult], verdict: &Verdict, summary: &serde_json::Value) {
    println!();
    println!("{:<10} {:>6} {:>10} {:>10} {:>10} {:>9}", "fault", "rounds", "p50", "p99", "max", "overlaps");
    if let Some(by) = summary["by_fault"].as_object() {
        for (kind, v) in by {
            let s = |k: &str| v["takeover_seconds"][k].as_f64().map_or_else(|| "-".into(), |x| format!("{x:.2}s"));
            println!("{kind:<10} {:>6} {:>10} {:>10} {:>10} {:>9}", v["rounds"], s("p50"), s("p99"), s("max"), v["overlaps"]);
        }
    }
    println!();
    println!("terms               {}", verdict.terms.len());
    println!("overlaps            {} ({:.3}s in all)", verdict.overlaps.len(), verdict.overlap_seconds());
    for o in &verdict.overlaps {
        let fault = round_of(rounds, o.second.start).map_or("-", |r| r.fault.name());
        println!(
            "  {} (token {}) and {} (token {}) both ran for {:.3}s, in a {fault} round",
            o.first.identity, o.first.token, o.second.identity, o.second.token, o.seconds
        );
    }
    println!("token regressions   {}", verdict.regressions.len());
    println!("longest with no command running  {:.2}s", verdict.longest_gap);
}
