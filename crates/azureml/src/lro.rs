//! Long-running operations ([AML §3]): PUT follows `Azure-AsyncOperation` then GETs the
//! original URI; PATCH and DELETE follow `Location` (202 while running). Polling runs under the
//! crate's one retry helper ([`flightdeck_core::retry`]) with [`poll_policy`]: each "still running" answer
//! is a retry carrying the answer's `Retry-After`, which wins within
//! `[min_poll_interval, max_poll_interval]`; without one, or with `Retry-After: 0`, the waits
//! start fast and back off (never a tight loop). The first poll waits too: the `Retry-After` of
//! the answer that started the operation (the PUT's 201/202, the PATCH's or DELETE's 202), or the
//! first backoff without one, so an operation the platform says needs a second is not asked
//! about at once (a poll that can only say "running" is a wasted read under a throttle). The step
//! timeout wraps the whole step.

use std::future::Future;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use url::Url;

use super::client::{ArmClient, ArmResponse};
use super::error::{AzureMlError, excerpt};
use super::mapping::provisioning_state;
use super::retry::retry_after;
use super::shape::{Shape, checked};
use flightdeck_core::retry::{RetryPolicy, Verdict, retry};

/// The first wait when the platform sends no `Retry-After`.
pub const FIRST_POLL: Duration = Duration::from_millis(200);
/// Where the no-`Retry-After` backoff stops ([AML §3]: "poll every 10–30 s" when absent),
/// unless `max_poll_interval` is lower.
pub const ABSENT_RETRY_AFTER_CAP: Duration = Duration::from_secs(10);

/// The waits between polls of one operation. The platform's `Retry-After` wins when it sends one
/// (clamped to `[min_poll_interval, max_poll_interval]`), so real Azure paces itself. Without it
/// (or with `Retry-After: 0`, which [`RetryPolicy::wait`] treats as absent), the waits start at
/// `FIRST_POLL` and double up to `ABSENT_RETRY_AFTER_CAP`, with no jitter: a 1 s operation is seen
/// done about 1 s after it started (200 + 400 + 800 ms), not after a flat 10 s. Polls are not
/// counted or timed here: the executor's step timeout bounds the whole wait.
pub fn poll_policy(min_poll_interval: Duration, max_poll_interval: Duration) -> RetryPolicy {
    RetryPolicy {
        max_attempts: u32::MAX,
        base_backoff: FIRST_POLL.min(max_poll_interval),
        max_backoff: ABSENT_RETRY_AFTER_CAP.min(max_poll_interval),
        max_elapsed: Duration::MAX,
        min_retry_after: min_poll_interval,
        max_retry_after: max_poll_interval,
        jitter: false,
    }
}

/// One poll that did not end the wait.
enum Poll {
    /// Not terminal yet; the answer's `Retry-After`, if any.
    Running(Option<Duration>),
    /// Terminal failure, or a request that failed (after its own retries).
    Failed(AzureMlError),
}

impl Poll {
    fn verdict(&self) -> Verdict {
        match self {
            Poll::Running(Some(wait)) => Verdict::RetryAfter(*wait),
            Poll::Running(None) => Verdict::Retry,
            Poll::Failed(_) => Verdict::GiveUp,
        }
    }

    fn running(resp: &ArmResponse) -> Poll {
        Poll::Running(retry_after(&resp.headers))
    }
}

impl From<AzureMlError> for Poll {
    fn from(err: AzureMlError) -> Poll {
        Poll::Failed(err)
    }
}

const ASYNC_OPERATION: &str = "azure-asyncoperation";
const LOCATION: &str = "location";

fn is_terminal(state: &str) -> bool {
    ["Succeeded", "Failed", "Canceled"]
        .iter()
        .any(|t| t.eq_ignore_ascii_case(state))
}

/// A terminal resource body: Ok when Succeeded (or when ARM reports no state), else the failure.
fn settled(body: Value) -> Result<Value, AzureMlError> {
    match provisioning_state(&body) {
        Some(s) if s.eq_ignore_ascii_case("Failed") || s.eq_ignore_ascii_case("Canceled") => {
            Err(AzureMlError::OperationFailed {
                status: s.to_string(),
                code: format!("Provisioning{s}"),
                message: format!("provisioning state is {s}"),
            })
        }
        _ => Ok(body),
    }
}

