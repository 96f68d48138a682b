//! Highlander's lease protocol as a finite model, checked exhaustively with
//! [stateright](https://docs.rs/stateright): candidates whose clocks run at different
//! rates, a store that compares-and-sets and may lose the record, requests that take
//! time to land and to be answered, pauses, partitions, crashes, the guard's deadline,
//! and the command it starts and stops.
//!
//! The property is the promise: **at most one command runs at any moment, and every
//! term's fencing token is larger than every earlier term's.** A mutation takes one
//! safety mechanism out ([`Mutation`]); the checker must then find a counterexample,
//! which [`explain`] prints as events a person can follow.
//!
//! ```
//! use lock_model::{LeaseModel, Mutation};
//! let model = LeaseModel::small(Mutation::AbsentIsFree);
//! let found = model.check();
//! assert!(found.overlap.is_some(), "taking an absent record at once lets two commands run");
//! ```
//!
//! Time is counted in real ticks; each candidate's clock advances `rate` units per
//! tick, so durations, configured in those units, last different real times on
//! different candidates: that is the clock-rate bound the timing rule must cover.
//! See `docs/safety.md` for the argument this model checks.

use stateright::{Checker, Model, Property};
use std::fmt::Write as _;

/// Durations in clock units (a candidate's clock advances its rate in units per real tick).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timing {
    /// How long a standby waits after it saw the record change (or vanish).
    pub lease: u32,
    /// How long after the start of its last successful renewal's write a leader's term lasts.
    pub renew_deadline: u32,
    /// How often a standby reads and a leader renews.
    pub retry: u32,
}

/// One safety mechanism taken out, to show the checker finds what it prevents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// The protocol as built.
    None,
    /// The guard does not stop the command at the term's deadline.
    NoGuardDeadline,
    /// The deadline counts from when the winning write was answered, not from its start.
    DeadlineFromAnswer,
    /// A lock without a record is led at once by whoever creates it (no lease waited
    /// after the claim).
    AbsentIsFree,
    /// A new token is the highest token seen plus one, without the wall clock.
    TokensFromRecordOnly,
}

/// The protocol and its environment, bounded.
#[derive(Debug, Clone)]
pub struct LeaseModel {
    /// How many candidates race (2 or 3).
    pub candidates: usize,
    /// The candidates' durations.
    pub timing: Timing,
    /// The slowest and the fastest clock, in units per tick: every candidate gets one of the two.
    pub rates: (u32, u32),
    /// How many real ticks a run lasts.
    pub horizon: u32,
    /// How many faults (pause, crash, record loss, and partitions if `cuts`) a run may inject.
    pub faults: u8,
    /// Whether partitions (requests and answers lost) are among the faults.
    pub cuts: bool,
    /// How many ticks a request may take to land, and its answer to come back.
    pub max_delay: u8,
    /// Which mechanism is taken out.
    pub mutation: Mutation,
}

/// The record the store holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    holder: u8,
    token: u64,
    version: u32,
    /// Written by a candidate that found no record: a claim it may lead on only after a lease.
    claim: bool,
}

/// What a candidate last read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Seen {
    Nothing,
    Record { version: u32, since: u32 },
    Absent { since: u32 },
}

/// A write on its way: to take the lock (`token` of the new term) or to renew it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Request {
    take: bool,
    /// A create from absence: a claim, not a term.
    claim: bool,
    token: u64,
    /// The version it replaces; `None`: create the record.
    expected: Option<u32>,
    /// When it was sent, on the candidate's clock.
    start: u32,
    /// `None` in flight; `Some(won)` landed, answer on its way.
    landed: Option<bool>,
    /// Ticks spent in the current stage.
    waited: u8,
}

/// One candidate: its elector, its guard and its command.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Cand {
    rate: u32,
    clock: u32,
    paused: bool,
    cut: bool,
    seen: Seen,
    /// The elector's term: its token and deadline (on its clock).
    term: Option<(u64, u32)>,
    /// The guard's deadline for the running command (on the same clock).
    guard: Option<u32>,
    command: bool,
    due: u32,
    request: Option<Request>,
    max_token: u64,
    /// The token of its last attempt to take the lock: a record carrying it is its own.
    attempted: Option<u64>,
    /// The token of its claim not yet confirmed.
    claimed: Option<u64>,
}

