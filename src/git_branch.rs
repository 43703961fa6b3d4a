//! A commit on a new branch, for `flightdeck revert` and `flightdeck promote`: the repository
//! holding the environment, whether its directory is clean, HEAD's tree with some files replaced or removed (built with tree
//! builders, never through the index or the work tree), and the commit on a new branch.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use git2::{Commit, ObjectType, Oid, Repository, Signature, Status, StatusOptions};

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
