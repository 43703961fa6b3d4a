//! The agent's loader: each new snapshot of an environment is loaded against the previous one
//! through the incremental loader (`spec::incremental`), with an in-memory [`IndexCache`], so
//! a commit that changes a few files parses those files (and the other files of their
//! endpoints), not the whole tree. The result is the full desired state, exactly what
//! [`load_tree`](super::load_tree) gives: the endpoints the load did not compare are the
//! previous snapshot's, which are identical.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::diagnostics::Diagnostics;
use super::incremental::{Blobs, Compared, Listed, ListedFile, Side, load_pair};
use super::index_cache::IndexCache;
use crate::model::DesiredState;
use crate::plan::profile::ProfileOf;
use crate::tree::EnvTree;

/// The last snapshot that loaded, with its desired state.
struct Previous {
    tree: Arc<EnvTree>,
    listed: Listed,
    desired: DesiredState,
}

/// Loads successive snapshots of one environment; keeps the last valid one and the records
/// its files and the current snapshot's use (no more).
#[derive(Default)]
pub struct Reloader {
    previous: Option<Previous>,
    cache: IndexCache,
}

/// Files of an [`EnvTree`] by content hash.
struct TreeBlobs<'a> {
    tree: &'a EnvTree,
    paths: HashMap<String, PathBuf>,
}

impl Blobs for TreeBlobs<'_> {
    fn blob(&self, id: &str) -> io::Result<Vec<u8>> {
        self.paths
            .get(id)
            .and_then(|p| self.tree.files.get(p))
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file not found"))
    }
}

/// The tree listed by content hash (`sha256:<hex>`), and where each hash is.
fn listed(tree: &EnvTree) -> (Listed, HashMap<String, PathBuf>) {
    let mut listed = Listed {
        files: Default::default(),
        problems: tree.problems.clone(),
    };
    let mut paths = HashMap::new();
    for (path, content) in &tree.files {
        let hash = Sha256::digest(content);
        let mut id = String::with_capacity(7 + 64);
        id.push_str("sha256:");
        for byte in hash {
            id.push_str(&format!("{byte:02x}"));
        }
        paths.insert(id.clone(), path.clone());
        let file = ListedFile {
            id: Some(id),
            content: None,
        };
        listed.files.insert(path.clone(), file);
    }
    (listed, paths)
}

impl Reloader {
    pub fn new() -> Reloader {
        Reloader::default()
    }

    /// Loads `tree` (the environment `dir`), reusing the previous snapshot for what did not
    /// change. Diagnostics are those of a full load.
    pub fn load(
        &mut self,
        tree: &Arc<EnvTree>,
        dir: &Path,
        profile_of: ProfileOf,
    ) -> Result<DesiredState, Diagnostics> {
        // The agent hands the same snapshot again on every tick (drift checks).
        if let Some(p) = &self.previous
            && Arc::ptr_eq(&p.tree, tree)
        {
            return Ok(p.desired.clone());
        }
        let (new_listed, new_paths) = listed(tree);
        let new_blobs = TreeBlobs {
            tree,
            paths: new_paths,
        };
        let previous = self.previous.take();
        let old_blobs = previous.as_ref().map(|p| TreeBlobs {
            tree: &p.tree,
            paths: p
                .listed
                .files
                .iter()
                .filter_map(|(path, f)| Some((f.id.clone()?, path.clone())))
                .collect(),
        });
        let old = previous
            .as_ref()
            .zip(old_blobs.as_ref())
            .map(|(p, blobs)| Side {
                listed: &p.listed,
                blobs,
            });
        let new = Side {
            listed: &new_listed,
            blobs: &new_blobs,
        };
        let load = load_pair(new, old, dir, profile_of, &mut self.cache);
        self.cache.retain_used();
        let desired = match (load.new, load.compared, previous) {
            (Err(diagnostics), _, previous) => {
                // Keep the last valid snapshot: the next one is compared with it.
                self.previous = previous;
                return Err(diagnostics);
            }
            (Ok(desired), Compared::All, _) => desired,
            (Ok(compared), Compared::Endpoints(names), Some(previous)) => {
                let mut desired = previous.desired;
                desired.environment = compared.environment;
                desired.endpoints.retain(|name, _| !names.contains(name));
                desired.endpoints.extend(compared.endpoints);
                desired
            }
            (Ok(desired), Compared::Endpoints(_), None) => desired,
        };
        self.previous = Some(Previous {
            tree: tree.clone(),
            listed: new_listed,
            desired: desired.clone(),
        });
        Ok(desired)
    }

    /// Records held (bounded by what the last two snapshots use).
    pub fn records(&self) -> usize {
        self.cache.len()
    }

    /// Files parsed since the reloader was made.
    pub fn parsed(&self) -> usize {
        self.cache.parsed()
    }
}
