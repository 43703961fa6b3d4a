//! The walk every input shares: list, resolve symlinks, check limits from sizes alone, and only
//! then load content.

use std::path::{Path, PathBuf};

use super::FileMap;
use super::resolve::{LinkFailure, resolve};
use super::{
    EntryProblem, EnvTree, MAX_FILE_BYTES, MAX_FILES, MAX_TOTAL_BYTES, TreeError, TreeProblem,
    is_hidden_name,
};

/// What an entry is, without following it. `size` comes from metadata or the object header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File { size: u64 },
    Link { size: u64 },
    Other,
}

/// One directory entry. `name` is `None` when it is not valid UTF-8 or not one component.
pub struct Entry<H> {
    pub name: Option<String>,
    pub kind: Kind,
    pub handle: H,
}

/// A tree the walk can read: a directory on disk or a Git tree. Paths are relative to the
/// environment directory and free of symlinks (the walk resolves them first).
pub trait Input {
    /// Enough to reach an entry again cheaply: a path and inode on disk, an object id in Git.
    type Handle: Clone;

    fn root(&self) -> Self::Handle;
    /// The entries of a directory, in any order.
    fn list(&self, rel: &Path, dir: &Self::Handle) -> Result<Vec<Entry<Self::Handle>>, String>;
    /// The entry at `rel` without following it; `None` when nothing is there.
    fn lookup(&self, rel: &Path) -> Result<Option<Entry<Self::Handle>>, String>;
    /// A symlink's target (its size is already checked).
    fn link_target(&self, rel: &Path, link: &Self::Handle) -> Result<String, EntryProblem>;
    /// A regular file's content; `size` is what the walk checked.
    fn read(&self, rel: &Path, file: &Self::Handle, size: u64) -> Result<Vec<u8>, EntryProblem>;
}

/// A file to load once every limit has passed.
pub struct Planned<H> {
    /// The path it is shown as (the environment directory joined with its relative path).
    pub shown: PathBuf,
    /// Its real path relative to the environment directory (every symlink resolved).
    pub real: PathBuf,
    pub handle: H,
    pub size: u64,
}

/// Every file the walk would load, with the entries it refused, before any content is read.
pub struct Listing<H> {
    pub files: Vec<Planned<H>>,
    pub problems: Vec<TreeProblem>,
}

/// Walks `input`, naming entries `shown.join(relative path)`.
pub fn walk<I: Input>(input: &I, shown: &Path) -> Result<EnvTree, TreeError> {
    let Listing {
        files: planned,
        mut problems,
    } = list(input, shown)?;
    let mut files = FileMap::new();
    for file in planned {
        match input.read(&file.real, &file.handle, file.size) {
            Ok(content) => {
                files.insert(file.shown, content);
            }
            Err(problem) => problems.push(TreeProblem {
                path: file.shown,
                problem,
            }),
        }
    }
    Ok(EnvTree { files, problems })
}

/// Lists `input` as [`walk`] does (symlinks resolved, limits checked), reading no file.
pub fn list<I: Input>(input: &I, shown: &Path) -> Result<Listing<I::Handle>, TreeError> {
    let mut problems = Vec::new();
    let mut planned: Vec<Planned<I::Handle>> = Vec::new();
    let mut entries = 0usize;
    let mut total = 0u64;
    let refuse = |problems: &mut Vec<TreeProblem>, path: PathBuf, problem| {
        problems.push(TreeProblem { path, problem });
    };
    // (relative path as shown, real relative path, handle)
    let mut pending = vec![(PathBuf::new(), PathBuf::new(), input.root())];
    while let Some((dir_shown, dir_real, dir_handle)) = pending.pop() {
        let listed = match input.list(&dir_real, &dir_handle) {
            Ok(listed) => listed,
            Err(message) if dir_shown.as_os_str().is_empty() => {
                return Err(TreeError::List {
                    dir: shown.to_path_buf(),
                    message,
                });
            }
            Err(message) => {
                let problem = EntryProblem::Unreadable { message };
                refuse(&mut problems, shown.join(&dir_shown), problem);
                continue;
            }
        };
        for entry in listed {
            let Some(name) = entry.name else {
                refuse(&mut problems, shown.join(&dir_shown), EntryProblem::BadName);
                continue;
            };
            if is_hidden_name(&name) {
                continue;
            }
            entries += 1;
            if entries > MAX_FILES {
                return Err(TreeError::TooManyFiles {
                    dir: shown.to_path_buf(),
                });
            }
            let rel_shown = dir_shown.join(&name);
            let path = shown.join(&rel_shown);
            let (kind, handle, real, via_link) = match entry.kind {
                Kind::Link { size } => {
                    match resolve(input, &dir_real, &name, &entry.handle, size) {
                        Ok(found) => (found.kind, found.handle, found.real, Some(found.target)),
                        Err(failure) => {
                            refuse(&mut problems, path, failure.into_problem());
                            continue;
                        }
                    }
                }
                kind => (kind, entry.handle, dir_real.join(&name), None),
            };
            match kind {
                Kind::Dir => {
                    // A directory link to itself or an ancestor would be walked forever.
                    if let Some(target) = via_link.filter(|_| dir_real.starts_with(&real)) {
                        refuse(&mut problems, path, EntryProblem::LinkLoop { target });
                    } else {
                        pending.push((rel_shown, real, handle));
                    }
                }
                Kind::File { size } => {
                    total = total.saturating_add(size);
                    if size > MAX_FILE_BYTES {
                        refuse(&mut problems, path, EntryProblem::TooLarge { size });
                    } else {
                        planned.push(Planned {
                            shown: path,
                            real,
                            handle,
                            size,
                        });
                    }
                }
                Kind::Link { .. } | Kind::Other => {
                    refuse(&mut problems, path, EntryProblem::Special);
                }
            }
        }
    }
    if total > MAX_TOTAL_BYTES {
        return Err(TreeError::TooManyBytes {
            dir: shown.to_path_buf(),
            total,
            files: entries,
        });
    }
    Ok(Listing {
        files: planned,
        problems,
    })
}

impl LinkFailure {
    fn into_problem(self) -> EntryProblem {
        match self {
            LinkFailure::Outside(target) => EntryProblem::LinkOutside { target },
            LinkFailure::Dangling(target) => EntryProblem::LinkDangling { target },
            LinkFailure::Loop(target) => EntryProblem::LinkLoop { target },
            LinkFailure::Hidden(target) => EntryProblem::LinkHidden { target },
            LinkFailure::Entry(problem) => problem,
        }
    }
}
