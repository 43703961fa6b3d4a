//! Long-running operations (CONTRACT.md §3): PUT follows `Azure-AsyncOperation` then GETs the
//! original URI; PATCH and DELETE follow `Location` (202 while running). Poll waits honour
//! `Retry-After`, capped by `max_poll_interval`; without one they start fast and back off (see
//! `PollSchedule`). The step timeout wraps the whole step.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use url::Url;

use super::client::{ArmClient, ArmResponse};
use super::error::{AzureMlError, excerpt};
use super::mapping::provisioning_state;
use super::retry::retry_after;

/// The first wait when the platform sends no `Retry-After`.
pub const FIRST_POLL: Duration = Duration::from_millis(200);
/// Where the no-`Retry-After` backoff stops (CONTRACT.md §3: "poll every 10–30 s" when absent),
/// unless `max_poll_interval` is lower.
pub const ABSENT_RETRY_AFTER_CAP: Duration = Duration::from_secs(10);

/// The waits between polls of one operation. The platform's `Retry-After` wins when it sends one
/// (capped by `max_poll_interval`), so real Azure paces itself as before. Without it, the waits
/// start at `FIRST_POLL` and double up to `ABSENT_RETRY_AFTER_CAP`: a 1 s operation is seen done
/// about 1 s after it started (200 + 400 + 800 ms), not after a flat 10 s.
#[derive(Clone, Debug)]
pub struct PollSchedule {
    next: Duration,
    cap: Duration,
    max: Duration,
}

impl PollSchedule {
    pub fn new(max_poll_interval: Duration) -> Self {
        PollSchedule {
            next: FIRST_POLL.min(max_poll_interval),
            cap: ABSENT_RETRY_AFTER_CAP.min(max_poll_interval),
            max: max_poll_interval,
        }
    }

    /// The wait before the next poll, given the last answer's headers.
    pub fn delay(&mut self, headers: &HeaderMap) -> Duration {
        if let Some(wait) = retry_after(headers) {
            return wait.min(self.max);
        }
        let wait = self.next;
        self.next = self.next.saturating_mul(2).min(self.cap);
        wait
    }
}
use super::shape::{Shape, checked};

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
    fn poll_schedule(&self) -> PollSchedule {
        PollSchedule::new(self.max_poll_interval)
    }

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
        let mut tries = 0u32;
        loop {
            tries += 1;
            let err = match self.call_with(Method::PUT, url, Some(body), false).await {
                Ok(resp) => return self.finish_put(url, resp).await,
                Err(err @ AzureMlError::Transport { .. }) if tries < self.retry.max_attempts => err,
                Err(err) => return Err(err),
            };
            tracing::debug!(error = %err, path = url.path(), "put response lost, checking what landed");
            tokio::time::sleep(self.retry.backoff(tries - 1)).await;
            let Some(current) = self.get_opt(url).await? else {
                continue;
            };
            match provisioning_state(&current) {
                Some(state) if !is_terminal(state) => return self.wait_resource(url).await,
                _ if creating => return settled(current),
                _ => continue,
            }
        }
    }

    async fn finish_put(&self, url: &Url, resp: ArmResponse) -> Result<Value, AzureMlError> {
        if let Some(op) = resp.header(ASYNC_OPERATION) {
            let op = self.resolve(op)?;
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
            return self.wait_location(&location).await;
        }
        // No Location: watch the resource until it 404s.
        let mut schedule = self.poll_schedule();
        let mut delay = schedule.delay(&resp.headers);
        loop {
            tokio::time::sleep(delay).await;
            match self.call(Method::GET, url, None).await {
                Err(e) if e.status() == Some(404) => return Ok(()),
                Err(e) => return Err(e),
                Ok(resp) => {
                    if let Ok(body) = resp.json("resource") {
                        settled(body)?;
                    }
                    delay = schedule.delay(&resp.headers);
                }
            }
        }
    }

    /// Polls an Azure-AsyncOperation status URL until Succeeded, Failed or Canceled.
    async fn wait_operation(&self, op: &Url) -> Result<(), AzureMlError> {
        let mut schedule = self.poll_schedule();
        loop {
            let resp = self.call(Method::GET, op, None).await?;
            let status_body = checked(&resp, Shape::OperationStatus)?;
            let status = status_body["status"].as_str().unwrap_or_default();
            if status.eq_ignore_ascii_case("Succeeded") {
                return Ok(());
            }
            if is_terminal(status) {
                return Err(operation_failure(status, &status_body));
            }
            tokio::time::sleep(schedule.delay(&resp.headers)).await;
        }
    }

    /// Polls a Location URL: 202 while running, 200/201/204 when done.
    async fn wait_location(&self, location: &Url) -> Result<(), AzureMlError> {
        let mut schedule = self.poll_schedule();
        loop {
            let resp = self.call(Method::GET, location, None).await?;
            if resp.status != StatusCode::ACCEPTED {
                // Some services answer 200 with an operation body; honour a failure in it.
                if let Ok(body) = resp.json("operation result")
                    && let Some(status) = body["status"].as_str()
                    && is_terminal(status)
                    && !status.eq_ignore_ascii_case("Succeeded")
                {
                    return Err(operation_failure(status, &body));
                }
                return Ok(());
            }
            tokio::time::sleep(schedule.delay(&resp.headers)).await;
        }
    }

    /// Polls GET on a resource until its provisioningState is terminal.
    pub async fn wait_resource(&self, url: &Url) -> Result<Value, AzureMlError> {
        let mut schedule = self.poll_schedule();
        loop {
            let resp = self.call(Method::GET, url, None).await?;
            let body = checked(&resp, Shape::of_resource(url))?;
            match provisioning_state(&body) {
                Some(state) if !is_terminal(state) => {
                    tokio::time::sleep(schedule.delay(&resp.headers)).await;
                }
                _ => return settled(body),
            }
        }
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
        let mut s = PollSchedule::new(Duration::from_secs(30));
        let none = HeaderMap::new();
        let waits: Vec<Duration> = (0..9).map(|_| s.delay(&none)).collect();
        let expected = [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000];
        assert_eq!(waits, expected.map(ms));
    }

    #[test]
    fn a_retry_after_from_the_platform_is_honoured_up_to_max_poll_interval() {
        let mut s = PollSchedule::new(Duration::from_secs(30));
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "15".parse().unwrap());
        assert_eq!(s.delay(&headers), Duration::from_secs(15));
        headers.insert("retry-after", "120".parse().unwrap());
        assert_eq!(s.delay(&headers), Duration::from_secs(30));
        // The fast start is still there when the header disappears.
        assert_eq!(s.delay(&HeaderMap::new()), ms(200));
    }

    #[test]
    fn a_small_max_poll_interval_caps_the_backoff_too() {
        let mut s = PollSchedule::new(ms(50));
        let none = HeaderMap::new();
        assert_eq!([s.delay(&none), s.delay(&none)], [ms(50), ms(50)]);
    }
}
