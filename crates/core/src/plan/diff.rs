//! `flightdeck diff`: a unified diff of the live and desired endpoint documents. Both sides show
//! only what the desired state declares (plus everything of what is live and not declared), so
//! platform defaults and read-only fields never show up as noise. The rendered diffs keep their
//! lines but have every other control character escaped (`crate::escape`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde::Serialize;
use serde_json::{Map, Value};
use similar::TextDiff;

use super::Note;
use super::compare::{self, Comparison, Field, Visitor};
use super::planner::{PlanOptions, undeclared_note};
use super::profile::PlatformProfile;
use crate::escape::{Esc, escape_control_keep_lines, escape_json};
use crate::model::{
    DeploymentState, DesiredState, Endpoint, LiveDeployment, LiveEndpoint, LiveState, effective,
};

/// One endpoint's documents and their unified diff.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointDiff {
    pub endpoint: String,
    /// `added`, `removed`, `changed`, `unchanged`, or `undeclared` (live only, kept: no `--prune`).
    pub status: &'static str,
    pub diff: String,
    /// The same notes `plan` gives: declared values that `drift.ignore` keeps from being applied,
    /// and live endpoints left alone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
}

fn settings_value<T: Serialize>(settings: &T) -> Map<String, Value> {
    let mut map = match serde_json::to_value(settings) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for key in ["model", "environment"] {
        if let Some(v) = map.get_mut(key) {
            *v = shown(key, v.take());
        }
    }
    map
}

/// Asset references (`model`, `environment`) as `azureml:name:version`.
fn shown(field: &str, value: Value) -> Value {
    if matches!(field, "model" | "environment")
        && let Ok(asset) = serde_json::from_value::<crate::model::AssetRef>(value.clone())
    {
        return Value::String(asset.to_string());
    }
    value
}

/// A declared deployment as the diff shows it when it is not live: everything it declares is
/// created, so it is the same walk (`compare::visit_deployment`) against nothing live, and the
/// platform's own rules (the image inside the environment) apply exactly as in `plan`.
fn declared_deployment(
    settings: &crate::model::DeploymentSettings,
    profile: &PlatformProfile,
) -> Map<String, Value> {
    let mut docs = Docs::default();
    let nothing = crate::model::DeploymentSettings::default();
    compare::visit_deployment(settings, &nothing, &[], profile, &mut docs);
    docs.desired
}

/// Both documents of one declared-and-live object, built by walking the one comparison the
/// planner uses (`compare::Visitor`): every declared field that `drift.ignore` does not cover,
/// the desired value on one side and the live value on the other. So `diff` shows a difference
/// exactly when `plan` has a change to make; ignored differences become the plan's notes.
#[derive(Default)]
struct Docs {
    desired: Map<String, Value>,
    live: Map<String, Value>,
    ignored: Comparison,
}

impl Visitor for Docs {
    fn visit(
        &mut self,
        field: Field,
        differs: bool,
        ignored: bool,
        want: &dyn Fn() -> Value,
        have: &dyn Fn() -> Option<Value>,
    ) {
        if ignored {
            return self.ignored.visit(field, differs, ignored, want, have);
        }
        put(&mut self.desired, field, want());
        // Where the comparison finds no difference, the live document shows the declared
        // spelling (`1000m` declared, `1` live): `diff` differs exactly where `plan` does.
        if let Some(h) = have() {
            put(&mut self.live, field, if differs { h } else { want() });
        }
    }
}

fn put(doc: &mut Map<String, Value>, field: Field, value: Value) {
    let value = shown(field.name, value);
    match field.sub {
        None => {
            doc.insert(field.name.into(), value);
        }
        Some(sub) => {
            let entry = doc
                .entry(field.name)
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = entry {
                m.insert(sub.into(), value);
            }
        }
    }
}

fn weights(w: &BTreeMap<String, u32>) -> Value {
    serde_json::to_value(effective(w)).unwrap_or(Value::Null)
}

/// A live deployment that is not ready always has a plan step (wait, or re-provision), so the
/// live document shows its state, which the desired document never has.
fn live_deployment(ld: &LiveDeployment, mut doc: Map<String, Value>) -> Value {
    match &ld.state {
        DeploymentState::Ready => {}
        DeploymentState::Provisioning => {
            doc.insert("state".into(), Value::String("provisioning".into()));
        }
        DeploymentState::Failed { message } => {
            doc.insert("state".into(), Value::String(format!("failed: {message}")));
        }
    }
    Value::Object(doc)
}

