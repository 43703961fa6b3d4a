//! Agent configuration in two stages: the raw layers (flags, `FLIGHTDECK_*` variables, a YAML
//! file) and the resolved [`AgentConfig`]. Precedence: flag > env > file > default; clap already
//! merges flag over env, [`layer::resolve`] lays the result over the file. The log format is the
//! global `--log-format` flag (`FLIGHTDECK_LOG_FORMAT`), set up by `main` before the agent starts.
//!
//! - this file: the flags ([`AgentArgs`]) and the resolved types;
//! - [`file`]: the `--config` file, read with the located YAML loader (`path:line:col`);
//! - [`layer`]: flags/env over the file over defaults;
//! - [`validate`]: checks of single settings (repository, branch/rev, secrets).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::backend::{BackendConfig, BackendConfigError};
use crate::cli::BackendArgs;
use crate::source::{GitAuth, GitRef, Secret};
use crate::spec::Diagnostics;

pub mod file;
pub mod layer;
pub mod promotion;
pub mod validate;

pub use file::{FileConfig, load_file, parse_file};
pub use layer::resolve;
pub use validate::check_repository;

/// `flightdeck agent` options. Every option can also come from a `FLIGHTDECK_*` variable or
/// from the `--config` YAML file (same names, e.g. `webhook-secret-file: /etc/...`).
#[derive(clap::Args, Clone, Debug, Default, PartialEq)]
pub struct AgentArgs {
    /// YAML file with the same keys as the flags.
    #[arg(long, env = "FLIGHTDECK_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Repository URL (https, ssh) or a local path.
    #[arg(long, env = "FLIGHTDECK_REPO", value_name = "URL|PATH")]
    pub repo: Option<String>,
    /// Branch to follow (default: main).
    #[arg(long, env = "FLIGHTDECK_BRANCH", conflicts_with = "rev")]
    pub branch: Option<String>,
    /// Tag or commit to pin instead of following a branch.
    #[arg(long, env = "FLIGHTDECK_REV")]
    pub rev: Option<String>,
    /// Environment directory in the repository; repeat for several (env: comma-separated).
    #[arg(
        long = "path",
        env = "FLIGHTDECK_PATH",
        value_delimiter = ',',
        value_name = "DIR"
    )]
    pub paths: Vec<PathBuf>,
    /// Poll interval (humantime: 60s, 5m); ±10% jitter is added.
    #[arg(long, env = "FLIGHTDECK_INTERVAL")]
    pub interval: Option<humantime::Duration>,
    /// Every how long a tick reads and plans every endpoint (default 10m); the ticks between
    /// reconcile only the endpoints whose desired state changed or that a rollout keeps busy.
    /// `0s`: every tick is full.
    #[arg(long, env = "FLIGHTDECK_FULL_RESYNC_INTERVAL")]
    pub full_resync_interval: Option<humantime::Duration>,
    /// Endpoints of one environment applied in parallel (1-256, default 8; steps of one
    /// endpoint always run one at a time), as `flightdeck apply --concurrency`.
    #[arg(long, env = "FLIGHTDECK_CONCURRENCY", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: Option<u16>,
    /// Address of the webhook, health and metrics server.
    #[arg(long, env = "FLIGHTDECK_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// File holding the webhook secret (GitHub HMAC key / GitLab token).
    #[arg(long, env = "FLIGHTDECK_WEBHOOK_SECRET_FILE", value_name = "FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Only the holder of a Kubernetes Lease applies.
    #[arg(long, env = "FLIGHTDECK_LEADER_ELECT", num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: Option<bool>,
    /// With --leader-elect: name of the coordination.k8s.io Lease (default: flightdeck-agent).
    #[arg(long, env = "FLIGHTDECK_LEASE_NAME")]
    pub lease_name: Option<String>,
    /// With --leader-elect: namespace of the Lease (default: the service account's, else default).
    #[arg(long, env = "FLIGHTDECK_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// With --leader-elect: this replica's base URL, which the leader publishes on the Lease so a
    /// standby can pass webhook pushes on to it (default `http://$POD_IP:<listen port>`).
    #[arg(long, env = "FLIGHTDECK_ADVERTISE_URL", value_name = "URL")]
    pub advertise_url: Option<String>,
    /// File holding a token the dashboard (`/`, `/dashboard/...`) asks for (or set
    /// FLIGHTDECK_DASHBOARD_TOKEN); without one it is served like `/status`.
    #[arg(long, env = "FLIGHTDECK_DASHBOARD_TOKEN_FILE", value_name = "FILE")]
    pub dashboard_token_file: Option<PathBuf>,
    /// Dashboard: link commits through this template (`https://github.com/o/r/commit/{sha}`).
    #[arg(long, env = "FLIGHTDECK_COMMIT_URL", value_name = "TEMPLATE")]
    pub commit_url: Option<String>,
    /// Where the bare repository cache lives.
    #[arg(long, env = "FLIGHTDECK_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// File holding an HTTPS token (or set FLIGHTDECK_GIT_TOKEN).
    #[arg(long, env = "FLIGHTDECK_GIT_TOKEN_FILE", value_name = "FILE")]
    pub git_token_file: Option<PathBuf>,
    /// Unencrypted SSH private key for ssh:// and git@host: repositories.
    #[arg(long, env = "FLIGHTDECK_SSH_KEY_FILE", value_name = "FILE")]
    pub ssh_key_file: Option<PathBuf>,
    /// known_hosts file, required for SSH: host keys are always checked (unhashed entries only).
    #[arg(long, env = "FLIGHTDECK_KNOWN_HOSTS", value_name = "FILE")]
    pub known_hosts: Option<PathBuf>,
    /// Public keys commits must be signed with: SSH (authorized_keys or allowed_signers format)
    /// or OpenPGP (`gpg --export [--armor]`) files.
    #[arg(
        long,
        env = "FLIGHTDECK_VERIFY_KEYS",
        value_delimiter = ',',
        value_name = "FILE"
    )]
    pub verify_keys: Vec<PathBuf>,
    /// Read `--repo` as a working directory and reconcile when a file under a --path changes
    /// (development).
    #[arg(long, env = "FLIGHTDECK_WATCH_LOCAL", num_args = 0..=1, default_missing_value = "true")]
    pub watch_local: Option<bool>,
    /// HTTP server: time a client has to send a request's headers, from the moment it
    /// connects or its previous response was sent (default 10s).
    #[arg(long, env = "FLIGHTDECK_HTTP_HEADER_TIMEOUT", value_name = "DURATION")]
    pub http_header_timeout: Option<humantime::Duration>,
    /// HTTP server: time a client has to send a webhook body once its headers arrived
    /// (default 30s).
    #[arg(long, env = "FLIGHTDECK_HTTP_BODY_TIMEOUT", value_name = "DURATION")]
    pub http_body_timeout: Option<humantime::Duration>,
    /// HTTP server: connections served at once; more wait in the listen backlog (default 256).
    #[arg(long, env = "FLIGHTDECK_HTTP_MAX_CONNECTIONS", value_name = "N")]
    pub http_max_connections: Option<usize>,
    /// MLflow tracking server whose registry aliases `promotion:` sections follow (enables
    /// MLflow promotions; needs a git source following a branch).
    #[arg(long, env = "FLIGHTDECK_MLFLOW_URI", value_name = "URL")]
    pub mlflow_uri: Option<String>,
    /// File holding an MLflow bearer token (or set MLFLOW_TRACKING_TOKEN).
    #[arg(long, env = "FLIGHTDECK_MLFLOW_TOKEN_FILE", value_name = "FILE")]
    pub mlflow_token_file: Option<PathBuf>,
    /// MLflow basic-auth user name (or set MLFLOW_TRACKING_USERNAME); the password from
    /// --mlflow-password-file or MLFLOW_TRACKING_PASSWORD.
    #[arg(long, env = "FLIGHTDECK_MLFLOW_USERNAME")]
    pub mlflow_username: Option<String>,
    /// File holding the MLflow basic-auth password (or set MLFLOW_TRACKING_PASSWORD).
    #[arg(long, env = "FLIGHTDECK_MLFLOW_PASSWORD_FILE", value_name = "FILE")]
    pub mlflow_password_file: Option<PathBuf>,
    /// File holding the MLflow webhook secret (or set FLIGHTDECK_MLFLOW_WEBHOOK_SECRET); enables
    /// `POST /mlflow/webhook`.
    #[arg(
        long,
        env = "FLIGHTDECK_MLFLOW_WEBHOOK_SECRET_FILE",
        value_name = "FILE"
    )]
    pub mlflow_webhook_secret_file: Option<PathBuf>,
    /// How often every mapped alias is read from the registry, the backstop for lost webhooks
    /// (default 60s).
    #[arg(long, env = "FLIGHTDECK_PROMOTION_INTERVAL")]
    pub promotion_interval: Option<humantime::Duration>,
    /// Where `mode: pull_request` promotions open pull requests.
    #[arg(long, env = "FLIGHTDECK_PR_PROVIDER", value_enum)]
    pub pr_provider: Option<crate::hosting::Provider>,
    /// The repository on the provider (OWNER/REPO, GROUP/PROJECT, ORG/PROJECT/REPO); default:
    /// from --repo when it is on github.com, gitlab.com or dev.azure.com.
    #[arg(long, env = "FLIGHTDECK_PR_REPO")]
    pub pr_repo: Option<String>,
    /// The provider's API base URL (default: the public one).
    #[arg(long, env = "FLIGHTDECK_PR_API", value_name = "URL")]
    pub pr_api: Option<String>,
    /// File holding the provider's API token (or set FLIGHTDECK_PR_TOKEN).
    #[arg(long, env = "FLIGHTDECK_PR_TOKEN_FILE", value_name = "FILE")]
    pub pr_token_file: Option<PathBuf>,
    /// Where the platform is and the backend's timing knobs (`--arm-endpoint`,
    /// `--test-request-timeout`, ...), as for `flightdeck apply`.
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Every problem of the `--config` file, one `path:line:col: message` per line.
    #[error("{0}")]
    File(Diagnostics),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Backend(#[from] BackendConfigError),
}

