//! `flightdeck promote`'s core, callable without the CLI (the agent's MLflow promotions): edit
//! one deployment's model version or image in place (`spec::promote`), load the result with the
//! same loader, plan it, and commit it on a new branch without touching the checked-out branch,
//! the index or the work tree (`git_branch`). Nothing here prints.
//!
//! [`prepare`] reads HEAD and makes the edit; [`Prepared::commit`] plans the edited
//! environment against a live state the caller read (or HEAD's, [`Prepared::head_as_live`])
//! and writes the commit. [`push`] and [`crate::hosting`] publish it.

use std::path::{Path, PathBuf};

use similar::TextDiff;

use crate::git_branch::EnvRepo;
use crate::model::{DesiredState, LiveState};
use crate::plan::{Note, Plan, PlanOptions, Refusal};
use crate::spec::promote::{Artifact, PromoteEdit, PromoteEditError, Subject, promote_edit};
use crate::{backend, source, spec};

pub mod push;

pub use push::{PushError, push};

/// What to promote, and where.
#[derive(Clone, Debug)]
pub struct PromoteRequest {
    /// The environment directory, inside a Git work tree.
    pub env_dir: PathBuf,
    pub endpoint: String,
    /// Required when the endpoint declares several deployments (and has no slots).
    pub deployment: Option<String>,
    pub artifact: Artifact,
    /// Default `flightdeck/promote-<env>-<endpoint>-<version>`.
    pub branch: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error("{0}")]
    Repo(String),
    #[error(
        "the environment's directory has uncommitted changes ({}); commit or stash them first, so that the promotion is made from HEAD as it is",
        .0.join(", ")
    )]
    Dirty(Vec<String>),
    #[error("the environment at {at} is invalid ({} problem(s))", diagnostics.0.len())]
    Invalid {
        at: String,
        diagnostics: spec::Diagnostics,
    },
    #[error(transparent)]
    Edit(#[from] PromoteEditError),
    #[error("the plan of the promoted environment was refused: {}", join(.0))]
    Refused(Vec<Refusal>),
    #[error("{0}")]
    Branch(String),
}

fn join(refusals: &[Refusal]) -> String {
    refusals
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

fn repo_err(e: impl std::fmt::Display) -> PromoteError {
    PromoteError::Repo(format!("{e:#}"))
}

/// HEAD read, the edit made and the edited environment loaded; nothing written yet.
pub struct Prepared {
    repo: EnvRepo,
    head: git2::Oid,
    tree: git2::Oid,
    env_dir: PathBuf,
    branch: Option<String>,
    /// The new version (or image tag), for the default branch name.
    version: String,
    /// HEAD's environment, and the promoted one (slot endpoints not resolved yet).
    pub before: DesiredState,
    pub after: DesiredState,
    pub edit: PromoteEdit,
}

/// A promotion written as a commit on a new branch.
#[derive(Debug)]
pub struct Promotion {
    pub environment: String,
    pub branch: String,
    pub commit: String,
    /// The branch HEAD was on (the pull request's base), when it is on one.
    pub base: Option<String>,
    pub edit: PromoteEdit,
    /// The edited file from the repository root.
    pub file: PathBuf,
    /// The commit's unified diff (paths from the repository root).
    pub diff: String,
    pub plan: Plan,
    pub message: String,
}

impl Promotion {
    /// `model-1 1 → 2` or `image a:1 → a:2`.
    pub fn change(&self) -> String {
        change(&self.edit)
    }
}

fn change(edit: &PromoteEdit) -> String {
    match &edit.model {
        Some(m) => format!("{m} {} → {}", edit.previous, edit.new),
        None => format!("image {} → {}", edit.previous, edit.new),
    }
}

/// The deployment, or `the slot template`.
pub fn subject(edit: &PromoteEdit) -> String {
    match &edit.subject {
        Subject::Deployment(d) => format!("deployment {d}"),
        Subject::SlotTemplate => "the slot template".into(),
    }
}

/// The environment at `tree`, and its files.
fn load_at(
    repo: &EnvRepo,
    tree: &git2::Tree<'_>,
    env_dir: &Path,
    what: &str,
) -> Result<(source::FileMap, DesiredState), PromoteError> {
    let sub = if repo.rel.as_os_str().is_empty() {
        tree.clone()
    } else {
        tree.get_path(&repo.rel)
            .and_then(|e| repo.repo.find_tree(e.id()))
            .map_err(|_| {
                PromoteError::Repo(format!("{} is not committed at {what}", repo.rel.display()))
            })?
    };
    let files = source::read_git_tree(&repo.repo, &sub, env_dir)
        .map_err(|e| PromoteError::Repo(format!("the environment at {what} is refused: {e}")))?;
    match spec::load_tree(&files, env_dir, backend::profile_of) {
        Ok(d) => Ok((files.files, d)),
        Err(diagnostics) => Err(PromoteError::Invalid {
            at: what.to_string(),
            diagnostics,
        }),
    }
}

/// Reads HEAD, makes the edit and loads the result; refuses (nothing written) when the target
/// does not exist, the version is already declared, or the result does not validate.
pub fn prepare(request: &PromoteRequest) -> Result<Prepared, PromoteError> {
    let env_dir = request.env_dir.as_path();
    let repo = EnvRepo::open(env_dir).map_err(repo_err)?;
    let head = repo.head().map_err(repo_err)?;
    let dirty = repo.dirty().map_err(repo_err)?;
    if !dirty.is_empty() {
        return Err(PromoteError::Dirty(dirty));
    }
    let base = head.tree().map_err(repo_err)?;
    let (files, before) = load_at(&repo, &base, env_dir, "HEAD")?;
    let edit = promote_edit(
        &files,
        env_dir,
        &before,
        &request.endpoint,
        request.deployment.as_deref(),
        &request.artifact,
    )?;
    let inside = edit.path.strip_prefix(env_dir).unwrap_or(&edit.path);
    let changes = vec![(
        repo.rel.join(inside),
        Some(edit.new_text.clone().into_bytes()),
    )];
    let tree = repo.tree_with(&base, &changes).map_err(repo_err)?;
    let new_tree = repo.repo.find_tree(tree).map_err(repo_err)?;
    let (_, after) = load_at(&repo, &new_tree, env_dir, "the promotion")?;
    let head_id = head.id();
    drop(new_tree);
    drop(base);
    drop(head);
    Ok(Prepared {
        repo,
        head: head_id,
        tree,
        env_dir: env_dir.to_path_buf(),
        branch: request.branch.clone(),
        version: request.artifact.version().to_string(),
        before,
        after,
        edit,
    })
}

/// A branch name from free text: what Git refuses in a ref becomes `-`.
fn ref_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect::<String>()
        .trim_matches(['-', '.'])
        .replace("..", ".")
}

