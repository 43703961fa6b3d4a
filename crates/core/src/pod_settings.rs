//! Kubernetes-only deployment settings for production pods (issue #14): autoscaling, a
//! disruption budget, topology spread, graceful shutdown, the security context, the service
//! account, image pull secrets, node selector and tolerations. Each is a top-level deployment
//! field like `image`, `port` and `resources` (docs/environment-format.md); the Kubernetes backend
//! maps them to objects (`crates/kubernetes/src/pod.rs`, `crates/kubernetes/src/policy.rs`).
//! `None` = not declared, as everywhere in the model.

use serde::{Deserialize, Serialize};

/// `autoscaling:` a HorizontalPodAutoscaler (autoscaling/v2). While it is declared the HPA owns
/// the replica count: `instance_count` is neither written nor compared.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Autoscaling {
    pub min_instances: u32,
    pub max_instances: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cpu_utilization_percentage: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_memory_utilization_percentage: Option<u32>,
}

/// `disruption_budget:` a PodDisruptionBudget (policy/v1); exactly one of the two, each a count
/// (`"1"`) or a percentage (`"50%"`), kept as text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisruptionBudget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<String>,
}

/// One entry of `topology_spread:`: spread the version's pods across `across` (nodes or zones).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologySpread {
    /// `nodes` (`kubernetes.io/hostname`) or `zones` (`topology.kubernetes.io/zone`).
    pub across: String,
    pub max_skew: u32,
    /// `DoNotSchedule` (a hard rule, anti-affinity) or `ScheduleAnyway`.
    pub when_unsatisfiable: String,
}

/// `pre_stop:` what the container does before it gets SIGTERM: exactly one of the two.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreStop {
    /// Seconds to sleep (the kubelet's `sleep` action: no `sleep` binary needed in the image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep: Option<u32>,
    /// A command run in the container (`exec`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
}

/// `security_context:` the model container's security context. Declaring it always writes
/// `allowPrivilegeEscalation: false`, and drops ALL capabilities unless `drop_capabilities`
/// says otherwise; the loader fills both in, so they are compared (and drift is found) too.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    #[serde(default)]
    pub drop_capabilities: Vec<String>,
    /// Not a YAML field: always `false` when declared, read back from the cluster.
    #[serde(default)]
    pub allow_privilege_escalation: bool,
}

/// One entry of `tolerations:` (Kubernetes spellings for operator and effect).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toleration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `Equal` (default) or `Exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`; all effects when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

/// The topology label a `TopologySpread::across` value spreads over.
pub fn topology_key(across: &str) -> &'static str {
    match across {
        "zones" => "topology.kubernetes.io/zone",
        _ => "kubernetes.io/hostname",
    }
}

/// The `across` value of a topology label, if it is one flightdeck writes.
pub fn across_of(topology_key: &str) -> Option<&'static str> {
    match topology_key {
        "topology.kubernetes.io/zone" => Some("zones"),
        "kubernetes.io/hostname" => Some("nodes"),
        _ => None,
    }
}
