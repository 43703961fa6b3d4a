//! Stage one for the Kubernetes production settings of a deployment (`autoscaling`,
//! `disruption_budget`, `topology_spread`, `pre_stop`, `security_context`, `tolerations`, ...):
//! the YAML tree → `pod_settings` values, with located errors. The shapes are in the field
//! table (`fields.rs`); the rules the table cannot say (min ≤ max, exactly one of) are here.

use super::diagnostics::Sink;
use super::fields::{
    AUTOSCALING, DISRUPTION_BUDGET, PRE_STOP, SECURITY_CONTEXT, TOLERATION, TOPOLOGY_SPREAD,
};
use super::located::Loc;
use super::yaml::{Entry, Kind, ScalarType};
use crate::model::DeploymentSettings;
use crate::pod_settings::{
    Autoscaling, DisruptionBudget, PreStop, SecurityContext, Toleration, TopologySpread,
};

/// Reads one production setting into `s`; false when `e` is not one of them.
pub(crate) fn pod_setting(sink: &mut Sink<'_>, e: &Entry, s: &mut DeploymentSettings) -> bool {
    match e.key.as_str() {
        "autoscaling" => s.autoscaling = autoscaling(sink, e),
        "disruption_budget" => s.disruption_budget = disruption_budget(sink, e),
        "topology_spread" => s.topology_spread = topology_spread(sink, e),
        "termination_grace_period" => {
            s.termination_grace_period = sink
                .int_in(e, 0, 3600)
                .and_then(|v| u32::try_from(v.value).ok());
        }
        "pre_stop" => s.pre_stop = pre_stop(sink, e),
        "security_context" => s.security_context = security_context(sink, e),
        "service_account" => s.service_account = object_name(sink, e).map(|l| l.value),
        "image_pull_secrets" => s.image_pull_secrets = image_pull_secrets(sink, e),
        "node_selector" => s.node_selector = sink.string_map(e),
        "tolerations" => s.tolerations = tolerations(sink, e),
        _ => return false,
    }
    true
}

/// A Kubernetes object name: a DNS-1123 subdomain (lowercase, digits, `-` and `.`).
fn is_object_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !name.is_empty()
        && name.len() <= 253
        && bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
        && bytes.iter().all(|b| edge(b) || *b == b'-' || *b == b'.')
}

fn object_name(sink: &mut Sink<'_>, e: &Entry) -> Option<Loc<String>> {
    let name = sink.string(e)?;
    if is_object_name(&name.value) {
        return Some(name);
    }
    sink.error(
        name.pos,
        format!(
            "{}: `{}` is not a Kubernetes object name (lowercase letters, digits, `-` and `.`)",
            e.key, name.value
        ),
    );
    None
}

fn image_pull_secrets(sink: &mut Sink<'_>, e: &Entry) -> Option<Vec<String>> {
    let names = sink.string_list(e)?;
    let mut out = Vec::new();
    for name in names {
        if is_object_name(&name.value) {
            out.push(name.value);
        } else {
            sink.error(
                name.pos,
                format!(
                    "image_pull_secrets: `{}` is not a Secret name (lowercase letters, digits, `-` and `.`)",
                    name.value
                ),
            );
        }
    }
    Some(out)
}

fn count(sink: &mut Sink<'_>, e: &Entry, min: i64, max: i64) -> Option<u32> {
    sink.int_in(e, min, max)
        .and_then(|v| u32::try_from(v.value).ok())
}