impl Cand {
    /// A candidate that has just started, knowing nothing, with its clock at `clock`.
    fn fresh(rate: u32, clock: u32) -> Self {
        Self {
            rate,
            clock,
            paused: false,
            cut: false,
            seen: Seen::Nothing,
            term: None,
            guard: None,
            command: false,
            due: clock,
            request: None,
            max_token: 0,
            attempted: None,
            claimed: None,
        }
    }
}

/// A state of the whole system.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct State {
    t: u32,
    store: Option<Record>,
    next_version: u32,
    cands: Vec<Cand>,
    faults_left: u8,
    /// The largest token any term started with, and whether one started with less.
    issued: u64,
    regression: bool,
    terms: u8,
}

/// What can happen next.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Real time moves one tick; guards act on their deadlines.
    Tick,
    /// A candidate's elector does what is due: a read, a renewal, stepping down.
    Step(u8),
    /// A candidate's request reaches the store.
    Land(u8),
    /// The answer reaches the candidate.
    Answer(u8),
    /// A candidate's elector stops (SIGSTOP); its guard does not.
    Pause(u8),
    /// It runs again.
    Resume(u8),
    /// Its link to the store is cut: requests and answers in flight are lost.
    Cut(u8),
    /// The link heals.
    Heal(u8),
    /// The candidate crashes and restarts with nothing remembered (its guard kills the command).
    Restart(u8),
    /// The store loses the record (a DELETE, a flush, a restore).
    Lose,
}

const NAMES: [&str; 3] = ["napoleon", "cleopatra", "stalin"];

impl LeaseModel {
    /// Faults: two candidates, one clock 10 % slow and the other 10 % fast (rates 9
    /// and 11 units a tick), lease 80 / renew deadline 60 / retry 30 units, requests and
    /// answers a tick at most, two faults (pause, crash, record loss) in 22 ticks.
    #[must_use]
    pub fn small(mutation: Mutation) -> Self {
        Self {
            candidates: 2,
            timing: Timing { lease: 80, renew_deadline: 60, retry: 30 },
            rates: (9, 11),
            horizon: 22,
            faults: 2,
            cuts: false,
            max_delay: 1,
            mutation,
        }
    }

    /// Latency and lost messages: as [`small`](Self::small), with requests and answers
    /// taking up to two ticks each and one fault, a partition among them.
    #[must_use]
    pub fn slow_network(mutation: Mutation) -> Self {
        Self { max_delay: 2, faults: 1, cuts: true, horizon: 20, ..Self::small(mutation) }
    }

    /// The timing rule, in this model's units: a leader's term, counted on the slowest
    /// clock, must end (whole ticks) before a standby's lease, counted on the fastest,
    /// can run out after the same write.
    #[must_use]
    pub fn timing_rule_holds(&self) -> bool {
        let (slow, fast) = self.rates;
        self.timing.renew_deadline.div_ceil(slow) < self.timing.lease.div_ceil(fast)
    }

    fn wall(t: u32) -> u64 {
        u64::from(t) + 1
    }

    /// Runs the checker to the end: what it found.
    #[must_use]
    pub fn check(self) -> Findings {
        let explainer = self.clone();
        let checker = self.checker().threads(2).spawn_bfs().join();
        let show = |name: &'static str| checker.discovery(name).map(|path| explain(&explainer, &path.into_vec()));
        Findings {
            overlap: show("at most one command runs"),
            regression: show("tokens never go back"),
            states: checker.unique_state_count(),
            led: checker.discovery("a command runs").is_some(),
            handed_over: checker.discovery("a second term starts").is_some(),
        }
    }

