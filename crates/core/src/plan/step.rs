//! Plan data: ordered steps, each with a one-line reason. Plans are plain data, rendered by
//! `plan::render` and executed by `apply`.

use serde::{Deserialize, Serialize};

use crate::escape::Esc;
use crate::model::{DeploymentSettings, EndpointSettings, TestSpec, Weights};

/// One field that differs between desired and live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// Setting name as in the YAML (`model`, `instance_count`, `readiness_probe.period`).
    pub field: String,
    /// Live value, rendered; `None` when absent live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Desired value, rendered.
    pub to: String,
}

/// What a step does. Serialised with `action` as the tag (`"set_traffic"`, ...); this JSON is a
/// documented, stable output (docs/plan-json.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Create the endpoint with no deployments and empty traffic.
    CreateEndpoint { settings: EndpointSettings },
    /// Change endpoint settings (auth mode, description, tags, public access).
    UpdateEndpoint {
        settings: EndpointSettings,
        changes: Vec<FieldChange>,
    },
    /// Recreate or restore the endpoint's platform objects that are missing or changed live
    /// (`problems`, as the backend reported them), keeping live weights; runs before any traffic
    /// step. `settings` are the endpoint settings to write (live overlaid with declared).
    RepairEndpoint {
        settings: EndpointSettings,
        problems: Vec<String>,
    },
    /// Create a deployment. It takes no traffic until a later `set_traffic`.
    CreateDeployment {
        deployment: String,
        settings: Box<DeploymentSettings>,
    },
    /// Update a deployment in place (model, image, probes, ...). `settings` is the full desired
    /// settings, with `instance_count` kept at the live count (scaling is its own step).
    UpdateDeployment {
        deployment: String,
        settings: Box<DeploymentSettings>,
        changes: Vec<FieldChange>,
    },
    /// Change the instance count only.
    ScaleDeployment {
        deployment: String,
        from: u32,
        to: u32,
    },
    /// Wait until a deployment that is still provisioning is ready.
    WaitReady { deployment: String },
    /// Send the test request straight to one deployment; a failure stops the rollout.
    TestDeployment { deployment: String, test: TestSpec },
    /// Replace the live traffic split.
    SetTraffic { traffic: Weights },
    /// Replace the mirror (shadow) traffic split.
    SetMirrorTraffic { mirror_traffic: Weights },
    /// Delete a deployment that takes no traffic and no mirror traffic.
    DeleteDeployment { deployment: String },
    /// Delete the endpoint and all its deployments (only with `--prune`).
    DeleteEndpoint,
}

impl Action {
    /// The `action` tag as it appears in JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::CreateEndpoint { .. } => "create_endpoint",
            Action::UpdateEndpoint { .. } => "update_endpoint",
            Action::RepairEndpoint { .. } => "repair_endpoint",
            Action::CreateDeployment { .. } => "create_deployment",
            Action::UpdateDeployment { .. } => "update_deployment",
            Action::ScaleDeployment { .. } => "scale_deployment",
            Action::WaitReady { .. } => "wait_ready",
            Action::TestDeployment { .. } => "test_deployment",
            Action::SetTraffic { .. } => "set_traffic",
            Action::SetMirrorTraffic { .. } => "set_mirror_traffic",
            Action::DeleteDeployment { .. } => "delete_deployment",
            Action::DeleteEndpoint => "delete_endpoint",
        }
    }

    /// The deployment a step acts on, if any.
    pub fn deployment(&self) -> Option<&str> {
        match self {
            Action::CreateDeployment { deployment, .. }
            | Action::UpdateDeployment { deployment, .. }
            | Action::ScaleDeployment { deployment, .. }
            | Action::WaitReady { deployment }
            | Action::TestDeployment { deployment, .. }
            | Action::DeleteDeployment { deployment } => Some(deployment),
            _ => None,
        }
    }

    /// Whether executing the step changes live state (tests and waits do not).
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            Action::WaitReady { .. } | Action::TestDeployment { .. }
        )
    }
}

/// Where a step stands in the safe order of an endpoint's steps. The plan of each endpoint is
/// its steps sorted by phase (`plan::order`), so this enum, top to bottom, IS the safety order:
/// nothing takes traffic before it exists, is ready and passed its test; nothing goes away
/// while it still takes live or mirror traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Create the endpoint, update its settings, repair its platform objects.
    Endpoint,
    /// Delete an idle deployment whose create-only fields changed (it is created again next).
    Recreate,
    /// Create deployments (at 0%), update them, scale them up, re-provision failed ones.
    Provision,
    /// Wait for deployments still provisioning.
    Wait,
    /// Test each deployment about to take traffic.
    Test,
    /// Stop mirroring to deployments that will take live traffic or go away.
    Unmirror,
    /// Set the live traffic split.
    Shift,
    /// Set the new mirror split.
    Mirror,
    /// Scale deployments down (after traffic left them).
    ScaleDown,
    /// Delete deployments no longer declared (drained by `Shift`), or the endpoint (`--prune`).
    Cleanup,
}

