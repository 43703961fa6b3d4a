//! Retry timing: per-environment exponential backoff and the poll interval's jitter.

use std::time::Duration;

/// Exponential backoff: `base`, doubling per consecutive failure, capped at `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    /// 2 s doubling to 5 min.
    fn default() -> Backoff {
        Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// Delay after `failures` consecutive failures (1 = first failure). Zero failures = no delay.
    pub fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(failures - 1).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// `interval` scaled by a factor in `[1 - spread, 1 + spread]`, picked by `unit` in `[0, 1)`.
/// Spreads ticks of many agents so they do not fetch in lockstep.
pub fn jitter(interval: Duration, spread: f64, unit: f64) -> Duration {
    let unit = unit.clamp(0.0, 1.0);
    let factor = 1.0 - spread + 2.0 * spread * unit;
    interval.mul_f64(factor.max(0.0))
}

/// `interval` ±10%, with a random draw.
pub fn jittered(interval: Duration) -> Duration {
    jitter(interval, 0.1, rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_two_seconds_up_to_five_minutes() {
        let b = Backoff::default();
        let secs: Vec<u64> = (0..=10).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(secs, [0, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let i = Duration::from_secs(60);
        assert_eq!(jitter(i, 0.1, 0.0), Duration::from_secs(54));
        assert_eq!(jitter(i, 0.1, 0.5), Duration::from_secs(60));
        assert!(jitter(i, 0.1, 0.999_999) <= Duration::from_secs(66));
        for _ in 0..1000 {
            let d = jittered(i);
            assert!(
                d >= Duration::from_secs(54) && d <= Duration::from_secs(66),
                "{d:?}"
            );
        }
    }
}
