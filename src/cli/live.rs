//! Where `plan`, `diff` and `export` get live state: a backend, a snapshot file, or the same
//! environment at another Git revision.

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::LiveArgs;
use crate::backend;
use crate::model::{DesiredState, LiveState};
use crate::source;
use crate::spec;

/// The file `flightdeck export` writes and `--live` reads.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportFile {
    /// Format version.
    pub version: u32,
    pub environment: String,
    /// `azureml`, `kubernetes` or `state_file`.
    pub target: String,
    pub live: LiveState,
}

pub fn read_snapshot(path: &Path) -> anyhow::Result<LiveState> {
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    let snapshot: ExportFile = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))?;
    if snapshot.version != 1 {
        bail!(
            "{}: snapshot version {} is not supported (expected 1)",
            path.display(),
            snapshot.version
        );
    }
    Ok(snapshot.live)
}

/// Reads the environment directory as it is at `rev` in the enclosing Git repository, or `None`
/// when the directory does not exist there (a new environment: everything is a change).
pub fn desired_at_rev(env_dir: &Path, rev: &str) -> anyhow::Result<Option<DesiredState>> {
    let abs = env_dir
        .canonicalize()
        .with_context(|| format!("{}", env_dir.display()))?;
    let repo = git2::Repository::discover(&abs)
        .with_context(|| format!("{} is not inside a Git repository", env_dir.display()))?;
    let workdir = repo
        .workdir()
        .ok_or_else(|| anyhow!("the repository has no work tree"))?
        .canonicalize()?;
    let rel = abs
        .strip_prefix(&workdir)
        .with_context(|| format!("{} is outside the repository", env_dir.display()))?;
    let commit = repo
        .revparse_single(rev)
        .and_then(|o| o.peel_to_commit())
        .with_context(|| format!("cannot resolve revision {rev}"))?;
    let root = commit.tree()?;
    let tree = if rel.as_os_str().is_empty() {
        root
    } else {
        match root.get_path(rel) {
            Ok(entry) => match entry.to_object(&repo)?.into_tree() {
                Ok(tree) => tree,
                Err(_) => bail!("{} is not a directory at {rev}", rel.display()),
            },
            Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    };
    // The same reader as the working tree and the agent: symlinks, hidden entries and limits
    // follow one policy, and sizes are checked from object headers before any blob is read.
    let files = source::read_git_tree(&repo, &tree, env_dir)
        .map_err(|e| anyhow!("the environment at {rev} is refused: {e}"))?;
    let desired =
        spec::load_tree(&files, env_dir, crate::backend::profile_of).map_err(|diagnostics| {
            InvalidAtRev {
                rev: rev.to_string(),
                diagnostics,
            }
        })?;
    Ok(Some(desired))
}

/// The environment at `--against-rev` does not load. Its problems are printed one per line
/// (each escaped by `Diagnostic`'s Display), then this one-line summary.
#[derive(Debug, thiserror::Error)]
#[error("the environment at {rev} is invalid ({} problems)", diagnostics.0.len())]
pub struct InvalidAtRev {
    pub rev: String,
    pub diagnostics: spec::Diagnostics,
}

/// `--against-rev` through the incremental loader: the work tree's desired state and the
/// revision's as live, each with only the endpoints that may differ.
pub struct AgainstRevSides {
    pub desired: Result<DesiredState, spec::Diagnostics>,
    pub live: anyhow::Result<LiveState>,
    /// Endpoints left out of both: the same at both revisions.
    pub unchanged: std::collections::BTreeSet<String>,
}

pub fn against_rev(env_dir: &Path, rev: &str) -> anyhow::Result<AgainstRevSides> {
    let loaded = source::incremental::load_against_rev(env_dir, rev, backend::profile_of)?;
    let load = loaded.load;
    let live = match load.old {
        None => Ok(LiveState::default()),
        Some(Ok(old)) => Ok(as_live(old)),
        Some(Err(diagnostics)) => Err(InvalidAtRev {
            rev: rev.to_string(),
            diagnostics,
        }
        .into()),
    };
    Ok(AgainstRevSides {
        desired: load.new,
        live,
        unchanged: load.unchanged,
    })
}

/// The old revision as it would be live once applied from nothing: its slot endpoints
/// resolved against an empty platform (the first slot holds the template).
fn as_live(mut old: DesiredState) -> LiveState {
    let profile = backend::profile_of(&old.environment.target);
    // Resolving against nothing refuses nothing: every slot is idle.
    let _ = crate::slots::resolve(&mut old, &LiveState::default(), profile);
    LiveState::from_desired(&old)
}

/// Live state per `--live`, `--against-rev`, or the environment's backend.
pub async fn live_state(
    args: &LiveArgs,
    desired: &DesiredState,
    env_dir: &Path,
) -> anyhow::Result<LiveState> {
    if let Some(path) = &args.live {
        return read_snapshot(path);
    }
    if let Some(rev) = &args.against_rev {
        // The old revision as it would be live once applied from nothing: its slot
        // endpoints resolved against an empty platform (the first slot holds the template).
        return Ok(desired_at_rev(env_dir, rev)?
            .map(as_live)
            .unwrap_or_default());
    }
    let config = super::backend_config(&args.backend)?;
    let backend = backend::connect(&desired.environment, env_dir, &config).await?;
    Ok(backend.read_live().await?)
}
