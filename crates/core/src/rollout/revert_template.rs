//! What `flightdeck revert` changes for a blue/green slot endpoint (`slots:` in
//! environment.yaml, `crate::slots`): its traffic is not written in Git, its deployment
//! template is. After a failed slot release the serving slot still runs the old settings while
//! the template declares the new ones, so the revert rewrites the template, field by field, to
//! what the serving slot runs live: only the declared fields that differ (as the planner
//! compares them, minus `drift.ignore`), each edited in place (`spec::edit`), comments and
//! layout kept. A difference the editor cannot write (a value live does not have, a list, a
//! boolean, a model written as a mapping whose name differs) is refused, never approximated.
//! Pure: file texts and live settings in, the new text out.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::revert::FileChange;
use crate::model::{AssetRef, LiveEndpoint};
use crate::plan::Action;
use crate::plan::PlatformProfile;
use crate::plan::compare::{Field, Visitor, render_value, visit_deployment};
use crate::slots::{AfterSwap, Slots};
use crate::spec::edit::{self, Edit, EditError, Scalar};
use crate::spec::yaml::{self, Kind, Node, ScalarType};
use crate::tree::FileMap;

/// One template field set back to the serving slot's live value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRestore {
    /// As in the YAML: `model`, `readiness_probe.period`.
    pub field: String,
    /// What the template declared, and what the serving slot runs (both rendered).
    pub declared: String,
    pub live: String,
}

/// The revert of one slot endpoint's template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateRevert {
    pub endpoint: String,
    /// The slot that takes the live traffic.
    pub serving: String,
    pub fields: Vec<FieldRestore>,
    /// The template file's change; `None` when it already declares what `serving` runs.
    pub change: Option<FileChange>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error(
        "endpoint {endpoint}: no slot ({slots}) takes live traffic; there is nothing to revert the template to"
    )]
    NoServingSlot { endpoint: String, slots: String },
    #[error("endpoint {endpoint}: the template {path} is not a file of the environment")]
    NoTemplate { endpoint: String, path: PathBuf },
    #[error(
        "endpoint {}: {}: `{}` cannot be set back to what slot {} runs ({}): {}; revert the \
         template by hand",
        .0.endpoint, .0.path.display(), .0.field, .0.slot, .0.live, .0.why
    )]
    Inexpressible(Box<Unwritable>),
    #[error("endpoint {endpoint}: {path}: {source}")]
    Edit {
        endpoint: String,
        path: PathBuf,
        #[source]
        source: EditError,
    },
}

/// A template field the editor cannot set back to the serving slot's value.
#[derive(Debug, PartialEq, Eq)]
pub struct Unwritable {
    pub endpoint: String,
    pub path: PathBuf,
    pub slot: String,
    pub field: String,
    pub live: String,
    pub why: &'static str,
}

/// The declared fields whose live value differs, with both values.
#[derive(Default)]
struct Differences(Vec<(Field, Value, Option<Value>)>);

impl Visitor for Differences {
    fn visit(
        &mut self,
        field: Field,
        differs: bool,
        ignored: bool,
        want: &dyn Fn() -> Value,
        have: &dyn Fn() -> Option<Value>,
    ) {
        if differs && !ignored {
            self.0.push((field, want(), have()));
        }
    }
}

/// The slot with the most live traffic (the first name on a tie), if any takes some.
pub fn serving_slot<'s>(slots: &'s Slots, live: &LiveEndpoint) -> Option<&'s str> {
    let weight = |n: &str| live.traffic.get(n).copied().unwrap_or(0);
    let [first, second] = &slots.names;
    let best = if weight(second) > weight(first) {
        second
    } else {
        first
    };
    (weight(best) > 0 && live.deployments.contains_key(best)).then_some(best.as_str())
}

/// Whether `action`, in the plan after the revert, is only `after_swap` acting on the slot that
/// does not serve (`scale_down` scaling it, `delete` deleting it): what the environment declares
/// for an old slot, not a release, so the revert accepts it (and shows it in the plan).
pub fn is_after_swap(slots: &Slots, serving: &str, action: &Action) -> bool {
    let other = |d: &String| slots.names.contains(d) && d != serving;
    match (slots.after_swap, action) {
        (AfterSwap::ScaleDown, Action::ScaleDeployment { deployment, to, .. }) => {
            other(deployment) && *to == crate::slots::SCALED_DOWN_INSTANCES
        }
        (AfterSwap::Delete, Action::DeleteDeployment { deployment }) => other(deployment),
        _ => false,
    }
}

/// The node at `path` below `root`, when every key is there.
fn node_at<'n>(root: &'n Node, path: &[String]) -> Option<&'n Node> {
    path.iter()
        .try_fold(root, |node, key| node.get(key).map(|e| &e.value))
}

/// A scalar to write for a live JSON value: strings and integers only.
fn scalar(value: &Value) -> Option<Scalar> {
    match value {
        Value::String(s) => Some(Scalar::Str(s.clone())),
        Value::Number(n) => n.as_i64().map(Scalar::Int),
        _ => None,
    }
}

