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
use super::profile::PlatformProfile;
use crate::model::{DeploymentSettings, Endpoint, EndpointSettings, LiveEndpoint, effective};

/// Settings merged one level deeper, subfield by subfield.
const NESTED: &[&str] = &[
    "liveness_probe",
    "readiness_probe",
    "request_settings",
    "resources",
];

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

/// One declared field: `model`, or a subfield of a nested setting (`readiness_probe.period`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub sub: Option<&'static str>,
}

impl Field {
    fn top(name: &'static str) -> Self {
        Field { name, sub: None }
    }

    /// The name as in the YAML and in `drift.ignore`: `model`, `readiness_probe.period`.
    pub fn path(&self) -> String {
        match self.sub {
            Some(sub) => format!("{}.{sub}", self.name),
            None => self.name.to_string(),
        }
    }

    /// Whether `drift.ignore` covers the field: its own name, or the setting it belongs to.
    /// Allocation-free, as it runs for every declared field on every reconcile.
    fn ignored_by(&self, ignore: &[String]) -> bool {
        ignore.iter().any(|i| {
            i == self.name
                || self.sub.is_some_and(|sub| {
                    i.strip_prefix(self.name)
                        .and_then(|rest| rest.strip_prefix('.'))
                        == Some(sub)
                })
        })
    }
}

/// Receives every declared field in field order, with whether its live value differs and whether
/// `drift.ignore` covers it. Values are produced on demand, so a visitor that only collects
/// differences allocates nothing when nothing differs (the planner runs on every reconcile).
///
/// This walk is the one definition of "compare only what is declared, minus `drift.ignore`":
/// the planner (`Comparison`) and `flightdeck diff` (`plan::diff`) are both visitors of it.
pub trait Visitor {
    fn visit(
        &mut self,
        field: Field,
        differs: bool,
        ignored: bool,
        want: &dyn Fn() -> Value,
        have: &dyn Fn() -> Option<Value>,
    );
}

/// What the planner takes from a comparison: the changes to make, and the declared values that
/// differ from live but that `drift.ignore` covers (reported as notes, never applied).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    pub changes: Vec<FieldChange>,
    pub ignored: Vec<FieldChange>,
}

impl Visitor for Comparison {
    fn visit(
        &mut self,
        field: Field,
        differs: bool,
        ignored: bool,
        want: &dyn Fn() -> Value,
        have: &dyn Fn() -> Option<Value>,
    ) {
        if !differs {
            return;
        }
        let change = FieldChange {
            field: field.path(),
            from: have().as_ref().map(render_value),
            to: render_value(&want()),
        };
        if ignored {
            self.ignored.push(change);
        } else {
            self.changes.push(change);
        }
    }
}

/// The note for a declared value that `drift.ignore` keeps from being applied.
pub fn ignored_message(change: &FieldChange) -> String {
    format!(
        "{} {} → {} in Git is ignored (drift.ignore)",
        change.field,
        change.from.as_deref().unwrap_or("(unset)"),
        change.to
    )
}

fn value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Walks declared fields, telling a visitor about each.
struct Walk<'a, V: ?Sized> {
    ignore: &'a [String],
    visitor: &'a mut V,
}

impl<V: Visitor + ?Sized> Walk<'_, V> {
    fn emit(
        &mut self,
        field: Field,
        differs: bool,
        want: &dyn Fn() -> Value,
        have: &dyn Fn() -> Option<Value>,
    ) {
        let ignored = field.ignored_by(self.ignore);
        self.visitor.visit(field, differs, ignored, want, have);
    }

    /// A declared value against the live one.
    fn field<T: PartialEq + Serialize>(
        &mut self,
        name: &'static str,
        want: &Option<T>,
        have: &Option<T>,
    ) {
        if let Some(w) = want {
            self.emit(
                Field::top(name),
                have.as_ref() != Some(w),
                &|| value(w),
                &|| have.as_ref().map(value),
            );
        }
    }

    /// A nested setting: each declared subfield against the live one. When the live value is
    /// absent the whole setting is one field.
    fn nested<T: PartialEq + Serialize>(
        &mut self,
        name: &'static str,
        want: &Option<T>,
        have: &Option<T>,
        subfields: impl Fn(&T, &T, &mut dyn FnMut(&'static str, bool, &dyn Fn(&T) -> Option<Value>)),
    ) {
        let (Some(w), Some(h)) = (want, have) else {
            return self.field(name, want, have);
        };
        subfields(w, h, &mut |sub, differs, get| {
            self.emit(
                Field {
                    name,
                    sub: Some(sub),
                },
                differs,
                &|| get(w).unwrap_or(Value::Null),
                &|| get(h),
            );
        });
    }
}

/// Compares the declared (`Some`) subfields of two structs.
macro_rules! subfields {
    ($($f:ident),+) => {
        |w, h, emit: &mut dyn FnMut(&'static str, bool, &dyn Fn(&_) -> Option<Value>)| {
            $(
                if w.$f.is_some() {
                    emit(stringify!($f), w.$f != h.$f, &|x| x.$f.as_ref().map(value));
                }
            )+
        }
    };
}

/// Visits every declared deployment field, in field order, as `profile`'s platform stores it.
pub fn visit_deployment<V: Visitor + ?Sized>(
    desired: &DeploymentSettings,
    live: &DeploymentSettings,
    ignore: &[String],
    profile: &PlatformProfile,
    visitor: &mut V,
) {
    let mut c = Walk { ignore, visitor };
    let (d, l) = (desired, live);
    c.field("description", &d.description, &l.description);
    c.field("tags", &d.tags, &l.tags);
    c.field("model", &d.model, &l.model);
    c.field("environment", &d.environment, &l.environment);
    // Where the image belongs to the environment asset, a declared environment holds the image,
    // which cannot be read back separately.
    if d.environment.is_none() || !profile.values.image_in_environment {
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
            if !want.is_empty() {
                c.emit(
                    Field {
                        name: "resources",
                        sub: Some(sub),
                    },
                    // Quantities by value: the API server rewrites `1000m` to `1` (plan::quantity).
                    !super::quantity::same_quantities(want, have),
                    &|| value(want),
                    &|| Some(value(have)),
                );
            }
        }
    } else {
        c.field("resources", &d.resources, &l.resources);
    }
}

