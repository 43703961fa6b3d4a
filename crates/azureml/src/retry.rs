//! Retry policy: exponential backoff with full jitter, and which ARM answers are worth retrying
//! (CONTRACT.md §4.1: 429 and 5xx; §3 Concurrency: 409 "operation in progress").

use std::time::Duration;

use reqwest::StatusCode;

/// How often and how patiently a request is retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries of one request, the first included. At least 1.
    pub max_attempts: u32,
    /// Backoff cap for the first retry; doubles each retry.
    pub base_backoff: Duration,
    /// Upper bound of any one backoff.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The ceiling of the backoff before retry number `retry` (0-based): base · 2^retry, capped.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(20));
        self.base_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// Full jitter: a uniform random wait in `[0, ceiling(retry)]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self.ceiling(retry).as_millis() as u64;
        Duration::from_millis(rand::random_range(0..=ceiling))
    }
}

/// Whether an ARM error answer may succeed when sent again.
pub(crate) fn is_retryable(status: StatusCode, code: &str, message: &str) -> bool {
    match status.as_u16() {
        429 => true,
        500..=599 => true,
        // §3: another operation holds the endpoint. Other 409s (a name taken in the region, R12)
        // will not change by waiting.
        409 => {
            let text = format!("{code} {message}").to_ascii_lowercase();
            text.contains("in progress") || text.contains("inprogress")
        }
        _ => false,
    }
}

/// Parses `Retry-After` as whole seconds (CONTRACT.md §3: an integer number of seconds).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_ceilings_double_and_stop_at_the_cap() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
        };
        assert_eq!(p.ceiling(0), Duration::from_millis(100));
        assert_eq!(p.ceiling(2), Duration::from_millis(400));
        assert_eq!(p.ceiling(3), Duration::from_millis(700));
        assert_eq!(p.ceiling(60), Duration::from_millis(700));
        for retry in 0..10 {
            assert!(p.backoff(retry) <= p.ceiling(retry));
        }
    }

    #[test]
    fn only_transient_answers_are_retried() {
        assert!(is_retryable(StatusCode::TOO_MANY_REQUESTS, "", ""));
        assert!(is_retryable(StatusCode::BAD_GATEWAY, "", ""));
        assert!(is_retryable(
            StatusCode::CONFLICT,
            "Conflict",
            "another operation in progress on endpoint e"
        ));
        assert!(!is_retryable(
            StatusCode::CONFLICT,
            "Conflict",
            "endpoint name must be unique within the region"
        ));
        for s in [400, 401, 403, 404] {
            assert!(!is_retryable(StatusCode::from_u16(s).unwrap(), "", ""));
        }
    }
}
