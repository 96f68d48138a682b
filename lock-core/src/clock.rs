//! The clocks a leader trusts: the runtime's monotonic clock and, beside it, one that
//! keeps counting while the machine is suspended.
//!
//! Tokio's `Instant` follows `CLOCK_MONOTONIC`, which stops while a machine or VM is
//! suspended: a leader that resumes after a suspend would think less time had passed
//! than its standbys (whose clocks ran) and keep acting on a lease they already took.
//! `CLOCK_BOOTTIME` counts the suspended time too. Every deadline here is a [`Stamp`]
//! on both clocks and passes as soon as either clock says so: the monotonic side keeps
//! timing logic testable on Tokio's paused clock, the boot-time side keeps it true
//! across a suspend, and `CLOCK_BOOTTIME` is system-wide, so another process (the
//! `highlander run` guard) can enforce the same deadline on its own.

use std::time::Duration;
use tokio::time::Instant;

/// Time since boot on `CLOCK_BOOTTIME` (Linux); elsewhere the monotonic clock since
/// this process first asked.
#[must_use]
pub fn boottime() -> Duration {
    #[cfg(target_os = "linux")]
    {
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        if let (Ok(secs), Ok(nanos)) = (u64::try_from(ts.tv_sec), u32::try_from(ts.tv_nsec)) {
            return Duration::new(secs, nanos);
        }
    }
    #[cfg(not(target_os = "linux"))]
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    #[cfg(not(target_os = "linux"))]
    return START.get_or_init(std::time::Instant::now).elapsed();
    #[cfg(target_os = "linux")]
    Duration::ZERO
}

/// One moment on both clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// On the runtime's clock (Tokio's, which tests may pause).
    pub instant: Instant,
    /// On `CLOCK_BOOTTIME` (see [`boottime`]).
    pub boottime: Duration,
}

impl Stamp {
    /// Now.
    #[must_use]
    pub fn now() -> Self {
        Self { instant: Instant::now(), boottime: boottime() }
    }

    /// `d` later, saturating far in the future instead of overflowing.
    #[must_use]
    pub fn after(self, d: Duration) -> Self {
        Self { instant: add(self.instant, d), boottime: self.boottime.saturating_add(d) }
    }

    /// `d` earlier, never before boot.
    #[must_use]
    pub fn before(self, d: Duration) -> Self {
        Self { instant: self.instant.checked_sub(d).unwrap_or(self.instant), boottime: self.boottime.saturating_sub(d) }
    }

    /// Whether this moment has come, by either clock.
    #[must_use]
    pub fn has_passed(self) -> bool {
        Instant::now() >= self.instant || boottime() >= self.boottime
    }

    /// How long until this moment, by the clock that is further along (zero once passed).
    #[must_use]
    pub fn remaining(self) -> Duration {
        let by_runtime = self.instant.saturating_duration_since(Instant::now());
        let by_boot = self.boottime.saturating_sub(boottime());
        by_runtime.min(by_boot)
    }

    /// How long ago this moment passed, by the clock that is further along (zero if not yet).
    #[must_use]
    pub fn overdue(self) -> Duration {
        let by_runtime = Instant::now().saturating_duration_since(self.instant);
        let by_boot = boottime().saturating_sub(self.boottime);
        by_runtime.max(by_boot)
    }
}

/// How far ahead "never" is: far enough for any lease, near enough not to overflow.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `at + d`, saturating at a century ahead instead of panicking on overflow.
#[must_use]
pub fn add(at: Instant, d: Duration) -> Instant {
    at.checked_add(d.min(FAR)).or_else(|| at.checked_add(Duration::from_secs(3600))).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boottime_moves_forward() {
        let a = boottime();
        std::thread::sleep(Duration::from_millis(5));
        assert!(boottime() >= a + Duration::from_millis(5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stamp_passes_by_the_runtime_clock_or_by_boot_time() {
        let deadline = Stamp::now().after(Duration::from_secs(10));
        assert!(!deadline.has_passed());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(deadline.has_passed(), "the paused runtime clock reached it");
        assert_eq!(deadline.overdue(), Duration::ZERO.max(Instant::now() - deadline.instant));

        // Boot time ran on (a suspend the monotonic clock did not see).
        let mut suspended = Stamp::now().after(Duration::from_secs(60));
        suspended.boottime = boottime().saturating_sub(Duration::from_secs(1));
        assert!(suspended.has_passed());
        assert_eq!(suspended.remaining(), Duration::ZERO);
        assert!(suspended.overdue() >= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn huge_durations_saturate_instead_of_panicking() {
        let now = Instant::now();
        let far = add(now, Duration::MAX);
        assert!(far > now + Duration::from_secs(365 * 24 * 3600));
        let s = Stamp::now().after(Duration::MAX);
        assert!(!s.has_passed());
        assert_eq!(Stamp::now().before(Duration::MAX).boottime, Duration::ZERO);
    }
}
