//! Where environment files come from: the real filesystem or an in-memory tree (a Git revision).

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// Largest file the loader reads (YAML and request bodies).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most files an environment directory may hold.
pub const MAX_FILES: usize = 20_000;

/// A read-only file tree.
pub trait Files: Send + Sync {
    /// All files below `dir`, recursively (order does not matter; the loader sorts).
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
}

/// The real filesystem. Hidden entries (`.git`, `.live.json`) are listed too; the loader decides
/// what to skip. Listing stops after [`MAX_FILES`] + 1 entries, so a huge tree is refused
/// without walking it all, and reads refuse files over [`MAX_FILE_BYTES`].
#[derive(Clone, Copy, Debug, Default)]
pub struct DiskFiles;

impl Files for DiskFiles {
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(current) = pending.pop() {
            for entry in std::fs::read_dir(&current)? {
                let path = entry?.path();
                // Follows symlinks; a symlink loop ends at the file limit.
                let meta = std::fs::metadata(&path)?;
                if meta.is_dir() {
                    pending.push(path);
                } else {
                    out.push(path);
                }
                if out.len() + pending.len() > MAX_FILES {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

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
    io::Error::new(io::ErrorKind::InvalidData, "file is larger than 1 MiB")
}

/// Files held in memory, keyed by path (for example a Git tree at some revision).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemFiles(pub BTreeMap<PathBuf, Vec<u8>>);

impl Files for MemFiles {
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let dir = normalize(dir);
        let found: Vec<PathBuf> = self
            .0
            .keys()
            .filter(|p| normalize(p).starts_with(&dir) && normalize(p) != dir)
            .cloned()
            .collect();
        if found.is_empty() && !dir.as_os_str().is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no files below {}", dir.display()),
            ));
        }
        Ok(found)
    }

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
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "file not found"))
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
    fn mem_files_list_only_below_the_directory() {
        let files = MemFiles(
            [
                (PathBuf::from("environments/a/environment.yaml"), vec![]),
                (PathBuf::from("environments/a/sub/x.yml"), vec![]),
                (PathBuf::from("environments/ab/environment.yaml"), vec![]),
            ]
            .into(),
        );
        let listed = files.list(Path::new("./environments/a")).unwrap();
        assert_eq!(listed.len(), 2);
        assert!(files.read(Path::new("environments/a/./sub/x.yml")).is_ok());
        assert!(files.list(Path::new("environments/zz")).is_err());
    }
}