impl Phase {
    /// The phase an action has unless the planner says otherwise: only a recreate's delete
    /// (`Recreate`) and an interim mirror change (`Unmirror`) depend on more than the action.
    pub fn of(action: &Action) -> Phase {
        match action {
            Action::CreateEndpoint { .. }
            | Action::UpdateEndpoint { .. }
            | Action::RepairEndpoint { .. } => Phase::Endpoint,
            Action::CreateDeployment { .. } | Action::UpdateDeployment { .. } => Phase::Provision,
            Action::ScaleDeployment { from, to, .. } if to < from => Phase::ScaleDown,
            Action::ScaleDeployment { .. } => Phase::Provision,
            Action::WaitReady { .. } => Phase::Wait,
            Action::TestDeployment { .. } => Phase::Test,
            Action::SetTraffic { .. } => Phase::Shift,
            Action::SetMirrorTraffic { .. } => Phase::Mirror,
            Action::DeleteDeployment { .. } | Action::DeleteEndpoint => Phase::Cleanup,
        }
    }
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub endpoint: String,
    /// Where the step stands in the endpoint's safe order (docs/plan-json.md).
    pub phase: Phase,
    #[serde(flatten)]
    pub action: Action,
    /// One line for humans: "flight green 10%", "delete blue: no longer declared, drained".
    pub reason: String,
}

impl Step {
    /// A step in the usual phase of its action ([`Phase::of`]).
    pub fn new(endpoint: String, action: Action, reason: String) -> Step {
        Step {
            endpoint,
            phase: Phase::of(&action),
            action,
            reason,
        }
    }

    /// The same step in another phase.
    pub fn in_phase(self, phase: Phase) -> Step {
        Step { phase, ..self }
    }

    /// `endpoint` or `endpoint/deployment`, the subject of the step.
    pub fn subject(&self) -> String {
        match self.action.deployment() {
            Some(d) => format!("{}/{}", self.endpoint, d),
            None => self.endpoint.clone(),
        }
    }
}

/// Something the user should know that does not stop the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    pub message: String,
}

impl Note {
    /// `endpoint` or `endpoint/deployment`, the subject of the note.
    pub fn subject(&self) -> String {
        match &self.deployment {
            Some(d) => format!("{}/{d}", self.endpoint),
            None => self.endpoint.clone(),
        }
    }
}

/// A change the planner refuses to make; any refusal means nothing is applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("endpoint {}{}: {}", Esc(endpoint), deployment.as_ref().map(|d| format!(": deployment {}", Esc(d))).unwrap_or_default(), Esc(message))]
pub struct Refusal {
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    pub message: String,
}

/// A live endpoint or deployment in a non-terminal state: an operation (an interrupted apply,
/// another writer) is still under way, so live is not settled and the plan is not "no changes".
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub endpoint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// The platform's state: `Creating`, `Updating`, `Deleting`, or `provisioning` (rollout).
    pub state: String,
}

impl std::fmt::Display for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "endpoint {}", self.endpoint)?;
        if let Some(d) = &self.deployment {
            write!(f, ": deployment {d}")?;
        }
        write!(f, " is {} (pending)", self.state)
    }
}

/// An ordered plan: all steps of endpoint A (in safe order), then endpoint B, ... by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
    /// Live objects still being provisioned; non-empty means "not converged" (exit 1).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<Pending>,
    /// Endpoints in the middle of a staged rollout (or held after one failed): the steps above
    /// move them to this tick's stage, not yet to the declared traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollouts: Vec<crate::rollout::RolloutView>,
}

impl Plan {
    /// No steps and nothing pending: live equals desired and is settled.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.pending.is_empty()
    }

    /// Steps grouped by endpoint, each group in plan order (the executor runs groups in parallel).
    pub fn by_endpoint(&self) -> Vec<(&str, Vec<&Step>)> {
        let mut groups: Vec<(&str, Vec<&Step>)> = Vec::new();
        for step in &self.steps {
            match groups.last_mut() {
                Some((name, steps)) if *name == step.endpoint => steps.push(step),
                _ => groups.push((step.endpoint.as_str(), vec![step])),
            }
        }
        groups
    }
}