fn autoscaling(sink: &mut Sink<'_>, e: &Entry) -> Option<Autoscaling> {
    let entries = sink.mapping(&e.key, &e.value, "autoscaling", &AUTOSCALING)?;
    let (mut min, mut max) = (None, None);
    let mut out = Autoscaling::default();
    for item in entries {
        match item.key.as_str() {
            "min_instances" => min = sink.int_in(item, 1, 1000),
            "max_instances" => max = sink.int_in(item, 1, 1000),
            "target_cpu_utilization_percentage" => {
                out.target_cpu_utilization_percentage = count(sink, item, 1, 100);
            }
            "target_memory_utilization_percentage" => {
                out.target_memory_utilization_percentage = count(sink, item, 1, 100);
            }
            _ => {}
        }
    }
    let ok = min.is_some() && max.is_some();
    for (key, v) in [("min_instances", &min), ("max_instances", &max)] {
        if v.is_none() && !entries.iter().any(|i| i.key == key) {
            sink.error(e.key_pos, format!("autoscaling has no `{key}`"));
        }
    }
    if out.target_cpu_utilization_percentage.is_none()
        && out.target_memory_utilization_percentage.is_none()
        && !entries.iter().any(|i| i.key.starts_with("target_"))
    {
        sink.error(
            e.key_pos,
            "autoscaling needs target_cpu_utilization_percentage or target_memory_utilization_percentage",
        );
        return None;
    }
    let (min, max) = (min?, max?);
    if min.value > max.value {
        sink.error(
            min.pos,
            format!(
                "min_instances ({}) is greater than max_instances ({})",
                min.value, max.value
            ),
        );
        return None;
    }
    out.min_instances = u32::try_from(min.value).ok()?;
    out.max_instances = u32::try_from(max.value).ok()?;
    ok.then_some(out)
}

/// `1` or `"50%"`, as text.
fn count_or_percent(sink: &mut Sink<'_>, e: &Entry) -> Option<String> {
    match &e.value.kind {
        Kind::Scalar {
            ty: ScalarType::Int,
            ..
        } => sink.u32(e).map(|n| n.to_string()),
        _ => {
            let text = sink.string(e)?;
            let digits = text.value.strip_suffix('%').unwrap_or("");
            if !digits.is_empty()
                && digits.chars().all(|c| c.is_ascii_digit())
                && digits.parse::<u32>().is_ok_and(|p| p <= 100)
            {
                Some(text.value)
            } else {
                sink.error(
                    text.pos,
                    format!(
                        "{}: expected a count or a percentage such as `50%`, found `{}`",
                        e.key, text.value
                    ),
                );
                None
            }
        }
    }
}

fn disruption_budget(sink: &mut Sink<'_>, e: &Entry) -> Option<DisruptionBudget> {
    let entries = sink.mapping(&e.key, &e.value, "disruption_budget", &DISRUPTION_BUDGET)?;
    if entries.len() != 1 {
        sink.error(
            e.key_pos,
            "disruption_budget needs exactly one of `min_available`, `max_unavailable`",
        );
        return None;
    }
    let mut out = DisruptionBudget::default();
    for item in entries {
        let v = count_or_percent(sink, item);
        match item.key.as_str() {
            "min_available" => out.min_available = Some(v?),
            "max_unavailable" => out.max_unavailable = Some(v?),
            _ => return None,
        }
    }
    Some(out)
}

fn topology_spread(sink: &mut Sink<'_>, e: &Entry) -> Option<Vec<TopologySpread>> {
    let items = sink.sequence(&e.key, &e.value)?;
    let mut out = Vec::new();
    for node in items {
        let entries = sink.mapping(&e.key, node, "topology_spread", &TOPOLOGY_SPREAD)?;
        let mut spread = TopologySpread {
            across: String::new(),
            max_skew: 1,
            when_unsatisfiable: "DoNotSchedule".into(),
        };
        for item in entries {
            match item.key.as_str() {
                "across" => {
                    spread.across = sink.one_of(item, TOPOLOGY_SPREAD.allowed("across"))?.value;
                }
                "max_skew" => spread.max_skew = count(sink, item, 1, 100)?,
                "when_unsatisfiable" => {
                    spread.when_unsatisfiable = sink
                        .one_of(item, TOPOLOGY_SPREAD.allowed("when_unsatisfiable"))?
                        .value;
                }
                _ => {}
            }
        }
        if spread.across.is_empty() {
            sink.error(
                node.pos,
                "topology_spread entry has no `across` (nodes or zones)",
            );
            return None;
        }
        if out
            .iter()
            .any(|s: &TopologySpread| s.across == spread.across)
        {
            sink.error(
                node.pos,
                format!(
                    "topology_spread: `across: {}` is declared twice",
                    spread.across
                ),
            );
            return None;
        }
        out.push(spread);
    }
    Some(out)
}