impl ArmClient {
    /// PUT a full resource and wait until it is terminal; returns the final resource.
    ///
    /// A PUT whose response is lost is never blindly sent again: GET first; if the resource is
    /// there and busy, wait for it; if a create already landed, it is done (§3 "never duplicate
    /// a create"). An update PUT is a full replace, so sending it again is harmless.
    pub async fn put_and_wait(
        &self,
        url: &Url,
        body: &Value,
        creating: bool,
    ) -> Result<Value, AzureMlError> {
        // The outer error is a PUT whose response was lost (retried after checking what
        // landed); the inner result is final.
        let put = retry(
            &self.retry,
            |_: &AzureMlError| Verdict::Retry,
            |attempt| async move {
                if attempt > 1 {
                    match self.get_opt(url).await {
                        Err(err) => return Ok(Err(err)),
                        Ok(None) => {}
                        Ok(Some(current)) => match provisioning_state(&current) {
                            Some(state) if !is_terminal(state) => {
                                return Ok(self.wait_resource(url).await);
                            }
                            _ if creating => return Ok(settled(current)),
                            _ => {}
                        },
                    }
                }
                match self.call_with(Method::PUT, url, Some(body), false).await {
                    Ok(resp) => Ok(self.finish_put(url, resp).await),
                    Err(err @ AzureMlError::Transport { .. }) => {
                        tracing::debug!(error = %err, path = url.path(), "put response lost, checking what landed");
                        Err(err)
                    }
                    Err(err) => Ok(Err(err)),
                }
            },
        );
        put.await?
    }

    async fn finish_put(&self, url: &Url, resp: ArmResponse) -> Result<Value, AzureMlError> {
        if let Some(op) = resp.header(ASYNC_OPERATION) {
            let op = self.resolve(op)?;
            self.first_wait(&resp).await;
            self.wait_operation(&op).await?;
            return self.wait_resource(url).await;
        }
        let body = if resp.body.is_empty() {
            self.get_resource(url).await?
        } else {
            checked(&resp, Shape::of_resource(url))?
        };
        match provisioning_state(&body) {
            Some(state) if !is_terminal(state) => self.wait_resource(url).await,
            _ => settled(body),
        }
    }

    /// PATCH and wait: 202 → poll Location, then wait for the resource to be terminal.
    pub async fn patch_and_wait(&self, url: &Url, body: &Value) -> Result<Value, AzureMlError> {
        let resp = self.call(Method::PATCH, url, Some(body)).await?;
        if resp.status == StatusCode::ACCEPTED
            && let Some(location) = resp.header(LOCATION)
        {
            let location = self.resolve(location)?;
            self.first_wait(&resp).await;
            self.wait_location(&location).await?;
        }
        self.wait_resource(url).await
    }

    /// DELETE and wait until the resource is gone. An absent resource is already deleted.
    pub async fn delete_and_wait(&self, url: &Url) -> Result<(), AzureMlError> {
        let resp = match self.call(Method::DELETE, url, None).await {
            Ok(resp) => resp,
            Err(e) if e.status() == Some(404) => return Ok(()),
            Err(e) => return Err(e),
        };
        if resp.status != StatusCode::ACCEPTED {
            return Ok(());
        }
        if let Some(location) = resp.header(LOCATION) {
            let location = self.resolve(location)?;
            self.first_wait(&resp).await;
            return self.wait_location(&location).await;
        }
        // No Location: watch the resource until it 404s.
        self.first_wait(&resp).await;
        self.poll(|_| async {
            match self.call(Method::GET, url, None).await {
                Err(e) if e.status() == Some(404) => Ok(()),
                Err(e) => Err(Poll::Failed(e)),
                Ok(resp) => {
                    if let Ok(body) = resp.json("resource") {
                        settled(body)?;
                    }
                    Err(Poll::running(&resp))
                }
            }
        })
        .await
    }

    /// The wait before the first poll of an operation `started` began: its `Retry-After` within
    /// `[min_poll_interval, max_poll_interval]`, else the first backoff ([`poll_policy`]).
    async fn first_wait(&self, started: &ArmResponse) {
        let policy = poll_policy(self.min_poll_interval, self.max_poll_interval);
        let wait = policy.wait(Poll::running(started).verdict(), 0);
        tokio::time::sleep(wait.unwrap_or_default()).await;
    }