    fn step(&self, s: &mut State, i: usize) {
        let (lease, retry) = (self.timing.lease, self.timing.retry);
        let wall = Self::wall(s.t);
        let store = s.store.clone();
        let mutation = self.mutation;
        let c = &mut s.cands[i];
        c.due = c.clock + retry;
        if let Some((token, deadline)) = c.term {
            if c.clock >= deadline {
                c.term = None;
                c.command = false;
                c.guard = None;
                return;
            }
            let expected = match (&store, c.seen) {
                (None, _) | (_, Seen::Absent { .. }) => None,
                (Some(_), Seen::Record { version, .. }) => Some(version),
                (Some(_), Seen::Nothing) => None,
            };
            c.request = Some(Request { take: false, claim: false, token, expected, start: c.clock, landed: None, waited: 0 });
            if c.cut {
                c.request = None;
            }
            return;
        }
        if c.cut {
            return;
        }
        match &store {
            Some(r) => {
                if !matches!(c.seen, Seen::Record { version, .. } if version == r.version) {
                    c.seen = Seen::Record { version: r.version, since: c.clock };
                }
                c.max_token = c.max_token.max(r.token);
                let Seen::Record { since, .. } = c.seen else { return };
                // Its own record (a write whose answer was lost) is taken at once, unless it
                // is its claim: that one waits out a lease like anyone's record.
                let own = usize::from(r.holder) == i && c.attempted == Some(r.token);
                let claim_waits = own && r.claim && mutation != Mutation::AbsentIsFree;
                if c.clock >= since + lease || (own && !claim_waits) {
                    let token = next_token(c.max_token, wall, mutation);
                    c.attempted = Some(token);
                    c.request = Some(Request {
                        take: true,
                        claim: false,
                        token,
                        expected: Some(r.version),
                        start: c.clock,
                        landed: None,
                        waited: 0,
                    });
                }
            }
            None => {
                // No record: claim the lock at once, and lead only once the claim has stood
                // for a lease (any term whose record was lost has ended by then).
                c.seen = Seen::Absent { since: c.clock };
                let token = next_token(c.max_token, wall, mutation);
                c.attempted = Some(token);
                c.request = Some(Request { take: true, claim: true, token, expected: None, start: c.clock, landed: None, waited: 0 });
            }
        }
    }

    fn land(s: &mut State, i: usize) {
        let Some(req) = s.cands[i].request.clone() else { return };
        let won = match (&s.store, req.expected) {
            (None, None) => true,
            // A leader's renewal replaces its own record, or another's claim (it is still in its term).
            (Some(r), Some(v)) => r.version == v && (req.take || usize::from(r.holder) == i || r.claim),
            _ => false,
        };
        if won {
            let holder = u8::try_from(i).unwrap_or(u8::MAX);
            s.store = Some(Record { holder, token: req.token, version: s.next_version, claim: req.claim });
            s.next_version += 1;
        }
        if let Some(r) = s.cands[i].request.as_mut() {
            r.landed = Some(won);
            r.waited = 0;
        }
    }

    fn answer(&self, s: &mut State, i: usize) {
        let rd = self.timing.renew_deadline;
        let version = s.store.as_ref().map(|r| r.version);
        let c = &mut s.cands[i];
        let Some(req) = c.request.take() else { return };
        let won = req.landed == Some(true);
        let origin = if self.mutation == Mutation::DeadlineFromAnswer { c.clock } else { req.start };
        if req.claim && self.mutation != Mutation::AbsentIsFree {
            if won {
                // Claimed: observed like anyone's record, from now.
                c.claimed = Some(req.token);
                if let Some(v) = version {
                    c.seen = Seen::Record { version: v, since: c.clock };
                }
            }
        } else if req.take {
            if won && c.clock < origin + rd {
                c.term = Some((req.token, origin + rd));
                c.guard = Some(origin + rd);
                c.command = true;
                if let Some(v) = version {
                    c.seen = Seen::Record { version: v, since: c.clock };
                }
                c.max_token = c.max_token.max(req.token);
                s.regression |= req.token <= s.issued && s.terms > 0;
                s.issued = s.issued.max(req.token);
                s.terms = s.terms.saturating_add(1);
            }
        } else if let Some((token, deadline)) = c.term {
            // A renewal answered after the term's deadline timed out: the term is over.
            if won && c.clock < deadline {
                c.term = Some((token, origin + rd));
                c.guard = Some(origin + rd);
                if let Some(v) = version {
                    c.seen = Seen::Record { version: v, since: c.clock };
                }
            } else if !won {
                // The renewal lost: read what is there; someone else's record ends the term.
                match &s.store {
                    // Another's claim on the lock while this term lasts: renew over it at once.
                    Some(r) if usize::from(r.holder) != i && r.claim => {
                        c.seen = Seen::Record { version: r.version, since: c.clock };
                        c.due = c.clock;
                    }
                    Some(r) if usize::from(r.holder) != i => {
                        c.term = None;
                        c.command = false;
                        c.guard = None;
                    }
                    Some(r) => c.seen = Seen::Record { version: r.version, since: c.clock },
                    None => c.seen = Seen::Absent { since: c.clock },
                }
            }
        }
    }
}

