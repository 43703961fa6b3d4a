//! The in-memory store: workspaces, endpoints, deployments, the operations in flight, and the
//! injected deployment faults. Everything here is synchronous and clock-explicit: callers pass
//! `now` or the sandbox `Clock`, and `settle` finishes every operation whose time has come (states advance lazily,
//! on the next request, so no background task is needed).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::clock::Clock;

use super::error::ArmError;
use super::faults::DeploymentFault;
use super::history::{self, History};
use super::holds::Holds;
use super::lro::{OpKind, OpStatus, Operation};
use super::routing::RoutingState;

/// `/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}`.
/// Workspaces spring into existence on first use. Names are kept case-sensitive (ARM itself
/// compares these case-insensitively; documented in docs/sandbox.md).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkspaceKey {
    pub subscription: String,
    pub resource_group: String,
    pub workspace: String,
}

impl WorkspaceKey {
    pub fn arm_prefix(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/workspaces/{}",
            self.subscription, self.resource_group, self.workspace
        )
    }

    pub fn endpoint_id(&self, endpoint: &str) -> String {
        format!("{}/onlineEndpoints/{endpoint}", self.arm_prefix())
    }

    pub fn deployment_id(&self, endpoint: &str, deployment: &str) -> String {
        format!("{}/deployments/{deployment}", self.endpoint_id(endpoint))
    }
}

/// EndpointProvisioningState / DeploymentProvisioningState [AML §2.2, §2.3, §3].
/// `Canceled` is never produced: the sandbox refuses conflicting operations with 409 instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProvisioningState {
    Creating,
    Updating,
    Scaling,
    Deleting,
    Succeeded,
    Failed,
}

impl ProvisioningState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProvisioningState::Creating => "Creating",
            ProvisioningState::Updating => "Updating",
            ProvisioningState::Scaling => "Scaling",
            ProvisioningState::Deleting => "Deleting",
            ProvisioningState::Succeeded => "Succeeded",
            ProvisioningState::Failed => "Failed",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    Key,
    AmlToken,
    AadToken,
}

impl AuthMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Key" => Some(AuthMode::Key),
            "AMLToken" => Some(AuthMode::AmlToken),
            "AADToken" => Some(AuthMode::AadToken),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Key => "Key",
            AuthMode::AmlToken => "AMLToken",
            AuthMode::AadToken => "AADToken",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComputeType {
    Managed,
    Kubernetes,
}

impl ComputeType {
    pub fn as_str(self) -> &'static str {
        match self {
            ComputeType::Managed => "Managed",
            ComputeType::Kubernetes => "Kubernetes",
        }
    }
}

/// The tracked-resource envelope fields a client may set [AML §2.1].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Envelope {
    pub tags: Map<String, Value>,
    pub kind: Option<String>,
    /// As sent (type + userAssignedIdentities); read-only ids are added when rendering.
    pub identity: Option<Value>,
    pub sku: Option<Map<String, Value>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamps {
    pub created_at: DateTime<Utc>,
    pub modified_at: DateTime<Utc>,
}

impl Timestamps {
    pub fn new(now: DateTime<Utc>) -> Self {
        Timestamps {
            created_at: now,
            modified_at: now,
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct EndpointKeys {
    pub primary: String,
    pub secondary: String,
}

impl std::fmt::Debug for EndpointKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EndpointKeys(***)")
    }
}

#[derive(Debug)]
pub struct Endpoint {
    pub name: String,
    pub ws: WorkspaceKey,
    pub location: String,
    pub envelope: Envelope,
    pub auth_mode: AuthMode,
    pub compute: Option<String>,
    pub traffic: BTreeMap<String, u32>,
    pub mirror: Option<BTreeMap<String, u32>>,
    /// Other `properties` fields: description, properties, publicNetworkAccess.
    pub props: Map<String, Value>,
    pub state: ProvisioningState,
    pub times: Timestamps,
    pub keys: EndpointKeys,
    pub deployments: BTreeMap<String, Deployment>,
    /// The operation in flight on this endpoint or one of its deployments (§3 Concurrency).
    pub busy: Option<String>,
    pub seq: u64,
    pub routing: RoutingState,
}

impl Endpoint {
    pub fn is_kubernetes(&self) -> bool {
        self.compute.is_some()
    }
}

#[derive(Debug)]
pub struct Deployment {
    pub name: String,
    pub location: String,
    pub envelope: Envelope,
    pub compute_type: ComputeType,
    /// `properties` with the defaults of [AML §2.3] filled in, without provisioningState.
    pub props: Map<String, Value>,
    pub state: ProvisioningState,
    pub times: Timestamps,
    /// When the containers answer after the last successful create/update (startup delay).
    pub ready_at: Option<Instant>,
    /// The version that answered before the change in progress (or the one that failed) was
    /// applied. It keeps serving until the new version is ready, as a rolling update does.
    pub previous: Option<Served>,
    pub seq: u64,
}

/// A version of a deployment that answers requests: its model and when it became ready.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Served {
    pub model: String,
    pub ready_at: Instant,
}

