//! Reading live state: one LIST per kind with `app.kubernetes.io/managed-by=flightdeck` (never a
//! GET per object), readiness from the kubectl rollout predicate [K8S §3], and weights from
//! the router's catch-all rule.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::audit::{Found, endpoint_problems, names_taken};
use super::objects::{
    DEPLOYMENT_LABEL, ENDPOINT_LABEL, MANAGED_SELECTOR, endpoint_settings_from_service,
    service_port, settings_from_deployment, version_name,
};
use super::policy::{autoscaling_of, disruption_budget_of};
use super::progress;
use super::rollout::{Rollout, rollout_status};
use super::routing::{
    subsets_of, subsets_referenced, versions_referenced, weights_from_http_route,
    weights_from_virtual_service,
};
use super::ssa::{get_owned, list_all, list_unmanaged_names};
use super::{KubernetesBackend, RouterState};
use flightdeck_core::backend::BackendError;
use flightdeck_core::model::{
    DeploymentState, LiveDeployment, LiveEndpoint, LiveState, NameTaken, Weights,
};
use flightdeck_core::rollout::RolloutRecord;

/// Above this many endpoints a targeted read lists every managed object once (as `read_live`)
/// and keeps the named endpoints: a per-endpoint read costs one LIST per kind and endpoint.
const TARGETED_MAX: usize = 16;

/// A Kubernetes label value: at most 63 characters, alphanumerics with `-`, `_` or `.` inside.
/// Only such a name goes into a label selector.
fn is_label_value(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    !name.is_empty()
        && name.len() <= 63
        && edge(name.chars().next())
        && edge(name.chars().last())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn label<'a>(labels: &'a Option<BTreeMap<String, String>>, key: &str) -> Option<&'a str> {
    labels.as_ref()?.get(key).map(String::as_str)
}

/// The live state of a Deployment from the rollout predicate.
pub fn deployment_state(d: &k8s_openapi::api::apps::v1::Deployment) -> DeploymentState {
    match rollout_status(d) {
        Rollout::Done => DeploymentState::Ready,
        Rollout::Pending(_) => DeploymentState::Provisioning,
        Rollout::DeadlineExceeded => DeploymentState::Failed {
            message: format!(
                "deployment {} exceeded its progress deadline",
                d.metadata.name.as_deref().unwrap_or_default()
            ),
        },
    }
}

/// The rollout record on a routing object; a malformed one is logged and read as none, never
/// a failed read.
fn stored_progress(endpoint: &str, meta: &ObjectMeta) -> Option<RolloutRecord> {
    progress::record_of(meta).unwrap_or_else(|why| {
        tracing::warn!(endpoint, "{why}; ignoring the stored rollout progress");
        None
    })
}

impl KubernetesBackend {
    pub(super) async fn read_live_state(&self) -> Result<LiveState, BackendError> {
        let subject = format!("namespace {}", self.ns());
        let taken = self.taken_names(&subject).await?;
        let endpoints = self.read_managed(&subject, MANAGED_SELECTOR).await?;
        Ok(LiveState { endpoints, taken })
    }

    /// The endpoints named in `names` (a targeted reconcile): the managed objects of each,
    /// listed with its endpoint label (`{MANAGED_SELECTOR},{ENDPOINT_LABEL}=E`, one LIST per
    /// kind and endpoint; above [`TARGETED_MAX`] names, the full lists), and the names taken
    /// from them by unmanaged objects.
    pub(super) async fn read_endpoints(
        &self,
        names: &BTreeSet<String>,
    ) -> Result<LiveState, BackendError> {
        let subject = format!("namespace {}", self.ns());
        if names.len() > TARGETED_MAX {
            // One LIST per kind beats 4–5 per endpoint.
            let mut live = self.read_live_state().await?;
            live.retain_endpoints(names);
            return Ok(live);
        }
        let mut taken = self.taken_names(&subject).await?;
        taken.retain(|t| names.contains(&t.endpoint));
        let mut endpoints = BTreeMap::new();
        // A name that is no label value cannot be on a managed object: nothing to list.
        let labelled = names.iter().filter(|n| is_label_value(n));
        for name in labelled {
            let selector = format!("{MANAGED_SELECTOR},{ENDPOINT_LABEL}={name}");
            let mut found = self.read_managed(&subject, &selector).await?;
            if let Some(endpoint) = found.remove(name) {
                endpoints.insert(name.clone(), endpoint);
            }
        }
        Ok(LiveState { endpoints, taken })
    }

