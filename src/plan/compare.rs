//! Field-by-field comparison of declared settings against live settings.
//!
//! Only what the desired state declares is compared: a field the YAML leaves out is whatever the
//! platform made it (its default, a read-only value, a timestamp), and is never a change. Nested
//! settings (probes, request settings, resources) are compared field by field the same way; maps
//! (tags, environment variables, resource quantities) are compared whole, because removing a key
//! from a declared map is a change the user means.

use serde::Serialize;
use serde_json::{Map, Value};

use super::FieldChange;
use crate::model::{DeploymentSettings, EndpointSettings};

/// Settings compared one level deeper, subfield by subfield.
const NESTED: &[&str] = &[
    "liveness_probe",
    "readiness_probe",
    "request_settings",
    "resources",
];

/// Fields that Azure ML cannot change on an existing deployment (CONTRACT.md R13,
/// `x-ms-mutability: create, read`).
pub const CREATE_ONLY: &[&str] = &["instance_type", "code_configuration"];

fn to_map<T: Serialize>(value: &T) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// Renders a value for humans: asset references as `azureml:name:version`, strings bare,
/// everything else as compact JSON.
pub fn render_value(value: &Value) -> String {
    if let Ok(asset) = serde_json::from_value::<crate::model::AssetRef>(value.clone()) {
        return asset.to_string();
    }
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn is_ignored(field: &str, ignore: &[String]) -> bool {
    ignore.iter().any(|i| {
        i == field
            || field
                .split_once('.')
                .is_some_and(|(parent, _)| parent == i.as_str())
    })
}

fn compare_maps(
    prefix: &str,
    desired: &Map<String, Value>,
    live: &Map<String, Value>,
    ignore: &[String],
    out: &mut Vec<FieldChange>,
) {
    for (key, want) in desired {
        let field = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if is_ignored(&field, ignore) {
            continue;
        }
        let have = live.get(key);
        if prefix.is_empty() && NESTED.contains(&key.as_str()) {
            if let (Value::Object(want), Some(Value::Object(have))) = (want, have) {
                compare_maps(&field, want, have, ignore, out);
                continue;
            }
        }
        if have != Some(want) {
            out.push(FieldChange {
                field,
                from: have.map(render_value),
                to: render_value(want),
            });
        }
    }
}

/// Declared deployment fields whose live value differs, in field order.
pub fn deployment_changes(
    desired: &DeploymentSettings,
    live: &DeploymentSettings,
    ignore: &[String],
) -> Vec<FieldChange> {
    let mut want = to_map(desired);
    // On Azure ML the image belongs to the environment asset, not to the deployment; when an
    // environment is declared, the image is part of it and cannot be read back separately.
    if desired.environment.is_some() {
        want.remove("image");
    }
    let mut out = Vec::new();
    compare_maps("", &want, &to_map(live), ignore, &mut out);
    out
}

/// Declared endpoint settings whose live value differs.
pub fn endpoint_changes(
    desired: &EndpointSettings,
    live: &EndpointSettings,
    ignore: &[String],
) -> Vec<FieldChange> {
    let mut out = Vec::new();
    compare_maps("", &to_map(desired), &to_map(live), ignore, &mut out);
    out
}

/// Live settings overlaid with every declared field: what a full replace (PUT) must send so that
/// undeclared fields keep their live values.
pub fn merged(desired: &DeploymentSettings, live: &DeploymentSettings) -> DeploymentSettings {
    let mut base = to_map(live);
    for (key, value) in to_map(desired) {
        match (base.get_mut(&key), value) {
            (Some(Value::Object(have)), Value::Object(want)) if NESTED.contains(&key.as_str()) => {
                for (k, v) in want {
                    have.insert(k, v);
                }
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
    serde_json::from_value(Value::Object(base)).unwrap_or_else(|_| desired.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AssetRef, Probe};

    fn live() -> DeploymentSettings {
        DeploymentSettings {
            model: Some(AssetRef::parse("azureml:model-1:1")),
            instance_type: Some("Standard_DS3_v2".into()),
            instance_count: Some(2),
            readiness_probe: Some(Probe {
                period: Some(10),
                timeout: Some(2),
                failure_threshold: Some(30),
                ..Probe::default()
            }),
            ..DeploymentSettings::default()
        }
    }

    #[test]
    fn undeclared_fields_and_platform_defaults_are_not_changes() {
        let desired = DeploymentSettings {
            model: Some(AssetRef::parse("azureml:model-1:1")),
            readiness_probe: Some(Probe {
                period: Some(10),
                ..Probe::default()
            }),
            ..DeploymentSettings::default()
        };
        assert!(deployment_changes(&desired, &live(), &[]).is_empty());
    }

    #[test]
    fn a_declared_probe_subfield_that_differs_is_one_change() {
        let desired = DeploymentSettings {
            readiness_probe: Some(Probe {
                period: Some(5),
                ..Probe::default()
            }),
            ..DeploymentSettings::default()
        };
        let changes = deployment_changes(&desired, &live(), &[]);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].field, "readiness_probe.period");
        assert_eq!(changes[0].from.as_deref(), Some("10"));
        assert_eq!(changes[0].to, "5");
    }

    #[test]
    fn ignored_fields_are_never_changes() {
        let desired = DeploymentSettings {
            instance_count: Some(5),
            ..DeploymentSettings::default()
        };
        assert_eq!(deployment_changes(&desired, &live(), &[]).len(), 1);
        assert!(deployment_changes(&desired, &live(), &["instance_count".into()]).is_empty());
    }

    #[test]
    fn merged_settings_keep_live_values_for_undeclared_fields() {
        let desired = DeploymentSettings {
            model: Some(AssetRef::parse("azureml:model-1:2")),
            readiness_probe: Some(Probe {
                period: Some(5),
                ..Probe::default()
            }),
            ..DeploymentSettings::default()
        };
        let m = merged(&desired, &live());
        assert_eq!(m.model, Some(AssetRef::parse("azureml:model-1:2")));
        assert_eq!(m.instance_count, Some(2));
        let probe = m.readiness_probe.unwrap();
        assert_eq!((probe.period, probe.timeout), (Some(5), Some(2)));
    }
}
