//! The text edit of `flightdeck promote`: which file declares the deployment (a deployment
//! file, a `deployments:` item of a combined endpoint file, or a slot template), and the one
//! scalar that changes in it: the registered model's `version` (or its `azureml:name:version`
//! reference string), or the container image. Pure: the environment's files and desired state
//! in, the new text of one file out. The binary loads the result again, plans it and commits it
//! (`src/promote/`).
//!
//! Model references follow the az ml YAML: `model: azureml:name:version` (`name:version` is
//! read the same way) or a mapping with `name` and `version`
//! (`tests/fixtures/reference/azureml-cli-yaml/canary-declarative-flow`). A local or id model
//! is not a registered version and is refused.

use std::path::{Path, PathBuf};

use super::edit::{self, EditError, Scalar, Step};
use super::files::normalize;
use super::yaml::{self, Kind, Node, ScalarType};
use crate::model::{AssetRef, DesiredState};
use crate::tree::FileMap;

/// What to promote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Artifact {
    /// A registered model version: `name:version` or `azureml:name:version`.
    Model { name: String, version: String },
    /// A container image reference.
    Image(String),
}

impl Artifact {
    /// Parses `--model` as `NAME:VERSION` or `azureml:NAME:VERSION`.
    pub fn model(text: &str) -> Result<Artifact, PromoteEditError> {
        match AssetRef::parse(text) {
            AssetRef::Registered { name, version } => Ok(Artifact::Model { name, version }),
            _ => Err(PromoteEditError::BadModel {
                given: text.to_string(),
            }),
        }
    }

    /// The new version (or image tag), for branch names and messages.
    pub fn version(&self) -> &str {
        match self {
            Artifact::Model { version, .. } => version,
            Artifact::Image(image) => {
                let last = image.rsplit('/').next().unwrap_or(image);
                let last = last.split('@').next().unwrap_or(last);
                last.rsplit_once(':').map_or(last, |(_, tag)| tag)
            }
        }
    }
}

/// Which deployment the edit is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    Deployment(String),
    /// The slot template of the endpoint (`slots:` in environment.yaml).
    SlotTemplate,
}

/// One file's edit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromoteEdit {
    pub endpoint: String,
    pub subject: Subject,
    /// As keyed in the environment's file map.
    pub path: PathBuf,
    /// 1-based line of the changed scalar.
    pub line: usize,
    /// Where in the file, e.g. `deployments[0].model.version`.
    pub at: String,
    /// The model's name, or `None` for an image.
    pub model: Option<String>,
    /// The declared version (or image) before and after.
    pub previous: String,
    pub new: String,
    pub old_text: String,
    pub new_text: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PromoteEditError {
    #[error(
        "`{given}` is not a registered model version; write NAME:VERSION or azureml:NAME:VERSION"
    )]
    BadModel { given: String },
    #[error("endpoint {endpoint} is not declared in this environment{hint}")]
    NoEndpoint { endpoint: String, hint: String },
    #[error("endpoint {endpoint}: deployment {deployment} is not declared (declared: {declared})")]
    NoDeployment {
        endpoint: String,
        deployment: String,
        declared: String,
    },
    #[error(
        "endpoint {endpoint} declares {count} deployments ({declared}); pass --deployment NAME"
    )]
    WhichDeployment {
        endpoint: String,
        count: usize,
        declared: String,
    },
    #[error(
        "endpoint {endpoint} uses blue/green slots: promote edits its template {template}, not deployment {deployment}; leave out --deployment"
    )]
    SlotDeployment {
        endpoint: String,
        deployment: String,
        template: String,
    },
    #[error("{what}: no file of the environment declares it")]
    NoFile { what: String },
    #[error("{what} ({path}): {why}")]
    Model {
        what: String,
        path: PathBuf,
        why: String,
    },
    #[error("{what} ({path}:{line}) already declares {current}")]
    Unchanged {
        what: String,
        path: PathBuf,
        line: usize,
        current: String,
    },
    #[error("{what} ({path}): {source}")]
    Edit {
        what: String,
        path: PathBuf,
        #[source]
        source: EditError,
    },
}

fn root_string(root: &Node, key: &str) -> Option<String> {
    match &root.get(key)?.value.kind {
        Kind::Scalar { text, ty } if *ty != ScalarType::Null => Some(text.clone()),
        _ => None,
    }
}