/// The edits that make the value at `path` equal to `live`, given how the file writes it.
fn edits_for(root: &Node, path: Vec<String>, live: &Value) -> Result<Vec<Edit>, &'static str> {
    let node = node_at(root, &path).ok_or("the file does not write it where it can be edited")?;
    let asset = serde_json::from_value::<AssetRef>(live.clone()).ok();
    match (&node.kind, asset) {
        // `model: azureml:churn:4`, or an id: the rendered reference, which the loader parses back.
        (Kind::Scalar { .. }, Some(asset)) => Ok(vec![Edit::SetScalar {
            path,
            value: Scalar::Str(asset.to_string()),
        }]),
        // `model: {name: churn, version: 4}`: the version, when the name is the same.
        (Kind::Map(_), Some(AssetRef::Registered { name, version })) => {
            let declared_name = node.get("name").and_then(|e| match &e.value.kind {
                Kind::Scalar { text, .. } => Some(text.as_str()),
                _ => None,
            });
            if declared_name != Some(name.as_str()) {
                return Err("the template names another asset in a mapping");
            }
            let int_written = matches!(
                node.get("version").map(|e| &e.value.kind),
                Some(Kind::Scalar {
                    ty: ScalarType::Int,
                    ..
                })
            );
            let value = match version.parse::<i64>() {
                Ok(v) if int_written => Scalar::Int(v),
                _ => Scalar::Str(version),
            };
            let mut at = path;
            at.push("version".into());
            Ok(vec![Edit::SetScalar { path: at, value }])
        }
        (Kind::Map(_), Some(_)) => Err("the template writes the asset as a mapping"),
        (Kind::Scalar { .. }, None) => Ok(vec![Edit::SetScalar {
            value: scalar(live).ok_or("only strings and integers are written back")?,
            path,
        }]),
        // Tags, environment variables: the whole map, as the planner compares it.
        (Kind::Map(_), None) => {
            let Value::Object(map) = live else {
                return Err("the file writes a mapping where live has a single value");
            };
            let entries = map
                .iter()
                .map(|(k, v)| scalar(v).map(|s| (k.clone(), s)))
                .collect::<Option<Vec<_>>>()
                .ok_or("only strings and integers are written back")?;
            Ok(vec![Edit::SetMap {
                path,
                entries,
                after: None,
            }])
        }
        (Kind::Seq(_), _) => Err("lists are not written back"),
    }
}

/// The changes that make `slots`' template (a file of `files`, keyed below `env_dir`) declare
/// what the serving slot runs in `live`, compared as the planner compares.
pub fn revert_template(
    files: &FileMap,
    env_dir: &Path,
    endpoint: &str,
    slots: &Slots,
    live: &LiveEndpoint,
    ignore: &[String],
    profile: &PlatformProfile,
) -> Result<TemplateRevert, TemplateError> {
    let serving = serving_slot(slots, live)
        .ok_or_else(|| TemplateError::NoServingSlot {
            endpoint: endpoint.to_string(),
            slots: slots.names.join(", "),
        })?
        .to_string();
    let path = env_dir.join(&slots.template_file);
    let text = files
        .get(&path)
        .and_then(|b| std::str::from_utf8(b).ok())
        .ok_or_else(|| TemplateError::NoTemplate {
            endpoint: endpoint.to_string(),
            path: path.clone(),
        })?;
    let mut differences = Differences::default();
    let live_settings = &live.deployments[&serving].settings;
    visit_deployment(
        &slots.template.settings,
        live_settings,
        ignore,
        profile,
        &mut differences,
    );
    let edit_error = |source| TemplateError::Edit {
        endpoint: endpoint.to_string(),
        path: path.clone(),
        source,
    };
    let (root, errors) = yaml::parse(text);
    let root = match (root, errors.first()) {
        (Some(root), None) => root,
        (_, e) => {
            return Err(edit_error(EditError::Parse(
                e.map_or("the file is empty".into(), |e| e.message.clone()),
            )));
        }
    };
    let mut edits = Vec::new();
    let mut fields = Vec::new();
    for (field, want, have) in differences.0 {
        let inexpressible = |live: String, why| {
            TemplateError::Inexpressible(Box::new(Unwritable {
                endpoint: endpoint.to_string(),
                path: path.clone(),
                slot: serving.clone(),
                field: field.path(),
                live,
                why,
            }))
        };
        let Some(have) = have else {
            return Err(inexpressible(
                "unset".into(),
                "the slot has no live value for it",
            ));
        };
        let mut at = vec![field.name.to_string()];
        at.extend(field.sub.map(str::to_string));
        edits.extend(
            edits_for(&root, at, &have).map_err(|why| inexpressible(render_value(&have), why))?,
        );
        fields.push(FieldRestore {
            field: field.path(),
            declared: render_value(&want),
            live: render_value(&have),
        });
    }
    let new = edit::apply(text, &edits).map_err(edit_error)?;
    let change = (new != text).then(|| FileChange {
        path: path.clone(),
        old: Some(text.to_string()),
        new: Some(new),
    });
    Ok(TemplateRevert {
        endpoint: endpoint.to_string(),
        serving,
        fields,
        change,
    })
}

#[cfg(test)]
#[path = "revert_template_tests.rs"]
mod tests;
