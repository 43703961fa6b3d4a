//! The rollout policy, as `environment.yaml` declares it (`rollout.default`, overridden per
//! endpoint under `rollout.endpoints.<name>`): staged weights, bakes, pauses and gates. Plain data,
//! loaded and validated by `spec`, read by the pure engine (`rollout::engine`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::metrics::Signal;
use crate::model::Weights;

/// How one endpoint's traffic moves onto a candidate. Without a policy, weights are applied as
/// written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RolloutPolicy {
    /// The stages in order. The declared traffic is always the last stage, after these.
    pub steps: Vec<Stage>,
    /// Below this many candidate requests in a stage's window, the gates do not judge: the bake
    /// is extended, up to `max_bake`.
    #[serde(default)]
    pub min_requests: u64,
    /// The longest a stage may bake while waiting for `min_requests`; then `on_no_data`.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_bake: Option<Duration>,
    /// What happens when `max_bake` passes with too little data.
    #[serde(default)]
    pub on_no_data: OnFailure,
    /// What happens when a gate fails, the candidate never becomes ready or `deadline` passes.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// The longest a whole rollout may take, from its first shift.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub deadline: Option<Duration>,
    /// After a rollback, keep the failed candidate deployment for inspection (default) or
    /// delete it.
    #[serde(default = "yes")]
    pub keep_failed: bool,
    /// Each stage also sets the instance counts of the candidate and the baseline from their
    /// weights (like Argo Rollouts' dynamicStableScale): `ceil(full × weight / 100)`, at least 1
    /// while a deployment takes traffic (`rollout::scale`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub scale_with_traffic: bool,
}

fn yes() -> bool {
    true
}

impl RolloutPolicy {
    /// The mirror stage's percent, when the policy has one.
    pub fn mirror_percent(&self) -> Option<u32> {
        self.steps.iter().find_map(|s| match s.target {
            StageTarget::Mirror(p) => Some(p),
            _ => None,
        })
    }
}

/// One stage: move to this traffic, wait `bake`, then judge the gates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    pub target: StageTarget,
    #[serde(with = "humantime_serde")]
    pub bake: Duration,
    /// Wait for a person (`flightdeck rollout resume`) after the bake and the gates passed.
    #[serde(default)]
    pub pause: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<Gate>,
    /// The `smoke` gate: after the bake the candidate's smoke requests (its `tests:` entry,
    /// header-pinned to it) run again, and must pass like a metric gate.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub smoke: bool,
}

/// What a stage routes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageTarget {
    /// The candidate's weight in percent; the baseline deployments share the rest in proportion
    /// to their live weights.
    Weight(u32),
    /// A whole traffic map (N-way splits). Sums to 100.
    Traffic(Weights),
    /// The mirror stage (`mirror:` in the policy, always the first stage): live traffic stays
    /// at the baseline and this percent of it is mirrored to the candidate, whose own metrics
    /// the gates judge. Only for a candidate without live traffic [AML R5]; the next stage
    /// drops the mirror in the same plan that gives the candidate live weight.
    Mirror(u32),
}

/// `error_rate < 2%`, `p99 < 1.2x baseline`, `requests >= 100`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    pub signal: Signal,
    pub comparison: Comparison,
    pub threshold: Threshold,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// The observed value must stay below the threshold (`<`).
    Below,
    /// The observed value must stay at or below the threshold (`<=`).
    AtMost,
    /// The observed value must reach at least the threshold (`>=`).
    AtLeast,
}

impl Comparison {
    pub fn symbol(self) -> &'static str {
        match self {
            Comparison::Below => "<",
            Comparison::AtMost => "<=",
            Comparison::AtLeast => ">=",
        }
    }

    /// The symbol that holds when the comparison does not (`>=` for `<`).
    pub fn negated_symbol(self) -> &'static str {
        match self {
            Comparison::Below => ">=",
            Comparison::AtMost => ">",
            Comparison::AtLeast => "<",
        }
    }

    pub fn holds(self, observed: f64, threshold: f64) -> bool {
        match self {
            Comparison::Below => observed < threshold,
            Comparison::AtMost => observed <= threshold,
            Comparison::AtLeast => observed >= threshold,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Threshold {
    /// In the signal's unit: a fraction for `error_rate`, milliseconds for latency, a count
    /// for `requests`.
    Absolute(f64),
    /// A factor of the baseline's value over the same window (`1.2x baseline`).
    RelativeToBaseline(f64),
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ", self.signal, self.comparison.symbol())?;
        match self.threshold {
            Threshold::Absolute(v) => f.write_str(&format_value(self.signal, v)),
            Threshold::RelativeToBaseline(factor) => write!(f, "{factor}x baseline"),
        }
    }
}

/// A signal's value as people write it: `2%`, `250ms`, `120`.
pub fn format_value(signal: Signal, value: f64) -> String {
    match signal {
        Signal::ErrorRate => format!("{}%", round2(value * 100.0)),
        Signal::LatencyP95 | Signal::LatencyP99 => format!("{}ms", round2(value)),
        Signal::Requests => format!("{}", value.round()),
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// `rollback` (default): traffic returns to the last good split in one step. `pause`: traffic
/// stays where it is until `flightdeck rollout resume` or `abort`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    #[default]
    Rollback,
    Pause,
}

/// The environment's rollout section: a default policy and per-endpoint overrides (`None`
/// under an endpoint turns rollouts off for it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<RolloutPolicy>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoints: BTreeMap<String, Option<RolloutPolicy>>,
    /// Where gates read metrics; required when any stage has gates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSource>,
}

impl RolloutSettings {
    pub fn is_empty(&self) -> bool {
        self.default.is_none() && self.endpoints.is_empty() && self.metrics.is_none()
    }

    /// The policy that applies to `endpoint`, if any.
    pub fn policy_for(&self, endpoint: &str) -> Option<&RolloutPolicy> {
        match self.endpoints.get(endpoint) {
            Some(over) => over.as_ref(),
            None => self.default.as_ref(),
        }
    }
}

/// Where gates read metrics (`rollout.metrics` in `environment.yaml`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "provider")]
pub enum MetricsSource {
    /// Azure Monitor's metrics API on the endpoint resource, with the target's ARM credential.
    AzureMonitor {
        /// Buckets younger than this are not judged ([MON R18]); default 3 min.
        #[serde(
            default,
            with = "humantime_serde",
            skip_serializing_if = "Option::is_none"
        )]
        ingestion_delay: Option<Duration>,
        /// The ARM base URL, when not the target's (the sandbox serves both).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        base_url: Option<String>,
    },
    /// A Prometheus HTTP query API.
    Prometheus {
        url: String,
        /// PromQL templates by signal name (`error_rate`, `p95`, `p99`, `requests`) replacing
        /// the Istio defaults; placeholders `{endpoint}`, `{deployment}`, `{namespace}`,
        /// `{window}`.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        queries: BTreeMap<String, String>,
        /// The environment variable holding a bearer token, if the server wants one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_env: Option<String>,
    },
}
