//! In-memory backend: live state behind a mutex. It enforces the platform's own rules (Azure ML
//! [AML R1–R5, R9, R11]), so a plan that breaks one fails here exactly as it would live.
//! Used by the property tests and, persisted to a file, by the `state_file` target.

use std::collections::BTreeSet;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Backend, BackendError, StepDetail};
use crate::model::{
    DeploymentState, LiveDeployment, LiveEndpoint, LiveState, Weights, effective, weight_sum,
};
use crate::plan::{Action, Step};
use crate::rollout::RolloutRecord;

/// Applies one step to a live state, or says which platform rule it breaks. Pure.
pub fn apply_step(
    state: &mut LiveState,
    step: &Step,
    failing_tests: &BTreeSet<String>,
) -> Result<StepDetail, BackendError> {
    let subject = step.subject();
    let refuse = |message: String| BackendError::Platform {
        transient: false,
        source: None,
        subject: subject.clone(),
        code: "BadArgument".into(),
        message,
    };
    let not_found = || BackendError::Platform {
        transient: false,
        source: None,
        subject: subject.clone(),
        code: "ResourceNotFound".into(),
        message: "not found".into(),
    };
    if let Action::CreateEndpoint { settings } = &step.action {
        if state.endpoints.contains_key(&step.endpoint) {
            return Err(refuse("endpoint already exists".into()));
        }
        let endpoint = LiveEndpoint {
            name: step.endpoint.clone(),
            settings: settings.clone(),
            traffic: Weights::new(),
            mirror_traffic: Weights::new(),
            deployments: Default::default(),
            scoring_uri: None,
            busy: None,
            problems: Vec::new(),
            rollout: None,
        };
        state.endpoints.insert(step.endpoint.clone(), endpoint);
        return Ok(StepDetail::default());
    }
    if let Action::DeleteEndpoint = &step.action {
        // R10: deleting an endpoint deletes its deployments.
        state
            .endpoints
            .remove(&step.endpoint)
            .ok_or_else(not_found)?;
        return Ok(StepDetail::default());
    }
    // R11: every other operation needs the endpoint.
    let endpoint = state
        .endpoints
        .get_mut(&step.endpoint)
        .ok_or_else(not_found)?;
    match &step.action {
        Action::CreateEndpoint { .. } | Action::DeleteEndpoint => unreachable!("handled above"),
        Action::UpdateEndpoint { settings, .. } => endpoint.settings = settings.clone(),
        Action::RepairEndpoint { settings, .. } => {
            endpoint.settings = settings.clone();
            endpoint.problems.clear();
        }
        Action::CreateDeployment {
            deployment,
            settings,
        } => {
            if endpoint.deployments.contains_key(deployment) {
                return Err(refuse(format!("deployment {deployment} already exists")));
            }
            let live = LiveDeployment {
                name: deployment.clone(),
                settings: settings.clone(),
                state: DeploymentState::Ready,
                phase: None,
            };
            endpoint.deployments.insert(deployment.clone(), live);
        }
        Action::UpdateDeployment {
            deployment,
            settings,
            ..
        } => {
            let d = endpoint
                .deployments
                .get_mut(deployment)
                .ok_or_else(not_found)?;
            d.settings = settings.clone();
            d.state = DeploymentState::Ready;
        }
        Action::ScaleDeployment { deployment, to, .. } => {
            let d = endpoint
                .deployments
                .get_mut(deployment)
                .ok_or_else(not_found)?;
            d.settings.instance_count = Some(*to);
        }
        Action::WaitReady { deployment } => {
            let d = endpoint
                .deployments
                .get_mut(deployment)
                .ok_or_else(not_found)?;
            match &d.state {
                DeploymentState::Failed { message } => {
                    return Err(BackendError::Platform {
                        transient: false,
                        source: None,
                        subject,
                        code: "ProvisioningFailed".into(),
                        message: message.clone(),
                    });
                }
                _ => d.state = DeploymentState::Ready,
            }
        }
        Action::TestDeployment { deployment, .. } => {
            let d = endpoint.deployments.get(deployment).ok_or_else(not_found)?;
            if !d.state.is_ready() {
                return Err(BackendError::TestFailed {
                    subject,
                    message: "503: deployment is not ready".into(),
                });
            }
            if failing_tests.contains(deployment) {
                return Err(BackendError::TestFailed {
                    subject,
                    message: "500: model error".into(),
                });
            }
            return Ok(StepDetail {
                detail: "200 (simulated: this backend has no data plane)".into(),
            });
        }
        Action::SetTraffic { traffic } => {
            check_traffic(endpoint, traffic).map_err(refuse)?;
            endpoint.traffic = traffic.clone();
        }
        Action::SetMirrorTraffic { mirror_traffic } => {
            check_mirror(endpoint, mirror_traffic).map_err(refuse)?;
            endpoint.mirror_traffic = mirror_traffic.clone();
        }
        Action::DeleteDeployment { deployment } => {
            // R9: a deployment that takes traffic cannot be deleted.
            if effective(&endpoint.traffic).contains_key(deployment)
                || effective(&endpoint.mirror_traffic).contains_key(deployment)
            {
                return Err(refuse(format!(
                    "deployment {deployment} still takes traffic; set it to 0 first"
                )));
            }
            endpoint
                .deployments
                .remove(deployment)
                .ok_or_else(not_found)?;
            endpoint.traffic.remove(deployment);
            endpoint.mirror_traffic.remove(deployment);
        }
    }
    Ok(StepDetail::default())
}

