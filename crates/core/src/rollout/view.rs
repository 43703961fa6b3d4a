//! What plans, apply reports, `/status` and `rollout status` show of one endpoint's rollout:
//! one line for people ("desired green 100, held at blue 100: gate failed at stage 2: ..."),
//! the stage, the traffic this tick aims at, when to look again, and the gates' verdicts.

use serde::{Deserialize, Serialize};

use super::engine::{Decision, Status};
use super::gates::Verdict;
use super::policy::RolloutPolicy;
use crate::model::{Weights, effective, weights_display};

/// One endpoint's rollout as of this tick. Serialised in plan and apply JSON (`rollouts`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutView {
    pub endpoint: String,
    /// `shifting`, `baking`, `evaluating`, `paused`, `rolling_back`, `held`, `completing`.
    pub state: String,
    /// 1-based stage; the declared traffic is stage `stages`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<usize>,
    pub stages: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<String>,
    /// The traffic Git declares.
    pub declared: Weights,
    /// The traffic this tick routes (or holds).
    pub traffic: Weights,
    /// The line people read.
    pub message: String,
    /// When the rollout wants to be looked at again, in seconds; absent: it waits for a
    /// person or for Git.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_check_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<Verdict>,
}

impl RolloutView {
    /// Builds the view of a decision; `None` when there is nothing to show (no rollout, or
    /// one that finished earlier).
    pub fn of(
        endpoint: &str,
        policy: &RolloutPolicy,
        declared: &Weights,
        live: &Weights,
        decision: &Decision,
    ) -> Option<RolloutView> {
        let stages = policy.steps.len() + 1;
        let traffic = decision
            .endpoint
            .as_ref()
            .and_then(|e| e.traffic.clone())
            .map(|t| effective(&t))
            .unwrap_or_else(|| declared.clone());
        let at = |stage: usize| format!("stage {}/{stages}", stage + 1);
        let mirror = decision
            .endpoint
            .as_ref()
            .and_then(|e| e.mirror_traffic.as_ref())
            .map(effective)
            .filter(|m| !m.is_empty());
        let shown = match mirror {
            // The mirror stage: `blue 100, mirroring green 10`.
            Some(m) => format!(
                "{}, mirroring {}",
                weights_display(&traffic),
                weights_display(&m)
            ),
            None => weights_display(&traffic),
        };
        let desired = weights_display(declared);
        let (state, stage, message) = match &decision.status {
            Status::NotRolling | Status::Done | Status::Refused(_) => return None,
            Status::Shifting { stage } => (
                "shifting",
                Some(*stage),
                format!("{}: routing {shown} (desired {desired})", at(*stage)),
            ),
            Status::Baking {
                stage,
                remaining,
                why,
            } => (
                "baking",
                Some(*stage),
                format!(
                    "{} at {shown}: {why}, {} left",
                    at(*stage),
                    humantime::format_duration(round_secs(*remaining))
                ),
            ),
            Status::Evaluating { stage } => (
                "evaluating",
                Some(*stage),
                format!("{} at {shown}: judging the gates", at(*stage)),
            ),
            Status::Paused { stage, reason } => (
                "paused",
                Some(*stage),
                format!("{} paused at {shown}: {reason}", at(*stage)),
            ),
            Status::RollingBack { reason } => (
                "rolling_back",
                None,
                format!(
                    "desired {desired}, rolling back to {shown}: {reason}",
                    shown = weights_display(&traffic)
                ),
            ),
            Status::Held { reason } => (
                "held",
                None,
                format!(
                    "desired {desired}, held at {}: {reason}",
                    weights_display(&effective(live))
                ),
            ),
            Status::Completing => (
                "completing",
                Some(stages - 1),
                format!("{}: routing the declared {desired}", at(stages - 1)),
            ),
        };
        let candidate = match &decision.record {
            super::engine::RecordWrite::Write { record, .. } => Some(record.candidate.clone()),
            _ => decision.record_before.as_ref().map(|r| r.candidate.clone()),
        };
        Some(RolloutView {
            endpoint: endpoint.to_string(),
            state: state.to_string(),
            stage: stage.map(|s| s + 1),
            stages,
            candidate,
            declared: declared.clone(),
            traffic,
            message,
            next_check_seconds: decision.wait.map(|w| round_secs(w).as_secs().max(1)),
            verdicts: decision.verdicts.clone(),
        })
    }

    /// Held at or rolling back to the baseline: Git and the platform disagree until Git
    /// changes (`flightdeck revert` writes the change).
    pub fn is_failed(&self) -> bool {
        matches!(self.state.as_str(), "held" | "rolling_back")
    }

    pub fn is_paused(&self) -> bool {
        self.state == "paused"
    }
}

fn round_secs(d: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
}