/// The document of a declared endpoint that is not live: everything it declares.
fn new_endpoint_doc(e: &Endpoint, profile: &PlatformProfile) -> Value {
    let mut doc = Map::new();
    doc.insert("name".into(), Value::String(e.name.clone()));
    doc.extend(settings_value(&e.settings));
    if let Some(t) = &e.traffic {
        doc.insert("traffic".into(), weights(t));
    }
    if let Some(m) = &e.mirror_traffic {
        doc.insert("mirror_traffic".into(), weights(m));
    }
    let deployments: Map<String, Value> = e
        .deployments
        .values()
        .map(|d| {
            (
                d.name.clone(),
                Value::Object(declared_deployment(&d.settings, profile)),
            )
        })
        .collect();
    doc.insert("deployments".into(), Value::Object(deployments));
    Value::Object(doc)
}

/// The document of a live endpoint that is not declared: everything live.
fn undeclared_endpoint_doc(l: &LiveEndpoint) -> Value {
    let mut doc = Map::new();
    doc.insert("name".into(), Value::String(l.name.clone()));
    doc.extend(settings_value(&l.settings));
    doc.insert("traffic".into(), weights(&l.traffic));
    doc.insert("mirror_traffic".into(), weights(&l.mirror_traffic));
    let deployments: Map<String, Value> = l
        .deployments
        .values()
        .map(|ld| {
            (
                ld.name.clone(),
                live_deployment(ld, settings_value(&ld.settings)),
            )
        })
        .collect();
    doc.insert("deployments".into(), Value::Object(deployments));
    Value::Object(doc)
}

/// The desired and live documents of an endpoint both declared and live, and the notes.
fn paired_docs(
    e: &Endpoint,
    l: &LiveEndpoint,
    ignore: &[String],
    profile: &PlatformProfile,
) -> (Value, Value, Vec<Note>) {
    let mut docs = Docs::default();
    compare::visit_endpoint(e, l, ignore, &mut docs);
    let note = |deployment: Option<&str>, c: &crate::plan::FieldChange| Note {
        endpoint: e.name.clone(),
        deployment: deployment.map(str::to_string),
        message: compare::ignored_message(c),
    };
    let mut notes: Vec<Note> = docs.ignored.ignored.iter().map(|c| note(None, c)).collect();
    let name = || Value::String(e.name.clone());
    let mut desired = Map::from_iter([("name".to_string(), name())]);
    desired.extend(docs.desired);
    let mut live = Map::from_iter([("name".to_string(), name())]);
    live.extend(docs.live);
    // Missing or changed platform objects are repaired by `plan` (`repair_endpoint`), so the
    // live document shows them; the desired document never has them.
    if !l.problems.is_empty() {
        live.insert(
            "problems".into(),
            serde_json::to_value(&l.problems).unwrap_or_default(),
        );
    }
    let (mut want_deps, mut have_deps) = (Map::new(), Map::new());
    let names: BTreeSet<&String> = e.deployments.keys().chain(l.deployments.keys()).collect();
    for n in names {
        match (e.deployments.get(n), l.deployments.get(n)) {
            (Some(d), Some(ld)) => {
                let mut docs = Docs::default();
                compare::visit_deployment(&d.settings, &ld.settings, ignore, profile, &mut docs);
                notes.extend(docs.ignored.ignored.iter().map(|c| note(Some(n), c)));
                want_deps.insert(n.clone(), Value::Object(docs.desired));
                have_deps.insert(n.clone(), live_deployment(ld, docs.live));
            }
            (Some(d), None) => {
                let doc = declared_deployment(&d.settings, profile);
                want_deps.insert(n.clone(), Value::Object(doc));
            }
            (None, Some(ld)) => {
                have_deps.insert(n.clone(), live_deployment(ld, settings_value(&ld.settings)));
            }
            (None, None) => {}
        }
    }
    desired.insert("deployments".into(), Value::Object(want_deps));
    live.insert("deployments".into(), Value::Object(have_deps));
    (Value::Object(desired), Value::Object(live), notes)
}

