//! Backend-neutral model of endpoints, deployments and traffic, for both the desired state (loaded
//! from YAML by `spec`) and the live state (read by a `backend`).
//!
//! Desired settings are `Option`s: `None` means "not declared", and the planner never compares an
//! undeclared field, so values the platform fills in by default are never a change. Live settings
//! carry whatever the platform reported.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Traffic or mirror weights by deployment name, in percent.
pub type Weights = BTreeMap<String, u32>;

/// Weights with the zero entries dropped: `{blue: 0, green: 100}` and `{green: 100}` route the
/// same way, so they compare equal.
pub fn effective(weights: &Weights) -> Weights {
    weights
        .iter()
        .filter(|(_, w)| **w > 0)
        .map(|(k, w)| (k.clone(), *w))
        .collect()
}

/// Sum of a weight map (u64 so random inputs cannot overflow).
pub fn weight_sum(weights: &Weights) -> u64 {
    weights.values().map(|w| u64::from(*w)).sum()
}

/// Renders weights as `blue 90 / green 10`, or `none` for an empty map.
pub fn weights_display(weights: &Weights) -> String {
    if weights.is_empty() {
        return "none".to_string();
    }
    weights
        .iter()
        .map(|(k, w)| format!("{k} {w}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    Key,
    AmlToken,
    AadToken,
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMode::Key => "key",
            AuthMode::AmlToken => "aml_token",
            AuthMode::AadToken => "aad_token",
        })
    }
}

/// Endpoint settings other than traffic and deployments.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_mode: Option<AuthMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    /// `enabled` or `disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_network_access: Option<String>,
}

/// A model or environment asset reference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AssetRef {
    /// A registered asset: `azureml:model-1:1`, or name + version in YAML.
    Registered { name: String, version: String },
    /// A full asset id (ARM id, `azureml://registries/...`), compared verbatim.
    Id { id: String },
    /// A local file or folder that `az ml` would upload. flightdeck does not upload assets, so
    /// the planner reports every deployment that relies on one.
    Local { path: String },
}

impl fmt::Display for AssetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AssetRef::Registered { name, version } => write!(f, "azureml:{name}:{version}"),
            AssetRef::Id { id } => f.write_str(id),
            AssetRef::Local { path } => write!(f, "local:{path}"),
        }
    }
}

impl AssetRef {
    /// Parses `azureml:name:version` (or `name:version`), else keeps the string as an id.
    pub fn parse(s: &str) -> AssetRef {
        if let Some(path) = s.strip_prefix("local:") {
            return AssetRef::Local {
                path: path.to_string(),
            };
        }
        let rest = s.strip_prefix("azureml:").unwrap_or(s);
        if !rest.starts_with("//") && !rest.starts_with('/') {
            let parts: Vec<&str> = rest.split(':').collect();
            if parts.len() == 2 && !parts[0].is_empty() && !parts[1].is_empty() {
                return AssetRef::Registered {
                    name: parts[0].to_string(),
                    version: parts[1].to_string(),
                };
            }
        }
        AssetRef::Id { id: s.to_string() }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, AssetRef::Local { .. })
    }
}

/// Scoring code: create-only on Azure ML [AML R13].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeConfiguration {
    pub code: String,
    pub scoring_script: String,
}

/// A health probe. Times are in seconds, as in the az ml YAML. Every field is optional so that
/// only what is declared is compared.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<u32>,
    /// Kubernetes only: HTTP GET path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Kubernetes only: port (defaults to the deployment's port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_ms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests_per_instance: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue_wait_ms: Option<u32>,
}

/// Kubernetes container resources, as quantity strings (`"500m"`, `"2Gi"`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, String>,
}

/// Deployment settings that the planner compares. `None` = not declared.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<AssetRef>,
    /// Where the model is mounted in the container (az ml `model_mount_path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_mount_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<AssetRef>,
    /// Container image: an inline environment's image on Azure ML, the pod image on Kubernetes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Create-only on Azure ML (R13).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_configuration: Option<CodeConfiguration>,
    /// Create-only on Azure ML (R13).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_variables: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_settings: Option<RequestSettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    /// Kubernetes only: the container port the model server listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Kubernetes only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Kubernetes only: a HorizontalPodAutoscaler that owns the replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Kubernetes only: a PodDisruptionBudget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption_budget: Option<DisruptionBudget>,
    /// Kubernetes only: topologySpreadConstraints over the version's pod labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology_spread: Option<Vec<TopologySpread>>,
    /// Kubernetes only: terminationGracePeriodSeconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period: Option<u32>,
    /// Kubernetes only: the container's preStop hook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_stop: Option<PreStop>,
    /// Kubernetes only: the container's security context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    /// Kubernetes only: the pod's service account (a name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// Kubernetes only: names of image pull Secrets (never their contents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<String>>,
    /// Kubernetes only: the pod's nodeSelector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Kubernetes only: the pod's tolerations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
}

