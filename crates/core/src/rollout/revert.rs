//! What `flightdeck revert` changes in an environment's files so that Git declares what is
//! live after a failed rollout: the endpoint file's `traffic` and `mirror_traffic` set to
//! live's (edited in place, `spec::edit`), and the file of a candidate deployment that no
//! longer exists live removed. A candidate kept for inspection (`keep_failed: true`) exists
//! live at 0%, so its file stays. A deployment live still serves but HEAD no longer declares
//! ([`served_undeclared`]) has its file found in history ([`declares_deployment`]) and restored
//! by the binary before this runs. Slot endpoints: `revert_template`. Pure: file texts in, file
//! texts out; the binary reads Git and the platform and writes the commit (`src/cli/revert.rs`).

use std::path::{Path, PathBuf};

use crate::model::{Endpoint, LiveEndpoint, Weights};
use crate::spec::edit::{self, Edit, EditError, Scalar};
use crate::spec::yaml::{self, Kind, ScalarType};
use crate::tree::FileMap;

/// One file of the environment as the revert leaves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileChange {
    /// As keyed in the environment's file map.
    pub path: PathBuf,
    /// `None`: the file is created (restored from history).
    pub old: Option<String>,
    /// `None`: the file is removed.
    pub new: Option<String>,
}

/// The revert of one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointRevert {
    pub endpoint: String,
    /// What Git declared, and what it declares after the revert (live's).
    pub declared: Weights,
    pub traffic: Weights,
    pub declared_mirror: Weights,
    pub mirror: Weights,
    /// Declared deployments that no longer exist live (their files are removed).
    pub removed: Vec<String>,
    pub changes: Vec<FileChange>,
}

impl EndpointRevert {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RevertError {
    #[error("endpoint {endpoint}: no file of the environment declares it")]
    NoEndpointFile { endpoint: String },
    #[error(
        "endpoint {endpoint}: live sends traffic to deployment {deployment}, which Git no longer \
         declares; restore its declaration by hand (e.g. `git revert` the commit that removed it)"
    )]
    Undeclared {
        endpoint: String,
        deployment: String,
    },
    #[error(
        "endpoint {endpoint}: deployment {deployment} no longer exists live, but it is declared \
         inside {path} (combined form); only a deployment file can be removed for you"
    )]
    Inline {
        endpoint: String,
        deployment: String,
        path: PathBuf,
    },
    #[error("endpoint {endpoint}: {path}: {source}")]
    Edit {
        endpoint: String,
        path: PathBuf,
        #[source]
        source: EditError,
    },
}

/// The root mapping's string value at `key` in a YAML text, when it has one.
pub(crate) fn root_string(text: &str, key: &str) -> Option<String> {
    let (root, _) = yaml::parse(text);
    match &root?.get(key)?.value.kind {
        Kind::Scalar { text, ty } if *ty != ScalarType::Null => Some(text.clone()),
        _ => None,
    }
}

pub(crate) fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yml" | "yaml")
    )
}

pub(crate) fn texts(files: &FileMap) -> impl Iterator<Item = (&PathBuf, &str)> {
    files
        .iter()
        .filter(|(p, _)| is_yaml(p))
        .filter_map(|(p, b)| std::str::from_utf8(b).ok().map(|t| (p, t)))
}