/// Visits the declared endpoint settings.
pub fn visit_endpoint_settings<V: Visitor + ?Sized>(
    desired: &EndpointSettings,
    live: &EndpointSettings,
    ignore: &[String],
    visitor: &mut V,
) {
    let mut c = Walk { ignore, visitor };
    c.field("auth_mode", &desired.auth_mode, &live.auth_mode);
    c.field("description", &desired.description, &live.description);
    c.field("tags", &desired.tags, &live.tags);
    c.field(
        "public_network_access",
        &desired.public_network_access,
        &live.public_network_access,
    );
}

/// Visits the declared endpoint settings, then `traffic` and `mirror_traffic` when declared,
/// compared without their zero entries (a 0% deployment and an absent one route the same).
pub fn visit_endpoint<V: Visitor + ?Sized>(
    desired: &Endpoint,
    live: &LiveEndpoint,
    ignore: &[String],
    visitor: &mut V,
) {
    visit_endpoint_settings(&desired.settings, &live.settings, ignore, visitor);
    let mut c = Walk { ignore, visitor };
    for (name, want, have) in [
        ("traffic", &desired.traffic, &live.traffic),
        (
            "mirror_traffic",
            &desired.mirror_traffic,
            &live.mirror_traffic,
        ),
    ] {
        if let Some(w) = want {
            let (w, h) = (effective(w), effective(have));
            c.emit(Field::top(name), w != h, &|| value(&w), &|| Some(value(&h)));
        }
    }
}

/// The comparison of a declared deployment with its live one.
pub fn deployment_comparison(
    desired: &DeploymentSettings,
    live: &DeploymentSettings,
    ignore: &[String],
    profile: &PlatformProfile,
) -> Comparison {
    let mut c = Comparison::default();
    visit_deployment(desired, live, ignore, profile, &mut c);
    c
}

/// Declared deployment fields whose live value differs, in field order.
pub fn deployment_changes(
    desired: &DeploymentSettings,
    live: &DeploymentSettings,
    ignore: &[String],
    profile: &PlatformProfile,
) -> Vec<FieldChange> {
    deployment_comparison(desired, live, ignore, profile).changes
}

/// Declared endpoint settings whose live value differs.
pub fn endpoint_changes(
    desired: &EndpointSettings,
    live: &EndpointSettings,
    ignore: &[String],
) -> Vec<FieldChange> {
    let mut c = Comparison::default();
    visit_endpoint_settings(desired, live, ignore, &mut c);
    c.changes
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
    use crate::plan::profile::NEUTRAL;

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
        assert!(deployment_changes(&desired, &live(), &[], &NEUTRAL).is_empty());
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
        let changes = deployment_changes(&desired, &live(), &[], &NEUTRAL);
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
        assert_eq!(
            deployment_changes(&desired, &live(), &[], &NEUTRAL).len(),
            1
        );
        assert!(
            deployment_changes(&desired, &live(), &["instance_count".into()], &NEUTRAL).is_empty()
        );
    }

    #[test]
    fn an_ignored_field_that_differs_is_reported_apart_with_its_values() {
        let desired = DeploymentSettings {
            instance_count: Some(5),
            readiness_probe: Some(Probe {
                period: Some(5),
                ..Probe::default()
            }),
            ..DeploymentSettings::default()
        };
        let ignore = ["instance_count".into(), "readiness_probe.period".into()];
        let c = deployment_comparison(&desired, &live(), &ignore, &NEUTRAL);
        assert!(c.changes.is_empty(), "{c:?}");
        let fields: Vec<&str> = c.ignored.iter().map(|i| i.field.as_str()).collect();
        assert_eq!(fields, ["instance_count", "readiness_probe.period"]);
        assert_eq!(
            ignored_message(&c.ignored[0]),
            "instance_count 2 → 5 in Git is ignored (drift.ignore)"
        );
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
