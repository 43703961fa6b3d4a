//! A commit on a new branch, for `flightdeck revert` and `flightdeck promote`: the repository
//! holding the environment, whether its directory is clean, HEAD's tree with some files replaced or removed (built with tree
//! builders, never through the index or the work tree), the commit on a new branch, and the
//! walk back through history that finds a file a failed release deleted (`revert`).

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use git2::{Commit, ObjectType, Oid, Repository, Signature, Status, StatusOptions};

/// How many commits (first parent, from HEAD) `flightdeck revert` looks back through for the
/// file of a deployment live still serves but HEAD no longer declares (docs/rollouts.md).
pub const HISTORY_LIMIT: usize = 1000;

/// A file found in history: where it is in the environment, its bytes, and the commit.
pub struct Found {
    /// From the environment directory.
    pub path: PathBuf,
    pub text: String,
    /// Short id and subject of the newest commit whose tree has it.
    pub short: String,
    pub subject: String,
}

/// The environment's repository, its directory inside it, and HEAD.
pub struct EnvRepo {
    pub repo: Repository,
    /// The environment directory from the repository root.
    pub rel: PathBuf,
}

impl EnvRepo {
    pub fn open(env_dir: &Path) -> anyhow::Result<EnvRepo> {
        let abs = env_dir
            .canonicalize()
            .with_context(|| format!("{}", env_dir.display()))?;
        let repo = Repository::discover(&abs).map_err(|_| {
            anyhow!(
                "{} is not inside a Git repository; flightdeck writes its change as a commit on a new branch",
                env_dir.display()
            )
        })?;
        let workdir = repo
            .workdir()
            .ok_or_else(|| anyhow!("the repository has no work tree"))?
            .canonicalize()?;
        let rel = abs
            .strip_prefix(&workdir)
            .with_context(|| format!("{} is outside the repository", env_dir.display()))?
            .to_path_buf();
        Ok(EnvRepo { repo, rel })
    }

