//! Field-by-field comparison of declared settings against live settings.
//!
//! Only what the desired state declares is compared: a field the YAML leaves out is whatever the
//! platform made it (its default, a read-only value, a timestamp), and is never a change. Which
//! settings are compared, in which order, and whether each is compared whole or subfield by
//! subfield comes from the field table (`spec::fields`, [`Compare`]): nested settings (probes,
//! request settings, resources) are compared field by field the same way; maps (tags,
//! environment variables, resource quantities) are compared whole, because removing a key from a
//! declared map is a change the user means.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::FieldChange;
use super::profile::PlatformProfile;
use crate::model::{DeploymentSettings, Endpoint, EndpointSettings, LiveEndpoint, effective};
use crate::spec::fields::{self, Compare, DEPLOYMENT, ENDPOINT, Ty};

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
/// `drift.ignore` covers it. Values are rendered on demand, so a visitor that only collects
/// differences renders nothing when nothing differs (the planner runs on every reconcile).
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

    /// A declared setting (`want` present and not null) against the live one: whole, or subfield
    /// by subfield as the field table says. A nested setting that is absent live is one field.
    fn setting(
        &mut self,
        field: &'static fields::Field,
        want: Option<&Value>,
        have: Option<&Value>,
    ) {
        let Some(w) = want.filter(|w| !w.is_null()) else {
            return;
        };
        let have = have.filter(|h| !h.is_null());
        if field.compare == Compare::Nested
            && let (Value::Object(wm), Some(Value::Object(hm)), Some(obj)) =
                (w, have, field.object())
        {
            for sub in obj.names() {
                let Some(ws) = wm.get(sub).filter(|v| !v.is_null()) else {
                    continue;
                };
                let hs = hm.get(sub);
                let ty = obj.field(sub).map(|f| f.ty);
                self.emit(
                    Field {
                        name: field.name,
                        sub: Some(sub),
                    },
                    !same(ty, ws, hs),
                    &|| ws.clone(),
                    &|| hs.cloned(),
                );
            }
            return;
        }
        self.emit(
            Field::top(field.name),
            !same(Some(field.ty), w, have),
            &|| w.clone(),
            &|| have.cloned(),
        );
    }
}

/// Whether a declared value equals the live one. Resource quantities compare by value: the API
/// server rewrites `1000m` to `1` (plan::quantity).
fn same(ty: Option<Ty>, want: &Value, have: Option<&Value>) -> bool {
    let Some(have) = have else {
        return false;
    };
    if let Some(Ty::Quantities) = ty {
        let as_map = |v: &Value| serde_json::from_value::<BTreeMap<String, String>>(v.clone()).ok();
        if let (Some(w), Some(h)) = (as_map(want), as_map(have)) {
            return super::quantity::same_quantities(&w, &h);
        }
    }
    want == have
}

/// Visits every declared deployment field, in the field table's order, as `profile`'s platform
/// stores it.
pub fn visit_deployment<V: Visitor + ?Sized>(
    desired: &DeploymentSettings,
    live: &DeploymentSettings,
    ignore: &[String],
    profile: &PlatformProfile,
    visitor: &mut V,
) {
    let (want, have) = (to_map(desired), to_map(live));
    let mut c = Walk { ignore, visitor };
    for field in DEPLOYMENT.compared() {
        // Where the image belongs to the environment asset, a declared environment holds the
        // image, which cannot be read back separately.
        if field.name == "image"
            && desired.environment.is_some()
            && profile.values.image_in_environment
        {
            continue;
        }
        // An autoscaler owns the replica count: it is not Git's to compare (docs/kubernetes.md
        // "Autoscaling").
        if field.name == "instance_count" && desired.autoscaling.is_some() {
            continue;
        }
        let (w, h) = (want.get(field.name), have.get(field.name));
        if field.absent_removes
            && w.is_none_or(Value::is_null)
            && let Some(h) = h.filter(|h| !h.is_null())
        {
            // Declared as none: the live object is to go.
            c.emit(Field::top(field.name), true, &|| Value::Null, &|| {
                Some(h.clone())
            });
            continue;
        }
        c.setting(field, w, h);
    }
}

/// Visits the declared endpoint settings (the compared endpoint fields of the table that live in
/// [`EndpointSettings`]; traffic weights are on the endpoint, see [`visit_endpoint`]).
pub fn visit_endpoint_settings<V: Visitor + ?Sized>(
    desired: &EndpointSettings,
    live: &EndpointSettings,
    ignore: &[String],
    visitor: &mut V,
) {
    let (want, have) = (to_map(desired), to_map(live));
    let mut c = Walk { ignore, visitor };
    for field in ENDPOINT.compared() {
        if !matches!(field.ty, Ty::Weights(_)) {
            c.setting(field, want.get(field.name), have.get(field.name));
        }
    }
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
    for field in ENDPOINT.compared() {
        let (want, have) = match (field.ty, field.name) {
            (Ty::Weights(_), "traffic") => (&desired.traffic, &live.traffic),
            (Ty::Weights(_), "mirror_traffic") => (&desired.mirror_traffic, &live.mirror_traffic),
            _ => continue,
        };
        if let Some(w) = want {
            let (w, h) = (effective(w), effective(have));
            c.emit(Field::top(field.name), w != h, &|| value(&w), &|| {
                Some(value(&h))
            });
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
    let declared = to_map(desired);
    for field in DEPLOYMENT.fields.iter().filter(|f| f.absent_removes) {
        if !declared.contains_key(field.name) {
            base.remove(field.name);
        }
    }
    for (key, value) in declared {
        match (base.get_mut(&key), value) {
            (Some(Value::Object(have)), Value::Object(want))
                if DEPLOYMENT
                    .field(&key)
                    .is_some_and(|f| f.compare == Compare::Nested) =>
            {
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
