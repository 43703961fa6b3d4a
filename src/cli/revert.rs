//! `flightdeck revert ENV [ENDPOINT...]`: after a failed rollout the platform serves the
//! baseline while Git still declares the failed desired state (the endpoint is *held*). This
//! writes a commit that makes the YAML match what is live, on a new branch ready for a pull
//! request, without touching the checked-out branch, the index or the work tree. The result is
//! loaded by the same loader and planned against live before anything is written; it must be
//! valid and in sync for every reverted endpoint. Which endpoints and which file changes:
//! `revert_select.rs`; the Git side: `src/git_branch.rs`.

use std::path::{Path, PathBuf};

use clap::Args;
use similar::TextDiff;

use super::BackendArgs;
use super::commands::{ERROR, OK, fail, make_plan};
use super::revert_select::{Head, Item, What, items, message};
use crate::escape::Esc;
use crate::git_branch::{EnvRepo, id_short};
use crate::model::DesiredState;
use crate::plan::render::{self, Format};
use crate::rollout::revert_template::is_after_swap;
use crate::{backend, source, spec};

#[derive(Debug, Args)]
pub struct RevertArgs {
    /// The environment directory (environments/<env>), inside a Git work tree.
    pub env_dir: PathBuf,
    /// Only these endpoints (default: every endpoint held after a failed rollout). An endpoint
    /// named here is reverted when its declared traffic or mirror differ from live, held or not.
    pub endpoints: Vec<String>,
    /// The branch to create (default `flightdeck/revert-<env>-<short HEAD>`); it must not exist.
    #[arg(long, value_name = "NAME")]
    pub branch: Option<String>,
    /// The commit's first line (default `revert <env>: <endpoints> back to what is live`).
    #[arg(long, value_name = "TEXT")]
    pub message: Option<String>,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// Refuses with exit 2, saying why; nothing has been written.
fn refuse(why: impl std::fmt::Display) -> u8 {
    fail(format!("{why}; nothing was written"))
}

pub async fn revert(args: &RevertArgs) -> u8 {
    let repo = match EnvRepo::open(&args.env_dir) {
        Ok(r) => r,
        Err(e) => return refuse(e),
    };
    let head = match repo.head() {
        Ok(h) => h,
        Err(e) => return refuse(e),
    };
    match repo.dirty() {
        Ok(d) if d.is_empty() => {}
        Ok(d) => {
            return refuse(format!(
                "the environment's directory has uncommitted changes ({}); commit or stash them first, so that the revert is made from HEAD as it is",
                d.join(", ")
            ));
        }
        Err(e) => return refuse(e),
    }
    let env_dir = args.env_dir.as_path();
    let base = match head.tree() {
        Ok(t) => t,
        Err(e) => return refuse(e),
    };
    let Some((files, desired)) = load_at(&repo, &base, env_dir, "HEAD") else {
        return ERROR;
    };
    for name in &args.endpoints {
        if !desired.endpoints.contains_key(name) {
            return refuse(format!(
                "endpoint {name} is not declared in this environment"
            ));
        }
    }
    let config = match super::backend_config(&args.backend) {
        Ok(c) => c,
        Err(e) => return refuse(e),
    };
    let live = match backend::connect(&desired.environment, env_dir, &config).await {
        Ok(b) => match b.read_live().await {
            Ok(l) => l,
            Err(e) => return refuse(e),
        },
        Err(e) => return refuse(e),
    };
    let at_head = Head {
        repo: &repo,
        commit: &head,
        files: &files,
        desired: &desired,
        env_dir,
    };
    let reverts = match items(args, &at_head, &live) {
        Ok(r) if r.is_empty() => {
            return refuse(
                "nothing to revert: no endpoint is held after a failed rollout, and the endpoints named match live",
            );
        }
        Ok(r) => r,
        Err(e) => return refuse(e),
    };
    // The new tree, loaded and planned before anything is committed.
    let changes: Vec<(PathBuf, Option<Vec<u8>>)> = reverts
        .iter()
        .flat_map(|r| &r.changes)
        .map(|c| {
            let inside = c.path.strip_prefix(env_dir).unwrap_or(&c.path);
            (
                repo.rel.join(inside),
                c.new.as_ref().map(|t| t.as_bytes().to_vec()),
            )
        })
        .collect();
    let tree = match repo.tree_with(&base, &changes) {
        Ok(t) => t,
        Err(e) => return refuse(e),
    };
    let Ok(new_tree) = repo.repo.find_tree(tree) else {
        return refuse("the new tree cannot be read back");
    };
    let Some((_, mut reverted)) = load_at(&repo, &new_tree, env_dir, "the revert") else {
        return refuse("the reverted environment does not load");
    };
    let Ok(slot_notes) = super::commands::resolve_slots(&mut reverted, &live, Format::Text) else {
        return refuse("the plan of the reverted environment was refused");
    };
    let plan = match make_plan(&reverted, &live, &slot_notes, false, Format::Text).await {
        Ok(p) => p,
        Err(_) => return refuse("the plan of the reverted environment was refused"),
    };
    let names: Vec<&str> = reverts.iter().map(|r| r.endpoint.as_str()).collect();
    let unsettled: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| {
            plan.steps
                .iter()
                .any(|s| s.endpoint == *n && !after_swap(&desired, &reverts, s))
                || plan.rollouts.iter().any(|v| v.endpoint == *n)
        })
        .collect();
    if !unsettled.is_empty() {
        print!(
            "{}",
            render::render(Format::Text, &desired.environment.name, &plan)
        );
        return refuse(format!(
            "after the revert, the plan still changes {} (above); revert by hand",
            unsettled.join(", ")
        ));
    }
    let short = id_short(&head);
    let branch = args
        .branch
        .clone()
        .unwrap_or_else(|| format!("flightdeck/revert-{}-{short}", desired.environment.name));
    if let Err(e) = repo.check_branch(&branch) {
        return refuse(e);
    }
    let message = message(args, &desired.environment.name, &reverts, &short);
    let id = match repo.commit_on_branch(&branch, &head, tree, &message) {
        Ok(id) => id,
        Err(e) => return refuse(e),
    };
    println!("branch {}", Esc(&branch));
    println!("commit {id}");
    println!();
    for r in &reverts {
        for c in &r.changes {
            for line in unified(&repo.rel, env_dir, c).lines() {
                println!("{}", Esc(line));
            }
        }
    }
    println!();
    println!("plan of {} against live:", Esc(&branch));
    print!(
        "{}",
        render::render(Format::Text, &desired.environment.name, &plan)
    );
    println!(
        "Open a pull request from {} to make Git agree with the platform.",
        Esc(&branch)
    );
    OK
}