impl Deployment {
    fn model(&self) -> String {
        self.props
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    }

    /// The current properties' version, once provisioned.
    fn current_version(&self) -> Option<Served> {
        if self.state != ProvisioningState::Succeeded {
            return None;
        }
        self.ready_at.map(|ready_at| Served {
            model: self.model(),
            ready_at,
        })
    }

    /// Call before a PUT or PATCH replaces the properties: remembers the version that serves
    /// now, so it keeps answering while the change runs and after the change fails.
    pub fn begin_change(&mut self, now: Instant) {
        let current = self.current_version();
        self.previous = match (current, self.previous.take()) {
            // The current version is still starting: the one before it is what serves.
            (Some(c), Some(p)) if c.ready_at > now && p.ready_at <= now => Some(p),
            (Some(c), _) => Some(c),
            (None, p) => p,
        };
    }

    /// The model that answers at `now`: the current version once it is `Succeeded` and started;
    /// otherwise the previous version while an update or scale is in progress, after one
    /// failed, or while the new version starts. `None`: nothing answers (503).
    pub fn serving(&self, now: Instant) -> Option<String> {
        if let Some(current) = self.current_version()
            && current.ready_at <= now
        {
            return Some(current.model);
        }
        let keeps_old = matches!(
            self.state,
            ProvisioningState::Updating
                | ProvisioningState::Scaling
                | ProvisioningState::Failed
                | ProvisioningState::Succeeded
        );
        self.previous
            .as_ref()
            .filter(|p| keeps_old && p.ready_at <= now)
            .map(|p| p.model.clone())
    }
}

/// Where an operation acts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub ws: WorkspaceKey,
    pub endpoint: String,
    pub deployment: Option<String>,
}

/// How many finished operations stay pollable.
const MAX_FINISHED_OPS: usize = 20_000;

#[derive(Debug, Default)]
pub struct Store {
    pub workspaces: BTreeMap<WorkspaceKey, BTreeMap<String, Endpoint>>,
    /// Lower-cased endpoint name → workspace: names are unique per region (R12).
    pub names: HashMap<String, WorkspaceKey>,
    pub ops: HashMap<String, Operation>,
    pending: BTreeSet<(Instant, String)>,
    /// Injected data-plane and provisioning faults, by (endpoint, deployment).
    pub faults: HashMap<(String, String), DeploymentFault>,
    /// Operations kept in progress until the test releases them (`/_sandbox/operations`).
    pub holds: Holds,
    /// Every change of routing and deployment states (`/_sandbox/history`).
    pub history: History,
    seq: u64,
}

impl Store {
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn endpoint(&self, ws: &WorkspaceKey, name: &str) -> Option<&Endpoint> {
        self.workspaces.get(ws).and_then(|eps| eps.get(name))
    }

    pub fn endpoint_mut(&mut self, ws: &WorkspaceKey, name: &str) -> Option<&mut Endpoint> {
        self.workspaces
            .get_mut(ws)
            .and_then(|eps| eps.get_mut(name))
    }

    pub fn endpoint_or_404(&self, ws: &WorkspaceKey, name: &str) -> Result<&Endpoint, ArmError> {
        self.endpoint(ws, name)
            .ok_or_else(|| endpoint_not_found(name))
    }

    pub fn endpoint_mut_or_404(
        &mut self,
        ws: &WorkspaceKey,
        name: &str,
    ) -> Result<&mut Endpoint, ArmError> {
        self.endpoint_mut(ws, name)
            .ok_or_else(|| endpoint_not_found(name))
    }