    pub fn head(&self) -> anyhow::Result<Commit<'_>> {
        self.repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .context("the repository has no commit checked out (HEAD)")
    }

    /// Files changed, staged or untracked in the environment's directory.
    pub fn dirty(&self) -> anyhow::Result<Vec<String>> {
        let mut options = StatusOptions::new();
        options
            .include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false);
        if !self.rel.as_os_str().is_empty() {
            options.pathspec(self.rel.to_string_lossy().as_ref());
        }
        let statuses = self.repo.statuses(Some(&mut options))?;
        Ok(statuses
            .iter()
            .filter(|s| s.status() != Status::CURRENT && !s.status().contains(Status::IGNORED))
            .filter_map(|s| s.path().ok().map(String::from))
            .collect())
    }

    /// HEAD's tree with `changes` (paths from the repository root; `None` removes) applied.
    pub fn tree_with(
        &self,
        base: &git2::Tree<'_>,
        changes: &[(PathBuf, Option<Vec<u8>>)],
    ) -> anyhow::Result<Oid> {
        let mut tree = base.id();
        for (path, content) in changes {
            let parts: Vec<String> = path
                .components()
                .map(|c| match c {
                    Component::Normal(s) => Ok(s.to_string_lossy().into_owned()),
                    _ => Err(anyhow!("unexpected path {}", path.display())),
                })
                .collect::<anyhow::Result<_>>()?;
            let blob = match content {
                Some(bytes) => Some(self.repo.blob(bytes)?),
                None => None,
            };
            let current = self.repo.find_tree(tree)?;
            tree = self.update(Some(&current), &parts, blob)?;
        }
        Ok(tree)
    }

    /// `tree` with the entry at `parts` set to `blob` (or removed).
    fn update(
        &self,
        tree: Option<&git2::Tree<'_>>,
        parts: &[String],
        blob: Option<Oid>,
    ) -> anyhow::Result<Oid> {
        let mut builder = self.repo.treebuilder(tree)?;
        let (name, rest) = parts.split_first().expect("a path has a name");
        if rest.is_empty() {
            match blob {
                Some(id) => {
                    let mode = tree
                        .and_then(|t| t.get_name(name))
                        .map_or(0o100644, |e| e.filemode());
                    builder.insert(name, id, mode)?;
                }
                None => {
                    builder.remove(name)?;
                }
            }
        } else {
            let sub = tree
                .and_then(|t| t.get_name(name))
                .filter(|e| e.kind() == Some(ObjectType::Tree))
                .map(|e| self.repo.find_tree(e.id()))
                .transpose()?;
            let id = self.update(sub.as_ref(), rest, blob)?;
            if self.repo.find_tree(id)?.is_empty() {
                builder.remove(name)?;
            } else {
                builder.insert(name, id, 0o040000)?;
            }
        }
        Ok(builder.write()?)
    }

    /// The newest of the first `limit` first-parent commits from `from` whose environment
    /// directory holds a YAML file (at any depth) for which `wanted(path, text)` holds, and that
    /// file. Each distinct blob is read once, however many commits hold it, and an unchanged
    /// directory is skipped, so the cost follows the environment's changes, not the history's
    /// length. `Ok(None)` when no commit within the bound has one.
    pub fn find_in_history(
        &self,
        from: &Commit<'_>,
        limit: usize,
        mut wanted: impl FnMut(&Path, &str) -> bool,
    ) -> anyhow::Result<Option<Found>> {
        let mut walk = self.repo.revwalk()?;
        walk.push(from.id())?;
        walk.simplify_first_parent()?;
        let mut seen_dirs = std::collections::HashSet::new();
        // A blob is judged once per path: `wanted` may look at the path.
        let mut seen_blobs = std::collections::HashSet::new();
        for id in walk.take(limit) {
            let commit = self.repo.find_commit(id?)?;
            let tree = commit.tree()?;
            let dir = if self.rel.as_os_str().is_empty() {
                tree
            } else {
                match tree.get_path(&self.rel) {
                    Ok(e) if e.kind() == Some(ObjectType::Tree) => self.repo.find_tree(e.id())?,
                    _ => continue,
                }
            };
            if !seen_dirs.insert(dir.id()) {
                continue;
            }
            let mut hit: Option<(PathBuf, String)> = None;
            let mut failure = None;
            dir.walk(git2::TreeWalkMode::PreOrder, |parent, entry| {
                let name = entry.name().unwrap_or_default();
                let yaml = name.ends_with(".yml") || name.ends_with(".yaml");
                let path = Path::new(parent).join(name);
                if entry.kind() != Some(ObjectType::Blob)
                    || !yaml
                    || !seen_blobs.insert((path.clone(), entry.id()))
                {
                    return git2::TreeWalkResult::Ok;
                }
                let blob = match self.repo.find_blob(entry.id()) {
                    Ok(b) => b,
                    Err(e) => {
                        failure = Some(e);
                        return git2::TreeWalkResult::Abort;
                    }
                };
                if let Ok(text) = std::str::from_utf8(blob.content())
                    && wanted(&path, text)
                {
                    hit = Some((path, text.to_string()));
                    return git2::TreeWalkResult::Abort;
                }
                git2::TreeWalkResult::Ok
            })
            .or_else(|e| {
                if hit.is_some() || e.code() == git2::ErrorCode::User {
                    Ok(())
                } else {
                    Err(e)
                }
            })?;
            if let Some(e) = failure {
                return Err(e.into());
            }
            if let Some((path, text)) = hit {
                return Ok(Some(Found {
                    path,
                    text,
                    short: id_short(&commit),
                    subject: commit
                        .summary()
                        .ok()
                        .flatten()
                        .unwrap_or_default()
                        .to_string(),
                }));
            }
        }
        Ok(None)
    }

    /// The author and committer: the repository's `user.name`/`user.email`, else flightdeck.
    pub fn signature(&self) -> anyhow::Result<Signature<'static>> {
        match self.repo.signature() {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Ok(Signature::now("flightdeck", "flightdeck@localhost")?),
        }
    }

    /// Refuses a branch name Git would not take, or one that exists.
    pub fn check_branch(&self, name: &str) -> anyhow::Result<()> {
        if !git2::Branch::name_is_valid(name)? {
            bail!("`{name}` is not a valid branch name");
        }
        if self.repo.find_branch(name, git2::BranchType::Local).is_ok() {
            bail!("branch {name} already exists; delete it or pass --branch NAME");
        }
        Ok(())
    }

    /// Commits `tree` on top of `parent` and points the new branch `name` at it. Nothing
    /// else moves: HEAD, the index and the work tree stay as they are.
    pub fn commit_on_branch(
        &self,
        name: &str,
        parent: &Commit<'_>,
        tree: Oid,
        message: &str,
    ) -> anyhow::Result<Oid> {
        let sig = self.signature()?;
        let tree = self.repo.find_tree(tree)?;
        let id = self
            .repo
            .commit(None, &sig, &sig, message, &tree, &[parent])?;
        let commit = self.repo.find_commit(id)?;
        self.repo.branch(name, &commit, false)?;
        Ok(id)
    }
}

/// The seven-digit short id, as `flightdeck revert` names commits.
pub fn id_short(commit: &Commit<'_>) -> String {
    commit.id().to_string()[..7].to_string()
}