    /// Names that objects flightdeck does not own hold (`LiveState::taken`).
    async fn taken_names(&self, subject: &str) -> Result<Vec<NameTaken>, BackendError> {
        let mut taken = Vec::new();
        let router = self.target.router;
        for name in list_unmanaged_names(&self.deployments(), subject).await? {
            taken.extend(names_taken("Deployment", &name, router));
        }
        for name in list_unmanaged_names(&self.services(), subject).await? {
            taken.extend(names_taken("Service", &name, router));
        }
        if self.is_istio() {
            for name in list_unmanaged_names(&self.virtual_services().await?, subject).await? {
                taken.extend(names_taken("VirtualService", &name, router));
            }
            for name in list_unmanaged_names(&self.destination_rules().await?, subject).await? {
                taken.extend(names_taken("DestinationRule", &name, router));
            }
        } else {
            for name in list_unmanaged_names(&self.http_routes(), subject).await? {
                taken.extend(names_taken("HTTPRoute", &name, router));
            }
        }
        Ok(taken)
    }

    /// The endpoints of the managed objects that `selector` lists, by name.
    async fn read_managed(
        &self,
        subject: &str,
        selector: &str,
    ) -> Result<BTreeMap<String, LiveEndpoint>, BackendError> {
        let deployments = list_all(&self.deployments(), subject, selector).await?;
        let by_name = |meta: &ObjectMeta| meta.name.clone().unwrap_or_default();
        let hpas: BTreeMap<String, _> = list_all(&self.hpas(), subject, selector)
            .await?
            .into_iter()
            .map(|h| (by_name(&h.metadata), h))
            .collect();
        let pdbs: BTreeMap<String, _> = list_all(&self.pdbs(), subject, selector)
            .await?
            .into_iter()
            .map(|p| (by_name(&p.metadata), p))
            .collect();
        let services: BTreeMap<String, Service> = list_all(&self.services(), subject, selector)
            .await?
            .into_iter()
            .map(|s| (s.metadata.name.clone().unwrap_or_default(), s))
            .collect();
        let by_endpoint = |meta: &ObjectMeta| {
            let e = label(&meta.labels, ENDPOINT_LABEL)?;
            (meta.name.as_deref() == Some(e)).then(|| e.to_string())
        };
        let mut vss = BTreeMap::new();
        let mut drs = BTreeMap::new();
        let mut routes = BTreeMap::new();
        if self.is_istio() {
            for vs in list_all(&self.virtual_services().await?, subject, selector).await? {
                if let Some(e) = by_endpoint(&vs.metadata) {
                    vss.insert(e, vs);
                }
            }
            for dr in list_all(&self.destination_rules().await?, subject, selector).await? {
                if let Some(e) = by_endpoint(&dr.metadata) {
                    drs.insert(e, dr);
                }
            }
        } else {
            for route in list_all(&self.http_routes(), subject, selector).await? {
                if let Some(e) = by_endpoint(&route.metadata) {
                    routes.insert(e, route);
                }
            }
        }

        let mut endpoints: BTreeMap<String, LiveEndpoint> = BTreeMap::new();
        let entry = |endpoints: &mut BTreeMap<String, LiveEndpoint>, name: &str| {
            endpoints
                .entry(name.to_string())
                .or_insert_with(|| LiveEndpoint {
                    name: name.to_string(),
                    settings: Default::default(),
                    traffic: Weights::new(),
                    mirror_traffic: Weights::new(),
                    deployments: BTreeMap::new(),
                    scoring_uri: None,
                    busy: None,
                    problems: Vec::new(),
                    rollout: None,
                })
                .name
                .clone()
        };
        for svc in services.values() {
            let labels = &svc.metadata.labels;
            // The umbrella is the Service named E without a deployment label (not the pool).
            if let (Some(e), None) = (by_endpoint(&svc.metadata), label(labels, DEPLOYMENT_LABEL)) {
                let name = entry(&mut endpoints, &e);
                let ep = endpoints.get_mut(&name).expect("entry just inserted");
                ep.settings = endpoint_settings_from_service(svc);
                ep.scoring_uri = Some(format!(
                    "http://{}/score",
                    super::objects::service_fqdn(&e, self.ns())
                ));
            }
        }
        for d in &deployments {
            let labels = &d.metadata.labels;
            let (Some(e), Some(dep)) = (
                label(labels, ENDPOINT_LABEL),
                label(labels, DEPLOYMENT_LABEL),
            ) else {
                continue;
            };
            let name = entry(&mut endpoints, e);
            let state = deployment_state(d);
            let mut settings = settings_from_deployment(d);
            let object = version_name(e, dep);
            settings.autoscaling = hpas.get(&object).and_then(autoscaling_of);
            settings.disruption_budget = pdbs.get(&object).and_then(disruption_budget_of);
            let live = LiveDeployment {
                name: dep.to_string(),
                settings: Box::new(settings),
                // A Deployment whose rollout is not complete ([K8S §3]: kubectl rollout status).
                phase: (!state.is_terminal()).then(|| "rolling out".to_string()),
                state,
            };
            let ep = endpoints.get_mut(&name).expect("entry just inserted");
            ep.deployments.insert(dep.to_string(), live);
        }
        for (e, ep) in &mut endpoints {
            if let Some(vs) = vss.get(e) {
                (ep.traffic, ep.mirror_traffic) = weights_from_virtual_service(vs);
                ep.rollout = stored_progress(e, &vs.metadata);
            }
            if let Some(route) = routes.get(e) {
                (ep.traffic, ep.mirror_traffic) = weights_from_http_route(route, e);
                ep.rollout = stored_progress(e, &route.metadata);
            }
            let found = Found {
                services: &services,
                destination_rule: drs.get(e),
                virtual_service: vss.get(e),
                http_route: routes.get(e),
            };
            ep.problems = endpoint_problems(&self.target, ep, &found);
        }
        Ok(endpoints)
    }

