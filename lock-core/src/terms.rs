//! A log of leadership terms as each leader's own work saw them (on tokio's clock, so a
//! paused test clock orders them too), and the two checks a
//! test of an election makes on it: no two terms overlap, and fencing tokens grow.
//!
//! The same rules serve lock-core's tests, the conformance suite, the failover experiments
//! and the simulation, whatever they measure time in (`Instant`, or milliseconds of a
//! simulated clock).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use lock_core::{LeaderElector, LockName, MemoryStore, terms::TermLog};
//! use tokio_util::sync::CancellationToken;
//!
//! let log = TermLog::default();
//! let work = log.clone();
//! let elector = LeaderElector::builder(MemoryStore::new(), LockName::new("demo").unwrap(), "a")
//!     .on_started_leading(move |l| {
//!         let work = work.clone();
//!         async move { work.serve(l).await }
//!     })
//!     .build()
//!     .unwrap();
//! let mut state = elector.subscribe();
//! let stop = CancellationToken::new();
//! let task = elector.spawn(stop.clone());
//! state.wait_for(|s| s.is_leader()).await.unwrap();
//! stop.cancel();
//! task.await.unwrap();
//! let terms = log.terms();
//! assert_eq!(terms.len(), 1);
//! assert!(lock_core::terms::overlaps(&terms).is_empty());
//! # }
//! ```

use std::sync::{Arc, Mutex, PoisonError};

use tokio::time::Instant;

use crate::elector::Leadership;

/// One leadership term: who held it, with which token, from when until when (`None`
/// while it lasts, or if its holder vanished without saying).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term<T> {
    /// The holder's identity.
    pub who: String,
    /// The term's fencing token.
    pub token: u64,
    /// When the holder's work started.
    pub start: T,
    /// When the holder's work saw the term end.
    pub end: Option<T>,
}

/// Pairs of terms that overlapped in time: `a` started first and had not ended when `b`
/// started. A term with no end overlaps every term that started after it.
#[must_use]
pub fn overlaps<T: Ord + Copy>(terms: &[Term<T>]) -> Vec<(Term<T>, Term<T>)> {
    let sorted = by_start(terms);
    let mut found = Vec::new();
    for (i, a) in sorted.iter().enumerate() {
        for b in &sorted[i + 1..] {
            if a.end.is_none_or(|end| end > b.start) {
                found.push(((*a).clone(), (*b).clone()));
            }
        }
    }
    found
}

/// Pairs of terms in which the later one's token is not above the earlier one's.
#[must_use]
pub fn token_regressions<T: Ord + Copy>(terms: &[Term<T>]) -> Vec<(Term<T>, Term<T>)> {
    let sorted = by_start(terms);
    sorted.windows(2).filter(|w| w[1].token <= w[0].token).map(|w| (w[0].clone(), w[1].clone())).collect()
}

fn by_start<T: Ord + Copy>(terms: &[Term<T>]) -> Vec<&Term<T>> {
    let mut sorted: Vec<&Term<T>> = terms.iter().collect();
    sorted.sort_by_key(|t| t.start);
    sorted
}

/// A shared, growing log of terms in real time. Clones share the log.
#[derive(Debug, Clone, Default)]
pub struct TermLog {
    terms: Arc<Mutex<Vec<Term<Instant>>>>,
}

impl TermLog {
    /// Notes a term that starts now; it ends when the returned guard is dropped.
    #[must_use = "the term ends when the guard is dropped"]
    pub fn begin(&self, who: &str, token: u64) -> TermEnd {
        let mut terms = self.terms.lock().unwrap_or_else(PoisonError::into_inner);
        terms.push(Term { who: who.to_string(), token, start: Instant::now(), end: None });
        TermEnd { log: self.clone(), index: terms.len() - 1 }
    }

    /// A leader's work for an `on_started_leading` callback: notes the term and holds it
    /// until leadership ends (or the task is dropped).
    pub async fn serve(&self, leadership: Leadership) {
        let _term = self.begin(leadership.identity(), leadership.fencing_token().get());
        leadership.lost().await;
    }

    /// The terms so far.
    #[must_use]
    pub fn terms(&self) -> Vec<Term<Instant>> {
        self.terms.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Ends its term when dropped.
#[derive(Debug)]
pub struct TermEnd {
    log: TermLog,
    index: usize,
}

impl Drop for TermEnd {
    fn drop(&mut self) {
        let mut terms = self.log.terms.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(term) = terms.get_mut(self.index) {
            term.end.get_or_insert_with(Instant::now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(who: &str, token: u64, start: u64, end: Option<u64>) -> Term<u64> {
        Term { who: who.into(), token, start, end }
    }

    #[test]
    fn touching_terms_do_not_overlap_and_crossing_ones_do() {
        let touching = [term("a", 1, 0, Some(10)), term("b", 2, 10, Some(20))];
        assert!(overlaps(&touching).is_empty());
        let crossing = [term("b", 2, 9, Some(20)), term("a", 1, 0, Some(10))];
        let found = overlaps(&crossing);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].0.who.as_str(), found[0].1.who.as_str()), ("a", "b"));
    }

    #[test]
    fn an_open_term_overlaps_every_later_one() {
        let terms = [term("a", 1, 0, None), term("b", 2, 50, Some(60)), term("c", 3, 70, None)];
        let pairs: Vec<(String, String)> = overlaps(&terms).into_iter().map(|(x, y)| (x.who, y.who)).collect();
        assert_eq!(pairs, [("a".to_string(), "b".to_string()), ("a".to_string(), "c".to_string())]);
    }

    #[test]
    fn tokens_must_grow_in_order_of_start() {
        assert!(token_regressions(&[term("a", 1, 0, Some(1)), term("b", 2, 1, None)]).is_empty());
        let back = token_regressions(&[term("a", 10, 0, Some(1)), term("b", 1, 1, None)]);
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].1.token, 1);
        assert_eq!(token_regressions(&[term("a", 3, 0, Some(1)), term("b", 3, 2, None)]).len(), 1);
    }

    #[test]
    fn a_dropped_guard_ends_its_term_once() {
        let log = TermLog::default();
        let guard = log.begin("a", 7);
        assert_eq!(log.terms()[0].end, None);
        drop(guard);
        let ended = log.terms()[0].end.expect("ended");
        assert!(ended >= log.terms()[0].start);
        assert_eq!(log.terms()[0].token, 7);
    }
}