    pub fn insert_endpoint(&mut self, endpoint: Endpoint) {
        self.names
            .insert(endpoint.name.to_ascii_lowercase(), endpoint.ws.clone());
        self.workspaces
            .entry(endpoint.ws.clone())
            .or_default()
            .insert(endpoint.name.clone(), endpoint);
    }

    /// Registers an operation and marks its endpoint busy. Finished operations beyond
    /// `MAX_FINISHED_OPS` are forgotten, oldest first, so a long-running sandbox stays bounded.
    pub fn start_op(&mut self, op: Operation) {
        if self.ops.len() >= MAX_FINISHED_OPS + self.pending.len() + self.holds.held().len() {
            let mut finished: Vec<(DateTime<Utc>, String)> = self
                .ops
                .values()
                .filter_map(|o| o.ended.map(|t| (t, o.id.clone())))
                .collect();
            finished.sort();
            let excess = finished.len().saturating_sub(MAX_FINISHED_OPS / 2);
            for (_, id) in finished.into_iter().take(excess) {
                self.ops.remove(&id);
            }
        }
        if let Some(ep) = self.endpoint_mut(&op.target.ws, &op.target.endpoint) {
            ep.busy = Some(op.id.clone());
        }
        // A held operation is not scheduled: it stays in progress until `release_held`.
        if !self.holds.catch(&op.target, &op.id) {
            self.pending.insert((op.due, op.id.clone()));
        }
        self.ops.insert(op.id.clone(), op);
    }

    /// Removes every hold and schedules the held operations: each ends when its provisioning
    /// delay is over, or at `now` if that time has passed. Returns their ids, oldest first.
    pub fn release_held(&mut self, now: Instant) -> Vec<String> {
        let ids = self.holds.release();
        for id in &ids {
            if let Some(op) = self.ops.get_mut(id) {
                op.due = op.due.max(now);
                self.pending.insert((op.due, id.clone()));
            }
        }
        ids
    }

    /// Finishes every operation due at or before `now`, in due order.
    pub fn settle(&mut self, clock: &Clock, startup_delay: Duration) {
        let now = clock.now();
        while let Some((due, id)) = self.pending.first().cloned() {
            if due > now {
                break;
            }
            self.pending.pop_first();
            self.finish(&id, due, clock, startup_delay);
            // Stamped when the operation ended, whenever a request observes it.
            self.observe(clock.utc(due));
        }
    }

    /// Records in the history what changed since the last observation.
    pub fn observe(&mut self, now: DateTime<Utc>) {
        let mut h = std::mem::take(&mut self.history);
        history::observe(&mut h, self, now);
        self.history = h;
    }

    /// Applies the terminal effect of one operation ([AML §3] lifecycle).
    fn finish(&mut self, id: &str, due: Instant, clock: &Clock, startup_delay: Duration) {
        let Some(op) = self.ops.get(id) else { return };
        let target = op.target.clone();
        let kind = op.kind.clone();
        let failure = op.failure.clone();
        let outcome = match failure {
            Some(error) => OpStatus::Failed(error),
            None => OpStatus::Succeeded,
        };
        let succeeded = matches!(outcome, OpStatus::Succeeded);
        // The operation ended when it was due, whenever a request observes it.
        let now_utc = clock.utc(due);

        if let Some(ep) = self.endpoint_mut(&target.ws, &target.endpoint)
            && ep.busy.as_deref() == Some(id)
        {
            ep.busy = None;
        }
        match (&kind, &target.deployment, succeeded) {
            (OpKind::Delete, None, true) => {
                // R10: deleting an endpoint deletes all its deployments.
                if let Some(eps) = self.workspaces.get_mut(&target.ws) {
                    eps.remove(&target.endpoint);
                }
                self.names.remove(&target.endpoint.to_ascii_lowercase());
                self.faults.retain(|(e, _), _| e != &target.endpoint);
            }
            (OpKind::Delete, Some(d), true) => {
                if let Some(ep) = self.endpoint_mut(&target.ws, &target.endpoint) {
                    ep.deployments.remove(d);
                    ep.traffic.remove(d);
                    if let Some(mirror) = ep.mirror.as_mut() {
                        mirror.remove(d);
                    }
                }
                self.faults
                    .retain(|(e, dep), _| !(e == &target.endpoint && dep == d));
            }
            (OpKind::RegenerateKeys { key_type, value }, _, true) => {
                if let Some(ep) = self.endpoint_mut(&target.ws, &target.endpoint) {
                    match key_type {
                        super::lro::KeyType::Primary => ep.keys.primary = value.clone(),
                        super::lro::KeyType::Secondary => ep.keys.secondary = value.clone(),
                    }
                }
            }
            (OpKind::RegenerateKeys { .. }, _, false) => {}
            (_, None, _) => {
                if let Some(ep) = self.endpoint_mut(&target.ws, &target.endpoint) {
                    ep.state = terminal_state(succeeded);
                    ep.times.modified_at = now_utc;
                }
            }
            (_, Some(d), _) => {
                if let Some(dep) = self
                    .endpoint_mut(&target.ws, &target.endpoint)
                    .and_then(|ep| ep.deployments.get_mut(d))
                {
                    dep.state = terminal_state(succeeded);
                    dep.times.modified_at = now_utc;
                    let restarts = matches!(kind, OpKind::Create | OpKind::Update);
                    if succeeded && (restarts || dep.ready_at.is_none()) {
                        dep.ready_at = Some(due + startup_delay);
                    }
                }
            }
        }
        if let Some(op) = self.ops.get_mut(id) {
            op.status = outcome;
            op.ended = Some(now_utc);
        }
    }
}

