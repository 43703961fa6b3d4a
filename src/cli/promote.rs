//! `flightdeck promote ENV_DIR ENDPOINT --model NAME:VERSION | --image IMAGE`: one deployment's
//! model version (or image) changed in place, the result validated and planned, and committed on
//! a new branch (`crate::promote`); then optionally pushed (`--push`) and proposed as a pull
//! request (`--open-pr`). Exit 0 done; 2 refused, nothing written; 1 committed, but the push or
//! the pull request failed (the branch is kept). docs/promotion.md.

use std::path::PathBuf;

use clap::Args;

use super::BackendArgs;
use super::commands::{OK, fail};
use crate::escape::Esc;
use crate::hosting::{Hosting, NewPullRequest, Provider};
use crate::plan::render;
use crate::promote::{self, PromoteError, PromoteRequest, Promotion};
use crate::source::{GitAuth, Secret};
use crate::spec::promote::Artifact;

/// Exit code when the commit is written but the push or the pull request failed.
const PUBLISH_FAILED: u8 = 1;

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("artifact").required(true).args(["model", "image"])))]
pub struct PromoteArgs {
    /// The environment directory (environments/<env>), inside a Git work tree.
    pub env_dir: PathBuf,
    /// The endpoint whose deployment (or slot template) gets the new version.
    pub endpoint: String,
    /// The deployment to change; required when the endpoint declares several (and has no slots).
    #[arg(long, value_name = "NAME")]
    pub deployment: Option<String>,
    /// The registered model version: `NAME:VERSION` or `azureml:NAME:VERSION`.
    #[arg(long, value_name = "NAME:VERSION")]
    pub model: Option<String>,
    /// A container image instead (`image`, `environment.image` or `environment.docker.image`).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// The branch to create (default `flightdeck/promote-<env>-<endpoint>-<version>`).
    #[arg(long, value_name = "NAME")]
    pub branch: Option<String>,
    /// Plan against HEAD's environment (as `plan --against-rev HEAD`) instead of live: no
    /// platform access or credentials needed.
    #[arg(long)]
    pub offline: bool,
    /// Push the new branch (never forced) with the agent's Git credentials.
    #[arg(long)]
    pub push: bool,
    /// With --push: a remote name or URL.
    #[arg(long, value_name = "NAME|URL", default_value = "origin")]
    pub remote: String,
    /// File holding an HTTPS token for the push (or set FLIGHTDECK_GIT_TOKEN), as the agent.
    #[arg(long, env = "FLIGHTDECK_GIT_TOKEN_FILE", value_name = "FILE")]
    pub git_token_file: Option<PathBuf>,
    /// Unencrypted SSH private key for ssh:// and git@host: remotes.
    #[arg(long, env = "FLIGHTDECK_SSH_KEY_FILE", value_name = "FILE")]
    pub ssh_key_file: Option<PathBuf>,
    /// known_hosts file, required for SSH remotes.
    #[arg(long, env = "FLIGHTDECK_KNOWN_HOSTS", value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Open a pull request from the pushed branch (needs --push).
    #[arg(long, value_enum, value_name = "PROVIDER", requires = "push")]
    pub open_pr: Option<Provider>,
    /// The repository on the provider (GitHub OWNER/REPO, GitLab GROUP/PROJECT, Azure DevOps
    /// ORG/PROJECT/REPO); default: from the remote's URL on github.com, gitlab.com or
    /// dev.azure.com.
    #[arg(long, value_name = "COORDINATES")]
    pub pr_repo: Option<String>,
    /// The provider's API base (GitHub Enterprise `https://HOST/api/v3`, self-managed GitLab
    /// `https://HOST/api/v4`); default the public service's.
    #[arg(long, value_name = "URL")]
    pub pr_api: Option<String>,
    /// The branch the pull request merges into (default: the branch checked out).
    #[arg(long, value_name = "BRANCH")]
    pub pr_base: Option<String>,
    /// File holding the provider's API token (or set FLIGHTDECK_PR_TOKEN).
    #[arg(long, env = "FLIGHTDECK_PR_TOKEN_FILE", value_name = "FILE")]
    pub pr_token_file: Option<PathBuf>,
    #[command(flatten)]
    pub backend: BackendArgs,
}

