//! Supervision of the environment workers: a worker that panics or returns before shutdown is
//! reported (in `/status` and by failing `/readyz`) and restarted with exponential backoff. The
//! restarted worker reconciles the latest snapshot at once.

use std::any::Any;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::worker::{EnvWorker, Tick};

/// Default restart backoff: 1 s doubling to 1 min.
pub const RESTART_BACKOFF: Backoff = Backoff {
    base: std::time::Duration::from_secs(1),
    max: std::time::Duration::from_secs(60),
};

/// Runs `worker` until `cancel`, restarting it after each crash. Crashes in a row double the
/// delay; a worker that ran longer than `backoff.max` starts the count again.
pub async fn supervise(
    worker: EnvWorker,
    ticks: watch::Receiver<Tick>,
    backoff: Backoff,
    cancel: CancellationToken,
) {
    let env = worker.path.display().to_string();
    let state = worker.state.clone();
    let mut restarts: u32 = 0;
    let mut crashes_in_a_row: u32 = 0;
    loop {
        state.update_env(&env, |s| s.worker = "running".into());
        let started = tokio::time::Instant::now();
        let outcome = tokio::spawn(worker.clone().run(ticks.clone(), cancel.clone())).await;
        if cancel.is_cancelled() {
            return;
        }
        let reason = match outcome {
            Ok(()) => "exited unexpectedly".to_string(),
            Err(err) if err.is_panic() => format!("panicked: {}", panic_message(err.into_panic())),
            Err(err) => format!("stopped: {err}"),
        };
        if started.elapsed() > backoff.max {
            crashes_in_a_row = 0;
        }
        crashes_in_a_row = crashes_in_a_row.saturating_add(1);
        restarts = restarts.saturating_add(1);
        let delay = backoff.delay(crashes_in_a_row);
        tracing::error!(env = %env, worker = %reason, restarts, restart_in = ?delay, "environment worker crashed, restarting");
        state.metrics.worker_restart(&env);
        state.update_env(&env, |s| {
            s.worker = reason.clone();
            s.worker_restarts = restarts;
            s.last_worker_error = Some(reason.clone());
        });
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// The text of a panic payload (`panic!("...")` gives a `&str` or a `String`).
fn panic_message(payload: Box<dyn Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(text) => (*text).to_string(),
            Err(_) => "(no message)".to_string(),
        },
    }
}