pub use crate::pod_settings::{
    Autoscaling, DisruptionBudget, PreStop, SecurityContext, Toleration, TopologySpread,
};

pub use crate::smoke::{JsonCheck, TestRequest, TestSpec};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub name: String,
    /// Boxed, so a map of deployments stays small: a `BTreeMap` node holds room for 11 values
    /// inline, and unboxed settings (~550 bytes) made each endpoint's one-deployment map ~7 KiB.
    #[serde(flatten)]
    pub settings: Box<DeploymentSettings>,
    /// The gate run before this deployment first takes traffic or mirror traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<TestSpec>,
}

/// A desired endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub name: String,
    #[serde(flatten)]
    pub settings: EndpointSettings,
    /// `None` = traffic is not managed by flightdeck (left as it is live).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Weights>,
    /// `None` = mirroring is not managed (kept, unless it would conflict with live traffic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_traffic: Option<Weights>,
    pub deployments: BTreeMap<String, Deployment>,
}

/// How flightdeck reacts to live changes made outside Git.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftMode {
    #[default]
    Correct,
    Report,
}

/// Which router splits traffic on Kubernetes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Router {
    Istio,
    GatewayApi,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AzureMlTarget {
    pub subscription_id: String,
    pub resource_group: String,
    pub workspace: String,
    pub location: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesTarget {
    pub namespace: String,
    pub router: Router,
    /// Gateway API: the Gateway the HTTPRoute attaches to (`name` or `namespace/name`).
    /// Istio: gateways listed on the VirtualService (`mesh` is always included).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Hostnames the route serves (Istio `hosts`, HTTPRoute `hostnames`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Header that pins a request to one version (`x-model-deployment: green`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_header: Option<String>,
    /// Base URL used for pre-traffic tests instead of the API server's service proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_base_url: Option<String>,
}

/// Where an environment lives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    #[serde(rename = "azureml")]
    AzureMl(AzureMlTarget),
    Kubernetes(KubernetesTarget),
    /// A live-state snapshot file managed by the in-memory backend: for demos and tests.
    StateFile {
        path: String,
    },
}

impl Target {
    pub fn kind(&self) -> &'static str {
        match self {
            Target::AzureMl(_) => "azureml",
            Target::Kubernetes(_) => "kubernetes",
            Target::StateFile { .. } => "state_file",
        }
    }
}

/// Drift handling for one environment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftPolicy {
    #[serde(default)]
    pub mode: DriftMode,
    /// Field names whose live value is never corrected, e.g. `instance_count` under an
    /// autoscaler. Matches deployment and endpoint setting names (`instance_count`, `tags`,
    /// `traffic`, `mirror_traffic`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
}

/// An environment: where it lives and its policies (from `environment.yaml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub name: String,
    pub target: Target,
    #[serde(default)]
    pub drift: DriftPolicy,
    /// Progressive rollout policies (`rollout:`); without one, weights are applied as written.
    #[serde(
        default,
        skip_serializing_if = "crate::rollout::RolloutSettings::is_empty"
    )]
    pub rollout: crate::rollout::RolloutSettings,
    /// Blue/green slots by endpoint (`slots:`): resolved against live state before planning
    /// (`crate::slots::resolve`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub slots: BTreeMap<String, crate::slots::Slots>,
    /// Registry aliases the agent promotes from (`promotion:`); the planner ignores it.
    #[serde(
        default,
        skip_serializing_if = "crate::promotion::PromotionSettings::is_empty"
    )]
    pub promotion: crate::promotion::PromotionSettings,
}

/// Everything an environment directory declares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DesiredState {
    pub environment: Environment,
    pub endpoints: BTreeMap<String, Endpoint>,
}

/// Readiness of a live deployment, normalised across platforms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum DeploymentState {
    /// Provisioned and serving (Azure ML `Succeeded`; Kubernetes rollout complete).
    Ready,
    /// An operation is under way (Creating, Updating, Scaling; rollout in progress).
    Provisioning,
    /// Provisioning failed or the rollout exceeded its deadline.
    Failed { message: String },
}

impl DeploymentState {
    pub fn is_ready(&self) -> bool {
        matches!(self, DeploymentState::Ready)
    }