/// Where the desired state comes from.
#[derive(Clone, Debug)]
pub enum SourceKind {
    Git {
        url: String,
        reference: GitRef,
        cache_dir: PathBuf,
        auth: GitAuth,
    },
    Local {
        root: PathBuf,
    },
}

#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// This replica's base URL (`http://POD_IP:PORT`) for webhooks a standby passes on.
    pub advertise_url: Option<String>,
}

/// Limits of the agent's HTTP server against slow or idle clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// A connection that has not sent a complete request head within this time (after
    /// connecting, or after its previous response) is closed.
    pub header_timeout: Duration,
    /// A webhook body that has not fully arrived within this time gets 408.
    pub body_timeout: Duration,
    /// Connections served at once; further ones wait in the kernel's listen backlog.
    pub max_connections: usize,
}

impl Default for HttpLimits {
    /// 10 s for headers, 30 s for a body, 256 connections.
    fn default() -> HttpLimits {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 256,
        }
    }
}

/// Resolved configuration.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub source: SourceKind,
    pub paths: Vec<PathBuf>,
    pub interval: Duration,
    /// Every how long a tick is a full resync (`--full-resync-interval`); zero: every tick.
    pub full_resync: Duration,
    /// Endpoints of one environment applied in parallel (`--concurrency`).
    pub concurrency: usize,
    pub listen: SocketAddr,
    pub webhook_secret: Option<Secret>,
    /// The dashboard's token and commit link template.
    pub dashboard: DashboardSettings,
    pub lease: Option<LeaseSettings>,
    pub verify_keys: Vec<PathBuf>,
    pub http: HttpLimits,
    /// How `backend::connect` reaches the platforms (flags > env > file keys).
    pub backend: BackendConfig,
    /// MLflow promotions (`--mlflow-uri`).
    pub promotion: Option<promotion::PromotionConfig>,
}