fn yaml(value: &Value) -> String {
    super::diff_yaml::to_yaml(value)
}

/// Diffs every endpoint declared or live, by name, with the planner's rules (`PlanOptions`):
/// the same declared fields, the same `drift.ignore`, and live-only endpoints count only with
/// `--prune`, and the same platform `profile`. `diff` finds no differences exactly when `plan`
/// has no steps (tests/plan_properties.rs checks it on random inputs).
pub fn diff(
    desired: &DesiredState,
    live: &LiveState,
    opts: &PlanOptions,
    profile: &PlatformProfile,
) -> Vec<EndpointDiff> {
    let mut names: Vec<&String> = desired
        .endpoints
        .keys()
        .chain(live.endpoints.keys())
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let (old, new, notes, status) =
                match (desired.endpoints.get(name), live.endpoints.get(name)) {
                    (Some(e), Some(l)) => {
                        let (new, old, notes) = paired_docs(e, l, &opts.ignore, profile);
                        (yaml(&old), yaml(&new), notes, None)
                    }
                    (Some(e), None) => (
                        String::new(),
                        yaml(&new_endpoint_doc(e, profile)),
                        vec![],
                        Some("added"),
                    ),
                    (None, Some(l)) if opts.prune => (
                        yaml(&undeclared_endpoint_doc(l)),
                        String::new(),
                        vec![],
                        Some("removed"),
                    ),
                    (None, Some(_)) => (
                        String::new(),
                        String::new(),
                        vec![undeclared_note(name)],
                        Some("undeclared"),
                    ),
                    (None, None) => unreachable!("every name is declared or live"),
                };
            let status = match status {
                Some(s) => s,
                None if old == new => "unchanged",
                None => "changed",
            };
            let diff = if old == new {
                String::new()
            } else {
                TextDiff::from_lines(&old, &new)
                    .unified_diff()
                    .context_radius(3)
                    .header(&format!("live/{name}"), &format!("desired/{name}"))
                    .to_string()
            };
            EndpointDiff {
                endpoint: name.clone(),
                status,
                diff,
                notes,
            }
        })
        .collect()
}

fn note_lines(diffs: &[EndpointDiff]) -> String {
    let mut out = String::new();
    for note in diffs.iter().flat_map(|d| &d.notes) {
        let _ = writeln!(
            out,
            "note: {}: {}",
            Esc(&note.subject()),
            Esc(&note.message)
        );
    }
    out
}

pub fn text(diffs: &[EndpointDiff]) -> String {
    let changed: Vec<&EndpointDiff> = diffs.iter().filter(|d| !d.diff.is_empty()).collect();
    let mut out = if changed.is_empty() {
        "no differences\n".to_string()
    } else {
        changed
            .iter()
            .map(|d| escape_control_keep_lines(&d.diff))
            .collect()
    };
    out.push_str(&note_lines(diffs));
    out
}

pub fn markdown(environment: &str, diffs: &[EndpointDiff]) -> String {
    let mut out = String::new();
    let changed: Vec<&EndpointDiff> = diffs.iter().filter(|d| !d.diff.is_empty()).collect();
    let _ = writeln!(
        out,
        "### flightdeck diff: `{}`: {}",
        Esc(environment),
        if changed.is_empty() {
            "no differences".to_string()
        } else {
            format!("{} endpoint(s) differ", changed.len())
        }
    );
    for d in changed {
        let _ = writeln!(
            out,
            "\n#### `{}` ({})\n\n```diff\n{}```",
            Esc(&d.endpoint),
            d.status,
            escape_control_keep_lines(&d.diff)
        );
    }
    for note in diffs.iter().flat_map(|d| &d.notes) {
        let _ = writeln!(
            out,
            "\n> **Note** `{}`: {}",
            Esc(&note.subject()),
            Esc(&note.message)
        );
    }
    out
}

pub fn json(environment: &str, diffs: &[EndpointDiff]) -> String {
    let doc = serde_json::json!({
        "version": 1,
        "environment": environment,
        "changes": diffs.iter().any(|d| !d.diff.is_empty()),
        "endpoints": diffs,
    });
    let text = serde_json::to_string_pretty(&doc).expect("diff serialises");
    escape_json(&text).into_owned() + "\n"
}
