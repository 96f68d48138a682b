//! One process, many locks: `MANY_LOCKS_PROCESSES` real processes (default 3), each
//! campaigning for all of `MANY_LOCKS` locks (default 1000) on one store
//! (`MANY_LOCKS_STORE`, a URL), with client-go's default durations, for
//! `MANY_LOCKS_SECONDS` (default 60) after every lock first has a leader.
//!
//! Each process runs one elector per lock on one shared store client and reports when it
//! starts and stops leading each lock, stamped on `CLOCK_BOOTTIME` (one clock for all
//! processes). The parent samples who leads what every 250 ms from those intervals and
//! reads each process's memory, CPU and TCP connections to the store from /proc. Its last
//! line is one JSON object; it exits non-zero if a lock ever had two leaders, ended with
//! none, or changed hands after its first election — or, with
//! `MANY_LOCKS_MAX_CONNECTIONS=N`, if a process ever held more than N connections to the
//! store.
//!
//! `MANY_LOCKS_STORE=postgres://… cargo bench -p highlander --bench many_locks`

use highlander::{CountingStore, LeaderElector, LockName, OpenOptions, Timing, clock::boottime};
use lock_conformance::procfs;
use std::{
    collections::{BTreeMap, HashSet},
    io::{BufRead, BufReader, Write},
    process::{Child, Command, ExitCode, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> ExitCode {
    if std::env::var_os("MANY_LOCKS_WORKER").is_some() {
        return worker();
    }
    match parent() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("many_locks: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A worker: every lock, one shared store, events on stdout.
fn worker() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let url = std::env::var("MANY_LOCKS_STORE").expect("store");
        let (locks, run, me) = (env("MANY_LOCKS", 1000usize), env("MANY_LOCKS_RUN", 0u32), env("MANY_LOCKS_INDEX", 0usize));
        let store = match highlander::open_with(&url, &OpenOptions::new(Timing::DEFAULT)).await {
            Ok(s) => CountingStore::new(s),
            Err(e) => {
                println!("error {e}");
                return ExitCode::FAILURE;
            }
        };
        let out = Arc::new(Mutex::new(std::io::stdout()));
        let say = {
            let out = out.clone();
            move |line: String| {
                let mut o = out.lock().expect("stdout");
                let _ = writeln!(o, "{line}");
                let _ = o.flush();
            }
        };
        let shutdown = tokio_util::sync::CancellationToken::new();
        for i in 0..locks {
            let lock = LockName::new(format!("many-{run:08x}/{i}")).expect("name");
            let say = say.clone();
            let elector = LeaderElector::builder(store.clone(), lock, format!("proc-{me}"))
                .on_started_leading(move |l| {
                    let say = say.clone();
                    async move {
                        say(format!("lead {i} {}", boottime().as_nanos()));
                        l.lost().await;
                        say(format!("lost {i} {}", boottime().as_nanos()));
                    }
                })
                .build()
                .expect("elector");
            elector.spawn(shutdown.clone());
        }
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            say(format!("calls {} {}", store.counts().total(), boottime().as_nanos()));
        }
    })
}

/// What the workers said, for the parent.
#[derive(Default)]
struct Seen {
    /// Per lock: (process, from, until) terms, `until` open while leading.
    terms: BTreeMap<usize, Vec<(usize, u128, Option<u128>)>>,
    calls: BTreeMap<usize, Vec<(u128, u64)>>,
    errors: Vec<String>,
}

fn sample_proc(pid: u32) -> Option<(f64, f64)> {
    Some((procfs::stat(pid)?.cpu_seconds(), procfs::memory(pid)?.resident_mb))
}

/// TCP connections of `pid` to `port`, from its sockets and its view of /proc/net/tcp.
fn connections(pid: u32, port: u16) -> usize {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| l.to_str().and_then(|s| s.strip_prefix("socket:[")).map(|s| s.trim_end_matches(']').to_string()))
                .collect()
        })
        .unwrap_or_default();
    let mut n = 0;
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let remote_port = f.get(2).and_then(|r| r.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok());
            if f.get(3) == Some(&"01") && remote_port == Some(port) && f.get(9).is_some_and(|i| inodes.contains(*i)) {
                n += 1;
            }
        }
    }
    n
}

