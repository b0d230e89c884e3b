//! How often and how soon a lost room tries to come back.
//!
//! The delay grows quadratically as in LiveKit's RTCEngine (100 ms, 600 ms,
//! 2.1 s, ...) up to a cap, so the first retry is almost immediate; attempts stop
//! at a count (the ESP32 SDK's `CONFIG_LK_MAX_RETRIES`) or after a total time.
//! Pure arithmetic: the caller measures `elapsed` and keeps the attempt count.

use core::time::Duration;

/// Reconnection policy: how many attempts and how long to wait before each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts made before giving up (0: never retry).
    pub max_attempts: u32,
    /// The longest wait before one attempt.
    pub max_delay: Duration,
    /// No attempt starts this long after the loss.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // The ESP32 SDK's CONFIG_LK_MAX_RETRIES default; the RTCEngine seed's caps.
        Self {
            max_attempts: 7,
            max_delay: Duration::from_secs(5),
            give_up_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `n` (0-based): `100 + n * n * 500` ms, capped at
    /// `max_delay`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let n = u64::from(attempt);
        let ms = 100u64.saturating_add(n.saturating_mul(n).saturating_mul(500));
        Duration::from_millis(ms).min(self.max_delay)
    }

    /// `Some(delay)` when attempt `n` may go ahead after `elapsed` since the loss.
    pub fn next(&self, attempt: u32, elapsed: Duration) -> Option<Duration> {
        if attempt >= self.max_attempts || elapsed >= self.give_up_after {
            return None;
        }
        Some(self.delay(attempt))
    }
}

#[cfg(any(test, feature = "selftest"))]
pub(crate) mod tests {
    use super::*;

    #[cfg_attr(test, test)]
    fn retry_delay_grows_and_is_capped() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(0), Duration::from_millis(100));
        assert_eq!(p.delay(1), Duration::from_millis(600));
        assert_eq!(p.delay(10), Duration::from_secs(5));
        assert!(p.next(p.max_attempts, Duration::ZERO).is_none());
        assert!(p.next(0, Duration::from_secs(61)).is_none());
        assert_eq!(p.next(2, Duration::ZERO), Some(Duration::from_millis(2100)));
    }

    #[cfg_attr(test, test)]
    fn delays_never_shrink_never_pass_the_cap_and_never_overflow() {
        let p = RetryPolicy {
            max_attempts: u32::MAX,
            max_delay: Duration::MAX,
            give_up_after: Duration::MAX,
        };
        let mut last = Duration::ZERO;
        for n in (0..100).chain([65_535, 65_536, u32::MAX / 2, u32::MAX]) {
            let d = p.delay(n);
            assert!(d >= last, "attempt {n}: {d:?} < {last:?}");
            last = d;
        }
        // n * n * 500 saturates instead of wrapping.
        assert_eq!(p.delay(u32::MAX), Duration::from_millis(u64::MAX));
        let capped = RetryPolicy::default();
        for n in [3, 4, 100, u32::MAX] {
            assert!(capped.delay(n) <= capped.max_delay);
        }
        // A cap below the first delay holds too.
        let tight = RetryPolicy {
            max_delay: Duration::from_millis(50),
            ..capped
        };
        assert_eq!(tight.delay(0), Duration::from_millis(50));
    }

    #[cfg_attr(test, test)]
    fn limits_are_exclusive_bounds() {
        let p = RetryPolicy::default();
        // The last allowed attempt and the last allowed instant still go ahead.
        assert!(p.next(p.max_attempts - 1, Duration::ZERO).is_some());
        let just_before = p.give_up_after - Duration::from_millis(1);
        assert!(p.next(0, just_before).is_some());
        assert!(p.next(0, p.give_up_after).is_none());
        let never = RetryPolicy {
            max_attempts: 0,
            ..p
        };
        assert!(never.next(0, Duration::ZERO).is_none());
    }

    /// Every test above, for the bare-metal runner (`selftest` feature).
    pub(crate) const TESTS: &[(&str, fn())] = &[
        (
            "retry_delay_grows_and_is_capped",
            retry_delay_grows_and_is_capped,
        ),
        (
            "delays_never_shrink_never_pass_the_cap_and_never_overflow",
            delays_never_shrink_never_pass_the_cap_and_never_overflow,
        ),
        ("limits_are_exclusive_bounds", limits_are_exclusive_bounds),
    ];
}
