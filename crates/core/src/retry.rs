//! The one retry helper: a pure [`RetryPolicy`] (exponential backoff with full jitter, a cap on
//! attempts and on elapsed time, the server's `Retry-After` honoured up to a cap) and one async
//! [`retry`] that runs an operation under it. It waits with tokio time, so tests run it under
//! paused time.
//!
//! Users: the ARM client's requests, the ARM long-running-operation poller (with a jitter-free
//! policy: each "still running" answer is a retry that carries the platform's `Retry-After`), and
//! both pre-traffic test gates' data-plane requests. What is worth retrying is the caller's call
//! (`classify`); the policy only decides when and how often.
//!
//! A server-requested wait is decided here and nowhere else ([`RetryPolicy::wait`]): a
//! `Retry-After` of 0 (or an absent or unparseable one, which callers pass as [`Verdict::Retry`])
//! means the policy's own backoff, never an immediate resend; any other value is clamped to
//! `[min_retry_after, max_retry_after]` ([AML §3] Headers: honour it while polling; [MON R15]).

use std::future::Future;
use std::time::Duration;

/// The default floor of a server-requested wait.
pub const DEFAULT_MIN_RETRY_AFTER: Duration = Duration::from_secs(1);

/// How often and how patiently an operation is retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries, the first included. At least 1.
    pub max_attempts: u32,
    /// Backoff ceiling before the first retry; doubles each retry.
    pub base_backoff: Duration,
    /// Upper bound of any one backoff.
    pub max_backoff: Duration,
    /// No retry starts once this much time has passed since the first try (or would have by the
    /// end of its wait).
    pub max_elapsed: Duration,
    /// Lower bound of a wait the server asks for with `Retry-After` (a 0 means "own backoff"
    /// instead). Never above `max_retry_after`: the cap wins.
    pub min_retry_after: Duration,
    /// Upper bound of a wait the server asks for with `Retry-After`.
    pub max_retry_after: Duration,
    /// Full jitter (a uniform wait in `[0, ceiling]`) when true; the ceiling itself when false.
    pub jitter: bool,
}

impl Default for RetryPolicy {
    /// 6 tries, 500 ms doubling to 30 s, full jitter, at most 10 minutes, `Retry-After` within
    /// [1 s, 30 s].
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(10 * 60),
            min_retry_after: DEFAULT_MIN_RETRY_AFTER,
            max_retry_after: Duration::from_secs(30),
            jitter: true,
        }
    }
}

/// What the caller makes of one failed try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not worth another try (a validation error, a failed test): return the error now.
    GiveUp,
    /// Transient: try again after the policy's backoff.
    Retry,
    /// Transient, and the server said when (`Retry-After`): try again after that, clamped to
    /// the policy's floor and cap; a zero means the policy's own backoff.
    RetryAfter(Duration),
}

impl RetryPolicy {
    /// The ceiling of the backoff before backoff number `n` (0-based): base · 2^n, capped.
    pub fn ceiling(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.min(20));
        self.base_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// The backoff before backoff number `n`: full jitter over `ceiling(n)`, or `ceiling(n)`.
    pub fn backoff(&self, n: u32) -> Duration {
        let ceiling = self.ceiling(n);
        if !self.jitter {
            return ceiling;
        }
        Duration::from_millis(rand::random_range(0..=ceiling.as_millis() as u64))
    }

    /// The wait a verdict asks for; `None` for `GiveUp`. `n` counts the backoffs taken so far
    /// (waits the server chose with `Retry-After` do not grow the backoff).
    ///
    /// The one rule for a server-requested wait: `Retry-After: 0` is the policy's own backoff
    /// (a server that says "now" must not make the client resend in a tight loop); any other
    /// value is clamped to `[min_retry_after, max_retry_after]`, the cap winning if the two
    /// cross.
    pub fn wait(&self, verdict: Verdict, n: u32) -> Option<Duration> {
        match verdict {
            Verdict::GiveUp => None,
            Verdict::Retry => Some(self.backoff(n)),
            Verdict::RetryAfter(d) if d.is_zero() => Some(self.backoff(n)),
            Verdict::RetryAfter(d) => {
                let floor = self.min_retry_after.min(self.max_retry_after);
                Some(d.clamp(floor, self.max_retry_after))
            }
        }
    }

    /// Whether waiting out `verdict` counts as one of the policy's own backoffs (it grows the
    /// next one): a plain retry, or a `Retry-After: 0`.
    pub fn is_backoff(verdict: Verdict) -> bool {
        match verdict {
            Verdict::Retry => true,
            Verdict::RetryAfter(d) => d.is_zero(),
            Verdict::GiveUp => false,
        }
    }
}