fn next_token(max_seen: u64, wall: u64, mutation: Mutation) -> u64 {
    if mutation == Mutation::TokensFromRecordOnly { max_seen + 1 } else { (max_seen + 1).max(wall) }
}

impl Model for LeaseModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let (slow, fast) = self.rates;
        let mut out = Vec::new();
        // Every candidate's clock slow or fast, not all the same (that is the case that
        // matters: a slow leader's term against a fast standby's lease).
        for mask in 1..(1u32 << self.candidates) - 1 {
            let cands = (0..self.candidates).map(|i| Cand::fresh(if mask & (1 << i) == 0 { slow } else { fast }, 0)).collect();
            out.push(State { t: 0, store: None, next_version: 1, cands, faults_left: self.faults, issued: 0, regression: false, terms: 0 });
        }
        out
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        // A running elector acts when its step is due (a slow one is a paused one); the
        // network takes up to `max_delay` ticks each way.
        let overdue = s.cands.iter().any(|c| {
            let step_due = !c.paused && c.request.is_none() && c.clock >= c.due;
            step_due || c.request.as_ref().is_some_and(|r| r.waited >= self.max_delay && (r.landed.is_none() || !c.paused))
        });
        if s.t < self.horizon && !overdue {
            actions.push(Action::Tick);
        }
        for (i, c) in s.cands.iter().enumerate() {
            let i = u8::try_from(i).unwrap_or(u8::MAX);
            match &c.request {
                None if !c.paused && c.clock >= c.due => actions.push(Action::Step(i)),
                Some(r) if r.landed.is_none() => actions.push(Action::Land(i)),
                Some(_) if !c.paused => actions.push(Action::Answer(i)),
                _ => {}
            }
            if c.paused {
                actions.push(Action::Resume(i));
            } else if s.faults_left > 0 {
                actions.push(Action::Pause(i));
            }
            if c.cut {
                actions.push(Action::Heal(i));
            } else if s.faults_left > 0 && self.cuts {
                actions.push(Action::Cut(i));
            }
            if s.faults_left > 0 {
                actions.push(Action::Restart(i));
            }
        }
        if s.faults_left > 0 && s.store.is_some() {
            actions.push(Action::Lose);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::Tick => {
                s.t += 1;
                let guard_works = self.mutation != Mutation::NoGuardDeadline;
                for c in &mut s.cands {
                    c.clock += c.rate;
                    if let Some(r) = c.request.as_mut() {
                        r.waited = r.waited.saturating_add(1);
                    }
                    if guard_works && c.command && c.guard.is_some_and(|d| c.clock >= d) {
                        c.command = false;
                    }
                }
            }
            Action::Step(i) => self.step(&mut s, usize::from(i)),
            Action::Land(i) => Self::land(&mut s, usize::from(i)),
            Action::Answer(i) => self.answer(&mut s, usize::from(i)),
            Action::Pause(i) => {
                s.cands[usize::from(i)].paused = true;
                s.faults_left -= 1;
            }
            Action::Resume(i) => s.cands[usize::from(i)].paused = false,
            Action::Cut(i) => {
                let c = &mut s.cands[usize::from(i)];
                c.cut = true;
                match c.request.as_mut() {
                    // Lost on the way: it never lands.
                    Some(r) if r.landed.is_none() => c.request = None,
                    // Landed, but the answer is lost: the candidate thinks it failed.
                    Some(r) => r.landed = Some(false),
                    None => {}
                }
                s.faults_left -= 1;
            }
            Action::Heal(i) => s.cands[usize::from(i)].cut = false,
            Action::Restart(i) => {
                let c = &mut s.cands[usize::from(i)];
                // The guard sees its parent die and kills the command with it; what was
                // in flight dies with the process.
                *c = Cand::fresh(c.rate, c.clock);
                s.faults_left -= 1;
            }
            Action::Lose => {
                s.store = None;
                s.faults_left -= 1;
            }
        }
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("at most one command runs", |_, s: &State| s.cands.iter().filter(|c| c.command).count() <= 1),
            Property::always("tokens never go back", |_, s: &State| !s.regression),
            Property::sometimes("a command runs", |_, s: &State| s.cands.iter().any(|c| c.command)),
            Property::sometimes("a second term starts", |_, s: &State| s.terms >= 2),
        ]
    }
}

