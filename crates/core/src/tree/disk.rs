//! A directory on disk as an [`Input`]: entries come from `lstat`, so nothing is followed or
//! opened before the walk has resolved and sized it.

use std::fs::{self, Metadata};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use super::walk::{Entry, Input, Kind, Listing, Planned, list, walk};
use super::{EntryProblem, EnvTree, MAX_FILE_BYTES, TreeError};

/// Reads the environment directory `dir`, naming its files `shown.join(relative path)`.
pub fn read_dir(dir: &Path, shown: &Path) -> Result<EnvTree, TreeError> {
    walk(
        &Disk {
            root: dir.to_path_buf(),
        },
        shown,
    )
}

/// Lists the environment directory `dir` as [`read_dir`] would read it, reading no file:
/// each file's shown path, real path (relative to `dir`) and size.
pub fn list_dir(dir: &Path, shown: &Path) -> Result<Listing<Identity>, TreeError> {
    list(
        &Disk {
            root: dir.to_path_buf(),
        },
        shown,
    )
}

/// Reads one listed file as [`read_dir`] would: the same checks (a regular file, the one that
/// was listed, at most [`MAX_FILE_BYTES`]).
pub fn read_listed(dir: &Path, file: &Planned<Identity>) -> Result<Vec<u8>, EntryProblem> {
    Disk {
        root: dir.to_path_buf(),
    }
    .read(&file.real, &file.handle, file.size)
}

struct Disk {
    root: PathBuf,
}

/// The device and inode an entry had when it was listed: a file swapped for another (or for a
/// symlink) between the check and the read is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity(Option<(u64, u64)>);

#[cfg(unix)]
fn identity(meta: &Metadata) -> Identity {
    use std::os::unix::fs::MetadataExt;
    Identity(Some((meta.dev(), meta.ino())))
}

#[cfg(not(unix))]
fn identity(_meta: &Metadata) -> Identity {
    Identity(None)
}

fn kind(meta: &Metadata) -> Kind {
    let ty = meta.file_type();
    if ty.is_symlink() {
        Kind::Link { size: meta.len() }
    } else if ty.is_dir() {
        Kind::Dir
    } else if ty.is_file() {
        Kind::File { size: meta.len() }
    } else {
        Kind::Other
    }
}

impl Input for Disk {
    type Handle = Identity;

    fn root(&self) -> Identity {
        Identity(None)
    }

    fn list(&self, rel: &Path, _dir: &Identity) -> Result<Vec<Entry<Identity>>, String> {
        let mut out = Vec::new();
        for entry in fs::read_dir(self.root.join(rel)).map_err(|e| e.to_string())? {
            let entry = entry.map_err(|e| e.to_string())?;
            // On Unix, DirEntry::metadata does not follow symlinks.
            let meta = entry.metadata().map_err(|e| e.to_string())?;
            out.push(Entry {
                name: entry.file_name().into_string().ok(),
                kind: kind(&meta),
                handle: identity(&meta),
            });
        }
        Ok(out)
    }

    fn lookup(&self, rel: &Path) -> Result<Option<Entry<Identity>>, String> {
        match fs::symlink_metadata(self.root.join(rel)) {
            Ok(meta) => Ok(Some(Entry {
                name: None,
                kind: kind(&meta),
                handle: identity(&meta),
            })),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                Ok(None)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn link_target(&self, rel: &Path, _link: &Identity) -> Result<String, EntryProblem> {
        let target = fs::read_link(self.root.join(rel)).map_err(|e| EntryProblem::Unreadable {
            message: e.to_string(),
        })?;
        target
            .into_os_string()
            .into_string()
            .map_err(|_| EntryProblem::Unreadable {
                message: "symlink target is not valid UTF-8".into(),
            })
    }

    fn read(&self, rel: &Path, file: &Identity, _size: u64) -> Result<Vec<u8>, EntryProblem> {
        let unreadable = |e: std::io::Error| EntryProblem::Unreadable {
            message: e.to_string(),
        };
        let opened = fs::File::open(self.root.join(rel)).map_err(unreadable)?;
        let meta = opened.metadata().map_err(unreadable)?;
        if !meta.is_file() || identity(&meta) != *file {
            return Err(EntryProblem::Changed);
        }
        let mut content = Vec::new();
        opened
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut content)
            .map_err(unreadable)?;
        if content.len() as u64 > MAX_FILE_BYTES {
            return Err(EntryProblem::TooLarge {
                size: meta.len().max(content.len() as u64),
            });
        }
        Ok(content)
    }
}
