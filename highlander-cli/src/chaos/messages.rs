//! What the candidates said under the faults: their logs, audited. Chaos creates no
//! twins and no refusals, so no candidate may log an ERROR; every warning must name
//! the lock and the store; and a warning must not be repeated more than twice in one
//! round (a condition is said when it starts and when it ends, not at every retry).

use std::{collections::BTreeMap, path::Path};

/// How often one warning may appear in one candidate's log in one round.
pub(crate) const MAX_REPEATS: usize = 2;

/// What the audit found, a line each.
#[derive(Debug, Default)]
pub(crate) struct Audit {
    /// Lines logged at ERROR.
    pub(crate) errors: Vec<String>,
    /// WARN or ERROR lines that do not name the lock and the store.
    pub(crate) unnamed: Vec<String>,
    /// Warnings repeated more than [`MAX_REPEATS`] times in one round, with the count.
    pub(crate) repeated: Vec<String>,
    /// Lines read.
    pub(crate) lines: usize,
}

impl Audit {
    pub(crate) fn clean(&self) -> bool {
        self.errors.is_empty() && self.unnamed.is_empty() && self.repeated.is_empty()
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "lines": self.lines, "errors": self.errors.len(), "unnamed": self.unnamed.len(), "repeated": self.repeated.len(),
            "findings": self.findings().collect::<Vec<_>>(),
        })
    }

    /// The first 20 findings: errors, then unnamed warnings, then repeats.
    pub(crate) fn findings(&self) -> impl Iterator<Item = &String> {
        self.errors.iter().chain(&self.unnamed).chain(&self.repeated).take(20)
    }
}

/// Audits each candidate's log (`NAME.log` in `dir`); rounds begin at `starts` (unix seconds).
pub(crate) fn audit(dir: &Path, candidates: &[String], starts: &[f64]) -> Audit {
    let mut audit = Audit::default();
    for name in candidates {
        let text = std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default();
        audit_one(name, &text, starts, &mut audit);
    }
    audit
}

fn audit_one(name: &str, text: &str, starts: &[f64], audit: &mut Audit) {
    let mut counts: BTreeMap<(usize, String), usize> = BTreeMap::new();
    for line in text.lines() {
        audit.lines += 1;
        let Some(parsed) = Line::parse(line) else { continue };
        if parsed.level != "WARN" && parsed.level != "ERROR" {
            continue;
        }
        if parsed.level == "ERROR" {
            audit.errors.push(format!("{name}: {line}"));
        }
        if !parsed.rest.contains("lock=") || !parsed.rest.contains("store=") {
            audit.unnamed.push(format!("{name}: {line}"));
        }
        let round = starts.iter().filter(|s| **s <= parsed.at).count();
        *counts.entry((round, parsed.key())).or_default() += 1;
    }
    for ((round, key), n) in counts {
        if n > MAX_REPEATS {
            audit.repeated.push(format!("{name}: {n} times in round {round}: {key}"));
        }
    }
}

/// One line of `tracing`'s text format: `TIMESTAMP LEVEL target: message fields…`.
struct Line<'a> {
    at: f64,
    level: &'a str,
    rest: &'a str,
}

impl<'a> Line<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let (stamp, rest) = line.split_once(char::is_whitespace)?;
        let at = chrono::DateTime::parse_from_rfc3339(stamp).ok()?;
        let (level, rest) = rest.trim_start().split_once(char::is_whitespace)?;
        Some(Self { at: at.timestamp_micros() as f64 / 1e6, level, rest: rest.trim_start() })
    }

    /// The message without its fields, numbers blanked: one condition, whatever its figures.
    fn key(&self) -> String {
        let message = self.rest.split_once(": ").map_or(self.rest, |(_, m)| m);
        let message = message.split(" lock=").next().unwrap_or(message);
        message.chars().map(|c| if c.is_ascii_digit() { '#' } else { c }).take(120).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_unnamed_warnings_and_repeats_within_a_round_are_found() {
        let log = "\
2026-12-07T08:00:00.100000Z  WARN lock_core::elector: failed to acquire the lease lock=a store=pg error=down
2026-12-07T08:00:00.600000Z  WARN lock_core::elector: failed to acquire the lease lock=a store=pg error=down
2026-12-07T08:00:01.100000Z  WARN lock_core::elector: failed to acquire the lease lock=a store=pg error=down
2026-12-07T08:00:01.200000Z  INFO lock_core::elector: became leader lock=a
2026-12-07T08:00:02.000000Z ERROR highlander::run: the guard process died pid=4
2026-12-07T08:00:11.000000Z  WARN lock_core::elector: lost leadership after 3 tries lock=a store=pg
2026-12-07T08:00:12.000000Z  WARN lock_core::elector: lost leadership after 4 tries lock=a store=pg
2026-12-07T08:00:13.000000Z  WARN highlander::run: the guard stopped the command lock=a
not a log line
";
        let t0 = chrono::DateTime::parse_from_rfc3339("2026-12-07T08:00:00Z").expect("time").timestamp() as f64;
        let mut audit = Audit::default();
        audit_one("c1", log, &[t0, t0 + 10.0], &mut audit);
        assert_eq!(audit.lines, 9);
        assert_eq!(audit.errors.len(), 1, "{audit:?}");
        assert_eq!(audit.unnamed.len(), 2, "the ERROR names no lock, the last WARN no store: {audit:?}");
        assert_eq!(audit.repeated, ["c1: 3 times in round 1: failed to acquire the lease"], "{audit:?}");
        assert!(!audit.clean());
        // Twice in a round, with other figures, is one condition said twice: allowed.
        let mut audit = Audit::default();
        audit_one("c1", log.lines().skip(5).take(2).collect::<Vec<_>>().join("\n").as_str(), &[t0, t0 + 10.0], &mut audit);
        assert!(audit.clean(), "{audit:?}");
    }
}