/// The port the store listens on, for counting connections.
fn store_port(url: &str) -> Option<u16> {
    let parsed = highlander::StoreUrl::parse(url).ok()?;
    let default = match parsed.scheme() {
        "postgres" | "postgresql" => 5432,
        "etcd" => 2379,
        _ => 80,
    };
    let host = match parsed.hosts().first() {
        Some(h) if default != 80 => h.clone(),
        _ => {
            let mut p = parsed.params();
            let endpoint = p.take("endpoint").ok().flatten().or_else(|| p.take("api").ok().flatten())?;
            endpoint.split("://").nth(1)?.split('/').next()?.to_string()
        }
    };
    highlander::url::host_port(parsed.scheme(), 0, &host, default).ok().map(|(_, p)| p)
}

fn parent() -> Result<bool, String> {
    let url =
        std::env::var("MANY_LOCKS_STORE").map_err(|_| "set MANY_LOCKS_STORE to a store URL (postgres://…, etcd://…, dynamodb://…)")?;
    let (locks, processes, seconds) = (env("MANY_LOCKS", 1000usize), env("MANY_LOCKS_PROCESSES", 3usize), env("MANY_LOCKS_SECONDS", 60u64));
    let run: u32 = rand_run();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(highlander::create_if_missing(&url, &OpenOptions::default())).map_err(|e| e.to_string())?;
    let port = store_port(&url);
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut children: Vec<Child> = Vec::new();
    for p in 0..processes {
        let mut child = Command::new(&exe)
            .env("MANY_LOCKS_WORKER", "1")
            .env("MANY_LOCKS_RUN", run.to_string())
            .env("MANY_LOCKS_INDEX", p.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start a worker: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let seen = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let f: Vec<&str> = line.split_whitespace().collect();
                let mut s = seen.lock().expect("seen");
                match f.as_slice() {
                    ["lead", i, at] => {
                        if let (Ok(i), Ok(at)) = (i.parse(), at.parse()) {
                            s.terms.entry(i).or_default().push((p, at, None));
                        }
                    }
                    ["lost", i, at] => {
                        if let (Ok(i), Ok(at)) = (i.parse::<usize>(), at.parse::<u128>())
                            && let Some(t) = s.terms.entry(i).or_default().iter_mut().rev().find(|t| t.0 == p && t.2.is_none())
                        {
                            t.2 = Some(at);
                        }
                    }
                    ["calls", n, at] => {
                        if let (Ok(n), Ok(at)) = (n.parse(), at.parse()) {
                            s.calls.entry(p).or_default().push((at, n));
                        }
                    }
                    _ => s.errors.push(line.clone()),
                }
            }
        });
        children.push(child);
    }
    let stop = |children: &mut Vec<Child>| {
        for c in children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    };
    // The first election of every lock.
    let started = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let s = seen.lock().expect("seen");
        if !s.errors.is_empty() {
            let e = s.errors.join("; ");
            drop(s);
            stop(&mut children);
            return Err(format!("a worker failed: {e}"));
        }
        if s.terms.len() == locks {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let n = s.terms.len();
            drop(s);
            stop(&mut children);
            return Err(format!("only {n} of {locks} locks had a leader after 120 s"));
        }
    }
    let elected_in = started.elapsed();
    let window_start = boottime().as_nanos();
    let before: Vec<Option<(f64, f64)>> = children.iter().map(|c| sample_proc(c.id())).collect();
    let mut samples = Vec::new();
    let mut max_connections = 0;
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(250));
        samples.push(boottime().as_nanos());
        if let Some(port) = port {
            max_connections = max_connections.max(children.iter().map(|c| connections(c.id(), port)).max().unwrap_or(0));
        }
    }
    let after: Vec<Option<(f64, f64)>> = children.iter().map(|c| sample_proc(c.id())).collect();
    // Let the last events arrive before judging.
    std::thread::sleep(Duration::from_millis(500));
    let window_end = *samples.last().unwrap_or(&window_start);
    stop(&mut children);
    let s = seen.lock().expect("seen");
    let leaders_at =
        |i: usize, t: u128| s.terms.get(&i).map_or(0, |ts| ts.iter().filter(|(_, a, b)| *a <= t && b.is_none_or(|b| b > t)).count());
    let mut max_leaders = 0;
    let mut leaderless_samples = 0;
    for &t in &samples {
        for i in 0..locks {
            let n = leaders_at(i, t);
            max_leaders = max_leaders.max(n);
            if n == 0 {
                leaderless_samples += 1;
            }
        }
    }
    let led_at_end = (0..locks).filter(|i| leaders_at(*i, window_end) == 1).count();
    let changes: usize = s.terms.values().map(|ts| ts.len().saturating_sub(1)).sum();
    let secs = (window_end - window_start) as f64 / 1e9;
    let calls: f64 = s
        .calls
        .values()
        .map(|c| {
            let inside: Vec<&(u128, u64)> = c.iter().filter(|(at, _)| *at >= window_start && *at <= window_end).collect();
            match (inside.first(), inside.last()) {
                (Some(a), Some(b)) if b.0 > a.0 => (b.1 - a.1) as f64 / ((b.0 - a.0) as f64 / 1e9),
                _ => 0.0,
            }
        })
        .sum();
    let per: Vec<(f64, f64)> =
        before.iter().zip(&after).filter_map(|(b, a)| Some(((a.as_ref()?.0 - b.as_ref()?.0) / secs * 100.0, a.as_ref()?.1))).collect();
    let avg = |f: fn(&(f64, f64)) -> f64| if per.is_empty() { 0.0 } else { per.iter().map(f).sum::<f64>() / per.len() as f64 };
    let round = |x: f64| (x * 100.0).round() / 100.0;
    let store = highlander::redact_userinfo(url.split('?').next().unwrap_or(&url));
    eprintln!(
        "{locks} locks × {processes} processes on {store}: all led {:.1} s after start; then {secs:.0} s of samples: at most {max_leaders} leader(s) per lock, {leaderless_samples} leaderless lock-samples, {changes} leadership changes",
        elected_in.as_secs_f64()
    );
    let json = serde_json::json!({
        "store": store,
        "locks": locks,
        "processes": processes,
        "seconds": round(secs),
        "led_at_end": led_at_end,
        "max_leaders_per_lock": max_leaders,
        "leadership_changes": changes,
        "store_calls_per_second": round(calls),
        "rss_mb_per_process": round(avg(|p| p.1)),
        "cpu_percent_per_process": round(avg(|p| p.0)),
        "connections_per_process": if port.is_some() { serde_json::json!(max_connections) } else { serde_json::Value::Null },
    });
    println!("{json}");
    // A bound on connections, for CI: e.g. a Postgres store's pool size + 1.
    let connections_ok = match (std::env::var("MANY_LOCKS_MAX_CONNECTIONS").ok(), port) {
        (None, _) => true,
        (Some(limit), Some(_)) => {
            let limit: usize = limit.parse().map_err(|_| format!("MANY_LOCKS_MAX_CONNECTIONS={limit:?} is not a number"))?;
            if max_connections > limit {
                eprintln!("many_locks: a process held {max_connections} connections to the store, over the bound of {limit}");
            }
            max_connections <= limit
        }
        (Some(_), None) => return Err("MANY_LOCKS_MAX_CONNECTIONS needs a store whose port is known".into()),
    };
    Ok(led_at_end == locks && max_leaders <= 1 && changes == 0 && leaderless_samples == 0 && connections_ok)
}

fn rand_run() -> u32 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    nanos ^ std::process::id()
}
