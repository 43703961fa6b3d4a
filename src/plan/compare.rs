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

/// Settings merged one level deeper, subfield by subfield.
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

/// Collects changes, rendering values only for fields that differ (the common case is
/// "nothing differs", which must cost no allocation: the planner runs on every reconcile).
struct Changes<'a> {
    ignore: &'a [String],
    out: Vec<FieldChange>,
}

impl Changes<'_> {
    fn push(&mut self, field: String, from: Option<String>, to: String) {
        self.out.push(FieldChange { field, from, to });
    }

    /// A declared value against the live one.
    fn field<T: PartialEq + Serialize>(&mut self, name: &str, want: &Option<T>, have: &Option<T>) {
        if let Some(w) = want {
            if have.as_ref() != Some(w) && !is_ignored(name, self.ignore) {
                self.push(name.to_string(), have.as_ref().map(render), render(w));
            }
        }
    }

    /// A nested setting: each declared subfield against the live one. When the live value is
    /// absent the whole setting is one change.
    fn nested<T: PartialEq + Serialize + Default>(
        &mut self,
        name: &str,
        want: &Option<T>,
        have: &Option<T>,
        subfields: impl Fn(&T, &T, &mut dyn FnMut(&'static str, bool, &dyn Fn(&T) -> Option<String>)),
    ) {
        let (Some(w), Some(h)) = (want, have) else {
            return self.field(name, want, have);
        };
        if w == h {
            return;
        }
        subfields(w, h, &mut |sub, differs, value| {
            if differs {
                let field = format!("{name}.{sub}");
                if !is_ignored(&field, self.ignore) {
                    let to = value(w).unwrap_or_default();
                    self.push(field, value(h), to);
                }
            }
        });
    }
}

fn render<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .map(|v| render_value(&v))
        .unwrap_or_default()
}

/// Compares the declared (`Some`) subfields of two structs: `sub!(want, have, emit, field...)`.
macro_rules! subfields {
    ($($f:ident),+) => {
        |w, h, emit: &mut dyn FnMut(&'static str, bool, &dyn Fn(&_) -> Option<String>)| {
            $(
                if w.$f.is_some() {
                    emit(stringify!($f), w.$f != h.$f, &|x| x.$f.as_ref().map(render));
                }
            )+
        }
    };
}

/// Declared deployment fields whose live value differs, in field order.
pub fn deployment_changes(
    desired: &DeploymentSettings,
    live: &DeploymentSettings,
    ignore: &[String],
) -> Vec<FieldChange> {
    let mut c = Changes {
        ignore,
        out: Vec::new(),
    };
    let (d, l) = (desired, live);
    c.field("description", &d.description, &l.description);
    c.field("tags", &d.tags, &l.tags);
    c.field("model", &d.model, &l.model);
    c.field("environment", &d.environment, &l.environment);
    // On Azure ML the image belongs to the environment asset, not to the deployment; when an
    // environment is declared, the image is part of it and cannot be read back separately.
    if d.environment.is_none() {
        c.field("image", &d.image, &l.image);
    }
    c.field(
        "code_configuration",
        &d.code_configuration,
        &l.code_configuration,
    );
    c.field("instance_type", &d.instance_type, &l.instance_type);
    c.field("instance_count", &d.instance_count, &l.instance_count);
    c.field(
        "environment_variables",
        &d.environment_variables,
        &l.environment_variables,
    );
    c.nested(
        "request_settings",
        &d.request_settings,
        &l.request_settings,
        subfields!(
            request_timeout_ms,
            max_concurrent_requests_per_instance,
            max_queue_wait_ms
        ),
    );
    for (name, want, have) in [
        ("liveness_probe", &d.liveness_probe, &l.liveness_probe),
        ("readiness_probe", &d.readiness_probe, &l.readiness_probe),
    ] {
        c.nested(
            name,
            want,
            have,
            subfields!(
                initial_delay,
                period,
                timeout,
                failure_threshold,
                success_threshold,
                path,
                port
            ),
        );
    }
    c.field("port", &d.port, &l.port);
    if let (Some(w), Some(h)) = (&d.resources, &l.resources) {
        // Requests and limits are maps, each compared whole (only when declared non-empty).
        for (sub, want, have) in [
            ("requests", &w.requests, &h.requests),
            ("limits", &w.limits, &h.limits),
        ] {
            let field = format!("resources.{sub}");
            // Quantities by value: the API server rewrites `1000m` to `1` (plan::quantity).
            if !want.is_empty()
                && !super::quantity::same_quantities(want, have)
                && !is_ignored(&field, ignore)
            {
                c.push(field, Some(render(have)), render(want));
            }
        }
    } else {
        c.field("resources", &d.resources, &l.resources);
    }
    c.out
}

/// Declared endpoint settings whose live value differs.
pub fn endpoint_changes(
    desired: &EndpointSettings,
    live: &EndpointSettings,
    ignore: &[String],
) -> Vec<FieldChange> {
    let mut c = Changes {
        ignore,
        out: Vec::new(),
    };
    c.field("auth_mode", &desired.auth_mode, &live.auth_mode);
    c.field("description", &desired.description, &live.description);
    c.field("tags", &desired.tags, &live.tags);
    c.field(
        "public_network_access",
        &desired.public_network_access,
        &live.public_network_access,
    );
    c.out
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
