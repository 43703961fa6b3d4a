//! Stage one for deployments (split files, combined-form entries and the Kubernetes form): the
//! YAML tree → [`RawDeployment`] with model settings and the positions later checks need.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::assets::{code_configuration, environment, model};
use super::diagnostics::Sink;
use super::fields::{
    DEPLOYMENT, K8S_PROBE, REQUEST_SETTINGS, RESOURCE_NAMES, RESOURCES, SCALE_SETTINGS,
};
use super::located::{Loc, field, suggestion};
use super::yaml::{Entry, Node, Pos};
use crate::model::{DeploymentSettings, Probe, RequestSettings, Resources};

#[derive(Clone, Debug)]
pub(crate) struct RawDeployment {
    pub path: PathBuf,
    pub root_pos: Pos,
    pub name: Option<Loc<String>>,
    pub endpoint_name: Option<Loc<String>>,
    /// The settings as written; `None` for a deployment rebuilt from an index record
    /// (`spec::index`), which only checks across files read and never becomes desired state.
    pub settings: Option<Box<DeploymentSettings>>,
    /// From `instance_count` or the preview `scale_settings.instance_count`; range-checked later.
    pub instance_count: Option<Loc<i64>>,
    /// Every top-level key written, for target-specific rules.
    pub keys: BTreeMap<String, Pos>,
    /// Probe fields only Kubernetes understands (`readiness_probe.path`), with positions.
    pub kubernetes_probe_fields: Vec<(String, Pos)>,
}

pub(crate) fn deployment(sink: &mut Sink<'_>, node: &Node, what: &str) -> Option<RawDeployment> {
    let entries = sink.mapping(what, node, what, &DEPLOYMENT)?;
    let mut raw = RawDeployment {
        path: sink.path.to_path_buf(),
        root_pos: node.pos,
        name: None,
        endpoint_name: None,
        settings: Some(Box::default()),
        instance_count: None,
        keys: entries.iter().map(|e| (e.key.clone(), e.key_pos)).collect(),
        kubernetes_probe_fields: Vec::new(),
    };
    match field(entries, "name") {
        Some(e) => raw.name = sink.string(e),
        None => sink.error(node.pos, format!("{what} has no `name`")),
    }
    let mut scale_count = None;
    for e in entries {
        let s = raw.settings.get_or_insert_default();
        match e.key.as_str() {
            "endpoint_name" => raw.endpoint_name = sink.string(e),
            "type" => {
                sink.one_of(e, DEPLOYMENT.allowed("type"));
            }
            "description" => s.description = sink.string(e).map(|l| l.value),
            "tags" => s.tags = sink.string_map(e),
            "model" => s.model = model(sink, e),
            "model_mount_path" | "instance_type" | "image" => {
                let v = sink.string(e).map(|l| l.value);
                match e.key.as_str() {
                    "instance_type" => s.instance_type = v,
                    "model_mount_path" => s.model_mount_path = v,
                    "image" => s.image = v,
                    _ => {}
                }
            }
            "code_configuration" => s.code_configuration = code_configuration(sink, e),
            "environment" => {
                let (env, image) = environment(sink, e);
                s.environment = env;
                if image.is_some() {
                    if field(entries, "image").is_some() {
                        sink.error(
                            e.key_pos,
                            "set the image either in `image` or in `environment`, not both",
                        );
                    } else {
                        s.image = image;
                    }
                }
            }
            "environment_variables" => s.environment_variables = sink.string_map(e),
            "instance_count" => raw.instance_count = sink.int(e),
            "scale_settings" => scale_count = scale_settings(sink, e),
            "request_settings" => s.request_settings = request_settings(sink, e),
            "liveness_probe" => {
                s.liveness_probe = probe(sink, e, &mut raw.kubernetes_probe_fields);
            }
            "readiness_probe" => {
                s.readiness_probe = probe(sink, e, &mut raw.kubernetes_probe_fields);
            }
            "app_insights_enabled" => {
                sink.bool(e);
            }
            "egress_public_network_access" => {
                sink.one_of(e, DEPLOYMENT.allowed("egress_public_network_access"));
            }
            "properties" => {
                sink.string_map(e);
            }
            "port" => s.port = sink.port(e),
            "resources" => s.resources = resources(sink, e),
            _ => {
                super::raw_pod::pod_setting(sink, e, s);
            }
        }
    }
    if let Some(scale) = scale_count {
        match &raw.instance_count {
            Some(top) if top.value != scale.value => sink.error(
                scale.key_pos,
                format!(
                    "instance_count is {} here but {} at line {}, declare it once",
                    scale.value, top.value, top.key_pos.line
                ),
            ),
            Some(_) => {}
            None => raw.instance_count = Some(scale),
        }
    }
    Some(raw)
}

