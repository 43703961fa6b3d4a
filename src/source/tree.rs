//! Reading desired files straight from a commit's tree: no checkout, so a reader never sees a
//! half-written working directory.

use std::path::{Component, Path, PathBuf};

use git2::{ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};

use super::{FileMap, MAX_FILE_BYTES, SourceError};

/// Every blob under `subdir` (recursively) in `commit`, keyed by its path from the repository
/// root. Symlinks and submodules are skipped: they cannot be resolved inside one tree.
pub fn read_tree(repo: &Repository, commit: Oid, subdir: &Path) -> Result<FileMap, SourceError> {
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

    let mut blobs: Vec<(PathBuf, Oid)> = Vec::new();
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        // 0o120000 = symlink, 0o160000 = submodule (a commit entry).
        let mode = entry.filemode();
        if entry.kind() == Some(ObjectType::Blob) && mode != 0o120000 {
            if let Ok(name) = entry.name() {
                blobs.push((subdir.join(dir).join(name), entry.id()));
            }
        }
        TreeWalkResult::Ok
    })
    .map_err(|e| SourceError::git(format!("walking {}", subdir.display()), e))?;

    let mut files = FileMap::new();
    for (path, id) in blobs {
        let blob = repo
            .find_blob(id)
            .map_err(|e| SourceError::git(format!("reading {}", path.display()), e))?;
        if blob.size() > MAX_FILE_BYTES {
            return Err(SourceError::TooLarge {
                path: path.display().to_string(),
                limit: MAX_FILE_BYTES,
            });
        }
        files.insert(path, blob.content().to_vec());
    }
    Ok(files)
}

/// `./environments/prod/` → `environments/prod`; rejects absolute paths and `..`.
pub(crate) fn normalize(path: &Path) -> Result<PathBuf, SourceError> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => {
                return Err(SourceError::Config(format!(
                    "{}: environment paths must be relative to the repository root, without `..`",
                    path.display()
                )));
            }
        }
    }
    Ok(out)
}
