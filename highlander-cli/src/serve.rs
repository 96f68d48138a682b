//! `--metrics ADDR` (Prometheus text at `/metrics`) and `--health ADDR` (`/healthz`).

use axum::{Router, http::StatusCode, routing::get};
use highlander::{ElectionState, Health, Phase};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use tokio::sync::watch;
use tracing::info;

/// Installs the Prometheus recorder: every metric the elector and `run` emit from now
/// on. Its upkeep (draining histogram samples into their summaries) runs every few
/// seconds so a long-running candidate's memory stays flat.
pub(crate) fn install_recorder() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new().install_recorder().map_err(|e| format!("cannot install the metrics recorder: {e}"))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
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
    let metrics_router = |handle: PrometheusHandle| Router::new().route("/metrics", get(move || std::future::ready(handle.render())));
    let health_router = || {
        let (check, state) = (check.clone(), state.clone());
        Router::new().route("/healthz", get(move || std::future::ready(healthz(&check, &state))))
    };
    let mut servers: Vec<(SocketAddr, Router, &str)> = Vec::new();
    match (metrics, recorder, health) {
        (Some(m), Some(handle), Some(h)) if m == h && m.port() != 0 => {
            servers.push((m, metrics_router(handle).merge(health_router()), "/metrics and /healthz"))
        }
        (m, handle, h) => {
            if let (Some(m), Some(handle)) = (m, handle) {
                servers.push((m, metrics_router(handle), "/metrics"));
            }
            if let Some(h) = h {
                servers.push((h, health_router(), "/healthz"));
            }
        }
    }
    for (addr, router, paths) in servers {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr} for {paths}: {e}"))?;
        let bound = listener.local_addr().map_err(|e| format!("cannot listen on {addr} for {paths}: {e}"))?;
        info!(address = %bound, paths, "serving {paths} on http://{bound}");
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!(address = %bound, error = %e, "the {paths} server stopped");
            }
        });
    }
    Ok(())
}

/// 200 while the elector is sound (a standby, or a leader within its lease), 503 when
/// it claims to lead past its lease's local expiry: its renewals are stuck.
fn healthz(check: &Health, state: &watch::Receiver<ElectionState>) -> (StatusCode, String) {
    let state = state.borrow().clone();
    match check.check() {
        Err(unhealthy) => (StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: {unhealthy}\n")),
        Ok(()) => {
            let role = match (state.phase, state.fencing_token) {
                (Phase::Leading, Some(token)) => format!("leading (fencing token {token})"),
                (Phase::Stopped, _) => "stopped".to_string(),
                _ => format!(
                    "standby (leader: {})",
                    state.leader.as_deref().map_or_else(|| "none".to_string(), |l| highlander::Escaped(l).to_string())
                ),
            };
            (StatusCode::OK, format!("ok: {role}\n"))
        }
    }
}