/// The changes that make `desired` (as its files in `files` declare it) match `live`.
pub fn revert_endpoint(
    files: &FileMap,
    desired: &Endpoint,
    live: &LiveEndpoint,
) -> Result<EndpointRevert, RevertError> {
    let endpoint = desired.name.clone();
    let (path, text) = texts(files)
        .find(|(_, t)| {
            root_string(t, "endpoint_name").is_none()
                && root_string(t, "name").as_deref() == Some(endpoint.as_str())
        })
        .ok_or_else(|| RevertError::NoEndpointFile {
            endpoint: endpoint.clone(),
        })?;
    let mut changes = Vec::new();
    // Declared deployments gone from live: their files go.
    let removed: Vec<String> = desired
        .deployments
        .keys()
        .filter(|d| !live.deployments.contains_key(*d))
        .cloned()
        .collect();
    for deployment in &removed {
        let file = texts(files).find(|(_, t)| declares_deployment(t, &endpoint, deployment));
        match file {
            Some((p, t)) => changes.push(FileChange {
                path: p.clone(),
                old: Some(t.to_string()),
                new: None,
            }),
            None => {
                return Err(RevertError::Inline {
                    endpoint,
                    deployment: deployment.clone(),
                    path: path.clone(),
                });
            }
        }
    }
    let kept = |d: &String| desired.deployments.contains_key(d) && !removed.contains(d);
    let declared = desired.traffic.clone().unwrap_or_default();
    let mut traffic: Weights = live
        .traffic
        .iter()
        .filter(|(d, w)| **w > 0 || kept(d))
        .map(|(d, w)| (d.clone(), *w))
        .collect();
    for d in declared.keys().filter(|d| kept(d)) {
        traffic.entry(d.clone()).or_insert(0);
    }
    let declared_mirror = desired.mirror_traffic.clone().unwrap_or_default();
    let mirror: Weights = live
        .mirror_traffic
        .iter()
        .filter(|(_, w)| **w > 0)
        .map(|(d, w)| (d.clone(), *w))
        .collect();
    if let Some(d) = traffic
        .iter()
        .chain(&mirror)
        .find(|(d, w)| **w > 0 && !kept(d))
        .map(|(d, _)| d)
    {
        return Err(RevertError::Undeclared {
            endpoint,
            deployment: d.clone(),
        });
    }
    let entries = |w: &Weights| -> Vec<(String, Scalar)> {
        w.iter()
            .map(|(k, v)| (k.clone(), Scalar::Int(i64::from(*v))))
            .collect()
    };
    let mut edits = vec![Edit::SetMap {
        path: vec!["traffic".into()],
        entries: entries(&traffic),
        after: None,
    }];
    if mirror.is_empty() {
        edits.push(Edit::Remove {
            path: vec!["mirror_traffic".into()],
        });
    } else {
        edits.push(Edit::SetMap {
            path: vec!["mirror_traffic".into()],
            entries: entries(&mirror),
            after: Some("traffic".into()),
        });
    }
    let new = edit::apply(text, &edits).map_err(|source| RevertError::Edit {
        endpoint: endpoint.clone(),
        path: path.clone(),
        source,
    })?;
    if new != text {
        changes.insert(
            0,
            FileChange {
                path: path.clone(),
                old: Some(text.to_string()),
                new: Some(new),
            },
        );
    }
    Ok(EndpointRevert {
        endpoint,
        declared,
        traffic,
        declared_mirror,
        mirror,
        removed,
        changes,
    })
}

/// Whether `text` is a deployment file (`endpoint_name` at its root) declaring `deployment`
/// of `endpoint`.
pub fn declares_deployment(text: &str, endpoint: &str, deployment: &str) -> bool {
    root_string(text, "endpoint_name").as_deref() == Some(endpoint)
        && root_string(text, "name").as_deref() == Some(deployment)
}

