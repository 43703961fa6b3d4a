//! How many endpoints the executor applies at once: AIMD over the backend's typed
//! [`Pressure`] signal. The configured concurrency is the ceiling and the start; a `Throttled`
//! look halves the limit (never under 1), then the next `limit` looks cannot halve it again (one
//! decrease per round, as TCP does once per window: the endpoints already running were admitted
//! under the old limit and report the same strain); each `Healthy` look adds `1 / limit` (about
//! one more endpoint per round of `limit` healthy completions), and `Unknown` changes nothing.
//! Pure: `apply` asks the backend after every endpoint it finishes and admits new endpoints
//! while fewer than [`Aimd::limit`] run. `Throttled` means the platform refused a request (a
//! 429): a backend that spaces its own requests under a token bucket (the Azure ML pacer) reports
//! that as `Healthy`, because fewer endpoints at once would only stretch each one's serial chain.

use crate::backend::Pressure;

#[derive(Clone, Debug, PartialEq)]
pub struct Aimd {
    max: usize,
    current: f64,
    /// Looks left before another decrease may happen.
    cooldown: usize,
}

impl Aimd {
    /// Starts at `max` (at least 1).
    pub fn new(max: usize) -> Aimd {
        let max = max.max(1);
        Aimd {
            max,
            current: max as f64,
            cooldown: 0,
        }
    }

    /// Endpoints that may run now: within `1..=max`.
    pub fn limit(&self) -> usize {
        (self.current.floor() as usize).clamp(1, self.max)
    }

    /// One look at the backend's pressure.
    pub fn on(&mut self, pressure: Pressure) {
        let cooling = self.cooldown > 0;
        self.cooldown = self.cooldown.saturating_sub(1);
        match pressure {
            Pressure::Throttled if !cooling => {
                self.current = (self.current / 2.0).max(1.0);
                self.cooldown = self.limit();
            }
            Pressure::Throttled | Pressure::Unknown => {}
            Pressure::Healthy => {
                self.current = (self.current + 1.0 / self.current).min(self.max as f64);
            }
        }
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
        for _ in 0..12 {
            a.on(Pressure::Throttled);
            seen.push(a.limit());
        }
        // Halved, then `limit` looks of cooldown before the next halving.
        assert_eq!(seen, [4, 4, 4, 4, 4, 2, 2, 2, 1, 1, 1, 1]);
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

    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::Duration;

    use crate::apply::{ApplyOptions, apply};
    use crate::backend::{Backend, BackendError, StepDetail};
    use crate::model::LiveState;
    use crate::plan::{Action, Plan, Step};
    use crate::rollout::RolloutRecord;
    use tokio::time::Instant;
    use tokio_util::sync::CancellationToken;

    /// Every step takes 1 s; the first `throttled` looks at its pressure say `Throttled`, the
    /// rest `Healthy`. Records how many steps started at each whole second.
    struct Pressured {
        start: Instant,
        throttled: Mutex<u32>,
        started: Mutex<BTreeMap<u64, usize>>,
    }

    #[async_trait::async_trait]
    impl Backend for Pressured {
        fn name(&self) -> &'static str {
            "pressured"
        }
        async fn read_live(&self) -> Result<LiveState, BackendError> {
            Ok(Default::default())
        }
        async fn execute(&self, _: &Step) -> Result<StepDetail, BackendError> {
            let second = self.start.elapsed().as_secs();
            *self.started.lock().unwrap().entry(second).or_default() += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(StepDetail {
                detail: "done".into(),
            })
        }
        fn pressure(&self) -> Pressure {
            let mut left = self.throttled.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                Pressure::Throttled
            } else {
                Pressure::Healthy
            }
        }
        async fn write_rollout(
            &self,
            _: &str,
            _: Option<&RolloutRecord>,
        ) -> Result<(), BackendError> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn apply_admits_fewer_endpoints_after_the_backend_reports_throttling() {
        let backend = Pressured {
            start: Instant::now(),
            throttled: Mutex::new(3),
            started: Mutex::default(),
        };
        let plan = Plan {
            steps: (0..20)
                .map(|i| Step::new(format!("ep-{i:02}"), Action::DeleteEndpoint, "t".into()))
                .collect(),
            notes: vec![],
            pending: vec![],
            rollouts: vec![],
        };
        let opts = ApplyOptions {
            concurrency: 8,
            dry_run: false,
        };
        let report = apply(&plan, &backend, &opts, &CancellationToken::new()).await;
        assert_eq!(report.results.len(), 20);
        let started = backend.started.into_inner().unwrap();
        // 8 at once (the configured max). The 8 ends at 1 s say throttled (8 → 4, then a
        // cooldown of 4 looks swallows the next two), then healthy five times (4 → 4.25 → 4.49
        // → 4.71 → 4.92 → 5.12): 5 start at 1 s, where a fixed limit would start 8 again.
        assert_eq!(started.get(&0), Some(&8), "{started:?}");
        assert_eq!(started.get(&1), Some(&5), "{started:?}");
        assert_eq!(started.values().sum::<usize>(), 20);
    }

    #[test]
    fn a_limit_of_zero_is_one() {
        let a = Aimd::new(0);
        assert_eq!(a.limit(), 1);
    }
}