    /// Ready or failed: no operation is under way.
    pub fn is_terminal(&self) -> bool {
        !matches!(self, DeploymentState::Provisioning)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveDeployment {
    pub name: String,
    /// Boxed for the same reason as [`Deployment::settings`].
    #[serde(flatten)]
    pub settings: Box<DeploymentSettings>,
    #[serde(flatten)]
    pub state: DeploymentState,
    /// The platform's own name for a non-terminal state (Azure ML `Creating`, `Updating`,
    /// `Scaling`, `Deleting`), shown in plans; `None` when terminal or not reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveEndpoint {
    pub name: String,
    #[serde(flatten)]
    pub settings: EndpointSettings,
    #[serde(default)]
    pub traffic: Weights,
    #[serde(default)]
    pub mirror_traffic: Weights,
    #[serde(default)]
    pub deployments: BTreeMap<String, LiveDeployment>,
    /// Where requests go (Azure ML `scoringUri`), when the platform reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scoring_uri: Option<String>,
    /// The platform's provisioning state while an operation on the endpoint is under way
    /// (Azure ML `Creating`, `Updating`, `Deleting`); `None` when it is terminal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy: Option<String>,
    /// Objects of this endpoint that the platform should hold but does not, or holds changed
    /// ("Service scoring-blue is missing"), as the backend words them. The planner turns them
    /// into one repair step ahead of any traffic step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Rollout progress the platform stores for this endpoint (ARM endpoint tags, Kubernetes
    /// annotations, the state file); read back by the rollout engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::rollout::RolloutRecord>,
}

/// A name that an endpoint (or one of its deployments) would use, held on the platform by an
/// object flightdeck does not own. Planning such an endpoint is refused before any write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameTaken {
    pub endpoint: String,
    /// `None`: the name is the endpoint's own; `Some(d)`: only deployment `d` would use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// Which object, and why flightdeck will not touch it.
    pub message: String,
}

/// What a backend reports: every endpoint in the environment's target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveState {
    pub endpoints: BTreeMap<String, LiveEndpoint>,
    /// Names held by objects flightdeck does not own (see `NameTaken`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taken: Vec<NameTaken>,
}

impl LiveState {
    /// Keeps only the endpoints named in `names`, and the `taken` names of those endpoints.
    pub fn retain_endpoints(&mut self, names: &std::collections::BTreeSet<String>) {
        self.endpoints.retain(|name, _| names.contains(name));
        self.taken.retain(|t| names.contains(&t.endpoint));
    }

    /// The live state a desired state would produce once fully applied: every deployment ready,
    /// undeclared traffic and mirror empty. Used to diff one Git revision against another.
    pub fn from_desired(desired: &DesiredState) -> LiveState {
        let endpoints = desired
            .endpoints
            .values()
            .map(|e| {
                let deployments = e
                    .deployments
                    .values()
                    .map(|d| {
                        let live = LiveDeployment {
                            name: d.name.clone(),
                            settings: d.settings.clone(),
                            state: DeploymentState::Ready,
                            phase: None,
                        };
                        (d.name.clone(), live)
                    })
                    .collect();
                let live = LiveEndpoint {
                    name: e.name.clone(),
                    settings: e.settings.clone(),
                    traffic: e.traffic.clone().map(|t| effective(&t)).unwrap_or_default(),
                    mirror_traffic: e
                        .mirror_traffic
                        .clone()
                        .map(|t| effective(&t))
                        .unwrap_or_default(),
                    deployments,
                    scoring_uri: None,
                    busy: None,
                    problems: Vec::new(),
                    rollout: None,
                };
                (e.name.clone(), live)
            })
            .collect();
        LiveState {
            endpoints,
            taken: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_refs_parse_registered_ids_and_local_paths() {
        assert_eq!(
            AssetRef::parse("azureml:model-1:1"),
            AssetRef::Registered {
                name: "model-1".into(),
                version: "1".into()
            }
        );
        assert_eq!(
            AssetRef::parse("azureml://registries/r/models/m/versions/2"),
            AssetRef::Id {
                id: "azureml://registries/r/models/m/versions/2".into()
            }
        );
        assert!(AssetRef::parse("local:./model").is_local());
        assert_eq!(
            AssetRef::parse("azureml:model-1:1").to_string(),
            "azureml:model-1:1"
        );
    }

    #[test]
    fn effective_weights_ignore_zero_entries() {
        let a: Weights = [("blue".to_string(), 0), ("green".to_string(), 100)].into();
        let b: Weights = [("green".to_string(), 100)].into();
        assert_eq!(effective(&a), effective(&b));
        assert_eq!(weights_display(&a), "blue 0 / green 100");
    }

    /// The agent holds 1,000s of these at once (desired, live, plan, report): a map node holds
    /// 11 values inline, so the values must stay small for a one-deployment endpoint to be small.
    #[test]
    fn deployments_and_plan_steps_stay_small_enough_to_hold_thousands() {
        use std::mem::size_of;
        assert!(
            size_of::<Deployment>() <= 128,
            "{}",
            size_of::<Deployment>()
        );
        assert!(
            size_of::<LiveDeployment>() <= 128,
            "{}",
            size_of::<LiveDeployment>()
        );
        let step = size_of::<crate::plan::Step>();
        assert!(step <= 192, "a plan step is {step} bytes");
    }
}
