//! The one reader of an environment tree. The working tree (`validate`, `plan`), a Git tree at a
//! revision (`plan --against-rev`, the agent's commit snapshots) and the agent's `--watch-local`
//! directory all go through [`walk`](walk::walk), with one policy:
//!
//! - hidden entries (a name starting with `.`) are skipped;
//! - a symlink is followed only when its target, after every hop, resolves inside the
//!   environment directory and through no hidden entry; one that is absolute, leaves the
//!   directory, dangles or loops is reported with its path and the walk goes on;
//! - one set of limits per environment ([`MAX_FILES`], [`MAX_FILE_BYTES`], [`MAX_TOTAL_BYTES`]),
//!   checked from metadata (disk) or the object header (Git) before any content is loaded.
//!
//! The result is an in-memory [`EnvTree`]; the loader reads nothing else. See
//! docs/environment-format.md.

mod disk;
mod resolve;
pub mod walk;

use std::fmt;
use std::ops::Deref;
use std::path::{Component, Path, PathBuf};

pub use disk::{Identity, list_dir, read_dir, read_listed};

use std::collections::BTreeMap;

/// Files of one environment, keyed by their path relative to the repository root
/// (`environments/prod/scoring.yaml`).
pub type FileMap = BTreeMap<PathBuf, Vec<u8>>;

/// Most entries (files, directories, symlinks) one environment may hold. Argo CD and Flux
/// users keep an application to a few hundred manifests; 20,000 leaves room for generated
/// trees while bounding a walk.
pub const MAX_FILES: usize = 20_000;
/// Largest single file: desired state is small YAML and JSON request bodies (Kubernetes caps an
/// object at 1.5 MiB in etcd; Argo CD's default manifest limit is in the same range).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most bytes one environment may hold, all files together (Argo CD's default
/// `reposerver.max.combined.directory.manifests.size` is 10 MiB; Flux's source artifact limit
/// is 50 MiB by default).
pub const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;
/// Symlinks followed while resolving one path (Linux's MAXSYMLINKS is 40).
pub const MAX_LINK_HOPS: usize = 40;
/// Longest symlink target read (Linux's PATH_MAX).
const MAX_LINK_BYTES: u64 = 4096;

/// The files of one environment, keyed by the path they are shown as (the environment
/// directory joined with their relative path), and the entries that were refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvTree {
    pub files: FileMap,
    /// Refused entries, in walk order; the loader reports each one with its path.
    pub problems: Vec<TreeProblem>,
}

impl Deref for EnvTree {
    type Target = FileMap;

    fn deref(&self) -> &FileMap {
        &self.files
    }
}

impl From<FileMap> for EnvTree {
    fn from(files: FileMap) -> EnvTree {
        EnvTree {
            files,
            problems: Vec::new(),
        }
    }
}

/// One refused entry: the walk reports it and goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeProblem {
    pub path: PathBuf,
    pub problem: EntryProblem,
}

impl fmt::Display for TreeProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.problem)
    }
}

/// Why one entry was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryProblem {
    #[error("symlink points outside the environment directory (-> {target})")]
    LinkOutside { target: String },
    #[error("dangling symlink (-> {target})")]
    LinkDangling { target: String },
    #[error("symlink loop (-> {target})")]
    LinkLoop { target: String },
    #[error("symlink points to a hidden entry (-> {target})")]
    LinkHidden { target: String },
    #[error("symlink target is longer than {MAX_LINK_BYTES} bytes")]
    LinkTooLong,
    #[error(
        "file is larger than the {} limit ({size} bytes)",
        bytes(MAX_FILE_BYTES)
    )]
    TooLarge { size: u64 },
    #[error("not a regular file, directory or symlink")]
    Special,
    #[error("name is not valid UTF-8 or not a single path component")]
    BadName,
    #[error("changed while it was read")]
    Changed,
    #[error("cannot read: {message}")]
    Unreadable { message: String },
}

/// Errors that refuse the whole environment. Nothing has been loaded when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{}: the environment directory holds more than {MAX_FILES} files", dir.display())]
    TooManyFiles { dir: PathBuf },
    #[error(
        "{}: the environment holds {} in {files} files, more than the {} limit",
        dir.display(), bytes(*total), bytes(MAX_TOTAL_BYTES)
    )]
    TooManyBytes {
        dir: PathBuf,
        total: u64,
        files: usize,
    },
    #[error("{}: cannot list the environment directory: {message}", dir.display())]
    List { dir: PathBuf, message: String },
    /// The Git reader (in the binary's `source` module) could not read an object.
    #[error("{}: git: {context}", dir.display())]
    Git {
        dir: PathBuf,
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl TreeError {
    /// The directory the error is about.
    pub fn dir(&self) -> &Path {
        match self {
            TreeError::TooManyFiles { dir }
            | TreeError::TooManyBytes { dir, .. }
            | TreeError::List { dir, .. }
            | TreeError::Git { dir, .. } => dir,
        }
    }

    /// The message without the directory, with its cause, for a diagnostic on the directory.
    pub fn message(&self) -> String {
        let full = self.to_string();
        let prefix = format!("{}: ", self.dir().display());
        let own = full.strip_prefix(&prefix).unwrap_or(&full).to_string();
        match std::error::Error::source(self) {
            Some(cause) => format!("{own}: {cause}"),
            None => own,
        }
    }
}

/// `1.0 MiB`, `61 B`: sizes in messages.
pub fn bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    if n >= MIB {
        let whole = n / MIB;
        let tenth = (n % MIB) * 10 / MIB;
        if tenth == 0 {
            format!("{whole} MiB")
        } else {
            format!("{whole}.{tenth} MiB")
        }
    } else if n >= KIB {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} B")
    }
}

/// Hidden entries (`.git`, `.live.json`, editor swap files) are not part of an environment.
pub fn is_hidden_name(name: &str) -> bool {
    name.starts_with('.')
}

/// Whether any component of `path` (relative to the environment directory) is hidden.
pub fn is_hidden(path: &Path) -> bool {
    path.components().any(|c| match c {
        Component::Normal(part) => part.to_str().is_some_and(is_hidden_name),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(bytes(61), "61 B");
        assert_eq!(bytes(2048), "2 KiB");
        assert_eq!(bytes(MAX_FILE_BYTES), "1 MiB");
        assert_eq!(bytes(70 * 1024 * 1024 + 512 * 1024), "70.5 MiB");
    }

    #[test]
    fn hidden_means_any_component_starts_with_a_dot() {
        assert!(is_hidden(Path::new("a/.git/config")));
        assert!(is_hidden(Path::new(".live.json")));
        assert!(!is_hidden(Path::new("./a/b.yml")));
        assert!(!is_hidden(Path::new("a/b.yml")));
    }
}