fn pre_stop(sink: &mut Sink<'_>, e: &Entry) -> Option<PreStop> {
    let entries = sink.mapping(&e.key, &e.value, "pre_stop", &PRE_STOP)?;
    if entries.len() != 1 {
        sink.error(
            e.key_pos,
            "pre_stop needs exactly one of `sleep`, `command`",
        );
        return None;
    }
    let mut out = PreStop::default();
    for item in entries {
        match item.key.as_str() {
            "sleep" => out.sleep = Some(count(sink, item, 1, 3600)?),
            "command" => {
                let words: Vec<String> = sink
                    .string_list(item)?
                    .into_iter()
                    .map(|l| l.value)
                    .collect();
                if words.is_empty() {
                    sink.error(item.value.pos, "pre_stop.command is empty");
                    return None;
                }
                out.command = Some(words);
            }
            _ => return None,
        }
    }
    Some(out)
}

fn security_context(sink: &mut Sink<'_>, e: &Entry) -> Option<SecurityContext> {
    let entries = sink.mapping(&e.key, &e.value, "security_context", &SECURITY_CONTEXT)?;
    let mut out = SecurityContext {
        drop_capabilities: vec!["ALL".into()],
        allow_privilege_escalation: false,
        ..Default::default()
    };
    for item in entries {
        match item.key.as_str() {
            "run_as_non_root" => out.run_as_non_root = sink.bool(item),
            "run_as_user" => out.run_as_user = sink.int_in(item, 0, 2_147_483_647).map(|v| v.value),
            "read_only_root_filesystem" => out.read_only_root_filesystem = sink.bool(item),
            "drop_capabilities" => {
                let caps = sink.string_list(item)?;
                out.drop_capabilities = Vec::new();
                for cap in caps {
                    if !cap.value.is_empty()
                        && cap
                            .value
                            .chars()
                            .all(|c| c.is_ascii_uppercase() || c == '_')
                    {
                        out.drop_capabilities.push(cap.value);
                    } else {
                        sink.error(
                            cap.pos,
                            format!(
                                "drop_capabilities: `{}` is not a capability name (e.g. ALL, NET_RAW)",
                                cap.value
                            ),
                        );
                    }
                }
            }
            _ => {}
        }
    }
    Some(out)
}

fn tolerations(sink: &mut Sink<'_>, e: &Entry) -> Option<Vec<Toleration>> {
    let items = sink.sequence(&e.key, &e.value)?;
    let mut out = Vec::new();
    for node in items {
        let entries = sink.mapping(&e.key, node, "tolerations", &TOLERATION)?;
        let mut t = Toleration::default();
        for item in entries {
            match item.key.as_str() {
                "key" => t.key = sink.string(item).map(|l| l.value),
                "operator" => {
                    t.operator = sink
                        .one_of(item, TOLERATION.allowed("operator"))
                        .map(|l| l.value);
                }
                "value" => t.value = sink.scalar_text(item).map(|l| l.value),
                "effect" => {
                    t.effect = sink
                        .one_of(item, TOLERATION.allowed("effect"))
                        .map(|l| l.value);
                }
                "toleration_seconds" => {
                    t.toleration_seconds = sink.int_in(item, 0, i64::MAX).map(|v| v.value);
                }
                _ => {}
            }
        }
        // Kubernetes: with `Exists` the value must be empty; an empty key needs `Exists`.
        if t.operator.as_deref() == Some("Exists") && t.value.is_some() {
            sink.error(
                node.pos,
                "tolerations: `value` must be empty with `operator: Exists`",
            );
            return None;
        }
        if t.key.is_none() && t.operator.as_deref() != Some("Exists") {
            sink.error(
                node.pos,
                "tolerations: an entry without `key` needs `operator: Exists`",
            );
            return None;
        }
        out.push(t);
    }
    Some(out)
}