/// Runs `op` (given the 1-based attempt number) until it succeeds, `classify` gives up on its
/// error, `max_attempts` tries have been made, or the next try would start after `max_elapsed`.
/// The last error is returned as is.
pub async fn retry<T, E, Op, Fut>(
    policy: &RetryPolicy,
    classify: impl Fn(&E) -> Verdict,
    mut op: Op,
) -> Result<T, E>
where
    Op: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = tokio::time::Instant::now();
    let mut backoffs = 0u32;
    let mut attempt = 1u32;
    loop {
        let err = match op(attempt).await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let verdict = classify(&err);
        let Some(wait) = policy.wait(verdict, backoffs) else {
            return Err(err);
        };
        if attempt >= policy.max_attempts.max(1)
            || started.elapsed().saturating_add(wait) > policy.max_elapsed
        {
            return Err(err);
        }
        tracing::debug!(attempt, wait_ms = wait.as_millis() as u64, "retrying");
        tokio::time::sleep(wait).await;
        if RetryPolicy::is_backoff(verdict) {
            backoffs += 1;
        }
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use tokio::time::Instant;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn steady(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            base_backoff: ms(100),
            max_backoff: ms(700),
            max_elapsed: Duration::from_secs(3600),
            min_retry_after: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(30),
            jitter: false,
        }
    }

    /// Runs `retry` over scripted verdicts (`Ok` after them), recording when each try started.
    async fn run(
        policy: &RetryPolicy,
        errors: Vec<Verdict>,
    ) -> (Result<u32, Verdict>, Vec<Duration>) {
        let start = Instant::now();
        let starts = Mutex::new(Vec::new());
        let result = retry(
            policy,
            |v: &Verdict| *v,
            |attempt| {
                starts.lock().unwrap().push(start.elapsed());
                let next = errors.get(attempt as usize - 1).copied();
                async move {
                    match next {
                        Some(v) => Err(v),
                        None => Ok(attempt),
                    }
                }
            },
        )
        .await;
        (result, starts.into_inner().unwrap())
    }

    #[test]
    fn backoff_ceilings_double_and_stop_at_the_cap_and_jitter_stays_under_them() {
        let p = RetryPolicy {
            jitter: true,
            ..steady(5)
        };
        assert_eq!(p.ceiling(0), ms(100));
        assert_eq!(p.ceiling(2), ms(400));
        assert_eq!(p.ceiling(3), ms(700));
        assert_eq!(p.ceiling(60), ms(700));
        for n in 0..10 {
            assert!(p.backoff(n) <= p.ceiling(n));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_with_growing_backoff_until_the_operation_succeeds() {
        let (result, starts) = run(&steady(10), vec![Verdict::Retry; 4]).await;
        assert_eq!(result, Ok(5));
        assert_eq!(starts, [0, 100, 300, 700, 1400].map(ms));
    }

    #[tokio::test(start_paused = true)]
    async fn it_gives_up_after_max_attempts_with_the_last_error() {
        let (result, starts) = run(&steady(3), vec![Verdict::Retry; 9]).await;
        assert_eq!(result, Err(Verdict::Retry));
        assert_eq!(starts.len(), 3, "{starts:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_non_transient_error_is_returned_at_once() {
        let (result, starts) = run(
            &steady(10),
            vec![Verdict::Retry, Verdict::GiveUp, Verdict::Retry],
        )
        .await;
        assert_eq!(result, Err(Verdict::GiveUp));
        assert_eq!(starts, [0, 100].map(ms));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_is_honoured_up_to_its_cap_and_does_not_grow_the_backoff() {
        let policy = RetryPolicy {
            max_retry_after: Duration::from_secs(5),
            ..steady(10)
        };
        let verdicts = vec![
            Verdict::RetryAfter(Duration::from_secs(2)),
            Verdict::RetryAfter(Duration::from_secs(60)),
            Verdict::Retry,
        ];
        let (result, starts) = run(&policy, verdicts).await;
        assert_eq!(result, Ok(4));
        // 2 s as asked, 60 s capped to 5 s, then the first backoff (100 ms), not the third.
        assert_eq!(starts, [0, 2000, 7000, 7100].map(ms));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_of_zero_is_the_own_backoff_not_an_immediate_resend() {
        let zero = Verdict::RetryAfter(Duration::ZERO);
        let (result, starts) = run(&steady(10), vec![zero; 4]).await;
        assert_eq!(result, Ok(5));
        // The same schedule as four plain retries: 100, 200, 400, 700 ms apart.
        assert_eq!(starts, [0, 100, 300, 700, 1400].map(ms));
    }

    #[test]
    fn a_retry_after_is_clamped_to_the_floor_and_the_cap_and_the_cap_wins_if_they_cross() {
        let policy = RetryPolicy {
            min_retry_after: Duration::from_secs(3),
            max_retry_after: Duration::from_secs(20),
            ..steady(10)
        };
        let wait = |s| policy.wait(Verdict::RetryAfter(Duration::from_secs(s)), 0);
        assert_eq!(wait(1), Some(Duration::from_secs(3)));
        assert_eq!(wait(7), Some(Duration::from_secs(7)));
        assert_eq!(wait(600), Some(Duration::from_secs(20)));
        let crossed = RetryPolicy {
            max_retry_after: ms(20),
            ..policy
        };
        assert_eq!(
            crossed.wait(Verdict::RetryAfter(Duration::from_secs(1)), 0),
            Some(ms(20))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_starts_past_max_elapsed() {
        let policy = RetryPolicy {
            max_elapsed: ms(1000),
            ..steady(100)
        };
        // Waits 100, 200, 400 (t = 700); the next (700 ms) would end at 1400 > 1000.
        let (result, starts) = run(&policy, vec![Verdict::Retry; 50]).await;
        assert_eq!(result, Err(Verdict::Retry));
        assert_eq!(starts, [0, 100, 300, 700].map(ms));
    }
}
