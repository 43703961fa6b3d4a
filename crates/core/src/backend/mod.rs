//! One trait for every platform. The planner never sees a backend; the executor (`apply`) and the
//! CLI do. Platform backends live in their own crates (`flightdeck-azureml`, `flightdeck-kubernetes`);
//! here are the trait, its errors, and the two platform-free backends: `memory` (tests) and
//! `state_file` (the in-memory backend persisted to a file).

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;

use crate::model::LiveState;
use crate::plan::Step;
use crate::rollout::RolloutRecord;

mod error;
pub mod memory;
#[cfg(test)]
mod rollout_store_tests;
pub mod state_file;
pub mod state_lock;

pub use error::{BackendError, ErrorKind, Source};

/// What a backend reports about one executed step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepDetail {
    /// Short detail for the report, e.g. "provisioned in 3.1s", "200 from green".
    pub detail: String,
}

/// What a backend's recent answers say about the platform's throttle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pressure {
    /// Nothing answered since the last look.
    Unknown,
    /// Answers came back and none was a 429.
    Healthy,
    /// The platform refused a request for its rate (a 429) since the last look. A budget the
    /// backend itself holds low by spacing its requests is not this.
    Throttled,
}

/// A platform that holds endpoints. Implementations must make each step's effect complete before
/// returning: a create, update or scale returns once the platform reports the deployment ready
/// (or fails), so the next step may route traffic to it.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Short name for logs and reports (`azureml`, `kubernetes`, `memory`).
    fn name(&self) -> &'static str;

    /// Reads every endpoint of the target. Backends should list, not get one by one.
    async fn read_live(&self) -> Result<LiveState, BackendError>;

    /// Reads only the endpoints named in `names` (a targeted reconcile): the same
    /// `LiveEndpoint`s `read_live` reports for them, absent names left out, and only the
    /// `taken` names of these endpoints. Platform backends override it with reads of just
    /// those endpoints; this default reads everything and filters.
    async fn read_live_endpoints(
        &self,
        names: &BTreeSet<String>,
    ) -> Result<LiveState, BackendError> {
        let mut live = self.read_live().await?;
        live.retain_endpoints(names);
        Ok(live)
    }

    /// Executes one step. Called with at most one step in flight per endpoint.
    async fn execute(&self, step: &Step) -> Result<StepDetail, BackendError>;

    /// The longest the executor lets `step` run before it fails it (`apply` owns the timeout;
    /// backends only choose the budget). Waits for provisioning get long budgets, a test short.
    fn step_timeout(&self, step: &Step) -> Duration {
        default_step_timeout(step)
    }

    /// How the platform has been answering since the last call (and a fresh start for the
    /// next): the executor lowers its concurrency on `Throttled` and raises it again on
    /// `Healthy` (`apply::limit`). Backends without a throttle to report keep the default.
    fn pressure(&self) -> Pressure {
        Pressure::Unknown
    }

    /// Stores the rollout progress of `endpoint` (`None` removes it), where `read_live` reads
    /// it back as `LiveEndpoint::rollout`: on the platform itself, so a restart, a standby agent
    /// or another `apply` resumes from it. Required, so that a wrapper cannot silently drop it.
    async fn write_rollout(
        &self,
        endpoint: &str,
        record: Option<&RolloutRecord>,
    ) -> Result<(), BackendError>;
}

/// Budgets when a backend has no better idea: 30 min for anything that provisions or deletes,
/// 5 min for a pre-traffic test (its own requests time out sooner), 10 min for a traffic change.
pub fn default_step_timeout(step: &Step) -> Duration {
    use crate::plan::Action;
    match step.action {
        Action::TestDeployment { .. } => Duration::from_secs(5 * 60),
        Action::SetTraffic { .. } | Action::SetMirrorTraffic { .. } => Duration::from_secs(10 * 60),
        _ => Duration::from_secs(30 * 60),
    }
}

/// Per-request timeout of a pre-traffic test request, both backends (`--test-request-timeout`,
/// `FLIGHTDECK_TEST_REQUEST_TIMEOUT`, agent file key `test-request-timeout`), default 30 s.
pub const DEFAULT_TEST_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
