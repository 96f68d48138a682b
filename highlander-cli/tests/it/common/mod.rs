//! What the tests of `highlander run` share: the ticking command, its log, and the
//! checks on it. Every command appends `TOKEN IDENTITY KIND NANOS` lines to a shared log;
//! the log is the evidence that a command never ran in two places at once.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// A command that records every 50 ms while it runs; on SIGTERM it records that and exits 7.
pub(crate) const TICKER: &str = r#"trap 'echo "$HIGHLANDER_FENCING_TOKEN $HIGHLANDER_IDENTITY stop $(date +%s%N)" >> "$TICK_LOG"; exit 7' TERM
while :; do echo "$HIGHLANDER_FENCING_TOKEN $HIGHLANDER_IDENTITY tick $(date +%s%N)" >> "$TICK_LOG"; sleep 0.05; done"#;

pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_nanos())
}

pub(crate) fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_nanos()
}

/// One line of the tick log.
#[derive(Debug, Clone)]
pub(crate) struct Tick {
    pub(crate) token: u64,
    pub(crate) identity: String,
    pub(crate) kind: String,
    pub(crate) at_ns: u128,
}

pub(crate) fn ticks(log: &Path) -> Vec<Tick> {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(log) {
        f.read_to_string(&mut text).expect("read the tick log");
    }
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some(Tick {
                token: f.next()?.parse().ok()?,
                identity: f.next()?.into(),
                kind: f.next()?.into(),
                at_ns: f.next()?.parse().ok()?,
            })
        })
        .collect()
}

/// Waits until a tick of `identity` newer than `after_ns` is in the log; returns its time.
pub(crate) fn first_tick(log: &Path, identity: &str, after_ns: u128, within: Duration) -> u128 {
    let until = Instant::now() + within;
    loop {
        if let Some(t) = ticks(log).iter().filter(|t| t.identity == identity && t.at_ns > after_ns).map(|t| t.at_ns).min() {
            return t;
        }
        assert!(Instant::now() < until, "{identity} never ran its command within {within:?}; log: {:?}", ticks(log));
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The commands never overlapped: each fencing token belongs to one identity, and every
/// line of a token comes after every line of the tokens before it. Returns the terms.
pub(crate) fn assert_terms_never_overlap(log: &Path) -> Vec<(u64, String, u128, u128)> {
    let mut terms: BTreeMap<u64, (String, u128, u128)> = BTreeMap::new();
    for t in ticks(log) {
        let term = terms.entry(t.token).or_insert_with(|| (t.identity.clone(), t.at_ns, t.at_ns));
        assert_eq!(term.0, t.identity, "fencing token {} was used by two identities", t.token);
        term.1 = term.1.min(t.at_ns);
        term.2 = term.2.max(t.at_ns);
    }
    let terms: Vec<(u64, String, u128, u128)> = terms.into_iter().map(|(k, (id, a, b))| (k, id, a, b)).collect();
    for pair in terms.windows(2) {
        let ((t1, id1, _, end1), (t2, id2, start2, _)) = (&pair[0], &pair[1]);
        assert!(end1 < start2, "{id1} (token {t1}) still ran {} ms after {id2} (token {t2}) started", (end1 - start2) / 1_000_000);
    }
    terms
}

pub(crate) fn ms(ns: u128) -> f64 {
    ns as f64 / 1e6
}

pub(crate) fn tempdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(&format!("highlander-{name}")));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The last tick of `identity` (any kind), if any.
pub(crate) fn last_tick(log: &Path, identity: &str) -> Option<u128> {
    ticks(log).iter().filter(|t| t.identity == identity).map(|t| t.at_ns).max()
}

/// `GET path` from an HTTP server at `addr` (waiting up to 10 s for it to listen):
/// the status and the body.
pub(crate) fn http_get(addr: &str, path: &str) -> (u16, String) {
    assert!(addr.starts_with("127.0.0.1:"), "tests talk to 127.0.0.1 only: {addr}");
    let until = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match std::net::TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < until, "nothing listens on {addr}: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status");
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// The lines a child writes to `pipe` (its stderr, say), read on a thread of their own.
pub(crate) fn lines_of(pipe: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}
