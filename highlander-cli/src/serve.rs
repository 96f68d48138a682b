//! `--metrics ADDR` (Prometheus text at `/metrics`) and `--health ADDR` (`/healthz`);
//! for `elect`, `/leader` and `/watch` too.
//!
//! A deliberately small HTTP/1 server: one request per connection (`Connection:
//! close`), a request head that must arrive within [`REQUEST_TIMEOUT`], at most
//! [`MAX_CONNECTIONS`] connections at once. A flood of idle or slow connections is cut
//! off after the timeout instead of holding file descriptors, so a liveness probe keeps
//! being answered; the open-file limit is raised at start ([`raise_open_file_limit`]).

use highlander::{ElectionState, Health, Phase};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
};
use tracing::{info, warn};

/// The most connections served at once; a connection beyond it is closed at once.
const MAX_CONNECTIONS: usize = 4096;
/// A client must send its whole request head within this, and read the answer within it
/// too (a `/watch` answer may wait for a change first).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest request head read.
const MAX_HEAD: usize = 8 * 1024;

/// Installs the Prometheus recorder: every metric the elector and `run` emit from now
/// on. Its upkeep (draining histogram samples into their summaries) runs every few
/// seconds so a long-running candidate's memory stays flat.
pub(crate) fn install_recorder() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new().install_recorder().map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Raises this process's soft limit on open files to its hard limit (as Go's runtime
/// does), so that a flood of connections to `--health` cannot exhaust it at the common
/// default of 1,024. Returns the soft limit it found, for the command to get back.
pub(crate) fn raise_open_file_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft >= hard {
        return None;
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => Some(soft),
        Err(e) => {
            warn!(soft, hard, error = %e, "cannot raise the open-file limit; a flood of connections to --health or --metrics may exhaust it");
            None
        }
    }
}

/// What a listener answers.
#[derive(Clone, Default)]
pub(crate) struct Routes {
    pub(crate) metrics: Option<PrometheusHandle>,
    pub(crate) health: Option<(Health, watch::Receiver<ElectionState>)>,
    pub(crate) election: Option<crate::elect::Election>,
}

impl Routes {
    /// How long a request may hold its connection, head and answer included.
    fn bound(&self) -> Duration {
        if self.election.is_some() { REQUEST_TIMEOUT * 2 + crate::elect::WATCH_MAX } else { REQUEST_TIMEOUT }
    }
}

/// Binds the listeners now (a bad address fails the command at once) and serves them
/// in the background. The same address for both serves both paths.
pub(crate) async fn start(
    metrics: Option<SocketAddr>,
    health: Option<SocketAddr>,
    recorder: Option<PrometheusHandle>,
    check: Health,
    state: watch::Receiver<ElectionState>,
) -> Result<(), String> {
    let health_routes = || Routes { health: Some((check.clone(), state.clone())), ..Routes::default() };
    let mut servers: Vec<(SocketAddr, Routes, &str)> = Vec::new();
    match (metrics, recorder, health) {
        (Some(m), Some(handle), Some(h)) if m == h && m.port() != 0 => {
            servers.push((m, Routes { metrics: Some(handle), ..health_routes() }, "/metrics and /healthz"));
        }
        (m, handle, h) => {
            if let (Some(m), Some(handle)) = (m, handle) {
                servers.push((m, Routes { metrics: Some(handle), ..Routes::default() }, "/metrics"));
            }
            if let Some(h) = h {
                servers.push((h, health_routes(), "/healthz"));
            }
        }
    }
    for (addr, routes, paths) in servers {
        bind(addr, routes, paths).await?;
    }
    Ok(())
}

/// Binds `addr` now and serves `routes` there in the background; the address bound.
pub(crate) async fn bind(addr: SocketAddr, routes: Routes, paths: &'static str) -> Result<SocketAddr, String> {
    let listener = TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr} for {paths}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| format!("cannot listen on {addr} for {paths}: {e}"))?;
    info!(address = %bound, paths, "serving {paths} on http://{bound}");
    tokio::spawn(serve(listener, routes, bound, paths));
    Ok(bound)
}

async fn serve(listener: TcpListener, routes: Routes, bound: SocketAddr, paths: &'static str) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut failing: Option<u64> = None;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                if let Some(times) = failing.take() {
                    info!(address = %bound, paths, failed = times, "accepting connections again");
                }
                // Over the bound: closed at once, so the backlog keeps moving.
                let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
                let routes = routes.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(routes.bound(), answer(stream, &routes)).await;
                    drop(slot);
                });
            }
            Err(e) => {
                // Out of file descriptors, say: the connections in hand close within the
                // request timeout. Said once when it starts and once when it ends.
                match &mut failing {
                    Some(times) => *times += 1,
                    None => {
                        warn!(address = %bound, paths, error = %e, "cannot accept connections (trying again every 10 ms)");
                        failing = Some(1);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Reads one request head and writes one answer.
async fn answer(mut stream: TcpStream, routes: &Routes) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let read_head = async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            if head.len() > MAX_HEAD {
                return Ok(false);
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            head.extend_from_slice(&chunk[..n]);
        }
        Ok::<bool, std::io::Error>(true)
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, read_head).await {
        Err(_) | Ok(Err(_)) => return Ok(()),
        Ok(Ok(false)) => return respond(&mut stream, 431, "text/plain; charset=utf-8", "request head too large\n").await,
        Ok(Ok(true)) => {}
    }
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if method != "GET" {
        return respond(&mut stream, 405, "text/plain; charset=utf-8", "only GET\n").await;
    }
    let body = match (path, &routes.metrics, &routes.health, &routes.election) {
        ("/metrics", Some(handle), _, _) => (200, "text/plain; version=0.0.4", handle.render()),
        ("/healthz", _, Some((check, state)), _) => {
            let (status, body) = healthz(check, state);
            (status, "text/plain; charset=utf-8", body)
        }
        ("/leader" | "/", _, _, Some(election)) => (200, "application/json", election.now()),
        ("/watch", _, _, Some(election)) => match election.watch(query).await {
            Ok(body) => (200, "application/json", body),
            Err(why) => (400, "text/plain; charset=utf-8", format!("{why}\n")),
        },
        _ => (404, "text/plain; charset=utf-8", "not found\n".to_string()),
    };
    let (status, content_type, body) = body;
    tokio::time::timeout(REQUEST_TIMEOUT, respond(&mut stream, status, content_type, &body))
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

async fn respond(stream: &mut TcpStream, status: u16, content_type: &str, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// 200 while the elector is sound (a standby, or a leader within its lease), 503 when
/// it claims to lead past its lease's local expiry: its renewals are stuck.
fn healthz(check: &Health, state: &watch::Receiver<ElectionState>) -> (u16, String) {
    let state = state.borrow().clone();
    match check.check() {
        Err(unhealthy) => (503, format!("unhealthy: {unhealthy}\n")),
        Ok(()) => {
            let role = match (state.phase, state.fencing_token) {
                (Phase::Leading, Some(token)) => format!("leading (fencing token {token})"),
                (Phase::Stopped, _) => "stopped".to_string(),
                _ => format!(
                    "standby (leader: {})",
                    state.leader.as_deref().map_or_else(|| "none".to_string(), |l| highlander::Escaped(l).to_string())
                ),
            };
            (200, format!("ok: {role}\n"))
        }
    }
}
