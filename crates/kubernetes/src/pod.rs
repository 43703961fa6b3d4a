//! The production pod settings of a version (issue #14) on its Deployment's pod template:
//! topology spread, graceful shutdown, the container's security context, the service account,
//! image pull secrets, node selector and tolerations (docs/kubernetes.md "Production settings").
//! Pure: `write` renders them, `read` reads them back, and `read(write(s)) == s` for every
//! setting flightdeck writes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ExecAction, Lifecycle, LifecycleHandler, LocalObjectReference,
    PodSpec, SecurityContext as K8sSecurityContext, SleepAction, Toleration as K8sToleration,
    TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use flightdeck_core::model::{
    DeploymentSettings, PreStop, SecurityContext, Toleration, TopologySpread,
};
use flightdeck_core::pod_settings::{across_of, topology_key};

/// Writes the declared pod settings onto `pod` and its model `container`; `selector` is the
/// version's pod selector (what topology spread counts).
pub fn write(
    pod: &mut PodSpec,
    container: &mut Container,
    s: &DeploymentSettings,
    selector: &BTreeMap<String, String>,
) {
    pod.topology_spread_constraints = s.topology_spread.as_ref().map(|list| {
        list.iter()
            .map(|t| TopologySpreadConstraint {
                topology_key: topology_key(&t.across).to_string(),
                max_skew: i32::try_from(t.max_skew).unwrap_or(i32::MAX),
                when_unsatisfiable: t.when_unsatisfiable.clone(),
                label_selector: Some(LabelSelector {
                    match_labels: Some(selector.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect()
    });
    pod.termination_grace_period_seconds = s.termination_grace_period.map(i64::from);
    pod.service_account_name = s.service_account.clone();
    pod.image_pull_secrets = s.image_pull_secrets.as_ref().map(|names| {
        names
            .iter()
            .map(|name| LocalObjectReference { name: name.clone() })
            .collect()
    });
    pod.node_selector = s.node_selector.clone();
    pod.tolerations = s.tolerations.as_ref().map(|list| {
        list.iter()
            .map(|t| K8sToleration {
                key: t.key.clone(),
                operator: t.operator.clone(),
                value: t.value.clone(),
                effect: t.effect.clone(),
                toleration_seconds: t.toleration_seconds,
            })
            .collect()
    });
    container.lifecycle = s.pre_stop.as_ref().map(|p| Lifecycle {
        pre_stop: Some(LifecycleHandler {
            sleep: p.sleep.map(|seconds| SleepAction {
                seconds: i64::from(seconds),
            }),
            exec: p.command.as_ref().map(|command| ExecAction {
                command: Some(command.clone()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    container.security_context = s.security_context.as_ref().map(|c| K8sSecurityContext {
        run_as_non_root: c.run_as_non_root,
        run_as_user: c.run_as_user,
        read_only_root_filesystem: c.read_only_root_filesystem,
        allow_privilege_escalation: Some(c.allow_privilege_escalation),
        capabilities: Some(Capabilities {
            drop: Some(c.drop_capabilities.clone()),
            ..Default::default()
        }),
        ..Default::default()
    });
}

/// Reads the pod settings back into `s` (the inverse of `write`). A topology constraint on a
/// label flightdeck does not write is read as absent from the list, so it shows as drift.
pub fn read(pod: &PodSpec, container: &Container, s: &mut DeploymentSettings) {
    s.topology_spread = pod.topology_spread_constraints.as_ref().map(|list| {
        list.iter()
            .filter_map(|t| {
                Some(TopologySpread {
                    across: across_of(&t.topology_key)?.to_string(),
                    max_skew: u32::try_from(t.max_skew).unwrap_or(0),
                    when_unsatisfiable: t.when_unsatisfiable.clone(),
                })
            })
            .collect()
    });
    s.termination_grace_period = pod
        .termination_grace_period_seconds
        .and_then(|n| u32::try_from(n).ok());
    s.service_account = pod.service_account_name.clone().filter(|n| !n.is_empty());
    s.image_pull_secrets = pod
        .image_pull_secrets
        .as_ref()
        .map(|refs| refs.iter().map(|r| r.name.clone()).collect());
    s.node_selector = pod.node_selector.clone();
    s.tolerations = pod.tolerations.as_ref().map(|list| {
        list.iter()
            .map(|t| Toleration {
                key: t.key.clone(),
                operator: t.operator.clone(),
                value: t.value.clone(),
                effect: t.effect.clone(),
                toleration_seconds: t.toleration_seconds,
            })
            .collect()
    });
    s.pre_stop = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .map(|h| PreStop {
            sleep: h.sleep.as_ref().and_then(|a| u32::try_from(a.seconds).ok()),
            command: h.exec.as_ref().and_then(|e| e.command.clone()),
        });
    s.security_context = container
        .security_context
        .as_ref()
        .map(|c| SecurityContext {
            run_as_non_root: c.run_as_non_root,
            run_as_user: c.run_as_user,
            read_only_root_filesystem: c.read_only_root_filesystem,
            drop_capabilities: c
                .capabilities
                .as_ref()
                .and_then(|caps| caps.drop.clone())
                .unwrap_or_default(),
            // Absent means the container may escalate (the Kubernetes default).
            allow_privilege_escalation: c.allow_privilege_escalation.unwrap_or(true),
        });
}
