//! The oracle: reads only the recorders' own lines and counts what matters to a user
//! of `highlander run` — two commands alive at once, a term whose fencing token is not
//! above the one before it, and how long nothing ran.
//!
//! A line is `UNIX_SECONDS EVENT IDENTITY TOKEN PID`, EVENT being `start`, `tick` or
//! `stop`. A term is one recorder process (one pid): from its first line to its `stop`,
//! or its last tick if it was killed.

use std::collections::BTreeMap;

/// One recorder line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Event {
    pub(crate) at: f64,
    pub(crate) kind: Kind,
    pub(crate) identity: String,
    pub(crate) token: u64,
    pub(crate) pid: u32,
}

/// What a recorder said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Start,
    Tick,
    Stop,
}

impl Event {
    /// Parses one line; `None` for a line that is not a recorder's (a torn last line).
    pub(crate) fn parse(line: &str) -> Option<Self> {
        let mut f = line.split_whitespace();
        let at = f.next()?.parse::<f64>().ok().filter(|t| t.is_finite())?;
        let kind = match f.next()? {
            "start" => Kind::Start,
            "tick" => Kind::Tick,
            "stop" => Kind::Stop,
            _ => return None,
        };
        let identity = f.next()?.to_string();
        let token = f.next()?.parse().ok()?;
        let pid = f.next()?.parse().ok()?;
        f.next().is_none().then_some(Self { at, kind, identity, token, pid })
    }

    /// The line, as the recorder writes it.
    pub(crate) fn line(&self) -> String {
        let kind = match self.kind {
            Kind::Start => "start",
            Kind::Tick => "tick",
            Kind::Stop => "stop",
        };
        format!("{:.6} {kind} {} {} {}", self.at, self.identity, self.token, self.pid)
    }
}

/// One command's life.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Term {
    pub(crate) identity: String,
    pub(crate) token: u64,
    pub(crate) pid: u32,
    pub(crate) start: f64,
    pub(crate) end: f64,
    /// It said `stop` (stopped with SIGTERM) rather than falling silent (SIGKILL).
    pub(crate) stopped: bool,
}

/// Two terms alive at once.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Overlap {
    pub(crate) first: Term,
    pub(crate) second: Term,
    pub(crate) seconds: f64,
}

/// What the oracle found.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Verdict {
    pub(crate) terms: Vec<Term>,
    pub(crate) overlaps: Vec<Overlap>,
    /// Terms (in start order) whose token is not above the previous term's.
    pub(crate) regressions: Vec<(Term, Term)>,
    /// The longest time with no command running, between the first start and the last end.
    pub(crate) longest_gap: f64,
}

impl Verdict {
    /// Total seconds two commands were alive at once.
    pub(crate) fn overlap_seconds(&self) -> f64 {
        self.overlaps.iter().map(|o| o.seconds).fold(0.0, |a, b| a + b)
    }

    /// Whether the promise held: no overlap, no regression.
    pub(crate) fn clean(&self) -> bool {
        self.overlaps.is_empty() && self.regressions.is_empty()
    }
}

/// Groups events into terms (one per recorder pid) in start order.
pub(crate) fn terms(events: &[Event]) -> Vec<Term> {
    let mut by_pid: BTreeMap<u32, Term> = BTreeMap::new();
    for e in events {
        let term = by_pid.entry(e.pid).or_insert_with(|| Term {
            identity: e.identity.clone(),
            token: e.token,
            pid: e.pid,
            start: e.at,
            end: e.at,
            stopped: false,
        });
        term.start = term.start.min(e.at);
        term.end = term.end.max(e.at);
        term.stopped |= e.kind == Kind::Stop;
    }
    let mut terms: Vec<Term> = by_pid.into_values().collect();
    terms.sort_by(|a, b| a.start.total_cmp(&b.start));
    terms
}