/// What a check found.
#[derive(Debug, Clone)]
pub struct Findings {
    /// A run in which two commands ran at once, explained.
    pub overlap: Option<String>,
    /// A run in which a term's token was not above an earlier term's, explained.
    pub regression: Option<String>,
    /// How many distinct states were explored.
    pub states: usize,
    /// Whether some run started a command (the model is not vacuous).
    pub led: bool,
    /// Whether some run handed over to a second term.
    pub handed_over: bool,
}

/// A counterexample as lines a person can follow: real time, each candidate's clock,
/// and what happened.
#[must_use]
pub fn explain(model: &LeaseModel, path: &[(State, Option<Action>)]) -> String {
    let mut out = String::new();
    if let Some((first, _)) = path.first() {
        let rates: Vec<String> = first.cands.iter().enumerate().map(|(i, c)| format!("{} {} units/tick", NAMES[i], c.rate)).collect();
        let _ = writeln!(
            out,
            "lease {} / renew deadline {} / retry {} units; clocks: {}",
            model.timing.lease,
            model.timing.renew_deadline,
            model.timing.retry,
            rates.join(", ")
        );
    }
    for window in path.windows(2) {
        let (before, Some(action)) = &window[0] else { continue };
        let after = &window[1].0;
        let Some(line) = describe(before, action, after) else { continue };
        let running: Vec<&str> = after.cands.iter().enumerate().filter(|(_, c)| c.command).map(|(i, _)| NAMES[i]).collect();
        let _ = writeln!(out, "t={:>2}  {line}   [running: {}]", after.t, if running.is_empty() { "-".into() } else { running.join(", ") });
    }
    out
}