impl Prepared {
    /// HEAD's environment as it would be live once applied (`--offline`): slot endpoints
    /// resolved against an empty platform, as `plan --against-rev` does.
    pub fn head_as_live(&self) -> LiveState {
        let mut old = self.before.clone();
        let profile = backend::profile_of(&old.environment.target);
        // Resolving against nothing refuses nothing: every slot is idle.
        let _ = crate::slots::resolve(&mut old, &LiveState::default(), profile);
        LiveState::from_desired(&old)
    }

    /// The branch the commit goes on.
    pub fn branch(&self) -> String {
        self.branch.clone().unwrap_or_else(|| {
            format!(
                "flightdeck/promote-{}-{}-{}",
                ref_safe(&self.before.environment.name),
                ref_safe(&self.edit.endpoint),
                ref_safe(&self.version)
            )
        })
    }

    /// Plans the promoted environment against `live`, then commits it on the new branch.
    /// Refuses (nothing written) when the plan is refused or the branch exists.
    pub async fn commit(self, live: &LiveState, against: &str) -> Result<Promotion, PromoteError> {
        let mut after = self.after.clone();
        let profile = backend::profile_of(&after.environment.target);
        let notes: Vec<Note> =
            crate::slots::resolve(&mut after, live, profile).map_err(PromoteError::Refused)?;
        let options = PlanOptions {
            prune: false,
            ignore: after.environment.drift.ignore.clone(),
        };
        let mut plan = crate::rollouts::plan_without_metrics(&after, live, &options)
            .await
            .map_err(PromoteError::Refused)?;
        plan.notes.splice(0..0, notes);
        let branch = self.branch();
        self.repo
            .check_branch(&branch)
            .map_err(|e| PromoteError::Branch(format!("{e:#}")))?;
        let environment = self.before.environment.name.clone();
        let short = self.head.to_string()[..7].to_string();
        let inside = self
            .edit
            .path
            .strip_prefix(&self.env_dir)
            .unwrap_or(&self.edit.path);
        let file = self.repo.rel.join(inside);
        let message = message(&environment, &self.edit, &file, &plan, against, &short);
        let head = self.repo.repo.find_commit(self.head).map_err(repo_err)?;
        let id = self
            .repo
            .commit_on_branch(&branch, &head, self.tree, &message)
            .map_err(repo_err)?;
        let shown = file.display().to_string();
        let diff = TextDiff::from_lines(&self.edit.old_text, &self.edit.new_text)
            .unified_diff()
            .header(&format!("a/{shown}"), &format!("b/{shown}"))
            .to_string();
        let base = self
            .repo
            .repo
            .head()
            .ok()
            .filter(|h| h.is_branch())
            .and_then(|h| h.shorthand().ok().map(String::from));
        Ok(Promotion {
            environment,
            branch,
            commit: id.to_string(),
            base,
            edit: self.edit,
            file,
            diff,
            plan,
            message,
        })
    }
}

/// The commit message: the model, previous → new version, where, and the plan's summary.
fn message(
    env: &str,
    edit: &PromoteEdit,
    file: &Path,
    plan: &Plan,
    against: &str,
    head: &str,
) -> String {
    let mut out = format!(
        "promote {env}/{}: {}\n\nEndpoint {}, {}: {} set to {} (was {}) in {}:{}.\n",
        edit.endpoint,
        change(edit),
        edit.endpoint,
        subject(edit),
        edit.at,
        edit.new,
        edit.previous,
        file.display(),
        edit.line
    );
    out.push_str(&format!("\nPlan against {against}:\n"));
    for line in crate::plan::render::text(env, plan).lines() {
        out.push_str(&format!("  {line}\n"));
    }
    out.push_str(&format!("\nWritten by `flightdeck promote` from {head}.\n"));
    out
}
