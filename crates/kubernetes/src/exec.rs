//! Executing one plan step. Each write returns only when its effect is complete: a create, update
//! or scale waits for the rollout predicate [K8S §3] before returning, so the next step
//! may route traffic to it. Router changes follow make-before-break ([K8S §1] ISTIO-MBB and
//! §6): DR subset before the VirtualService names it; VirtualService drops it before the DR does.

use std::collections::{BTreeMap, BTreeSet};
use tokio::time::Instant;

use super::objects::{
    DEPLOYMENT_LABEL, ENDPOINT_LABEL, MANAGED_SELECTOR, deployment_object,
    endpoint_settings_from_service, pool_name, pool_service, port_of, primary, service_selector,
    settings_from_deployment, umbrella_selector, umbrella_service, version_name, version_service,
};
use super::rollout::{Rollout, rollout_status};
use super::routing::{RouteError, RouteInput, destination_rule, http_route, virtual_service};
use super::ssa::{apply, delete_owned, get_owned, list_all};
use super::{KubernetesBackend, RouterState};
use flightdeck_core::backend::{BackendError, StepDetail};
use flightdeck_core::model::{DeploymentSettings, EndpointSettings, Weights};
use flightdeck_core::plan::{Action, Step};

fn outcome(detail: impl Into<String>) -> StepDetail {
    StepDetail {
        detail: detail.into(),
    }
}

fn route_error(subject: &str, err: RouteError) -> BackendError {
    BackendError::Platform {
        transient: false,
        source: None,
        subject: subject.to_string(),
        code: "InvalidTraffic".to_string(),
        message: err.to_string(),
    }
}

impl KubernetesBackend {
    pub(super) async fn execute_step(&self, step: &Step) -> Result<StepDetail, BackendError> {
        let subject = step.subject();
        let e = step.endpoint.as_str();
        tracing::info!(endpoint = e, action = step.action.kind(), "executing step");
        match &step.action {
            Action::CreateEndpoint { settings } | Action::UpdateEndpoint { settings, .. } => {
                self.apply_endpoint(&subject, e, settings, false).await?;
                Ok(outcome(format!("applied service {e}")))
            }
            Action::RepairEndpoint { settings, problems } => {
                self.apply_endpoint(&subject, e, settings, true).await?;
                Ok(outcome(format!("repaired: {}", problems.join("; "))))
            }
            Action::CreateDeployment {
                deployment,
                settings,
            } => {
                self.create_deployment(&subject, e, deployment, settings)
                    .await
            }
            Action::UpdateDeployment {
                deployment,
                settings,
                ..
            } => {
                self.apply_version(&subject, e, deployment, settings)
                    .await?;
                let waited = self
                    .wait_rollout(&subject, &version_name(e, deployment))
                    .await?;
                Ok(outcome(format!("rolled out in {waited:.1?}")))
            }
            Action::ScaleDeployment { deployment, to, .. } => {
                let name = version_name(e, deployment);
                let Some(current) = get_owned(&self.deployments(), &subject, &name).await? else {
                    return Err(BackendError::Platform {
                        transient: false,
                        source: None,
                        subject,
                        code: "NotFound".to_string(),
                        message: format!("deployment {name} does not exist"),
                    });
                };
                let mut settings = settings_from_deployment(&current);
                settings.instance_count = Some(*to);
                apply(
                    &self.deployments(),
                    &subject,
                    &deployment_object(e, deployment, self.ns(), &settings),
                )
                .await?;
                let waited = self.wait_rollout(&subject, &name).await?;
                Ok(outcome(format!("scaled to {to} in {waited:.1?}")))
            }
            Action::WaitReady { deployment } => {
                let waited = self
                    .wait_rollout(&subject, &version_name(e, deployment))
                    .await?;
                Ok(outcome(format!("ready after {waited:.1?}")))
            }
            Action::TestDeployment { deployment, test } => {
                self.run_test(&subject, e, deployment, test).await
            }
            Action::SetTraffic { traffic } => {
                let state = self.router_state(&subject, e).await?;
                // The umbrella follows the primary version. It moves first when the new primary
                // already takes traffic, else after the router, so that a client without a
                // sidecar never reaches a version the router gives 0%.
                let next = primary(traffic);
                let first = next.is_some_and(|p| state.traffic.get(p).is_some_and(|w| *w > 0));
                if first {
                    self.point_umbrella(&subject, e, next).await?;
                }
                // A version that takes live weight is no longer mirrored, in this same write
                // (the profile's `shift_drops_mirror`: the mirror is a field of the split rule,
                // [K8S §1] `mirror`, [K8S §2] `RequestMirror`).
                let mirror: Weights = state
                    .mirror
                    .iter()
                    .filter(|(d, _)| traffic.get(*d).is_none_or(|w| *w == 0))
                    .map(|(d, p)| (d.clone(), *p))
                    .collect();
                self.write_router(&subject, e, &state.versions, traffic, &mirror)
                    .await?;
                if !first {
                    self.point_umbrella(&subject, e, next).await?;
                }
                Ok(outcome(format!(
                    "traffic {}",
                    flightdeck_core::model::weights_display(traffic)
                )))
            }
            Action::SetMirrorTraffic { mirror_traffic } => {
                let state = self.router_state(&subject, e).await?;
                self.write_router(&subject, e, &state.versions, &state.traffic, mirror_traffic)
                    .await?;
                Ok(outcome(format!(
                    "mirror {}",
                    flightdeck_core::model::weights_display(mirror_traffic)
                )))
            }
            Action::DeleteDeployment { deployment } => {
                self.delete_deployment(&subject, e, deployment).await
            }
            Action::DeleteEndpoint => self.delete_endpoint(&subject, e).await,
        }
    }

