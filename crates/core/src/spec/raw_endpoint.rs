//! Stage one for endpoint files: the YAML tree → raw, located structs. Only field names and
//! types are checked here; rules that span fields or files are in `validate`.

use std::path::{Path, PathBuf};

use super::diagnostics::Sink;
use super::fields::{ENDPOINT, IDENTITY, USER_IDENTITY};
use super::located::{Loc, field};
use super::raw_deployment::{RawDeployment, deployment};
use super::yaml::{Kind, Node, Pos};
use crate::model::{AuthMode, EndpointSettings};

/// One weight of a traffic or mirror map.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Weight {
    #[serde(rename = "d")]
    pub deployment: String,
    #[serde(rename = "dp")]
    pub name_pos: Pos,
    #[serde(rename = "w")]
    pub weight: i64,
    #[serde(rename = "wp")]
    pub weight_pos: Pos,
}

/// `traffic:` or `mirror_traffic:` as written.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct RawWeights {
    #[serde(rename = "k")]
    pub key_pos: Pos,
    #[serde(rename = "e")]
    pub entries: Vec<Weight>,
    /// False when some entry was not an integer (already reported); sums are then not checked.
    #[serde(rename = "c")]
    pub complete: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct RawEndpoint {
    pub path: PathBuf,
    pub name: Option<Loc<String>>,
    pub settings: EndpointSettings,
    pub traffic: Option<RawWeights>,
    pub mirror_traffic: Option<RawWeights>,
    /// Deployments embedded in the file (2021 combined form).
    pub deployments: Vec<RawDeployment>,
}

/// An endpoint or deployment file.
#[derive(Clone, Debug)]
pub(crate) enum RawFile {
    Endpoint(Box<RawEndpoint>),
    Deployment(Box<RawDeployment>),
}

/// Reads an endpoint or deployment file: a deployment file is one with `endpoint_name`.
pub(crate) fn endpoint_or_deployment(sink: &mut Sink<'_>, root: &Node) -> Option<RawFile> {
    if !matches!(root.kind, Kind::Map(_)) {
        sink.error(
            root.pos,
            format!(
                "expected a mapping (an endpoint or a deployment), found {}",
                root.describe()
            ),
        );
        return None;
    }
    if root.get("endpoint_name").is_some() {
        deployment(sink, root, "deployment").map(|d| RawFile::Deployment(Box::new(d)))
    } else {
        Some(RawFile::Endpoint(Box::new(endpoint(sink, root))))
    }
}

fn endpoint(sink: &mut Sink<'_>, root: &Node) -> RawEndpoint {
    let path: &Path = sink.path;
    let mut raw = RawEndpoint {
        path: path.to_path_buf(),
        name: None,
        settings: EndpointSettings::default(),
        traffic: None,
        mirror_traffic: None,
        deployments: Vec::new(),
    };
    let Some(entries) = sink.mapping("endpoint", root, "endpoint", &ENDPOINT) else {
        return raw;
    };
    match field(entries, "name") {
        Some(e) => raw.name = sink.string(e),
        None => sink.error(root.pos, "endpoint has no `name`"),
    }
    for e in entries {
        match e.key.as_str() {
            "description" => raw.settings.description = sink.string(e).map(|l| l.value),
            "tags" => raw.settings.tags = sink.string_map(e),
            "auth_mode" => {
                raw.settings.auth_mode =
                    sink.one_of(e, ENDPOINT.allowed("auth_mode"))
                        .map(|l| match l.value.as_str() {
                            "key" => AuthMode::Key,
                            "aml_token" => AuthMode::AmlToken,
                            _ => AuthMode::AadToken,
                        })
            }
            "traffic" => raw.traffic = weights(sink, e),
            "mirror_traffic" => raw.mirror_traffic = weights(sink, e),
            "public_network_access" => {
                let v = sink.one_of(e, ENDPOINT.allowed("public_network_access"));
                if let Some(v) = v {
                    raw.settings.public_network_access = Some(v.value);
                }
            }
            "allow_public_access" => {
                // 2021 preview spelling of public_network_access.
                if let Some(allow) = sink.bool(e) {
                    if field(entries, "public_network_access").is_some() {
                        sink.error(
                            e.key_pos,
                            "set either `allow_public_access` or `public_network_access`, not both",
                        );
                    } else {
                        let v = if allow { "enabled" } else { "disabled" };
                        raw.settings.public_network_access = Some(v.to_string());
                    }
                }
            }
            "identity" => identity(sink, &e.value),
            "kind" | "compute" => {
                sink.string(e);
            }
            "properties" => {
                sink.string_map(e);
            }
            "type" => {
                sink.one_of(e, ENDPOINT.allowed("type"));
            }
            "deployments" => {
                if let Some(items) = sink.sequence("deployments", &e.value) {
                    for item in items {
                        if let Some(d) = deployment(sink, item, "deployment") {
                            raw.deployments.push(d);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    raw
}

/// Checked for shape only: flightdeck does not manage identities.
fn identity(sink: &mut Sink<'_>, node: &Node) {
    let Some(entries) = sink.mapping("identity", node, "identity", &IDENTITY) else {
        return;
    };
    if let Some(e) = field(entries, "type") {
        sink.one_of(e, IDENTITY.allowed("type"));
    }
    if let Some(e) = field(entries, "user_assigned_identities") {
        match &e.value.kind {
            Kind::Seq(items) => {
                for item in items {
                    if let Some(inner) =
                        sink.mapping(&e.key, item, "user_assigned_identities", &USER_IDENTITY)
                    {
                        for i in inner {
                            sink.string(i);
                        }
                    }
                }
            }
            Kind::Map(ids) => {
                for id in ids {
                    if !id.value.is_null() {
                        sink.any_mapping(&id.key, &id.value);
                    }
                }
            }
            Kind::Scalar { .. } => {
                sink.error(
                    e.value.pos,
                    format!(
                        "user_assigned_identities: expected a sequence, found {}",
                        e.value.describe()
                    ),
                );
            }
        }
    }
}

/// Reads a weight map. Types are checked here; ranges and sums in `validate`.
fn weights(sink: &mut Sink<'_>, entry: &super::yaml::Entry) -> Option<RawWeights> {
    let Kind::Map(items) = &entry.value.kind else {
        if entry.value.is_null() {
            // `traffic:` with nothing: declared and empty.
            return Some(RawWeights {
                key_pos: entry.key_pos,
                entries: Vec::new(),
                complete: true,
            });
        }
        sink.any_mapping(&entry.key, &entry.value);
        return None;
    };
    let mut out = RawWeights {
        key_pos: entry.key_pos,
        entries: Vec::new(),
        complete: true,
    };
    for item in items {
        match sink.int(item) {
            Some(w) => out.entries.push(Weight {
                deployment: item.key.clone(),
                name_pos: item.key_pos,
                weight: w.value,
                weight_pos: w.pos,
            }),
            None => out.complete = false,
        }
    }
    Some(out)
}
