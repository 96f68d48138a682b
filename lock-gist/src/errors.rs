//! GitHub's answers mapped into lock-core's error, and its rate limits obeyed.

use crate::GistStore;
use lock_core::{Error, LockName, Result};
use reqwest::{Response, StatusCode, header::HeaderMap};
use serde_json::Value;
use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, Instant, SystemTime},
};

/// The longest backoff after repeated secondary-limit answers without `retry-after`.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

#[derive(Debug, Default)]
struct GateState {
    until: Option<Instant>,
    strikes: u32,
}

/// Holds calls back while GitHub has asked us to wait, so a limited token is not
/// spent (or banned) by retries.
#[derive(Debug, Default)]
pub(crate) struct Gate(Mutex<GateState>);

impl Gate {
    fn state(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `RateLimited` without a request while a wait is in force.
    pub(crate) fn check(&self, store: &GistStore) -> Result<()> {
        match self.state().until {
            Some(until) if Instant::now() < until => {
                Err(Error::RateLimited { store: store.to_string(), retry_after: Some(until - Instant::now()) })
            }
            _ => Ok(()),
        }
    }

    fn block(&self, wait: Duration) {
        self.state().until = Some(Instant::now() + wait);
    }

    /// The exponential wait for a secondary limit that named no time: 60 s, 120 s, … up to an hour.
    fn next_backoff(&self) -> Duration {
        let mut s = self.state();
        let wait = Duration::from_secs(60).saturating_mul(1 << s.strikes.min(6)).min(MAX_BACKOFF);
        s.strikes += 1;
        wait
    }

    fn success(&self) {
        let mut s = self.state();
        s.strikes = 0;
        s.until = None;
    }
}

/// `retry-after` as seconds or as an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// How long until `x-ratelimit-reset`, when `x-ratelimit-remaining` is 0.
pub(crate) fn primary_reset(headers: &HeaderMap) -> Option<Duration> {
    let remaining = headers.get("x-ratelimit-remaining")?.to_str().ok()?.parse::<u64>().ok()?;
    if remaining > 0 {
        return None;
    }
    let reset = headers.get("x-ratelimit-reset")?.to_str().ok()?.parse::<u64>().ok()?;
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    Some(Duration::from_secs(reset.saturating_sub(now).max(1)))
}

/// A failed request: the network, not GitHub.
pub(crate) fn transport(store: &GistStore, e: reqwest::Error) -> Error {
    Error::Unavailable { store: store.to_string(), source: lock_core::error_chain(&e.without_url()).into() }
}

/// Passes a successful answer through; maps every other one, in GitHub's documented order:
/// `retry-after`, else `x-ratelimit-remaining: 0` (wait for the reset), else a secondary
/// limit (wait at least a minute, doubling); a 403 that is none of these is a permission error.
pub(crate) async fn check(store: &GistStore, lock: Option<&LockName>, gate: &Gate, response: Response) -> Result<Response> {
    let status = response.status();
    if status.is_success() {
        gate.success();
        return Ok(response);
    }
    let headers = response.headers().clone();
    let message =
        response.json::<Value>().await.ok().and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string)).unwrap_or_default();
    let text = store.to_string();
    let on = lock.map(|l| format!(" (lock {l:?})")).unwrap_or_default();
    Err(match status {
        StatusCode::UNAUTHORIZED => Error::PermissionDenied {
            store: text,
            detail: format!("{message}: check the token (GITHUB_TOKEN); it may be wrong, expired or revoked"),
        },
        StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS => {
            let limited = if let Some(wait) = retry_after(&headers).or_else(|| primary_reset(&headers)) {
                Some(wait)
            } else if status == StatusCode::TOO_MANY_REQUESTS || message.to_lowercase().contains("rate limit") {
                Some(gate.next_backoff())
            } else {
                None
            };
            match limited {
                Some(wait) => {
                    gate.block(wait);
                    Error::RateLimited { store: text, retry_after: Some(wait) }
                }
                None => Error::PermissionDenied {
                    store: text,
                    detail: format!(
                        "{message}{on}: the token may not write this gist; a classic token needs the gist scope, a fine-grained one \"Gists: write\""
                    ),
                },
            }
        }
        StatusCode::NOT_FOUND => Error::Config(format!(
            "{text}: not found{on}: check the gist id, and that the token can see it (a classic token without the gist scope gets 404)"
        )),
        s if s.is_server_error() => Error::Unavailable { store: text, source: format!("{s}: {message}").into() },
        s => Error::Backend { store: text, source: format!("{s}: {message}{on}").into() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("42"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(42)));
        let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        h.insert("retry-after", HeaderValue::from_str(&at).expect("header"));
        let wait = retry_after(&h).expect("a date parses");
        assert!(wait > Duration::from_secs(110) && wait <= Duration::from_secs(120), "{wait:?}");
        h.insert("retry-after", HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a past date means now");
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn primary_reset_only_when_nothing_remains() {
        let mut h = HeaderMap::new();
        let reset = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_secs() + 600;
        h.insert("x-ratelimit-reset", HeaderValue::from(reset));
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("3"));
        assert_eq!(primary_reset(&h), None);
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        let wait = primary_reset(&h).expect("exhausted");
        assert!(wait > Duration::from_secs(590) && wait <= Duration::from_secs(600), "{wait:?}");
    }

    #[test]
    fn secondary_backoff_starts_at_a_minute_and_doubles_up_to_an_hour() {
        let gate = Gate::default();
        let waits: Vec<u64> = (0..8).map(|_| gate.next_backoff().as_secs()).collect();
        assert_eq!(waits, [60, 120, 240, 480, 960, 1920, 3600, 3600]);
        gate.success();
        assert_eq!(gate.next_backoff(), Duration::from_secs(60), "a success resets the backoff");
    }
}