    /// Polls under [`poll_policy`] until `op` ends the wait.
    async fn poll<T, Op, Fut>(&self, op: Op) -> Result<T, AzureMlError>
    where
        Op: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, Poll>>,
    {
        match retry(
            &poll_policy(self.min_poll_interval, self.max_poll_interval),
            Poll::verdict,
            op,
        )
        .await
        {
            Ok(value) => Ok(value),
            Err(Poll::Failed(err)) => Err(err),
            Err(Poll::Running(_)) => Err(AzureMlError::Unexpected {
                what: "long-running operation".into(),
                message: format!("still running after {} polls", u32::MAX),
            }),
        }
    }

    /// Polls an Azure-AsyncOperation status URL until Succeeded, Failed or Canceled.
    async fn wait_operation(&self, op: &Url) -> Result<(), AzureMlError> {
        self.poll(|_| async {
            let resp = self.call(Method::GET, op, None).await?;
            let status_body = checked(&resp, Shape::OperationStatus)?;
            let status = status_body["status"].as_str().unwrap_or_default();
            if status.eq_ignore_ascii_case("Succeeded") {
                return Ok(());
            }
            if is_terminal(status) {
                return Err(operation_failure(status, &status_body).into());
            }
            Err(Poll::running(&resp))
        })
        .await
    }

    /// Polls a Location URL: 202 while running, 200/201/204 when done.
    async fn wait_location(&self, location: &Url) -> Result<(), AzureMlError> {
        self.poll(|_| async {
            let resp = self.call(Method::GET, location, None).await?;
            if resp.status == StatusCode::ACCEPTED {
                return Err(Poll::running(&resp));
            }
            // Some services answer 200 with an operation body; honour a failure in it.
            if let Ok(body) = resp.json("operation result")
                && let Some(status) = body["status"].as_str()
                && is_terminal(status)
                && !status.eq_ignore_ascii_case("Succeeded")
            {
                return Err(operation_failure(status, &body).into());
            }
            Ok(())
        })
        .await
    }

    /// Polls GET on a resource until its provisioningState is terminal.
    pub async fn wait_resource(&self, url: &Url) -> Result<Value, AzureMlError> {
        self.poll(|_| async {
            let resp = self.call(Method::GET, url, None).await?;
            let body = checked(&resp, Shape::of_resource(url))?;
            match provisioning_state(&body) {
                Some(state) if !is_terminal(state) => Err(Poll::running(&resp)),
                _ => Ok(settled(body)?),
            }
        })
        .await
    }
}

/// The error of a Failed/Canceled operation-status body (§3).
fn operation_failure(status: &str, body: &Value) -> AzureMlError {
    let error = &body["error"];
    AzureMlError::OperationFailed {
        status: status.to_string(),
        code: error["code"]
            .as_str()
            .filter(|c| !c.is_empty())
            .unwrap_or(status)
            .to_string(),
        message: excerpt(
            error["message"]
                .as_str()
                .unwrap_or("the operation reported no error message"),
            600,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn without_retry_after_polls_start_fast_and_double_up_to_the_cap() {
        let p = poll_policy(Duration::from_secs(1), Duration::from_secs(30));
        let waits: Vec<Duration> = (0..9).map(|n| p.wait(Verdict::Retry, n).unwrap()).collect();
        let expected = [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000];
        assert_eq!(waits, expected.map(ms));
    }

    #[test]
    fn a_retry_after_from_the_platform_is_honoured_up_to_max_poll_interval() {
        let p = poll_policy(Duration::from_secs(1), Duration::from_secs(30));
        let after = |s| {
            p.wait(Verdict::RetryAfter(Duration::from_secs(s)), 3)
                .unwrap()
        };
        assert_eq!(after(15), Duration::from_secs(15));
        assert_eq!(after(120), Duration::from_secs(30));
        // Zero is "no opinion": the own backoff (the fourth wait, 1.6 s), not an instant poll.
        assert_eq!(after(0), ms(1600));
    }

    #[test]
    fn a_small_max_poll_interval_caps_the_backoff_too() {
        let p = poll_policy(Duration::from_secs(1), ms(50));
        assert_eq!(
            [p.wait(Verdict::Retry, 0), p.wait(Verdict::Retry, 5)],
            [Some(ms(50)), Some(ms(50))]
        );
    }
}
