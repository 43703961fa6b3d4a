//! The index record of one endpoint or deployment file: what cross-file validation reads of
//! it (names, links, traffic and mirror weights, the keys written, with their positions) and
//! the file's local diagnostics (YAML and field problems), without its settings.
//!
//! A record is a pure function of the file's content: stage one (`raw_endpoint`) needs no
//! platform profile, and every profile rule runs later in `validate` on the record, so one
//! record serves every target. Its path is not part of it either: paths are stamped back on
//! when it is used (see [`FileIndex::raw`]). The incremental loader
//! (`spec::incremental`) keeps records by blob id.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::diagnostics::Diagnostic;
use super::fields::DEPLOYMENT;
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
    #[serde(rename = "d")]
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
    #[serde(rename = "n")]
    name: Option<Loc<String>>,
    #[serde(rename = "t")]
    traffic: Option<RawWeights>,
    #[serde(rename = "m")]
    mirror_traffic: Option<RawWeights>,
    #[serde(rename = "d")]
    deployments: Vec<DeploymentRecord>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct DeploymentRecord {
    #[serde(rename = "r")]
    root_pos: Pos,
    #[serde(rename = "n")]
    name: Option<Loc<String>>,
    #[serde(rename = "e")]
    endpoint_name: Option<Loc<String>>,
    #[serde(rename = "i")]
    instance_count: Option<Loc<i64>>,
    /// Every top-level key written, sorted (as the `RawDeployment` map holds them).
    #[serde(rename = "k")]
    keys: Vec<KeyAt>,
    #[serde(rename = "p")]
    kubernetes_probe_fields: Vec<(String, Pos)>,
}

/// A key written in a deployment: one of the field table's names, held without an allocation,
/// or another one (an unknown field, already reported as a local diagnostic).
#[derive(Clone, Debug, PartialEq)]
enum Key {
    /// An index into `DEPLOYMENT.fields`.
    Known(u16),
    /// Boxed twice to keep the common case small (a thin pointer).
    #[allow(clippy::box_collection)]
    Other(Box<String>),
}

/// A key with where it was written, in 24 bytes (a file is at most 1 MiB: lines and columns
/// fit in `u32`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct KeyAt {
    #[serde(rename = "k")]
    key: Key,
    #[serde(rename = "l")]
    line: u32,
    #[serde(rename = "c")]
    column: u32,
}

impl KeyAt {
    fn of(key: &str, pos: Pos) -> KeyAt {
        let small = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        KeyAt {
            key: Key::of(key),
            line: small(pos.line),
            column: small(pos.column),
        }
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line as usize,
            column: self.column as usize,
        }
    }
}

impl Key {
    fn of(key: &str) -> Key {
        let known = DEPLOYMENT.fields.iter().position(|f| f.name == key);
        match known.and_then(|i| u16::try_from(i).ok()) {
            Some(i) => Key::Known(i),
            None => Key::Other(Box::new(key.to_string())),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Key::Known(i) => DEPLOYMENT.fields[usize::from(*i)].name,
            Key::Other(k) => k,
        }
    }
}

impl Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a deployment key")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key::of(v))
            }
        }
        d.deserialize_str(Visitor)
    }
}

impl DeploymentRecord {
    fn of(d: &RawDeployment) -> DeploymentRecord {
        DeploymentRecord {
            root_pos: d.root_pos,
            name: d.name.clone(),
            endpoint_name: d.endpoint_name.clone(),
            instance_count: d.instance_count.clone(),
            keys: d.keys.iter().map(|(k, p)| KeyAt::of(k, *p)).collect(),
            kubernetes_probe_fields: d.kubernetes_probe_fields.clone(),
        }
    }

    fn raw(&self, path: &Path, checked: &dyn Fn(&str) -> bool) -> RawDeployment {
        RawDeployment {
            path: path.to_path_buf(),
            root_pos: self.root_pos,
            name: self.name.clone(),
            endpoint_name: self.endpoint_name.clone(),
            settings: None,
            instance_count: self.instance_count.clone(),
            keys: self
                .keys
                .iter()
                .filter(|k| checked(k.key.as_str()))
                .map(|k| (k.key.as_str().to_string(), k.pos()))
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