/// Stores (or, with `None`, removes) the rollout record of `endpoint` in a live state. Pure; an
/// endpoint that does not exist is refused and nothing changes.
pub fn set_rollout(
    state: &mut LiveState,
    endpoint: &str,
    record: Option<&RolloutRecord>,
) -> Result<(), BackendError> {
    let live = state
        .endpoints
        .get_mut(endpoint)
        .ok_or_else(|| BackendError::Platform {
            transient: false,
            source: None,
            subject: format!("endpoint {endpoint}"),
            code: "ResourceNotFound".into(),
            message: "cannot store rollout progress: the endpoint does not exist".into(),
        })?;
    live.rollout = record.cloned();
    Ok(())
}

fn check_targets(endpoint: &LiveEndpoint, weights: &Weights) -> Result<(), String> {
    for (name, w) in weights {
        if *w > 100 {
            return Err(format!("weight {w} for {name} is over 100"));
        }
        match endpoint.deployments.get(name) {
            None => return Err(format!("deployment {name} does not exist")),
            Some(d) if *w > 0 && !d.state.is_ready() => {
                return Err(format!("deployment {name} is not ready"));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// R1, R2, R5 for a traffic map.
fn check_traffic(endpoint: &LiveEndpoint, traffic: &Weights) -> Result<(), String> {
    check_targets(endpoint, traffic)?;
    let sum = weight_sum(traffic);
    if sum != 0 && sum != 100 {
        return Err(format!("traffic sums to {sum}, expected 100"));
    }
    let mirror = effective(&endpoint.mirror_traffic);
    if let Some(name) = effective(traffic).keys().find(|n| mirror.contains_key(*n)) {
        return Err(format!(
            "{name} takes mirror traffic and cannot take live traffic"
        ));
    }
    Ok(())
}

/// R2–R5 for a mirror map.
fn check_mirror(endpoint: &LiveEndpoint, mirror: &Weights) -> Result<(), String> {
    check_targets(endpoint, mirror)?;
    let mirror = effective(mirror);
    if mirror.len() > 1 {
        return Err("mirror traffic can name only one deployment".into());
    }
    if weight_sum(&mirror) > 50 {
        return Err("mirror traffic sums to more than 50".into());
    }
    let traffic = effective(&endpoint.traffic);
    if let Some(name) = mirror.keys().find(|n| traffic.contains_key(*n)) {
        return Err(format!(
            "{name} takes live traffic and cannot be mirrored to"
        ));
    }
    Ok(())
}

/// Live state in memory.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    state: Mutex<LiveState>,
    failing_tests: Mutex<BTreeSet<String>>,
    log: Mutex<Vec<String>>,
}

impl MemoryBackend {
    pub fn new(live: LiveState) -> Self {
        MemoryBackend {
            state: Mutex::new(live),
            ..MemoryBackend::default()
        }
    }

    /// The current live state.
    pub fn snapshot(&self) -> LiveState {
        self.state.lock().expect("state lock").clone()
    }

    /// Makes every pre-traffic test of `deployment` fail, as a broken model would.
    pub fn fail_tests_of(&self, deployment: &str) {
        self.failing_tests
            .lock()
            .expect("tests lock")
            .insert(deployment.to_string());
    }

    /// Every executed step as `action subject`, in order.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn read_live(&self) -> Result<LiveState, BackendError> {
        Ok(self.snapshot())
    }

    async fn execute(&self, step: &Step) -> Result<StepDetail, BackendError> {
        self.log.lock().expect("log lock").push(format!(
            "{} {}",
            step.action.kind(),
            step.subject()
        ));
        let failing = self.failing_tests.lock().expect("tests lock").clone();
        let mut state = self.state.lock().expect("state lock");
        apply_step(&mut state, step, &failing)
    }

    async fn write_rollout(
        &self,
        endpoint: &str,
        record: Option<&RolloutRecord>,
    ) -> Result<(), BackendError> {
        let mut state = self.state.lock().expect("state lock");
        set_rollout(&mut state, endpoint, record)
    }
}
