//! The per-version objects beside a Deployment: a HorizontalPodAutoscaler (autoscaling/v2) when
//! `autoscaling` is declared, a PodDisruptionBudget (policy/v1) when `disruption_budget` is.
//! Both are named `E-D` like the version and carry its labels. Pure: render and read back, so
//! that `autoscaling_of(&hpa(s)) == s.autoscaling` (docs/kubernetes.md "Production settings").

use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::objects::{version_labels, version_name, version_selector};
use flightdeck_core::model::{Autoscaling, DisruptionBudget};

fn meta(endpoint: &str, deployment: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(version_name(endpoint, deployment)),
        namespace: Some(namespace.to_string()),
        labels: Some(version_labels(endpoint, deployment)),
        ..Default::default()
    }
}

fn utilization(resource: &str, percent: u32) -> MetricSpec {
    MetricSpec {
        type_: "Resource".to_string(),
        resource: Some(ResourceMetricSource {
            name: resource.to_string(),
            target: MetricTarget {
                type_: "Utilization".to_string(),
                average_utilization: Some(i32::try_from(percent).unwrap_or(100)),
                ..Default::default()
            },
        }),
        ..Default::default()
    }
}

/// The HPA `E-D`, scaling the Deployment `E-D` on CPU and/or memory utilisation.
pub fn hpa(
    endpoint: &str,
    deployment: &str,
    namespace: &str,
    a: &Autoscaling,
) -> HorizontalPodAutoscaler {
    let mut metrics = Vec::new();
    if let Some(p) = a.target_cpu_utilization_percentage {
        metrics.push(utilization("cpu", p));
    }
    if let Some(p) = a.target_memory_utilization_percentage {
        metrics.push(utilization("memory", p));
    }
    let int = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
    HorizontalPodAutoscaler {
        metadata: meta(endpoint, deployment, namespace),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_string()),
                kind: "Deployment".to_string(),
                name: version_name(endpoint, deployment),
            },
            min_replicas: Some(int(a.min_instances)),
            max_replicas: int(a.max_instances),
            metrics: Some(metrics),
            ..Default::default()
        }),
        status: None,
    }
}

/// The `autoscaling` an HPA carries.
pub fn autoscaling_of(h: &HorizontalPodAutoscaler) -> Option<Autoscaling> {
    let spec = h.spec.as_ref()?;
    let target = |name: &str| {
        spec.metrics.iter().flatten().find_map(|m| {
            let r = m.resource.as_ref().filter(|r| r.name == name)?;
            u32::try_from(r.target.average_utilization?).ok()
        })
    };
    Some(Autoscaling {
        min_instances: spec
            .min_replicas
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1),
        max_instances: u32::try_from(spec.max_replicas).unwrap_or(0),
        target_cpu_utilization_percentage: target("cpu"),
        target_memory_utilization_percentage: target("memory"),
    })
}

fn int_or_percent(text: &str) -> IntOrString {
    match text.parse::<i32>() {
        Ok(n) => IntOrString::Int(n),
        Err(_) => IntOrString::String(text.to_string()),
    }
}

fn text_of(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

/// The PDB `E-D` over the version's pods.
pub fn pdb(
    endpoint: &str,
    deployment: &str,
    namespace: &str,
    b: &DisruptionBudget,
) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(endpoint, deployment, namespace),
        spec: Some(PodDisruptionBudgetSpec {
            selector: Some(LabelSelector {
                match_labels: Some(version_selector(endpoint, deployment)),
                ..Default::default()
            }),
            min_available: b.min_available.as_deref().map(int_or_percent),
            max_unavailable: b.max_unavailable.as_deref().map(int_or_percent),
            ..Default::default()
        }),
        status: None,
    }
}

/// The `disruption_budget` a PDB carries.
pub fn disruption_budget_of(p: &PodDisruptionBudget) -> Option<DisruptionBudget> {
    let spec = p.spec.as_ref()?;
    Some(DisruptionBudget {
        min_available: spec.min_available.as_ref().map(text_of),
        max_unavailable: spec.max_unavailable.as_ref().map(text_of),
    })
}