/// Checks `scale_settings` and returns its preview `instance_count`, if any.
fn scale_settings(sink: &mut Sink<'_>, e: &Entry) -> Option<Loc<i64>> {
    let entries = sink.mapping(&e.key, &e.value, "scale_settings", &SCALE_SETTINGS)?;
    let mut count = None;
    let (mut min, mut max) = (None, None);
    for item in entries {
        match item.key.as_str() {
            "type" => {
                sink.one_of(item, SCALE_SETTINGS.allowed("type"));
            }
            "scale_type" => {
                sink.one_of(item, SCALE_SETTINGS.allowed("scale_type"));
            }
            "instance_count" => count = sink.int(item),
            "min_instances" => min = sink.int_in(item, 0, 100),
            "max_instances" => max = sink.int_in(item, 1, 100),
            "target_utilization_percentage" => {
                sink.int_in(item, 1, 100);
            }
            _ => {
                sink.u32(item);
            }
        }
    }
    if let (Some(min), Some(max)) = (min, max)
        && min.value > max.value
    {
        sink.error(
            min.pos,
            format!(
                "min_instances ({}) is greater than max_instances ({})",
                min.value, max.value
            ),
        );
    }
    count
}

fn request_settings(sink: &mut Sink<'_>, e: &Entry) -> Option<RequestSettings> {
    let entries = sink.mapping(&e.key, &e.value, "request_settings", &REQUEST_SETTINGS)?;
    let mut out = RequestSettings::default();
    for item in entries {
        let v = sink.u32(item);
        match item.key.as_str() {
            "request_timeout_ms" => out.request_timeout_ms = v,
            "max_concurrent_requests_per_instance" => out.max_concurrent_requests_per_instance = v,
            "max_queue_wait_ms" => out.max_queue_wait_ms = v,
            _ => {}
        }
    }
    Some(out)
}

fn probe(sink: &mut Sink<'_>, e: &Entry, k8s: &mut Vec<(String, Pos)>) -> Option<Probe> {
    let entries = sink.mapping(&e.key, &e.value, &e.key, &K8S_PROBE)?;
    let mut out = Probe::default();
    for item in entries {
        match item.key.as_str() {
            "path" => {
                k8s.push((format!("{}.path", e.key), item.key_pos));
                if let Some(p) = sink.string(item) {
                    if p.value.starts_with('/') {
                        out.path = Some(p.value);
                    } else {
                        sink.error(
                            p.pos,
                            format!("path must start with `/`, found `{}`", p.value),
                        );
                    }
                }
            }
            "port" => {
                k8s.push((format!("{}.port", e.key), item.key_pos));
                out.port = sink.port(item);
            }
            key => {
                let v = sink.u32(item);
                match key {
                    "initial_delay" => out.initial_delay = v,
                    "period" => out.period = v,
                    "timeout" => out.timeout = v,
                    "success_threshold" => out.success_threshold = v,
                    _ => out.failure_threshold = v,
                }
            }
        }
    }
    Some(out)
}

/// Kubernetes `resources: {requests: {cpu: 500m}, limits: {memory: 2Gi}}`.
fn resources(sink: &mut Sink<'_>, e: &Entry) -> Option<Resources> {
    let entries = sink.mapping(&e.key, &e.value, "resources", &RESOURCES)?;
    let mut out = Resources::default();
    for group in entries {
        let Some(items) = sink.any_mapping(&group.key, &group.value) else {
            continue;
        };
        let mut map = BTreeMap::new();
        for item in items {
            let name = item.key.as_str();
            if !(RESOURCE_NAMES.contains(&name)
                || name.contains('/')
                || name.starts_with("hugepages-"))
            {
                let hint = if name == "gpu" {
                    ", use an extended resource name such as `nvidia.com/gpu`".to_string()
                } else {
                    suggestion(name, RESOURCE_NAMES)
                };
                sink.error(item.key_pos, format!("unknown resource `{name}`{hint}"));
                continue;
            }
            let Some(q) = sink.scalar_text(item) else {
                continue;
            };
            if is_quantity(&q.value) {
                map.insert(name.to_string(), q.value);
            } else {
                sink.error(
                    q.pos,
                    format!(
                        "{name}: `{}` is not a Kubernetes quantity (e.g. `500m`, `2Gi`)",
                        q.value
                    ),
                );
            }
        }
        if group.key == "requests" {
            out.requests = map;
        } else {
            out.limits = map;
        }
    }
    Some(out)
}

/// A Kubernetes resource quantity: a decimal number with an optional binary (Ki..Ei), decimal
/// (n, u, m, k, M..E) or exponent suffix.
pub(crate) fn is_quantity(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let digits = number.chars().filter(char::is_ascii_digit).count();
    if digits == 0 || number.matches('.').count() > 1 {
        return false;
    }
    const SUFFIXES: &[&str] = &[
        "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E",
    ];
    if SUFFIXES.contains(&suffix) {
        return true;
    }
    let Some(exp) = suffix.strip_prefix(['e', 'E']) else {
        return false;
    };
    let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
    !exp.is_empty() && exp.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::is_quantity;

    #[test]
    fn kubernetes_quantities_are_recognised() {
        for ok in ["1", "500m", "2Gi", "0.5", "1e3", "128974848", "1.5G"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "m", "2 Gi", "2GB", "1.2.3", "abc", "1e"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }
}
