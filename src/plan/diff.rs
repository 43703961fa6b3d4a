//! `flightdeck diff`: a unified diff of the live and desired endpoint documents. Both sides show
//! only what the desired state declares (plus everything of what is live and not declared), so
//! platform defaults and read-only fields never show up as noise. The rendered diffs keep their
//! lines but have every other control character escaped (`crate::escape`).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;
use serde_json::{Map, Value};
use similar::TextDiff;

use crate::escape::{Esc, escape_control_keep_lines, escape_json};
use crate::model::{DesiredState, Endpoint, LiveEndpoint, LiveState, effective};

/// One endpoint's documents and their unified diff.
#[derive(Clone, Debug, Serialize)]
pub struct EndpointDiff {
    pub endpoint: String,
    /// `added`, `removed`, `changed` or `unchanged`.
    pub status: &'static str,
    pub diff: String,
}

fn settings_value<T: Serialize>(settings: &T) -> Map<String, Value> {
    let mut map = match serde_json::to_value(settings) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for key in ["model", "environment"] {
        if let Some(v) = map.get(key) {
            if let Ok(asset) = serde_json::from_value::<crate::model::AssetRef>(v.clone()) {
                map.insert(key.into(), Value::String(asset.to_string()));
            }
        }
    }
    map
}

/// A declared deployment as the diff shows it. Like `compare::deployment_changes`: on Azure ML the
/// image belongs to the environment asset and cannot be read back, so with an environment declared
/// the image is not part of the document (else `diff` would report a change `plan` never makes).
fn declared_deployment(settings: &crate::model::DeploymentSettings) -> Map<String, Value> {
    let mut map = settings_value(settings);
    if settings.environment.is_some() {
        map.remove("image");
    }
    map
}

/// Keeps only the keys `declared` has (one level deep for nested settings).
fn restrict(live: &Map<String, Value>, declared: &Map<String, Value>) -> Map<String, Value> {
    declared
        .iter()
        .filter_map(|(k, d)| {
            let l = live.get(k)?;
            Some(match (d, l) {
                (Value::Object(d), Value::Object(l)) if !is_plain_map(k) => {
                    (k.clone(), Value::Object(restrict(l, d)))
                }
                _ => (k.clone(), l.clone()),
            })
        })
        .collect()
}

fn is_plain_map(key: &str) -> bool {
    matches!(key, "tags" | "environment_variables")
}

fn weights(w: &BTreeMap<String, u32>) -> Value {
    serde_json::to_value(effective(w)).unwrap_or(Value::Null)
}

fn desired_doc(e: &Endpoint) -> Value {
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
                Value::Object(declared_deployment(&d.settings)),
            )
        })
        .collect();
    doc.insert("deployments".into(), Value::Object(deployments));
    Value::Object(doc)
}

fn live_doc(l: &LiveEndpoint, declared: Option<&Endpoint>) -> Value {
    let mut doc = Map::new();
    doc.insert("name".into(), Value::String(l.name.clone()));
    let settings = settings_value(&l.settings);
    match declared {
        Some(d) => doc.extend(restrict(&settings, &settings_value(&d.settings))),
        None => doc.extend(settings),
    }
    if declared.is_none_or(|d| d.traffic.is_some()) {
        doc.insert("traffic".into(), weights(&l.traffic));
    }
    if declared.is_none_or(|d| d.mirror_traffic.is_some()) {
        doc.insert("mirror_traffic".into(), weights(&l.mirror_traffic));
    }
    let deployments: Map<String, Value> = l
        .deployments
        .values()
        .map(|ld| {
            let mut s = settings_value(&ld.settings);
            if let Some(dd) = declared.and_then(|d| d.deployments.get(&ld.name)) {
                s = restrict(&s, &declared_deployment(&dd.settings));
                align_quantities(&mut s, &dd.settings);
            }
            (ld.name.clone(), Value::Object(s))
        })
        .collect();
    doc.insert("deployments".into(), Value::Object(deployments));
    Value::Object(doc)
}

/// Shows a live resource quantity in the declared spelling when it is the same amount (`1` live,
/// `1000m` declared): the API server rewrote it, nothing differs.
fn align_quantities(live: &mut Map<String, Value>, declared: &crate::model::DeploymentSettings) {
    let Some(want) = &declared.resources else {
        return;
    };
    for (section, declared) in [("requests", &want.requests), ("limits", &want.limits)] {
        let Some(Value::Object(have)) = live.get_mut("resources").and_then(|r| r.get_mut(section))
        else {
            continue;
        };
        for (key, value) in have.iter_mut() {
            if let (Some(w), Some(h)) = (declared.get(key), value.as_str())
                && super::quantity::same_quantity(w, h)
            {
                *value = Value::String(w.clone());
            }
        }
    }
}

fn yaml(value: &Value) -> String {
    serde_yaml::to_string(value).unwrap_or_default()
}

/// Diffs every endpoint declared or live, by name.
pub fn diff(desired: &DesiredState, live: &LiveState) -> Vec<EndpointDiff> {
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
            let want = desired.endpoints.get(name);
            let have = live.endpoints.get(name);
            let old = have.map(|l| yaml(&live_doc(l, want))).unwrap_or_default();
            let new = want.map(|d| yaml(&desired_doc(d))).unwrap_or_default();
            let status = match (have, want) {
                (None, _) => "added",
                (_, None) => "removed",
                _ if old == new => "unchanged",
                _ => "changed",
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
            }
        })
        .collect()
}

pub fn text(diffs: &[EndpointDiff]) -> String {
    let changed: Vec<&EndpointDiff> = diffs.iter().filter(|d| !d.diff.is_empty()).collect();
    if changed.is_empty() {
        return "no differences\n".into();
    }
    changed
        .iter()
        .map(|d| escape_control_keep_lines(&d.diff))
        .collect()
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