/// `--dashboard-token-file`, `--commit-url`.
#[derive(Clone, Debug, Default)]
pub struct DashboardSettings {
    pub token: Option<Secret>,
    pub commit_url: Option<String>,
}

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Endpoints of one environment applied in parallel when nothing says otherwise.
pub const DEFAULT_CONCURRENCY: usize = 8;
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_LEASE_NAME: &str = "flightdeck-agent";

impl AgentArgs {
    /// Reads the `--config` file (if any) and resolves the layers. `env` looks up the variables
    /// that are never flags: secrets (`FLIGHTDECK_GIT_TOKEN`, `FLIGHTDECK_WEBHOOK_SECRET`, the
    /// Azure credential variables) and `POD_IP`.
    pub fn resolve(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AgentConfig, ConfigError> {
        let file = match &self.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let config = resolve(self, &file, env)?;
        check_repository(&config.source)?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        agent: AgentArgs,
    }

    #[test]
    fn every_agent_flag_has_a_help_text() {
        use clap::CommandFactory;
        let command = Cli::command();
        let missing: Vec<String> = command
            .get_arguments()
            .filter(|a| a.get_long().is_some() && a.get_long() != Some("help"))
            .filter(|a| a.get_help().is_none_or(|h| h.to_string().trim().is_empty()))
            .map(|a| format!("--{}", a.get_long().unwrap_or_default()))
            .collect();
        assert!(missing.is_empty(), "flags without help: {missing:?}");
    }
}
