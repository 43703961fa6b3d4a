//! How many endpoints the executor applies at once: AIMD over the backend's typed
//! [`Pressure`] signal. The configured concurrency is the ceiling and the start; each
//! `Throttled` look halves the limit (never under 1), each `Healthy` one adds `1 / limit` (about
//! one more endpoint per round of `limit` healthy completions), and `Unknown` changes nothing.
//! Pure: `apply` asks the backend after every endpoint it finishes and admits new endpoints
//! while fewer than [`Aimd::limit`] run.

use crate::backend::Pressure;

#[derive(Clone, Debug, PartialEq)]
pub struct Aimd {
    max: usize,
    current: f64,
}

impl Aimd {
    /// Starts at `max` (at least 1).
    pub fn new(max: usize) -> Aimd {
        let max = max.max(1);
        Aimd {
            max,
            current: max as f64,
        }
    }

    /// Endpoints that may run now: within `1..=max`.
    pub fn limit(&self) -> usize {
        (self.current.floor() as usize).clamp(1, self.max)
    }

    /// One look at the backend's pressure.
    pub fn on(&mut self, pressure: Pressure) {
        self.current = match pressure {
            Pressure::Throttled => (self.current / 2.0).max(1.0),
            Pressure::Healthy => (self.current + 1.0 / self.current).min(self.max as f64),
            Pressure::Unknown => self.current,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_halves_the_limit_down_to_one_and_health_raises_it_back_to_the_configured_max() {
        let mut a = Aimd::new(8);
        assert_eq!(a.limit(), 8);
        let mut seen = Vec::new();
        for _ in 0..4 {
            a.on(Pressure::Throttled);
            seen.push(a.limit());
        }
        assert_eq!(seen, [4, 2, 1, 1]);
        a.on(Pressure::Unknown);
        assert_eq!(a.limit(), 1);
        // 1 → 2 after one healthy look (+1/1), → 3 after three more (+1/2, +1/2.5, +1/2.9):
        // additive, never past 8.
        let mut healthy = Vec::new();
        for _ in 0..40 {
            a.on(Pressure::Healthy);
            healthy.push(a.limit());
        }
        assert_eq!(healthy[..4], [2, 2, 2, 3]);
        assert_eq!(*healthy.last().unwrap(), 8);
        assert!(healthy.windows(2).all(|w| w[1] >= w[0] && w[1] - w[0] <= 1));
    }

    #[test]
    fn a_limit_of_zero_is_one() {
        let a = Aimd::new(0);
        assert_eq!(a.limit(), 1);
    }
}
