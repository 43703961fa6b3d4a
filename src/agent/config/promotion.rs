//! The MLflow promotion settings of the agent (`--mlflow-*`, `--promotion-interval`, `--pr-*`),
//! laid flag/env over file over default like every other setting. Secrets come from a file or
//! a variable and are never printed: MLflow's own `MLFLOW_TRACKING_TOKEN`,
//! `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD` [MLFLOW A8],
//! `FLIGHTDECK_MLFLOW_WEBHOOK_SECRET`, `FLIGHTDECK_PR_TOKEN`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ValueEnum;
use sha2::{Digest, Sha256};

use super::validate::read_secret;
use super::{AgentArgs, ConfigError, FileConfig, SourceKind};
use crate::hosting::{Hosting, Provider};
use crate::mlflow::{MlflowAuth, MlflowClient};
use crate::source::{GitAuth, GitRef, Secret};

/// The poll backstop's default period.
pub const DEFAULT_PROMOTION_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct PromotionConfig {
    pub client: MlflowClient,
    /// Enables `POST /mlflow/webhook`.
    pub webhook_secret: Option<Secret>,
    pub interval: Duration,
    pub hosting: Option<Hosting>,
    /// The agent's own clone, where promotions are committed.
    pub work_dir: PathBuf,
    pub url: String,
    pub branch: String,
    pub auth: GitAuth,
}

fn secret(
    file: Option<PathBuf>,
    var: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, ConfigError> {
    match file {
        Some(path) => read_secret(&path).map(Some),
        None => Ok(env(var).map(Secret::new).filter(|s| !s.is_empty())),
    }
}

pub fn resolve(
    args: &AgentArgs,
    file: &FileConfig,
    env: &dyn Fn(&str) -> Option<String>,
    source: &SourceKind,
) -> Result<Option<PromotionConfig>, ConfigError> {
    fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
        a.clone().or_else(|| b.clone())
    }
    let Some(uri) = pick(&args.mlflow_uri, &file.mlflow_uri) else {
        return Ok(None);
    };
    let (url, branch, cache_dir, git_auth) = match source {
        SourceKind::Git {
            url,
            reference: GitRef::Branch(branch),
            cache_dir,
            auth,
        } => (url.clone(), branch.clone(), cache_dir.clone(), auth.clone()),
        _ => {
            return Err(ConfigError::Invalid(
                "--mlflow-uri needs a git source that follows a branch (--repo URL [--branch NAME]): promotions are commits pushed to it, not edits of a --watch-local directory or a pinned --rev".into(),
            ));
        }
    };
    let token = secret(
        pick(&args.mlflow_token_file, &file.mlflow_token_file),
        "MLFLOW_TRACKING_TOKEN",
        env,
    )?;
    let username = pick(&args.mlflow_username, &file.mlflow_username)
        .or_else(|| env("MLFLOW_TRACKING_USERNAME"))
        .filter(|u| !u.is_empty());
    let password = secret(
        pick(&args.mlflow_password_file, &file.mlflow_password_file),
        "MLFLOW_TRACKING_PASSWORD",
        env,
    )?;
    let auth = match (token, username, password) {
        (Some(_), Some(_), _) => {
            return Err(ConfigError::Invalid(
                "MLflow: give a token or a user name and password, not both".into(),
            ));
        }
        (Some(token), None, _) => MlflowAuth::Bearer(token),
        (None, Some(username), Some(password)) => MlflowAuth::Basic { username, password },
        (None, Some(_), None) => {
            return Err(ConfigError::Invalid(
                "MLflow user name without a password: --mlflow-password-file FILE or MLFLOW_TRACKING_PASSWORD".into(),
            ));
        }
        (None, None, _) => MlflowAuth::None,
    };
    let client = MlflowClient::new(&uri, auth).map_err(|e| ConfigError::Invalid(e.to_string()))?;
    let webhook_secret = secret(
        pick(
            &args.mlflow_webhook_secret_file,
            &file.mlflow_webhook_secret_file,
        ),
        "FLIGHTDECK_MLFLOW_WEBHOOK_SECRET",
        env,
    )?;
    let interval = args
        .promotion_interval
        .map(Duration::from)
        .or(file.promotion_interval)
        .unwrap_or(DEFAULT_PROMOTION_INTERVAL);
    if interval < Duration::from_millis(100) {
        return Err(ConfigError::Invalid(
            "promotion-interval must be at least 100ms".into(),
        ));
    }
    let hosting = hosting(args, file, env, &url)?;
    Ok(Some(PromotionConfig {
        client,
        webhook_secret,
        interval,
        hosting,
        work_dir: work_dir(&cache_dir, &url, &branch),
        url,
        branch,
        auth: git_auth,
    }))
}

/// One work tree per repository and branch under the cache directory.
fn work_dir(cache_dir: &Path, url: &str, branch: &str) -> PathBuf {
    let digest = Sha256::digest(format!("{url}\n{branch}").as_bytes());
    let key: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    cache_dir.join(format!("promotion-{key}"))
}

fn hosting(
    args: &AgentArgs,
    file: &FileConfig,
    env: &dyn Fn(&str) -> Option<String>,
    url: &str,
) -> Result<Option<Hosting>, ConfigError> {
    let provider = match (&args.pr_provider, &file.pr_provider) {
        (Some(p), _) => *p,
        (None, Some(text)) => Provider::from_str(text, true).map_err(|_| {
            ConfigError::Invalid(format!(
                "pr-provider `{text}`: expected github, gitlab or azure-devops"
            ))
        })?,
        (None, None) => return Ok(None),
    };
    let repo = args
        .pr_repo
        .clone()
        .or_else(|| file.pr_repo.clone())
        .or_else(|| provider.repo_from_url(url))
        .ok_or_else(|| {
            ConfigError::Invalid(format!(
                "--pr-provider needs --pr-repo {} (the repository URL does not name it)",
                provider.repo_form()
            ))
        })?;
    let token = secret(
        args.pr_token_file.clone().or_else(|| file.pr_token_file.clone()),
        "FLIGHTDECK_PR_TOKEN",
        env,
    )?
    .ok_or_else(|| {
        ConfigError::Invalid(
            "--pr-provider needs the provider's API token: --pr-token-file FILE or FLIGHTDECK_PR_TOKEN".into(),
        )
    })?;
    Ok(Some(Hosting {
        provider,
        api: args
            .pr_api
            .clone()
            .or_else(|| file.pr_api.clone())
            .unwrap_or_else(|| provider.default_api().to_string()),
        repo,
        token,
    }))
}
