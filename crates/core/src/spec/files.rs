//! Where the loader reads file content: an environment tree already read into memory
//! ([`EnvTree`], from `source::tree`), an in-memory map, or, for files named one by one on the
//! command line (`validate endpoint.yml blue.yml`), the real filesystem.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use crate::tree::{self, EnvTree, MAX_FILE_BYTES};

/// A read-only file tree.
pub trait Files: Send + Sync {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
}

/// A tree the loader reads after listing it: its files' content and, for a test's
/// `request_dir`, the files directly in a directory (sorted).
pub(crate) trait Tree: Files {
    fn files_in(&self, dir: &Path) -> Vec<PathBuf>;
}

impl Tree for EnvTree {
    fn files_in(&self, dir: &Path) -> Vec<PathBuf> {
        self.keys()
            .filter(|p| p.parent() == Some(dir))
            .cloned()
            .collect()
    }
}

/// The real filesystem, for files named explicitly (never for an environment directory, which
/// is read through `source::tree`). Reads refuse files over [`MAX_FILE_BYTES`].
#[derive(Clone, Copy, Debug, Default)]
pub struct DiskFiles;

impl Files for DiskFiles {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let file = std::fs::File::open(path)?;
        let mut bytes = Vec::new();
        file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(too_large());
        }
        Ok(bytes)
    }
}

pub(crate) fn too_large() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("file is larger than {}", tree::bytes(MAX_FILE_BYTES)),
    )
}

fn not_found() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "file not found")
}

impl Files for EnvTree {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files.get(path).cloned().ok_or_else(not_found)
    }
}

/// Files held in memory, keyed by path (for example a Git tree at some revision).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemFiles(pub BTreeMap<PathBuf, Vec<u8>>);

impl MemFiles {
    /// The files below `dir`, hidden ones left out (the tree reader's rule), keyed as
    /// `dir.join(relative path)` the way the tree reader keys them.
    pub fn environment(&self, dir: &Path) -> EnvTree {
        let top = normalize(dir);
        let files: crate::tree::FileMap = self
            .0
            .iter()
            .filter_map(|(path, content)| {
                let rel = normalize(path).strip_prefix(&top).ok()?.to_path_buf();
                let keep = !rel.as_os_str().is_empty() && !tree::is_hidden(&rel);
                keep.then(|| (dir.join(rel), content.clone()))
            })
            .collect();
        EnvTree::from(files)
    }
}

impl Files for MemFiles {
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let wanted = normalize(path);
        self.0
            .get(path)
            .or_else(|| {
                self.0
                    .iter()
                    .find(|(p, _)| normalize(p) == wanted)
                    .map(|(_, v)| v)
            })
            .cloned()
            .ok_or_else(not_found)
    }
}

/// Lexical normalisation: drops `.`, resolves `..` against earlier parts. `./a/../b` → `b`.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                let last_is_normal =
                    matches!(out.components().next_back(), Some(Component::Normal(_)));
                if last_is_normal {
                    out.pop();
                } else if !matches!(out.components().next_back(), Some(Component::RootDir)) {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalize_lexically() {
        assert_eq!(normalize(Path::new("./a/b/../c")), PathBuf::from("a/c"));
        assert_eq!(
            normalize(Path::new("env/./x.json")),
            PathBuf::from("env/x.json")
        );
        assert_eq!(normalize(Path::new("../x")), PathBuf::from("../x"));
        assert_eq!(normalize(Path::new("a/../../x")), PathBuf::from("../x"));
        assert_eq!(normalize(Path::new("/../x")), PathBuf::from("/x"));
    }

    #[test]
    fn mem_files_give_only_the_visible_files_below_the_directory() {
        let files = MemFiles(
            [
                (PathBuf::from("environments/a/environment.yaml"), vec![]),
                (PathBuf::from("environments/a/sub/x.yml"), vec![]),
                (PathBuf::from("environments/a/.git/config"), vec![]),
                (PathBuf::from("environments/ab/environment.yaml"), vec![]),
            ]
            .into(),
        );
        let tree = files.environment(Path::new("./environments/a"));
        let keys: Vec<_> = tree.keys().cloned().collect();
        assert_eq!(
            keys,
            [
                PathBuf::from("./environments/a/environment.yaml"),
                PathBuf::from("./environments/a/sub/x.yml")
            ]
        );
        assert!(files.read(Path::new("environments/a/./sub/x.yml")).is_ok());
        assert!(files.environment(Path::new("environments/zz")).is_empty());
    }
}
