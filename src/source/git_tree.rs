//! A Git tree as an [`Input`]: sizes come from the object database header
//! (`git_odb_read_header`), so no blob is inflated before the walk has checked every limit.
//! A symlink is a blob with mode 0o120000 whose content is its target.

use std::cell::RefCell;
use std::path::Path;

use git2::{ErrorCode, ObjectType, Odb, Oid, Repository, Tree, TreeEntry};

use flightdeck_core::tree::walk::{Entry, Input, Kind, Listing, list, walk};
use flightdeck_core::tree::{EntryProblem, EnvTree, TreeError};

use super::{SourceError, normalize_path as normalize};

/// The environment `subdir` (from the repository root) of `commit`, its files keyed by their
/// path from the repository root.
pub fn read_tree(repo: &Repository, commit: Oid, subdir: &Path) -> Result<EnvTree, SourceError> {
    let revision = commit.to_string();
    let commit_obj = repo
        .find_commit(commit)
        .map_err(|e| SourceError::git(format!("reading commit {revision}"), e))?;
    let root = commit_obj
        .tree()
        .map_err(|e| SourceError::git(format!("reading tree of {revision}"), e))?;
    let subdir = normalize(subdir)?;
    let not_found = || SourceError::PathNotFound {
        path: subdir.display().to_string(),
        revision: revision.clone(),
    };
    let tree = if subdir.as_os_str().is_empty() {
        root
    } else {
        let entry = root.get_path(&subdir).map_err(|_| not_found())?;
        if entry.kind() != Some(ObjectType::Tree) {
            return Err(not_found());
        }
        repo.find_tree(entry.id())
            .map_err(|e| SourceError::git(format!("reading {}", subdir.display()), e))?
    };
    Ok(read_git_tree(repo, &tree, &subdir)?)
}

/// Reads the environment whose directory is `tree`, naming its files `shown.join(path)`.
pub fn read_git_tree(
    repo: &Repository,
    tree: &Tree<'_>,
    shown: &Path,
) -> Result<EnvTree, TreeError> {
    over_tree(repo, tree, shown, |input| walk(input, shown))
}

/// Lists the environment whose directory is `tree` as [`read_git_tree`] would read it,
/// inflating no blob: each file's shown path, real path and blob id.
pub fn list_git_tree(
    repo: &Repository,
    tree: &Tree<'_>,
    shown: &Path,
) -> Result<Listing<Oid>, TreeError> {
    over_tree(repo, tree, shown, |input| list(input, shown))
}

/// Runs `f` over `tree` through the repository's object database. An object the commit names
/// but the repository cannot produce is the repository's fault, not the commit's: it is
/// returned as a git error (the agent rebuilds its cache on it), whatever `f` made of it,
/// rather than as a problem of the environment's files.
fn over_tree<T>(
    repo: &Repository,
    tree: &Tree<'_>,
    shown: &Path,
    f: impl FnOnce(&Git<'_>) -> Result<T, TreeError>,
) -> Result<T, TreeError> {
    let git_error = |context: &str, source: git2::Error| TreeError::Git {
        dir: shown.to_path_buf(),
        context: context.into(),
        source: Box::new(source),
    };
    let odb = repo
        .odb()
        .map_err(|source| git_error("opening the object database", source))?;
    let input = Git {
        repo,
        odb,
        root: tree.clone(),
        missing: RefCell::new(None),
    };
    let out = f(&input);
    match input.missing.into_inner() {
        Some(source) => Err(git_error("reading the commit's objects", source)),
        None => out,
    }
}

struct Git<'r> {
    repo: &'r Repository,
    odb: Odb<'r>,
    root: Tree<'r>,
    /// The first object the repository failed to produce.
    missing: RefCell<Option<git2::Error>>,
}

impl Git<'_> {
    /// Keeps the first git error for `read_git_tree` and returns its message for the walk.
    fn failed(&self, e: git2::Error) -> String {
        let message = e.message().to_string();
        self.missing.borrow_mut().get_or_insert(e);
        message
    }

    fn unreadable(&self, e: git2::Error) -> EntryProblem {
        EntryProblem::Unreadable {
            message: self.failed(e),
        }
    }

    fn entry(&self, entry: &TreeEntry<'_>) -> Result<Entry<Oid>, String> {
        let name = entry
            .name()
            .ok()
            .filter(|n| !n.is_empty() && *n != "." && *n != ".." && !n.contains(['/', '\0']))
            .map(str::to_string);
        let blob_size = || -> Result<Option<u64>, String> {
            let (size, ty) = self
                .odb
                .read_header(entry.id())
                .map_err(|e| self.failed(e))?;
            Ok((ty == ObjectType::Blob).then_some(size as u64))
        };
        let kind = match entry.filemode() {
            0o040000 => Kind::Dir,
            0o120000 => blob_size()?.map_or(Kind::Other, |size| Kind::Link { size }),
            0o100644 | 0o100755 | 0o100664 => {
                blob_size()?.map_or(Kind::Other, |size| Kind::File { size })
            }
            // 0o160000: a submodule (a commit of another repository).
            _ => Kind::Other,
        };
        Ok(Entry {
            name,
            kind,
            handle: entry.id(),
        })
    }
}

impl Input for Git<'_> {
    type Handle = Oid;

    fn root(&self) -> Oid {
        self.root.id()
    }

    fn list(&self, _rel: &Path, dir: &Oid) -> Result<Vec<Entry<Oid>>, String> {
        let tree = self.repo.find_tree(*dir).map_err(|e| self.failed(e))?;
        tree.iter().map(|e| self.entry(&e)).collect()
    }

    fn lookup(&self, rel: &Path) -> Result<Option<Entry<Oid>>, String> {
        match self.root.get_path(rel) {
            Ok(entry) => self.entry(&entry).map(Some),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(self.failed(e)),
        }
    }

    fn link_target(&self, _rel: &Path, link: &Oid) -> Result<String, EntryProblem> {
        let blob = self.repo.find_blob(*link).map_err(|e| self.unreadable(e))?;
        String::from_utf8(blob.content().to_vec()).map_err(|_| EntryProblem::Unreadable {
            message: "symlink target is not valid UTF-8".into(),
        })
    }

    fn read(&self, _rel: &Path, file: &Oid, _size: u64) -> Result<Vec<u8>, EntryProblem> {
        let blob = self.repo.find_blob(*file).map_err(|e| self.unreadable(e))?;
        Ok(blob.content().to_vec())
    }
}