fn describe(before: &State, action: &Action, after: &State) -> Option<String> {
    let name = |i: &u8| NAMES[usize::from(*i)];
    Some(match action {
        Action::Tick => {
            let killed: Vec<&str> =
                (0..after.cands.len()).filter(|&i| before.cands[i].command && !after.cands[i].command).map(|i| NAMES[i]).collect();
            if killed.is_empty() {
                return None;
            }
            format!("the guard of {} stops its command at the term's deadline", killed.join(", "))
        }
        Action::Step(i) => {
            let (b, a) = (&before.cands[usize::from(*i)], &after.cands[usize::from(*i)]);
            match (&b.term, &a.term, &a.request) {
                (Some(_), None, _) => format!("{} sees its deadline passed and steps down", name(i)),
                (Some(_), Some(_), Some(_)) => format!("{} sends a renewal (clock {})", name(i), a.clock),
                (None, _, Some(r)) if r.expected.is_none() => {
                    format!("{} finds no record and sends a claim with token {} (clock {})", name(i), r.token, a.clock)
                }
                (None, _, Some(r)) => format!("{} sends a takeover with token {} (clock {})", name(i), r.token, a.clock),
                (_, _, None) => match (&before.store, a.seen) {
                    (None, _) => format!("{} finds no record: waits", name(i)),
                    (Some(r), _) => format!("{} reads {}'s record (token {}): waits", name(i), NAMES[usize::from(r.holder)], r.token),
                },
            }
        }
        Action::Land(i) => {
            let won = after.cands[usize::from(*i)].request.as_ref().and_then(|r| r.landed) == Some(true);
            format!("{}'s write reaches the store: {}", name(i), if won { "it wins" } else { "it loses" })
        }
        Action::Answer(i) => {
            let (b, a) = (&before.cands[usize::from(*i)], &after.cands[usize::from(*i)]);
            match (&b.term, &a.term) {
                (None, Some((token, deadline))) => {
                    format!("{} hears it won: leads with token {token}, starts its command (deadline {deadline})", name(i))
                }
                (Some((_, before)), Some((_, deadline))) if before == deadline => {
                    format!("{}'s renewal found another's claim: it writes its record back at once", name(i))
                }
                (Some(_), Some((_, deadline))) => format!("{} renewed: deadline {deadline}", name(i)),
                (Some(_), None) => format!("{}'s renewal lost to another holder: it steps down", name(i)),
                (None, None) if a.claimed != b.claimed => format!("{} claimed the lock: it waits a lease before leading", name(i)),
                (None, None) => format!("{} hears its write lost", name(i)),
            }
        }
        Action::Pause(i) => format!("{}'s elector is paused (SIGSTOP); its guard is not", name(i)),
        Action::Resume(i) => format!("{}'s elector runs again", name(i)),
        Action::Cut(i) => format!("{} is cut off from the store", name(i)),
        Action::Heal(i) => format!("{}'s link heals", name(i)),
        Action::Restart(i) => format!("{} crashes (its guard kills the command) and restarts knowing nothing", name(i)),
        Action::Lose => "the store loses the record (DELETE, flush, restore)".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks a mutant: the checker must find the counterexample, shown as a story.
    fn caught(model: LeaseModel, what: &str) -> Findings {
        let found = model.check();
        match found.overlap.as_ref().or(found.regression.as_ref()) {
            Some(story) => println!("{what} ({} states): the checker's counterexample\n{story}", found.states),
            None => panic!("the checker found no counterexample for {what} in {} states", found.states),
        }
        found
    }

    #[test]
    fn the_protocol_as_built_runs_one_command_at_a_time_with_growing_tokens() {
        for (name, model) in [("faults", LeaseModel::small(Mutation::None)), ("slow network", LeaseModel::slow_network(Mutation::None))] {
            assert!(model.timing_rule_holds(), "{name}: {:?}", model.timing);
            let found = model.check();
            println!("{name}: {} states, no counterexample", found.states);
            assert!(found.overlap.is_none(), "{name}: two commands at once:\n{}", found.overlap.unwrap_or_default());
            assert!(found.regression.is_none(), "{name}: a token went back:\n{}", found.regression.unwrap_or_default());
            assert!(found.led && found.handed_over, "{name}: the model is vacuous: no command ran, or no second term started");
        }
    }

    #[test]
    fn without_the_guards_deadline_a_paused_leaders_command_overlaps() {
        assert!(caught(LeaseModel::small(Mutation::NoGuardDeadline), "no guard deadline").overlap.is_some());
    }

    #[test]
    fn a_deadline_counted_from_the_winning_writes_answer_overlaps() {
        assert!(caught(LeaseModel::small(Mutation::DeadlineFromAnswer), "a deadline from the answer").overlap.is_some());
    }

    #[test]
    fn leading_at_once_on_a_lock_found_without_a_record_overlaps() {
        assert!(caught(LeaseModel::small(Mutation::AbsentIsFree), "absent taken at once").overlap.is_some());
    }

    #[test]
    fn a_lease_within_the_renew_deadline_and_the_clock_bound_overlaps() {
        let mut model = LeaseModel::small(Mutation::None);
        model.timing.lease = model.timing.renew_deadline + 1;
        assert!(!model.timing_rule_holds(), "lease {} breaks the rule", model.timing.lease);
        assert!(caught(model, "a lease of renew deadline + 1").overlap.is_some());
    }

    #[test]
    fn tokens_from_the_record_alone_go_back_after_a_loss() {
        assert!(caught(LeaseModel::small(Mutation::TokensFromRecordOnly), "tokens from the record alone").regression.is_some());
    }
}