/// Judges a recording.
pub(crate) fn judge(events: &[Event]) -> Verdict {
    let terms = terms(events);
    let mut overlaps = Vec::new();
    for (i, a) in terms.iter().enumerate() {
        for b in &terms[i + 1..] {
            if b.start >= a.end {
                continue;
            }
            let seconds = a.end.min(b.end) - b.start;
            if seconds > 0.0 {
                overlaps.push(Overlap { first: a.clone(), second: b.clone(), seconds });
            }
        }
    }
    let regressions = terms.windows(2).filter(|w| w[1].token <= w[0].token).map(|w| (w[0].clone(), w[1].clone())).collect::<Vec<_>>();
    let mut longest_gap = 0.0_f64;
    let mut covered_until = terms.first().map_or(0.0, |t| t.end);
    for t in terms.iter().skip(1) {
        longest_gap = longest_gap.max(t.start - covered_until);
        covered_until = covered_until.max(t.end);
    }
    Verdict { terms, overlaps, regressions, longest_gap }
}

/// The p-th percentile (0–100) of some values, by nearest rank.
pub(crate) fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(lines: &[&str]) -> Vec<Event> {
        lines.iter().map(|l| Event::parse(l).unwrap_or_else(|| panic!("{l}"))).collect()
    }

    #[test]
    fn a_clean_handover_has_no_overlap_no_regression_and_its_gap() {
        let v =
            judge(&record(&["10.0 start a 1 100", "10.1 tick a 1 100", "10.5 stop a 1 100", "11.0 start b 2 200", "11.1 tick b 2 200"]));
        assert!(v.clean(), "{v:?}");
        assert_eq!(v.terms.len(), 2);
        assert!(v.terms[0].stopped && !v.terms[1].stopped);
        assert!((v.longest_gap - 0.5).abs() < 1e-9, "{v:?}");
    }

    #[test]
    fn two_commands_alive_at_once_are_an_overlap_with_its_length() {
        let v =
            judge(&record(&["10.0 start a 1 100", "11.0 start b 2 200", "11.2 tick a 1 100", "11.7 tick a 1 100", "12.0 tick b 2 200"]));
        assert_eq!(v.overlaps.len(), 1, "{v:?}");
        assert!((v.overlap_seconds() - 0.7).abs() < 1e-9, "{v:?}");
        assert!(v.regressions.is_empty() && !v.clean());
    }

    #[test]
    fn a_token_that_does_not_grow_is_a_regression() {
        let v = judge(&record(&["10.0 start a 5 100", "10.4 stop a 5 100", "11.0 start b 5 200", "12.0 start c 3 300"]));
        assert_eq!(v.regressions.len(), 2, "{v:?}");
        assert!(v.overlaps.iter().all(|o| o.second.identity == "c"), "{v:?}");
    }

    #[test]
    fn a_killed_term_ends_at_its_last_tick_and_gaps_are_measured_across_it() {
        let v = judge(&record(&["1.0 start a 1 10", "1.1 tick a 1 10", "1.2 tick a 1 10", "4.2 start b 2 20", "4.3 tick b 2 20"]));
        assert!(v.clean());
        assert!(!v.terms[0].stopped && (v.terms[0].end - 1.2).abs() < 1e-9);
        assert!((v.longest_gap - 3.0).abs() < 1e-9, "{v:?}");
    }

    #[test]
    fn torn_and_foreign_lines_are_not_events() {
        for bad in ["", "1.0 start a 1", "x start a 1 2", "1.0 begin a 1 2", "1.0 start a 1 2 extra", "inf start a 1 2"] {
            assert_eq!(Event::parse(bad), None, "{bad:?}");
        }
        let e = Event::parse("12.5 tick chaos-1 7 4242").expect("parses");
        assert_eq!(Event::parse(&e.line()), Some(e));
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert_eq!(percentile(&v, 50.0), Some(3.0));
        assert_eq!(percentile(&v, 99.0), Some(10.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