fn refuse(why: impl std::fmt::Display) -> u8 {
    fail(format!("{why}; nothing was written"))
}

fn secret(file: &Option<PathBuf>, var: &str) -> Result<Option<Secret>, String> {
    match file {
        Some(path) => Secret::from_file(path).map(Some).map_err(|e| e.to_string()),
        None => Ok(std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .map(Secret::new)),
    }
}

/// Everything checked before anything is written: flags, token files, PR coordinates.
struct Publish {
    auth: GitAuth,
    hosting: Option<(Hosting, Option<String>)>,
}

fn publish_settings(args: &PromoteArgs) -> Result<Option<Publish>, String> {
    if !args.push {
        return Ok(None);
    }
    let auth = GitAuth {
        token: secret(&args.git_token_file, "FLIGHTDECK_GIT_TOKEN")?,
        ssh_key: args.ssh_key_file.clone(),
        known_hosts: args.known_hosts.clone(),
    };
    let Some(provider) = args.open_pr else {
        return Ok(Some(Publish {
            auth,
            hosting: None,
        }));
    };
    let token = secret(&args.pr_token_file, "FLIGHTDECK_PR_TOKEN")?.ok_or_else(|| {
        "--open-pr needs the provider's API token: --pr-token-file FILE or FLIGHTDECK_PR_TOKEN"
            .to_string()
    })?;
    let repo = match &args.pr_repo {
        Some(r) => r.clone(),
        None => {
            let url = git2::Repository::discover(&args.env_dir)
                .ok()
                .and_then(|r| promote::push::remote_url(&r, &args.remote).ok());
            url.as_deref()
                .and_then(|u| provider.repo_from_url(u))
                .ok_or_else(|| {
                    format!(
                        "--open-pr: the repository cannot be told from remote {}; pass --pr-repo {}",
                        args.remote,
                        provider.repo_form()
                    )
                })?
        }
    };
    let hosting = Hosting {
        provider,
        api: args
            .pr_api
            .clone()
            .unwrap_or_else(|| provider.default_api().to_string()),
        repo,
        token,
    };
    Ok(Some(Publish {
        auth,
        hosting: Some((hosting, args.pr_base.clone())),
    }))
}

