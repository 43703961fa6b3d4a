//! `eventually`: poll a condition until it holds, failing only after a generous timeout. Never a
//! fixed sleep standing in for "the state has arrived", never a wall-clock bound on success.

use std::time::{Duration, Instant};

/// Polls `check` every 25 ms until it returns true; panics naming `what` after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
