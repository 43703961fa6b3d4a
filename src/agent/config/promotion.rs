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

impl PromotionConfig {
    /// How the client authenticates.
    pub fn client_auth(&self) -> &MlflowAuth {
        self.client.auth()
    }
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

#[cfg(test)]
mod tests {
    use super::super::{AgentArgs, parse_file, resolve as resolve_all};
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        agent: AgentArgs,
    }

    fn file(text: &str) -> FileConfig {
        parse_file(Path::new("agent.yaml"), text).unwrap()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn mlflow_settings_layer_flags_over_file_and_secrets_stay_hidden() {
        let f = file("repo: https://github.com/acme/ml.git\npath: [e]\n");
        let none = resolve_all(&AgentArgs::default(), &f, &no_env).unwrap();
        assert!(none.promotion.is_none(), "off without --mlflow-uri");

        let dir = tempfile::tempdir().unwrap();
        let hook = dir.path().join("hook");
        std::fs::write(&hook, "hook-s3cret\n").unwrap();
        let f = file(&format!(
            "repo: https://github.com/acme/ml.git\npath: [e]\nmlflow-uri: http://mlflow:5000\npromotion-interval: 5m\nmlflow-webhook-secret-file: {}\npr-provider: github\n",
            hook.display()
        ));
        let env = |k: &str| match k {
            "MLFLOW_TRACKING_TOKEN" => Some("mlflow-t0ken".to_string()),
            "FLIGHTDECK_PR_TOKEN" => Some("pr-t0ken".to_string()),
            _ => None,
        };
        let flag = Cli::parse_from(["x", "--promotion-interval", "30s"]).agent;
        let c = resolve_all(&flag, &f, &env).unwrap();
        let p = c.promotion.as_ref().expect("promotion on");
        assert_eq!(p.interval, Duration::from_secs(30), "flag over file");
        assert_eq!(p.client.base().as_str(), "http://mlflow:5000/");
        assert!(matches!(p.client_auth(), MlflowAuth::Bearer(t) if t.expose() == "mlflow-t0ken"));
        assert_eq!(p.webhook_secret.as_ref().unwrap().expose(), "hook-s3cret");
        let hosting = p.hosting.as_ref().unwrap();
        assert_eq!(hosting.repo, "acme/ml", "from the repository URL");
        assert_eq!(p.branch, "main");
        let debug = format!("{c:?}");
        for secret in ["hook-s3cret", "mlflow-t0ken", "pr-t0ken"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        let defaults = file("repo: r\npath: [e]\nmlflow-uri: http://m\n");
        let c = resolve_all(&AgentArgs::default(), &defaults, &no_env).unwrap();
        assert_eq!(c.promotion.unwrap().interval, DEFAULT_PROMOTION_INTERVAL);
    }

    #[test]
    fn mlflow_promotion_refuses_a_working_directory_a_pinned_rev_and_mixed_credentials() {
        let err = |text: &str, env: &dyn Fn(&str) -> Option<String>| {
            resolve_all(&AgentArgs::default(), &file(text), env)
                .unwrap_err()
                .to_string()
        };
        let base = "repo: r\npath: [e]\nmlflow-uri: http://m\n";
        assert!(
            err(&format!("{base}watch-local: true\n"), &no_env)
                .contains("needs a git source that follows a branch"),
        );
        assert!(err(&format!("{base}rev: v1\n"), &no_env).contains("needs a git source"));
        let both = |k: &str| {
            matches!(k, "MLFLOW_TRACKING_TOKEN" | "MLFLOW_TRACKING_USERNAME")
                .then(|| "x".to_string())
        };
        assert!(err(base, &both).contains("not both"));
        let user = |k: &str| (k == "MLFLOW_TRACKING_USERNAME").then(|| "u".to_string());
        assert!(err(base, &user).contains("without a password"));
        assert!(
            err(
                &format!("{base}mlflow-uri: http://u:p@m\n").replace("mlflow-uri: http://m\n", ""),
                &no_env
            )
            .contains("without a user name or password")
        );
        assert!(err(&format!("{base}pr-provider: github\n"), &no_env).contains("--pr-repo"));
        assert!(
            err(&format!("{base}pr-provider: forgejo\n"), &no_env)
                .contains("expected github, gitlab or azure-devops")
        );
        assert!(
            err(&format!("{base}promotion-interval: 10ms\n"), &no_env).contains("at least 100ms")
        );
        let basic = |k: &str| match k {
            "MLFLOW_TRACKING_USERNAME" => Some("u".to_string()),
            "MLFLOW_TRACKING_PASSWORD" => Some("pw".to_string()),
            _ => None,
        };
        let c = resolve_all(&AgentArgs::default(), &file(base), &basic).unwrap();
        assert!(
            matches!(c.promotion.unwrap().client_auth(), MlflowAuth::Basic { username, .. } if username == "u")
        );
    }
}