fn parsed(files: &FileMap) -> impl Iterator<Item = (&PathBuf, &str, Node)> {
    files
        .iter()
        .filter(|(p, _)| matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")))
        .filter_map(|(p, b)| {
            let text = std::str::from_utf8(b).ok()?;
            let (root, _) = yaml::parse(text);
            Some((p, text, root?))
        })
}

/// The file and the path of the deployment's mapping in it.
fn locate<'f>(
    files: &'f FileMap,
    env_dir: &Path,
    desired: &DesiredState,
    endpoint: &str,
    deployment: Option<&str>,
) -> Result<(Subject, &'f PathBuf, &'f str, Vec<Step>), PromoteEditError> {
    let Some(declared) = desired.endpoints.get(endpoint) else {
        let names: Vec<&str> = desired.endpoints.keys().map(String::as_str).collect();
        let suggestion = super::located::suggestion(endpoint, &names);
        let hint = match suggestion.strip_prefix(", ") {
            Some(s) => format!(" ({s})"),
            None => format!(" (declared: {})", names.join(", ")),
        };
        return Err(PromoteEditError::NoEndpoint {
            endpoint: endpoint.to_string(),
            hint,
        });
    };
    if let Some(slots) = desired.environment.slots.get(endpoint) {
        if let Some(d) = deployment {
            return Err(PromoteEditError::SlotDeployment {
                endpoint: endpoint.to_string(),
                deployment: d.to_string(),
                template: slots.template_file.clone(),
            });
        }
        let want = normalize(&env_dir.join(&slots.template_file));
        let (path, text) = files
            .iter()
            .find(|(p, _)| normalize(p) == want)
            .and_then(|(p, b)| Some((p, std::str::from_utf8(b).ok()?)))
            .ok_or_else(|| PromoteEditError::NoFile {
                what: format!("endpoint {endpoint}: slot template {}", slots.template_file),
            })?;
        return Ok((Subject::SlotTemplate, path, text, Vec::new()));
    }
    let names: Vec<&str> = declared.deployments.keys().map(String::as_str).collect();
    let name = match deployment {
        Some(d) if declared.deployments.contains_key(d) => d.to_string(),
        Some(d) => {
            return Err(PromoteEditError::NoDeployment {
                endpoint: endpoint.to_string(),
                deployment: d.to_string(),
                declared: names.join(", "),
            });
        }
        None if names.len() == 1 => names[0].to_string(),
        None => {
            return Err(PromoteEditError::WhichDeployment {
                endpoint: endpoint.to_string(),
                count: names.len(),
                declared: names.join(", "),
            });
        }
    };
    let what = || format!("endpoint {endpoint}: deployment {name}");
    for (path, text, root) in parsed(files) {
        let own = root_string(&root, "endpoint_name");
        let file_name = root_string(&root, "name");
        if own.as_deref() == Some(endpoint) && file_name.as_deref() == Some(name.as_str()) {
            return Ok((Subject::Deployment(name), path, text, Vec::new()));
        }
        if own.is_none() && file_name.as_deref() == Some(endpoint) {
            let Some(Kind::Seq(items)) = root.get("deployments").map(|e| &e.value.kind) else {
                continue;
            };
            let index = items
                .iter()
                .position(|item| root_string(item, "name").as_deref() == Some(name.as_str()));
            if let Some(i) = index {
                let steps = vec![Step::Key("deployments".into()), Step::Index(i)];
                return Ok((Subject::Deployment(name), path, text, steps));
            }
        }
    }
    Err(PromoteEditError::NoFile { what: what() })
}

/// The node at `steps` (keys and indexes) below `root`.
fn node_at<'n>(root: &'n Node, steps: &[Step]) -> Option<&'n Node> {
    steps.iter().try_fold(root, |node, step| match step {
        Step::Key(k) => node.get(k).map(|e| &e.value),
        Step::Index(i) => match &node.kind {
            Kind::Seq(items) => items.get(*i),
            _ => None,
        },
    })
}

fn scalar(node: &Node) -> Option<(&str, ScalarType)> {
    match &node.kind {
        Kind::Scalar { text, ty } => Some((text, *ty)),
        _ => None,
    }
}