pub async fn promote(args: &PromoteArgs) -> u8 {
    let artifact = match (&args.model, &args.image) {
        (Some(m), _) => match Artifact::model(m) {
            Ok(a) => a,
            Err(e) => return refuse(e),
        },
        (None, Some(i)) if !i.trim().is_empty() && !i.chars().any(char::is_whitespace) => {
            Artifact::Image(i.clone())
        }
        (None, Some(i)) => return refuse(format!("`{i}` is not an image reference")),
        (None, None) => return refuse("pass --model NAME:VERSION or --image IMAGE"),
    };
    let publish = match publish_settings(args) {
        Ok(p) => p,
        Err(e) => return refuse(e),
    };
    let request = PromoteRequest {
        env_dir: args.env_dir.clone(),
        endpoint: args.endpoint.clone(),
        deployment: args.deployment.clone(),
        artifact,
        branch: args.branch.clone(),
    };
    let prepared = match promote::prepare(&request) {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    let (live, against) = if args.offline {
        (prepared.head_as_live(), "HEAD (offline)")
    } else {
        let config = match super::backend_config(&args.backend) {
            Ok(c) => c,
            Err(e) => return refuse(e),
        };
        let env = &prepared.before.environment;
        let live = match crate::backend::connect(env, &args.env_dir, &config).await {
            Ok(b) => b.read_live().await,
            Err(e) => return refuse(e),
        };
        match live {
            Ok(l) => (l, "live"),
            Err(e) => return refuse(e),
        }
    };
    let promotion = match prepared.commit(&live, against).await {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    show(&promotion, against);
    let Some(publish) = publish else {
        return OK;
    };
    let Ok(repo) = git2::Repository::discover(&args.env_dir) else {
        return fail("the repository cannot be opened again to push");
    };
    let remote = args.remote.clone();
    let branch = promotion.branch.clone();
    let auth = publish.auth.clone();
    let pushed =
        tokio::task::spawn_blocking(move || crate::promote::push(&repo, &remote, &branch, &auth))
            .await;
    match pushed {
        Ok(Ok(url)) => println!("pushed {} to {}", Esc(&promotion.branch), Esc(&url)),
        Ok(Err(e)) => return publish_failed(&promotion, e),
        Err(e) => return publish_failed(&promotion, e),
    }
    let Some((hosting, base)) = publish.hosting else {
        return OK;
    };
    let Some(base) = base.or(promotion.base.clone()) else {
        return publish_failed(
            &promotion,
            "HEAD is on no branch: pass --pr-base BRANCH for the pull request",
        );
    };
    let pr = NewPullRequest {
        title: promotion
            .message
            .lines()
            .next()
            .unwrap_or_default()
            .to_string(),
        body: pr_body(&promotion, against),
        head: promotion.branch.clone(),
        base,
    };
    match hosting.open_or_get(&pr).await {
        Ok(opened) if opened.existed => {
            println!(
                "pull request #{} is already open for {}: {}",
                opened.number,
                Esc(&promotion.branch),
                Esc(&opened.url)
            );
            OK
        }
        Ok(opened) => {
            println!(
                "opened pull request #{}: {}",
                opened.number,
                Esc(&opened.url)
            );
            OK
        }
        Err(e) => publish_failed(&promotion, e),
    }
}

fn refused(e: PromoteError) -> u8 {
    if let PromoteError::Invalid { diagnostics, .. } = &e {
        eprintln!("{diagnostics}");
    }
    refuse(e)
}

fn publish_failed(p: &Promotion, e: impl std::fmt::Display) -> u8 {
    fail(format!(
        "{e}; the commit is on local branch {} (push it by hand, or delete it with `git branch -D {}`)",
        p.branch, p.branch
    ));
    PUBLISH_FAILED
}

fn show(p: &Promotion, against: &str) {
    println!(
        "promote {}/{}: {}: {}",
        Esc(&p.environment),
        Esc(&p.edit.endpoint),
        Esc(&promote::subject(&p.edit)),
        Esc(&p.change())
    );
    println!(
        "  {}:{} {}",
        Esc(&p.file.display().to_string()),
        p.edit.line,
        Esc(&p.edit.at)
    );
    println!();
    for line in p.diff.lines() {
        println!("{}", Esc(line));
    }
    println!();
    println!("plan against {against}:");
    print!("{}", render::text(&p.environment, &p.plan));
    println!();
    println!("branch {}", Esc(&p.branch));
    println!("commit {}", p.commit);
}

/// The pull request's body: what changes, then the plan in markdown.
fn pr_body(p: &Promotion, against: &str) -> String {
    let model = match &p.edit.model {
        Some(m) => format!("model `{m}` version {} → {}", p.edit.previous, p.edit.new),
        None => format!("image `{}` → `{}`", p.edit.previous, p.edit.new),
    };
    format!(
        "Promotes {model} in endpoint `{}` ({}), `{}:{}`.\n\n{}\nPlan against {against}, written by `flightdeck promote` ({}).\n",
        Esc(&p.edit.endpoint),
        Esc(&promote::subject(&p.edit)),
        Esc(&p.file.display().to_string()),
        p.edit.line,
        render::markdown(&p.environment, &p.plan),
        &p.commit[..7.min(p.commit.len())]
    )
}