fn terminal_state(succeeded: bool) -> ProvisioningState {
    if succeeded {
        ProvisioningState::Succeeded
    } else {
        ProvisioningState::Failed
    }
}

pub fn endpoint_not_found(name: &str) -> ArmError {
    ArmError::not_found(format!("online endpoint {name} was not found"))
}

pub fn deployment_not_found(endpoint: &str, name: &str) -> ArmError {
    ArmError::not_found(format!(
        "online deployment {name} was not found in endpoint {endpoint}"
    ))
}

/// [AML §3] Concurrency [emu]: 409 while an operation on the endpoint (or one of its
/// deployments) is not terminal.
pub fn ensure_idle(ep: &Endpoint) -> Result<(), ArmError> {
    match &ep.busy {
        Some(op) => Err(ArmError::conflict(format!(
            "endpoint {}: another operation is in progress ({op}); retry when it completes",
            ep.name
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(model: &str, ready_at: Instant) -> Deployment {
        let mut props = Map::new();
        props.insert("model".into(), json!(model));
        Deployment {
            name: "blue".into(),
            location: "westus2".into(),
            envelope: Envelope::default(),
            compute_type: ComputeType::Managed,
            props,
            state: ProvisioningState::Succeeded,
            times: Timestamps::new(Utc::now()),
            ready_at: Some(ready_at),
            previous: None,
            seq: 1,
        }
    }

    #[test]
    fn the_previous_version_serves_until_the_updated_one_has_started() {
        let t0 = Instant::now();
        let mut dep = deployment("v1", t0);
        dep.begin_change(t0);
        dep.props.insert("model".into(), json!("v2"));
        dep.state = ProvisioningState::Updating;
        assert_eq!(dep.serving(t0).as_deref(), Some("v1"));
        // Succeeded, but v2's containers start 5 s later: v1 answers until then.
        dep.state = ProvisioningState::Succeeded;
        dep.ready_at = Some(t0 + Duration::from_secs(5));
        assert_eq!(
            dep.serving(t0 + Duration::from_secs(1)).as_deref(),
            Some("v1")
        );
        assert_eq!(
            dep.serving(t0 + Duration::from_secs(5)).as_deref(),
            Some("v2")
        );
    }

    #[test]
    fn an_update_while_the_last_one_still_starts_keeps_the_version_that_answers() {
        let t0 = Instant::now();
        let mut dep = deployment("v2", t0 + Duration::from_secs(5));
        dep.previous = Some(Served {
            model: "v1".into(),
            ready_at: t0,
        });
        dep.begin_change(t0 + Duration::from_secs(1));
        assert_eq!(dep.previous.as_ref().map(|p| p.model.as_str()), Some("v1"));
        // A deployment being created or deleted has nothing else to serve.
        let mut fresh = deployment("v1", t0);
        fresh.state = ProvisioningState::Creating;
        assert_eq!(fresh.serving(t0), None);
    }
}