    /// Per-version Services of one endpoint, by version name, with their port.
    pub(super) async fn version_services(
        &self,
        subject: &str,
        endpoint: &str,
    ) -> Result<BTreeMap<String, Service>, BackendError> {
        let selector = format!("{MANAGED_SELECTOR},{ENDPOINT_LABEL}={endpoint}");
        let services = list_all(&self.services(), subject, &selector).await?;
        Ok(services
            .into_iter()
            .filter_map(|s| {
                let d = label(&s.metadata.labels, DEPLOYMENT_LABEL)?.to_string();
                (s.metadata.name.as_deref() == Some(version_name(endpoint, &d).as_str()))
                    .then_some((d, s))
            })
            .collect())
    }

    /// The router of `endpoint` as it is now.
    pub(super) async fn router_state(
        &self,
        subject: &str,
        endpoint: &str,
    ) -> Result<RouterState, BackendError> {
        let services = self.version_services(subject, endpoint).await?;
        let ports: BTreeMap<String, i32> = services
            .iter()
            .map(|(d, s)| (d.clone(), service_port(s).unwrap_or(0)))
            .collect();
        let mut state = RouterState::default();
        if self.is_istio() {
            if let Some(dr) = get_owned(&self.destination_rules().await?, subject, endpoint).await?
            {
                state.subsets = subsets_of(&dr);
            }
            state.versions = state
                .subsets
                .iter()
                .map(|d| (d.clone(), ports.get(d).copied().unwrap_or(0)))
                .collect();
            if let Some(vs) = get_owned(&self.virtual_services().await?, subject, endpoint).await? {
                state.exists = true;
                (state.traffic, state.mirror) = weights_from_virtual_service(&vs);
                state.referenced = subsets_referenced(&vs);
            }
        } else {
            state.versions = ports;
            if let Some(route) = get_owned(&self.http_routes(), subject, endpoint).await? {
                state.exists = true;
                (state.traffic, state.mirror) = weights_from_http_route(&route, endpoint);
                state.referenced = versions_referenced(&route, endpoint);
            }
        }
        Ok(state)
    }
}
