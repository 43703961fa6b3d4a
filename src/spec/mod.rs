//! Desired state from YAML: loads an environment directory (`environment.yaml` plus az ml
//! endpoint and deployment files) into a [`DesiredState`], reporting every problem at once as
//! `path:line:col: message`.
//!
//! Two stages: [`raw`] turns the located YAML tree ([`yaml`]) into raw, located structs (field
//! names and types); [`validate`] then checks names, traffic, mirroring, links between files and
//! target-specific rules. See docs/environment-format.md.

mod assets;
mod diagnostics;
pub mod fields;
mod files;
mod load;
pub(crate) mod paths;
mod raw;
mod raw_deployment;
mod raw_environment;
mod read;
pub mod schema;
mod validate;
mod yaml;

use std::path::{Path, PathBuf};

use crate::model::{DesiredState, Endpoint};

pub use crate::source::tree::{MAX_FILE_BYTES, MAX_FILES, MAX_TOTAL_BYTES};
pub use diagnostics::{Diagnostic, Diagnostics};
pub use files::{DiskFiles, Files, MemFiles};
pub use yaml::MAX_DEPTH;

use crate::source::EnvTree;

/// Loads `dir` (an environment directory) from the real filesystem, through the one tree
/// reader (`source::tree`: symlink policy, hidden entries, limits).
pub fn load_environment(dir: &Path) -> Result<DesiredState, Diagnostics> {
    load::disk_environment(dir)
}

/// Loads the environment directory `dir` from an in-memory map (its files below `dir`).
pub fn load_environment_from(files: &MemFiles, dir: &Path) -> Result<DesiredState, Diagnostics> {
    load::environment(&files.environment(dir), dir)
}

/// Loads the environment directory `dir` from a tree read by `source::tree` (a Git revision,
/// the agent's snapshot), reporting the entries it refused with the rest.
pub fn load_tree(tree: &EnvTree, dir: &Path) -> Result<DesiredState, Diagnostics> {
    load::environment(tree, dir)
}

/// One endpoint from a single endpoint file (combined form) plus optional deployment files,
/// without an `environment.yaml`: several endpoint files may be given; deployment files attach
/// to them by `endpoint_name`. No target is known, so target-specific rules are not checked.
pub fn load_endpoint_files(
    files: &dyn Files,
    paths: &[PathBuf],
) -> Result<Vec<Endpoint>, Diagnostics> {
    load::endpoint_files(files, paths)
}

/// `flightdeck validate <PATH>...`: each path is an environment directory (it has an
/// `environment.yaml`) or a YAML file; files given together are linked by `endpoint_name`.
/// Returns the diagnostics of all paths together.
pub fn validate_paths(paths: &[PathBuf]) -> Result<(), Diagnostics> {
    load::validate_paths(paths)
}
