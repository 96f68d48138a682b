//! The semantics report: every check's result per backend, side by side, with the
//! figures that matter when choosing a store (latency, failover, double winners).

use crate::{CHECKS, Check, Level, StoreHarness, check, unique_lock};
use lock_core::{LeaderElectionRecord, LeaseStore, WriteConsistency};
use serde::Serialize;
use std::{fmt::Write as _, time::Duration};
use tokio::time::Instant;

/// How many operations of each kind the latency figures are taken from.
pub const LATENCY_SAMPLES: usize = 100;
/// How many two-writer races the double-winner figure is taken from.
pub const RACES: usize = 50;

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct CheckOutcome {
    /// The check.
    pub name: &'static str,
    /// Store or elector level.
    pub level: Level,
    /// Whether it passed.
    pub passed: bool,
    /// The failure, if any.
    pub failure: Option<String>,
    /// Figures it measured.
    pub figures: Vec<(&'static str, f64)>,
    /// Notes on behaviour the store's capabilities allow.
    pub notes: Vec<String>,
    /// How long it ran, in seconds.
    pub seconds: f64,
}

/// Latency percentiles of one operation, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

/// Everything measured about one backend.
#[derive(Debug, Clone, Serialize)]
pub struct BackendReport {
    /// A short name ("postgres").
    pub backend: String,
    /// The store's own description.
    pub store: String,
    /// `atomic compare-and-set` or `last-writer-wins`.
    pub consistency: &'static str,
    /// Whether versions increase numerically.
    pub monotonic_versions: bool,
    /// Whether standbys are notified of changes.
    pub watch: bool,
    /// How the store makes fenced writes (the term checked in the write's own
    /// transaction), if it can.
    pub fenced_writes: Option<&'static str>,
    /// The largest record the store holds, if limited.
    pub max_record_bytes: Option<usize>,
    /// Every check.
    pub checks: Vec<CheckOutcome>,
    /// `get` latency.
    pub get: Option<Latency>,
    /// `create` latency.
    pub create: Option<Latency>,
    /// `update` latency.
    pub update: Option<Latency>,
    /// Of [`RACES`] two-writer races from one version, how many had two winners.
    pub double_wins: Option<usize>,
}

impl BackendReport {
    /// Whether every check passed.
    #[must_use]
    pub fn all_passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    fn figure(&self, check: &str, name: &str) -> Option<f64> {
        self.checks.iter().find(|c| c.name == check && c.passed)?.figures.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

fn latency(mut samples: Vec<Duration>) -> Latency {
    samples.sort();
    Latency { p50_ms: percentile(&samples, 0.5), p99_ms: percentile(&samples, 0.99) }
}

async fn measure_latency(store: &dyn LeaseStore) -> lock_core::Result<(Latency, Latency, Latency)> {
    let (mut gets, mut creates, mut updates) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..LATENCY_SAMPLES {
        let lock = unique_lock("latency");
        let rec = LeaderElectionRecord::new("latency", 15, chrono::Utc::now());
        let t = Instant::now();
        let version = store.create(&lock, &rec).await?;
        creates.push(t.elapsed());
        let t = Instant::now();
        store.get(&lock).await?;
        gets.push(t.elapsed());
        let t = Instant::now();
        let version = store.update(&lock, &version, &rec).await?;
        updates.push(t.elapsed());
        // Released, untimed, as a candidate leaves a lock: a store that holds a session per
        // lock led (Postgres advisory locks) would otherwise hold a hundred.
        store.update(&lock, &version, &LeaderElectionRecord::new("", 15, chrono::Utc::now())).await?;
    }
    Ok((latency(gets), latency(creates), latency(updates)))
}

async fn count_double_wins(h: &dyn StoreHarness) -> lock_core::Result<usize> {
    let (a, b) = (h.connect().await?, h.connect().await?);
    let mut doubles = 0;
    for _ in 0..RACES {
        let lock = unique_lock("double-win");
        let version = a.create(&lock, &LeaderElectionRecord::new("origin", 15, chrono::Utc::now())).await?;
        let ra = LeaderElectionRecord::new("writer-a", 15, chrono::Utc::now());
        let rb = LeaderElectionRecord::new("writer-b", 15, chrono::Utc::now());
        let (x, y) = tokio::join!(a.update(&lock, &version, &ra), b.update(&lock, &version, &rb));
        if x.is_ok() && y.is_ok() {
            doubles += 1;
        }
    }
    Ok(doubles)
}

/// How many checks run at once by default: as many as `cargo test` runs on two cores.
/// Each check uses locks of its own, so checks can share a store.
pub const DEFAULT_JOBS: u8 = 2;

/// Runs every check ([`DEFAULT_JOBS`] at a time) and every measurement against one
/// backend. Never panics: a failure is recorded in the report.
pub async fn run(backend: &str, h: &dyn StoreHarness, progress: impl FnMut(&str, &CheckOutcome)) -> BackendReport {
    run_selected(backend, h, |_| true, usize::from(DEFAULT_JOBS), progress).await
}

/// As [`run`], with only the checks `select` accepts, `jobs` at a time (at least one);
/// the measurements always run, alone, after the checks. `progress` hears of each check
/// as it ends; the report lists them in the suite's order.
pub async fn run_selected(
    backend: &str,
    h: &dyn StoreHarness,
    select: impl Fn(&Check) -> bool,
    jobs: usize,
    mut progress: impl FnMut(&str, &CheckOutcome),
) -> BackendReport {
    use futures_util::StreamExt as _;
    let store = h.connect().await;
    let (description, caps) = match &store {
        Ok(s) => (s.to_string(), Some(s.capabilities())),
        Err(e) => (format!("unreachable: {e}"), None),
    };
    let selected: Vec<(usize, &Check)> = CHECKS.iter().filter(|c| select(c)).enumerate().collect();
    let mut ended = futures_util::stream::iter(selected)
        .map(|(i, c)| async move {
            let started = Instant::now();
            let result = check(c.name, h).await;
            let seconds = started.elapsed().as_secs_f64();
            let outcome = match result {
                Ok(obs) => CheckOutcome {
                    name: c.name,
                    level: c.level,
                    passed: true,
                    failure: None,
                    figures: obs.figures,
                    notes: obs.notes,
                    seconds,
                },
                Err(f) => CheckOutcome {
                    name: c.name,
                    level: c.level,
                    passed: false,
                    failure: Some(f.0),
                    figures: vec![],
                    notes: vec![],
                    seconds,
                },
            };
            (i, outcome)
        })
        .buffer_unordered(jobs.max(1));
    let mut checks = Vec::new();
    while let Some((i, outcome)) = ended.next().await {
        progress(backend, &outcome);
        checks.push((i, outcome));
    }
    drop(ended);
    checks.sort_by_key(|(i, _)| *i);
    let checks: Vec<CheckOutcome> = checks.into_iter().map(|(_, c)| c).collect();
    let lat = match &store {
        Ok(s) => measure_latency(&**s).await.ok(),
        Err(_) => None,
    };
    let double_wins = count_double_wins(h).await.ok();
    BackendReport {
        backend: backend.to_string(),
        store: description,
        consistency: match caps.as_ref().map(|c| c.consistency) {
            Some(WriteConsistency::AtomicCompareAndSet) => "atomic compare-and-set",
            Some(WriteConsistency::LastWriterWins) => "last-writer-wins",
            None => "unknown",
        },
        monotonic_versions: caps.as_ref().is_some_and(|c| c.monotonic_versions),
        watch: caps.as_ref().is_some_and(|c| c.watch),
        fenced_writes: caps.as_ref().and_then(|c| c.fenced_writes),
        max_record_bytes: caps.and_then(|c| c.max_record_bytes),
        checks,
        get: lat.map(|l| l.0),
        create: lat.map(|l| l.1),
        update: lat.map(|l| l.2),
        double_wins,
    }
}

fn ms(l: Option<Latency>) -> String {
    l.map_or("–".into(), |l| format!("{:.2} / {:.2}", l.p50_ms, l.p99_ms))
}

fn secs(v: Option<f64>, bound: Option<f64>) -> String {
    match (v, bound) {
        (Some(v), Some(b)) => format!("{v:.2} s (bound {b:.2} s)"),
        (Some(v), None) => format!("{v:.2} s"),
        _ => "–".into(),
    }
}

/// Renders reports side by side as Markdown.
#[must_use]
pub fn markdown(reports: &[BackendReport]) -> String {
    let mut out = String::new();
    let header: Vec<&str> = reports.iter().map(|r| r.backend.as_str()).collect();
    let _ = writeln!(out, "| | {} |", header.join(" | "));
    let _ = writeln!(out, "|---|{}", "---|".repeat(reports.len()));
    let mut row = |label: &str, f: &dyn Fn(&BackendReport) -> String| {
        let cells: Vec<String> = reports.iter().map(f).collect();
        let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
    };
    row("writes", &|r| r.consistency.to_string());
    row("monotonic versions", &|r| if r.monotonic_versions { "yes".into() } else { "no".into() });
    row("change notifications", &|r| {
        if !r.watch {
            return "no (polling)".into();
        }
        r.figure("change_notifications_deliver_each_write", "notification_ms").map_or("yes".into(), |ms| format!("yes (≤ {ms:.1} ms)"))
    });
    row("fenced writes (the term checked in the write's transaction)", &|r| match r.fenced_writes {
        None => "no: pass the fencing token to the resource".into(),
        Some(how) => format!("yes: {how}"),
    });
    row("checks passed", &|r| format!("{}/{}", r.checks.iter().filter(|c| c.passed).count(), r.checks.len()));
    row("get p50 / p99 (ms)", &|r| ms(r.get));
    row("create p50 / p99 (ms)", &|r| ms(r.create));
    row("update p50 / p99 (ms)", &|r| ms(r.update));
    row("failover after a crash", &|r| {
        secs(
            r.figure("crash_fails_over_within_bound", "failover_seconds"),
            r.figure("crash_fails_over_within_bound", "failover_bound_seconds"),
        )
    });
    row("handover after a release", &|r| {
        secs(
            r.figure("graceful_release_hands_over_quickly", "handover_seconds"),
            r.figure("graceful_release_hands_over_quickly", "handover_bound_seconds"),
        )
    });
    row("rival write noticed after", &|r| secs(r.figure("rival_overwrite_is_detected_at_next_renewal", "rival_detected_seconds"), None));
    row("record deleted under a cut-off leader: next term after (never before a lease)", &|r| {
        secs(r.figure("record_lost_under_a_cut_off_leader_is_not_a_free_lock", "lost_record_takeover_seconds"), None)
    });
    row("overlapping leadership terms (4 candidates, faults)", &|r| {
        r.figure("leadership_intervals_never_overlap", "overlapping_terms").map_or("–".into(), |v| format!("{v:.0}"))
    });
    row(&format!("two-writer races with two winners (of {RACES})"), &|r| r.double_wins.map_or("–".into(), |d| d.to_string()));
    row("16 racing updates: winners", &|r| {
        r.figure("concurrent_updates_have_one_winner", "update_race_winners").map_or("–".into(), |v| format!("{v:.0}"))
    });
    row("5 × 10 increments kept", &|r| {
        r.figure("read_modify_write_increments_are_not_lost", "increments_kept").map_or("–".into(), |v| format!("{v:.0}/50"))
    });
    let _ = writeln!(out);
    let _ = writeln!(out, "| check | level | {} |", header.join(" | "));
    let _ = writeln!(out, "|---|---|{}", "---|".repeat(reports.len()));
    for c in CHECKS {
        let cells: Vec<String> = reports
            .iter()
            .map(|r| match r.checks.iter().find(|o| o.name == c.name) {
                Some(o) if o.passed => "pass".to_string(),
                Some(_) => "**FAIL**".to_string(),
                None => "–".to_string(),
            })
            .collect();
        let level = match c.level {
            Level::Store => "store",
            Level::Elector => "elector",
        };
        let _ = writeln!(out, "| `{}` | {level} | {} |", c.name, cells.join(" | "));
    }
    let failures: Vec<String> = reports
        .iter()
        .flat_map(|r| {
            r.checks
                .iter()
                .filter(|c| !c.passed)
                .map(move |c| format!("- {} `{}`: {}", r.backend, c.name, c.failure.as_deref().unwrap_or("")))
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "\nFailures:\n\n{}", failures.join("\n"));
    }
    let notes: Vec<String> = reports
        .iter()
        .flat_map(|r| r.checks.iter().flat_map(move |c| c.notes.iter().map(move |n| format!("- {} `{}`: {n}", r.backend, c.name))))
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(out, "\nNotes:\n\n{}", notes.join("\n"));
    }
    out
}

/// The reports as JSON.
pub fn json(reports: &[BackendReport]) -> serde_json::Result<String> {
    serde_json::to_string_pretty(reports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryHarness;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_memory_stores_pass_and_the_report_tells_atomic_from_last_writer_wins() {
        // Four at a time: the memory store answers at once and the checks mostly wait.
        let (memory, memory_lww) = (MemoryHarness::new(), MemoryHarness::with_store(lock_core::MemoryStore::last_writer_wins()));
        let (atomic, lww) = tokio::join!(
            run_selected("memory", &memory, |_| true, 4, |_, _| {}),
            run_selected("memory-lww", &memory_lww, |_| true, 4, |_, _| {})
        );
        // The reference store passes the whole suite, and so does one that honestly
        // declares last-writer-wins (every check that applies to it).
        for r in [&atomic, &lww] {
            assert!(r.all_passed(), "{}: {:?}", r.backend, r.checks.iter().filter(|c| !c.passed).collect::<Vec<_>>());
            assert_eq!(r.checks.len(), CHECKS.len(), "{}: every check ran", r.backend);
        }
        assert_eq!(atomic.double_wins, Some(0));
        assert_eq!(lww.double_wins, Some(RACES), "a last-writer-wins store lets both racers win");
        assert!(atomic.get.is_some_and(|l| l.p50_ms >= 0.0 && l.p99_ms >= l.p50_ms));
        let md = markdown(&[atomic.clone(), lww]);
        assert!(md.contains("| writes | atomic compare-and-set | last-writer-wins |"), "{md}");
        assert!(md.contains(&format!("| two-writer races with two winners (of {RACES}) | 0 | {RACES} |")), "{md}");
        assert_eq!(md.matches("| pass | pass |").count(), CHECKS.len(), "{md}");
        let parsed: serde_json::Value = serde_json::from_str(&json(&[atomic]).expect("serialises")).expect("valid json");
        assert_eq!(parsed[0]["checks"].as_array().map(Vec::len), Some(CHECKS.len()));
    }
}

/// One configuration's store-failover figures, as the `failover_of_the_store_*` tests
/// write them (`FAILOVER_REPORT_DIR`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct FailoverEntry {
    /// The backend.
    pub backend: String,
    /// How the store was replicated and what failed.
    pub configuration: String,
    /// What was counted.
    pub figures: FailoverFigures,
}

/// The counts of one failover experiment (written by the failover tests, read back
/// for the semantics report).
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct FailoverFigures {
    /// Tries run to the end.
    pub tries: usize,
    /// Acknowledged renewals the new store did not have.
    pub lost_renewals: usize,
    /// Acknowledged takeovers the new store did not have.
    pub lost_takeovers: usize,
    /// Pairs of overlapping terms after the store failed over.
    pub overlapping_terms: usize,
    /// Tries after which a candidate wrote to the new store (the election went on).
    #[serde(default)]
    pub resumed: usize,
    /// The longest time from the failure to the next write by a candidate.
    pub failover_seconds_max: f64,
}

/// The failover entries found in a directory (missing or unreadable files are skipped).
#[must_use]
pub fn failover_entries(dir: &std::path::Path) -> Vec<FailoverEntry> {
    let mut entries: Vec<FailoverEntry> = std::fs::read_dir(dir)
        .map(|d| d.flatten().filter_map(|e| std::fs::read_to_string(e.path()).ok()).filter_map(|s| serde_json::from_str(&s).ok()).collect())
        .unwrap_or_default();
    entries.sort_by(|a, b| (&a.backend, &a.configuration).cmp(&(&b.backend, &b.configuration)));
    entries
}

/// The store-failover table: a row per backend and configuration.
#[must_use]
pub fn failover_markdown(entries: &[FailoverEntry]) -> String {
    let mut out = String::from(
        "| store and configuration | acknowledged writes lost on store failover | overlapping terms after store failover | longest pause |\n|---|---|---|---|\n",
    );
    for e in entries {
        let f = &e.figures;
        let _ = writeln!(
            out,
            "| {} — {} | {} of {} ({} renewals, {} takeovers) | {} of {} | {:.2} s |",
            e.backend,
            e.configuration,
            f.lost_renewals + f.lost_takeovers,
            f.tries,
            f.lost_renewals,
            f.lost_takeovers,
            f.overlapping_terms,
            f.tries,
            f.failover_seconds_max
        );
    }
    out
}