/// Whether `step` is a reverted slot endpoint's `after_swap` on its slot that does not serve.
fn after_swap(desired: &DesiredState, reverts: &[Item<'_>], step: &crate::plan::Step) -> bool {
    reverts.iter().any(
        |r| match (&r.what, desired.environment.slots.get(&r.endpoint)) {
            (What::Template { revert, .. }, Some(slots)) => {
                r.endpoint == step.endpoint && is_after_swap(slots, &revert.serving, &step.action)
            }
            _ => false,
        },
    )
}

/// The environment at `tree`, its files and its desired state; the problems are printed.
pub(super) fn load_at(
    repo: &EnvRepo,
    tree: &git2::Tree<'_>,
    env_dir: &Path,
    what: &str,
) -> Option<(source::FileMap, DesiredState)> {
    let sub = if repo.rel.as_os_str().is_empty() {
        tree.clone()
    } else {
        match tree
            .get_path(&repo.rel)
            .and_then(|e| repo.repo.find_tree(e.id()))
        {
            Ok(t) => t,
            Err(_) => {
                fail(format!("{} is not committed at {what}", repo.rel.display()));
                return None;
            }
        }
    };
    let files = match source::read_git_tree(&repo.repo, &sub, env_dir) {
        Ok(f) => f,
        Err(e) => {
            fail(format!("the environment at {what} is refused: {e}"));
            return None;
        }
    };
    match spec::load_tree(&files, env_dir, backend::profile_of) {
        Ok(d) => Some((files.files, d)),
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            fail(format!("the environment at {what} is invalid"));
            None
        }
    }
}

/// A unified diff of one file, paths from the repository root (`/dev/null` when removed).
fn unified(rel: &Path, env_dir: &Path, change: &crate::rollout::revert::FileChange) -> String {
    let inside = change.path.strip_prefix(env_dir).unwrap_or(&change.path);
    let path = rel.join(inside).display().to_string();
    let new = change.new.as_deref().unwrap_or("");
    let old = change.old.as_deref().unwrap_or("");
    let side = |present: bool, prefix: &str| {
        if present {
            format!("{prefix}/{path}")
        } else {
            "/dev/null".into()
        }
    };
    TextDiff::from_lines(old, new)
        .unified_diff()
        .header(
            &side(change.old.is_some(), "a"),
            &side(change.new.is_some(), "b"),
        )
        .to_string()
}