    /// Applies the umbrella Service (selecting the live primary version), and on Istio the pool
    /// Service and the DestinationRule (keeping its subsets). A repair also re-applies every
    /// version's Service, adds a subset for every ready version (then waits the propagation
    /// delay), and re-renders the router with its live weights: every object the router names
    /// exists again before the router is written.
    async fn apply_endpoint(
        &self,
        subject: &str,
        e: &str,
        settings: &EndpointSettings,
        repair: bool,
    ) -> Result<(), BackendError> {
        let state = self.router_state(subject, e).await?;
        let umbrella = umbrella_service(e, self.ns(), settings, primary(&state.traffic));
        apply(&self.services(), subject, &umbrella).await?;
        let mut ready = BTreeSet::new();
        if repair {
            let selector = format!("{MANAGED_SELECTOR},{ENDPOINT_LABEL}={e}");
            for dep in list_all(&self.deployments(), subject, &selector).await? {
                let Some(d) = dep
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(DEPLOYMENT_LABEL))
                else {
                    continue;
                };
                let port = port_of(&settings_from_deployment(&dep));
                apply(
                    &self.services(),
                    subject,
                    &version_service(e, d, self.ns(), port),
                )
                .await?;
                if super::live::deployment_state(&dep).is_ready() {
                    ready.insert(d.clone());
                }
            }
        }
        if self.is_istio() {
            apply(&self.services(), subject, &pool_service(e, self.ns())).await?;
            let mut subsets = state.subsets.clone();
            subsets.extend(ready);
            apply(
                &self.destination_rules().await?,
                subject,
                &destination_rule(e, self.ns(), &subsets),
            )
            .await?;
            if repair && subsets != state.subsets && state.exists {
                // [K8S §1] ISTIO-MBB: the subset reaches proxies before the VS names it.
                tokio::time::sleep(self.opts.make_before_break_delay).await;
            }
        }
        if repair && state.exists {
            let now = self.router_state(subject, e).await?;
            self.write_router(subject, e, &now.versions, &state.traffic, &state.mirror)
                .await?;
        }
        Ok(())
    }

    /// Points the umbrella Service at `primary` (keeping its settings); no write when it already
    /// selects it.
    async fn point_umbrella(
        &self,
        subject: &str,
        e: &str,
        primary: Option<&str>,
    ) -> Result<(), BackendError> {
        let current = get_owned(&self.services(), subject, e).await?;
        if current
            .as_ref()
            .is_some_and(|svc| service_selector(svc) == umbrella_selector(e, primary))
        {
            return Ok(());
        }
        let settings = current
            .as_ref()
            .map(endpoint_settings_from_service)
            .unwrap_or_default();
        let umbrella = umbrella_service(e, self.ns(), &settings, primary);
        apply(&self.services(), subject, &umbrella).await?;
        Ok(())
    }

    /// Applies the Deployment and Service of one version (no wait).
    async fn apply_version(
        &self,
        subject: &str,
        e: &str,
        d: &str,
        settings: &DeploymentSettings,
    ) -> Result<(), BackendError> {
        if settings.image.as_deref().is_none_or(str::is_empty) {
            return Err(BackendError::Platform {
                transient: false,
                source: None,
                subject: subject.to_string(),
                code: "InvalidSettings".to_string(),
                message: format!("deployment {d} has no image; set `image` for kubernetes targets"),
            });
        }
        if settings.autoscaling.is_some() {
            let existing = get_owned(&self.deployments(), subject, &version_name(e, d)).await?;
            self.hand_replicas_over(subject, existing.as_ref()).await?;
        }
        apply(
            &self.deployments(),
            subject,
            &deployment_object(e, d, self.ns(), settings),
        )
        .await?;
        let service = version_service(e, d, self.ns(), port_of(settings));
        apply(&self.services(), subject, &service).await?;
        self.apply_policies(subject, e, d, settings).await?;
        Ok(())
    }

    async fn create_deployment(
        &self,
        subject: &str,
        e: &str,
        d: &str,
        settings: &DeploymentSettings,
    ) -> Result<StepDetail, BackendError> {
        self.apply_version(subject, e, d, settings).await?;
        // Readiness first: a version that never rolls out gets no DR subset and no route.
        let waited = self.wait_rollout(subject, &version_name(e, d)).await?;
        let mut state = self.router_state(subject, e).await?;
        if self.is_istio() && !state.subsets.contains(d) {
            let mut subsets = state.subsets.clone();
            subsets.insert(d.to_string());
            apply(
                &self.destination_rules().await?,
                subject,
                &destination_rule(e, self.ns(), &subsets),
            )
            .await?;
            // [K8S §1] ISTIO-MBB: apply the DR subset, wait, then let a VS name it.
            tokio::time::sleep(self.opts.make_before_break_delay).await;
            state
                .versions
                .insert(d.to_string(), i32::from(port_of(settings)));
        }
        if state.exists && self.target.pin_header.is_some() {
            // Add the pin rule for the new version; weights stay as they are.
            self.write_router(subject, e, &state.versions, &state.traffic, &state.mirror)
                .await?;
        }
        Ok(outcome(format!("rolled out in {waited:.1?}")))
    }

    /// Renders and applies the router (VirtualService or HTTPRoute).
    async fn write_router(
        &self,
        subject: &str,
        e: &str,
        versions: &BTreeMap<String, i32>,
        traffic: &Weights,
        mirror: &Weights,
    ) -> Result<(), BackendError> {
        let input = RouteInput {
            endpoint: e,
            target: &self.target,
            versions,
            traffic,
            mirror,
        };
        if self.is_istio() {
            let vs = virtual_service(&input).map_err(|err| route_error(subject, err))?;
            apply(&self.virtual_services().await?, subject, &vs).await?;
        } else {
            let route = http_route(&input).map_err(|err| route_error(subject, err))?;
            apply(&self.http_routes(), subject, &route).await?;
        }
        Ok(())
    }

    /// [K8S §6 step 6]: remove every router reference (weights, pins, mirror) → wait →
    /// remove the DR subset → delete the Deployment and Service.
    async fn delete_deployment(
        &self,
        subject: &str,
        e: &str,
        d: &str,
    ) -> Result<StepDetail, BackendError> {
        let RouterState {
            exists,
            mut traffic,
            mut mirror,
            referenced,
            mut versions,
            subsets,
        } = self.router_state(subject, e).await?;
        for (what, weights) in [("traffic", &traffic), ("mirror traffic", &mirror)] {
            if let Some(w) = weights.get(d).filter(|w| **w > 0) {
                return Err(BackendError::Platform {
                    transient: false,
                    source: None,
                    subject: subject.to_string(),
                    code: "NotDrained".to_string(),
                    message: format!(
                        "deployment {d} still takes {w}% of the {what}; drain it first"
                    ),
                });
            }
        }
        traffic.remove(d);
        mirror.remove(d);
        versions.remove(d);
        if exists && referenced.contains(d) {
            self.write_router(subject, e, &versions, &traffic, &mirror)
                .await?;
            // Config reaches Istio proxies and Gateway API data planes eventually ([K8S §1]
            // ISTIO-MBB, [K8S §6] step 6): wait before the DR subset, Deployment or Service goes.
            tokio::time::sleep(self.opts.make_before_break_delay).await;
        }
        if self.is_istio() && subsets.contains(d) {
            let mut remaining: BTreeSet<String> = subsets;
            remaining.remove(d);
            apply(
                &self.destination_rules().await?,
                subject,
                &destination_rule(e, self.ns(), &remaining),
            )
            .await?;
        }
        let name = version_name(e, d);
        self.delete_policies(subject, &name).await?;
        delete_owned(&self.deployments(), subject, &name).await?;
        delete_owned(&self.services(), subject, &name).await?;
        Ok(outcome(format!("deleted deployment and service {name}")))
    }

    async fn delete_endpoint(&self, subject: &str, e: &str) -> Result<StepDetail, BackendError> {
        if self.is_istio() {
            delete_owned(&self.virtual_services().await?, subject, e).await?;
            delete_owned(&self.destination_rules().await?, subject, e).await?;
        } else {
            delete_owned(&self.http_routes(), subject, e).await?;
        }
        delete_owned(&self.services(), subject, e).await?;
        if self.is_istio() {
            delete_owned(&self.services(), subject, &pool_name(e)).await?;
        }
        let selector = format!("{MANAGED_SELECTOR},{ENDPOINT_LABEL}={e}");
        let versions = list_all(&self.deployments(), subject, &selector).await?;
        let mut deleted = 0;
        for dep in versions {
            let Some(d) = dep
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(DEPLOYMENT_LABEL))
            else {
                continue;
            };
            let name = version_name(e, d);
            self.delete_policies(subject, &name).await?;
            delete_owned(&self.deployments(), subject, &name).await?;
            deleted += 1;
        }
        for (_, svc) in self.version_services(subject, e).await? {
            if let Some(name) = svc.metadata.name.as_deref() {
                delete_owned(&self.services(), subject, name).await?;
            }
        }
        Ok(outcome(format!(
            "deleted endpoint {e} and {deleted} deployments"
        )))
    }

    /// Polls the Deployment until the rollout predicate says done. ProgressDeadlineExceeded is a
    /// `Platform` error with that reason; running out of time is a `Timeout`.
    pub(super) async fn wait_rollout(
        &self,
        subject: &str,
        name: &str,
    ) -> Result<std::time::Duration, BackendError> {
        let start = Instant::now();
        loop {
            let Some(d) = get_owned(&self.deployments(), subject, name).await? else {
                return Err(BackendError::Platform {
                    transient: false,
                    source: None,
                    subject: subject.to_string(),
                    code: "NotFound".to_string(),
                    message: format!("deployment {name} does not exist"),
                });
            };
            let why = match rollout_status(&d) {
                Rollout::Done => return Ok(start.elapsed()),
                Rollout::DeadlineExceeded => {
                    return Err(BackendError::Platform {
                        transient: false,
                        source: None,
                        subject: subject.to_string(),
                        code: "ProgressDeadlineExceeded".to_string(),
                        message: format!("deployment {name} exceeded its progress deadline"),
                    });
                }
                Rollout::Pending(why) => why,
            };
            if start.elapsed() >= self.opts.rollout_timeout {
                return Err(BackendError::Timeout {
                    subject: subject.to_string(),
                    what: format!("rollout of deployment {name} ({why})"),
                    seconds: self.opts.rollout_timeout.as_secs(),
                });
            }
            tracing::debug!(deployment = name, status = %why, "waiting for rollout");
            tokio::time::sleep(self.opts.poll_interval).await;
        }
    }
}