/// The edit that promotes `artifact` into the deployment (or slot template) of `endpoint`.
pub fn promote_edit(
    files: &FileMap,
    env_dir: &Path,
    desired: &DesiredState,
    endpoint: &str,
    deployment: Option<&str>,
    artifact: &Artifact,
) -> Result<PromoteEdit, PromoteEditError> {
    let (subject, path, text, base) = locate(files, env_dir, desired, endpoint, deployment)?;
    let what = match &subject {
        Subject::Deployment(d) => format!("endpoint {endpoint}: deployment {d}"),
        Subject::SlotTemplate => format!("endpoint {endpoint}: slot template"),
    };
    let (root, _) = yaml::parse(text);
    let root = root.ok_or_else(|| PromoteEditError::NoFile { what: what.clone() })?;
    let deployment_node =
        node_at(&root, &base).ok_or_else(|| PromoteEditError::NoFile { what: what.clone() })?;
    let refuse = |why: String| PromoteEditError::Model {
        what: what.clone(),
        path: path.clone(),
        why,
    };
    let mut steps = base.clone();
    let (model, previous, value) = match artifact {
        Artifact::Model { name, version } => {
            let entry = deployment_node
                .get("model")
                .ok_or_else(|| refuse("declares no `model`".into()))?;
            steps.push(Step::Key("model".into()));
            match &entry.value.kind {
                Kind::Scalar { text, .. } => {
                    let AssetRef::Registered {
                        name: declared,
                        version: old,
                    } = AssetRef::parse(text)
                    else {
                        return Err(refuse(format!(
                            "its model `{text}` is not a registered name:version reference"
                        )));
                    };
                    if &declared != name {
                        return Err(refuse(format!(
                            "it serves model {declared}, not {name}; promote changes a version, not the model"
                        )));
                    }
                    // Keep the reference's own form: with or without the `azureml:` prefix.
                    let prefix = if text.starts_with("azureml:") {
                        "azureml:"
                    } else {
                        ""
                    };
                    let new = Scalar::Str(format!("{prefix}{name}:{version}"));
                    (Some(name.clone()), old, new)
                }
                Kind::Map(_) => {
                    let declared = entry
                        .value
                        .get("name")
                        .and_then(|e| scalar(&e.value))
                        .map(|(t, _)| t.to_string());
                    let old = entry.value.get("version").and_then(|e| scalar(&e.value));
                    let (Some(declared), Some((old, ty))) = (declared, old) else {
                        return Err(refuse(
                            "its model is a local path, not a registered name and version".into(),
                        ));
                    };
                    if &declared != name {
                        return Err(refuse(format!(
                            "it serves model {declared}, not {name}; promote changes a version, not the model"
                        )));
                    }
                    steps.push(Step::Key("version".into()));
                    // An integer stays an integer (`version: 1` → `version: 2`).
                    let new = match version.parse::<i64>() {
                        Ok(n) if ty == ScalarType::Int && n.to_string() == *version => {
                            Scalar::Int(n)
                        }
                        _ => Scalar::Str(version.clone()),
                    };
                    (Some(name.clone()), old.to_string(), new)
                }
                Kind::Seq(_) => return Err(refuse("its `model` is a sequence".into())),
            }
        }
        Artifact::Image(image) => {
            // The Kubernetes form's `image`, else an inline environment's (`image` or
            // `docker.image`, as az ml writes them).
            let candidates: [&[&str]; 3] = [
                &["image"],
                &["environment", "image"],
                &["environment", "docker", "image"],
            ];
            let found = candidates.iter().find_map(|keys| {
                let rel: Vec<Step> = keys.iter().map(|k| Step::Key((*k).into())).collect();
                let node = node_at(deployment_node, &rel)?;
                scalar(node)
                    .filter(|(_, ty)| *ty == ScalarType::Str)
                    .map(|(t, _)| (rel, t.to_string()))
            });
            let Some((rel, old)) = found else {
                return Err(refuse(
                    "declares no image (`image`, `environment.image` or `environment.docker.image`)"
                        .into(),
                ));
            };
            steps.extend(rel);
            (None, old, Scalar::Str(image.clone()))
        }
    };
    let new = match &value {
        Scalar::Int(i) => i.to_string(),
        Scalar::Str(s) => s.clone(),
    };
    let shown_new = match artifact {
        Artifact::Model { version, .. } => version.clone(),
        Artifact::Image(image) => image.clone(),
    };
    let target = node_at(&root, &steps).expect("the scalar was found above");
    let line = target.pos.line;
    let current = match &value {
        Scalar::Int(_) => previous.clone(),
        Scalar::Str(_) => scalar(target)
            .map(|(t, _)| t.to_string())
            .unwrap_or_default(),
    };
    if current == new {
        return Err(PromoteEditError::Unchanged {
            what,
            path: path.clone(),
            line,
            current: match &model {
                Some(m) => format!("{m} version {previous}"),
                None => previous,
            },
        });
    }
    let new_text =
        edit::set_scalar_at(text, &steps, &value).map_err(|source| PromoteEditError::Edit {
            what: what.clone(),
            path: path.clone(),
            source,
        })?;
    Ok(PromoteEdit {
        endpoint: endpoint.to_string(),
        subject,
        path: path.clone(),
        line,
        at: edit::dotted_steps(&steps),
        model,
        previous,
        new: shown_new,
        old_text: text.to_string(),
        new_text,
    })
}

#[cfg(test)]
#[path = "promote_tests.rs"]
mod tests;