/// The deployments that take live traffic or mirror traffic but that `desired` does not
/// declare: what the revert must restore from history before traffic can be written back.
pub fn served_undeclared(desired: &Endpoint, live: &LiveEndpoint) -> Vec<String> {
    let mut out: Vec<String> = live
        .traffic
        .iter()
        .chain(&live.mirror_traffic)
        .filter(|(d, w)| **w > 0 && !desired.deployments.contains_key(*d))
        .map(|(d, _)| d.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `blue 100 / green 0`, as plans and messages show traffic.
pub fn weights_text(w: &Weights) -> String {
    if w.is_empty() {
        return "no traffic".into();
    }
    w.iter()
        .map(|(d, p)| format!("{d} {p}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{self, MemFiles};

    const ENV: &str = "name: prod\ntarget:\n  state_file:\n    path: state.json\n";

    fn load(files: &[(&str, &str)]) -> (FileMap, Endpoint) {
        let mut map = FileMap::new();
        for (p, t) in files {
            map.insert(PathBuf::from(format!("env/{p}")), t.as_bytes().to_vec());
        }
        let mem = MemFiles(map.clone());
        let desired =
            spec::load_environment_from(&mem, Path::new("env"), |_| &crate::plan::profile::NEUTRAL)
                .unwrap_or_else(|d| panic!("{d}"));
        (map, desired.endpoints["ep1"].clone())
    }

    fn live(traffic: &[(&str, u32)], deployments: &[&str]) -> LiveEndpoint {
        let mut l: LiveEndpoint =
            serde_json::from_value(serde_json::json!({"name": "ep1"})).unwrap();
        l.traffic = traffic.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        for d in deployments {
            l.deployments.insert(
                d.to_string(),
                serde_json::from_value(serde_json::json!({"name": d, "state": "ready"})).unwrap(),
            );
        }
        l
    }

    const EP: &str = "name: ep1\ntraffic:\n  blue: 0 # old\n  green: 100\n";
    const BLUE: &str = "name: blue\nendpoint_name: ep1\nmodel: azureml:m:1\ninstance_type: Standard_F2s_v2\ninstance_count: 1\n";
    const GREEN: &str = "name: green\nendpoint_name: ep1\nmodel: azureml:m:2\ninstance_type: Standard_F2s_v2\ninstance_count: 1\n";

    #[test]
    fn a_kept_candidate_keeps_its_file_and_the_traffic_returns_to_live() {
        let (files, desired) = load(&[
            ("environment.yaml", ENV),
            ("e.yml", EP),
            ("blue.yml", BLUE),
            ("green.yml", GREEN),
        ]);
        let r = revert_endpoint(
            &files,
            &desired,
            &live(&[("blue", 100)], &["blue", "green"]),
        )
        .unwrap();
        assert_eq!(r.changes.len(), 1, "{r:?}");
        assert_eq!(
            r.changes[0].new.as_deref(),
            Some("name: ep1\ntraffic:\n  blue: 100 # old\n  green: 0\n")
        );
        assert_eq!(weights_text(&r.traffic), "blue 100 / green 0");
    }

    #[test]
    fn a_deleted_candidate_loses_its_file_and_its_traffic_key() {
        let (files, desired) = load(&[
            ("environment.yaml", ENV),
            ("e.yml", EP),
            ("blue.yml", BLUE),
            ("green.yml", GREEN),
        ]);
        let r = revert_endpoint(&files, &desired, &live(&[("blue", 100)], &["blue"])).unwrap();
        assert_eq!(r.removed, ["green"]);
        assert_eq!(
            r.changes[0].new.as_deref(),
            Some("name: ep1\ntraffic:\n  blue: 100 # old\n")
        );
        assert_eq!(r.changes[1].path, PathBuf::from("env/green.yml"));
        assert_eq!(r.changes[1].new, None);
    }

    #[test]
    fn live_traffic_to_a_deployment_git_no_longer_declares_is_refused() {
        let ep = "name: ep1\ntraffic:\n  green: 100\n";
        let (files, desired) = load(&[
            ("environment.yaml", ENV),
            ("e.yml", ep),
            ("green.yml", GREEN),
        ]);
        let err = revert_endpoint(
            &files,
            &desired,
            &live(&[("blue", 100)], &["blue", "green"]),
        )
        .unwrap_err();
        assert!(
            matches!(err, RevertError::Undeclared { ref deployment, .. } if deployment == "blue"),
            "{err}"
        );
    }

    #[test]
    fn an_endpoint_already_matching_live_needs_no_change() {
        let (files, desired) = load(&[
            ("environment.yaml", ENV),
            ("e.yml", EP),
            ("blue.yml", BLUE),
            ("green.yml", GREEN),
        ]);
        let r = revert_endpoint(
            &files,
            &desired,
            &live(&[("blue", 0), ("green", 100)], &["blue", "green"]),
        )
        .unwrap();
        assert!(r.is_empty(), "{r:?}");
    }

    #[test]
    fn only_a_deployment_file_of_the_endpoint_declares_its_deployment() {
        assert!(declares_deployment(BLUE, "ep1", "blue"));
        assert!(!declares_deployment(BLUE, "ep1", "green"));
        assert!(!declares_deployment(BLUE, "ep2", "blue"));
        // An endpoint file named like the deployment is no deployment file.
        assert!(!declares_deployment("name: blue\n", "ep1", "blue"));
    }

    #[test]
    fn the_deployments_live_serves_or_mirrors_that_git_does_not_declare_are_listed_once() {
        let ep = "name: ep1\ntraffic:\n  green: 100\n";
        let (_, desired) = load(&[
            ("environment.yaml", ENV),
            ("e.yml", ep),
            ("green.yml", GREEN),
        ]);
        let mut l = live(
            &[("blue", 90), ("green", 10), ("old", 0)],
            &["blue", "green", "old"],
        );
        assert_eq!(served_undeclared(&desired, &l), ["blue"]);
        l.mirror_traffic = [("blue".to_string(), 5), ("shadow".to_string(), 10)].into();
        assert_eq!(served_undeclared(&desired, &l), ["blue", "shadow"]);
    }
}
