//! The index record of one endpoint or deployment file: what cross-file validation reads of
//! it (names, links, traffic and mirror weights, the keys written, with their positions) and
//! the file's local diagnostics (YAML and field problems), without its settings.
//!
//! A record is a pure function of the file's content: stage one (`raw_endpoint`) needs no
//! platform profile, and every profile rule runs later in `validate` on the record, so one
//! record serves every target. Its path is not part of it either: paths are stamped back on
//! when it is used (see [`FileIndex::raw`]). The incremental loader
//! (`spec::incremental`) keeps records by blob id.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::diagnostics::Diagnostic;
use super::located::Loc;
use super::raw_deployment::RawDeployment;
use super::raw_endpoint::{RawEndpoint, RawFile, RawWeights};
use super::yaml::Pos;

/// One file's record and local diagnostics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileIndex {
    #[serde(rename = "r")]
    record: Record,
    /// Position and message of each local problem (the path is the file's).
    #[serde(rename = "d", default, skip_serializing_if = "Vec::is_empty")]
    diagnostics: Vec<(Pos, String)>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Record {
    /// The file does not parse, or is neither an endpoint nor a deployment.
    #[serde(rename = "n")]
    Neither,
    #[serde(rename = "e")]
    Endpoint(EndpointRecord),
    #[serde(rename = "d")]
    Deployment(DeploymentRecord),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct EndpointRecord {
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    name: Option<Loc<String>>,
    #[serde(rename = "t", default, skip_serializing_if = "Option::is_none")]
    traffic: Option<RawWeights>,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    mirror_traffic: Option<RawWeights>,
    #[serde(rename = "d", default, skip_serializing_if = "Vec::is_empty")]
    deployments: Vec<DeploymentRecord>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct DeploymentRecord {
    #[serde(rename = "r")]
    root_pos: Pos,
    #[serde(rename = "n", default, skip_serializing_if = "Option::is_none")]
    name: Option<Loc<String>>,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    endpoint_name: Option<Loc<String>>,
    #[serde(rename = "i", default, skip_serializing_if = "Option::is_none")]
    instance_count: Option<Loc<i64>>,
    #[serde(rename = "k")]
    keys: BTreeMap<String, Pos>,
    #[serde(rename = "p", default, skip_serializing_if = "Vec::is_empty")]
    kubernetes_probe_fields: Vec<(String, Pos)>,
}

impl DeploymentRecord {
    fn of(d: &RawDeployment) -> DeploymentRecord {
        DeploymentRecord {
            root_pos: d.root_pos,
            name: d.name.clone(),
            endpoint_name: d.endpoint_name.clone(),
            instance_count: d.instance_count.clone(),
            keys: d.keys.clone(),
            kubernetes_probe_fields: d.kubernetes_probe_fields.clone(),
        }
    }

    fn raw(&self, path: &Path, checked: &dyn Fn(&str) -> bool) -> RawDeployment {
        RawDeployment {
            path: path.to_path_buf(),
            root_pos: self.root_pos,
            name: self.name.clone(),
            endpoint_name: self.endpoint_name.clone(),
            settings: Default::default(),
            instance_count: self.instance_count.clone(),
            keys: self
                .keys
                .iter()
                .filter(|(k, _)| checked(k))
                .map(|(k, p)| (k.clone(), *p))
                .collect(),
            kubernetes_probe_fields: self.kubernetes_probe_fields.clone(),
        }
    }
}

impl FileIndex {
    /// The record of a file stage one read as `raw` (`None`: it does not parse or is neither),
    /// with the diagnostics stage one reported for it (all on this file).
    pub(crate) fn of(raw: Option<&RawFile>, local: &[Diagnostic]) -> FileIndex {
        let record = match raw {
            None => Record::Neither,
            Some(RawFile::Endpoint(e)) => Record::Endpoint(EndpointRecord {
                name: e.name.clone(),
                traffic: e.traffic.clone(),
                mirror_traffic: e.mirror_traffic.clone(),
                deployments: e.deployments.iter().map(DeploymentRecord::of).collect(),
            }),
            Some(RawFile::Deployment(d)) => Record::Deployment(DeploymentRecord::of(d)),
        };
        let diagnostics = local
            .iter()
            .map(|d| {
                let pos = Pos {
                    line: d.line,
                    column: d.column,
                };
                (pos, d.message.clone())
            })
            .collect();
        FileIndex {
            record,
            diagnostics,
        }
    }

    /// The file as stage one would give it at `path`, with default settings: enough for every
    /// check across files, never for the desired state of its endpoint. A deployment's written
    /// keys are only those `checked` says the profile's rules look at (its required and
    /// foreign fields; `validate::deployment` reads keys for nothing else).
    pub(crate) fn raw(&self, path: &Path, checked: &dyn Fn(&str) -> bool) -> Option<RawFile> {
        match &self.record {
            Record::Neither => None,
            Record::Endpoint(e) => Some(RawFile::Endpoint(Box::new(RawEndpoint {
                path: path.to_path_buf(),
                name: e.name.clone(),
                settings: Default::default(),
                traffic: e.traffic.clone(),
                mirror_traffic: e.mirror_traffic.clone(),
                deployments: e.deployments.iter().map(|d| d.raw(path, checked)).collect(),
            }))),
            Record::Deployment(d) => Some(RawFile::Deployment(Box::new(d.raw(path, checked)))),
        }
    }

    /// The file's local diagnostics at `path`.
    pub(crate) fn diagnostics(&self, path: &Path) -> impl Iterator<Item = Diagnostic> + '_ {
        let path = path.to_path_buf();
        self.diagnostics
            .iter()
            .map(move |(pos, message)| Diagnostic::new(&path, *pos, message.clone()))
    }

    /// The endpoints the file contributes to: an endpoint file's own name, a deployment
    /// file's `endpoint_name`.
    pub(crate) fn endpoint_names(&self) -> Vec<&str> {
        match &self.record {
            Record::Neither => Vec::new(),
            Record::Endpoint(e) => e.name.iter().map(|n| n.value.as_str()).collect(),
            Record::Deployment(d) => d.endpoint_name.iter().map(|n| n.value.as_str()).collect(),
        }
    }
}
