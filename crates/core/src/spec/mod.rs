//! Desired state from YAML: loads an environment directory (`environment.yaml` plus az ml
//! endpoint and deployment files) into a [`DesiredState`], reporting every problem at once as
//! `path:line:col: message`.
//!
//! Two stages: [`raw_endpoint`] turns the located YAML tree ([`yaml`]) into raw, located structs (field
//! names and types); [`validate`] then checks names, traffic, mirroring, links between files and
//! target-specific rules. See docs/environment-format.md.

mod assets;
mod diagnostics;
pub mod edit;
pub mod fields;
mod files;
pub mod gate_expr;
pub mod incremental;
mod index;
mod index_cache;
mod load;
mod located;
pub(crate) mod paths;
pub mod promote;
mod raw_deployment;
mod raw_endpoint;
mod raw_environment;
mod raw_pod;
mod raw_promotion;
mod raw_rollout;
mod raw_slots;
pub mod reload;
mod requests;
pub mod schema;
mod validate;
pub mod yaml;

use std::path::{Path, PathBuf};

use crate::model::{DesiredState, Endpoint};
use crate::plan::profile::ProfileOf;

pub use crate::tree::{MAX_FILE_BYTES, MAX_FILES, MAX_TOTAL_BYTES};
pub use diagnostics::{Diagnostic, Diagnostics};
pub use files::{DiskFiles, Files, MemFiles};
pub use index_cache::IndexCache;
pub use located::suggestion;
pub use yaml::MAX_DEPTH;

use crate::tree::EnvTree;

/// Loads `dir` (an environment directory) from the real filesystem, through the one tree
/// reader (`source::tree`: symlink policy, hidden entries, limits). `profile_of` gives the
/// rules of the target the environment names (the binary passes `backend::profile_of`).
pub fn load_environment(dir: &Path, profile_of: ProfileOf) -> Result<DesiredState, Diagnostics> {
    load::disk_environment(dir, profile_of)
}

/// Loads the environment directory `dir` from an in-memory map (its files below `dir`).
pub fn load_environment_from(
    files: &MemFiles,
    dir: &Path,
    profile_of: ProfileOf,
) -> Result<DesiredState, Diagnostics> {
    load::environment(&files.environment(dir), dir, profile_of)
}

/// Loads the environment directory `dir` from a tree read by `source::tree` (a Git revision,
/// the agent's snapshot), reporting the entries it refused with the rest.
pub fn load_tree(
    tree: &EnvTree,
    dir: &Path,
    profile_of: ProfileOf,
) -> Result<DesiredState, Diagnostics> {
    load::environment(tree, dir, profile_of)
}

/// One endpoint from a single endpoint file (combined form) plus optional deployment files,
/// without an `environment.yaml`: several endpoint files may be given; deployment files attach
/// to them by `endpoint_name`. No target is known, so only the rules of every platform
/// (`plan::profile::NEUTRAL`) are checked.
pub fn load_endpoint_files(
    files: &dyn Files,
    paths: &[PathBuf],
) -> Result<Vec<Endpoint>, Diagnostics> {
    load::endpoint_files(files, paths)
}

/// `flightdeck validate <PATH>...`: each path is an environment directory (it has an
/// `environment.yaml`) or a YAML file; files given together are linked by `endpoint_name`.
/// Returns the diagnostics of all paths together.
pub fn validate_paths(paths: &[PathBuf], profile_of: ProfileOf) -> Result<(), Diagnostics> {
    load::validate_paths(paths, profile_of)
}
