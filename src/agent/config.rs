//! Agent configuration in two stages: the raw layers (flags, `FLIGHTDECK_*` variables, a YAML
//! file) and the resolved [`AgentConfig`]. Precedence: flag > env > file > default; clap already
//! merges flag over env, `resolve` lays the result over the file. The log format is the global
//! `--log-format` flag (`FLIGHTDECK_LOG_FORMAT`), set up by `main` before the agent starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::source::{GitAuth, GitRef, Secret};

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
    /// Azure Resource Manager base URL instead of https://management.azure.com (the sandbox).
    #[arg(long, env = "FLIGHTDECK_ARM_ENDPOINT", value_name = "URL")]
    pub arm_endpoint: Option<String>,
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
}

/// The `--config` file: the same keys as the flags.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileConfig {
    pub repo: Option<String>,
    pub branch: Option<String>,
    pub rev: Option<String>,
    #[serde(default, alias = "paths")]
    pub path: Vec<PathBuf>,
    pub interval: Option<String>,
    pub concurrency: Option<u16>,
    pub listen: Option<SocketAddr>,
    pub webhook_secret_file: Option<PathBuf>,
    pub leader_elect: Option<bool>,
    pub lease_name: Option<String>,
    pub lease_namespace: Option<String>,
    pub advertise_url: Option<String>,
    pub cache_dir: Option<PathBuf>,
    pub git_token_file: Option<PathBuf>,
    pub ssh_key_file: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    #[serde(default)]
    pub verify_keys: Vec<PathBuf>,
    pub arm_endpoint: Option<String>,
    pub watch_local: Option<bool>,
    pub http_header_timeout: Option<String>,
    pub http_body_timeout: Option<String>,
    pub http_max_connections: Option<usize>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{0}")]
    Invalid(String),
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
    /// Endpoints of one environment applied in parallel (`--concurrency`).
    pub concurrency: usize,
    pub listen: SocketAddr,
    pub webhook_secret: Option<Secret>,
    pub lease: Option<LeaseSettings>,
    pub verify_keys: Vec<PathBuf>,
    pub arm_endpoint: Option<String>,
    pub http: HttpLimits,
}

pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_CONCURRENCY: usize = 8;
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_LEASE_NAME: &str = "flightdeck-agent";
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

impl AgentArgs {
    /// Reads the `--config` file (if any) and resolves the layers. `env` looks up secret
    /// variables (`FLIGHTDECK_GIT_TOKEN`, `FLIGHTDECK_WEBHOOK_SECRET`) that are never flags.
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

pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let err = |message: String| ConfigError::File {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_yaml::from_str(&text).map_err(|e| err(e.to_string()))
}

/// Lays flags/env (`args`) over the file over defaults.
pub fn resolve(
    args: &AgentArgs,
    file: &FileConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AgentConfig, ConfigError> {
    fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
        a.clone().or_else(|| b.clone())
    }
    fn pick_list(a: &[PathBuf], b: &[PathBuf]) -> Vec<PathBuf> {
        if a.is_empty() { b.to_vec() } else { a.to_vec() }
    }

    let repo = pick(&args.repo, &file.repo)
        .ok_or_else(|| ConfigError::Invalid("--repo is required (a URL or a local path)".into()))?;
    // Branch and rev are one setting: the highest layer that names either wins.
    let reference = if args.branch.is_some() || args.rev.is_some() {
        reference_of(&args.branch, &args.rev)?
    } else {
        reference_of(&file.branch, &file.rev)?
    };
    let paths = pick_list(&args.paths, &file.path);
    if paths.is_empty() {
        return Err(ConfigError::Invalid(
            "at least one --path (an environment directory in the repository) is required".into(),
        ));
    }
    let interval = match (&args.interval, &file.interval) {
        (Some(d), _) => (*d).into(),
        (None, Some(text)) => humantime::parse_duration(text)
            .map_err(|e| ConfigError::Invalid(format!("interval {text:?}: {e}")))?,
        (None, None) => DEFAULT_INTERVAL,
    };
    if interval < Duration::from_millis(100) {
        return Err(ConfigError::Invalid(
            "interval must be at least 100ms".into(),
        ));
    }
    let concurrency = match pick(&args.concurrency, &file.concurrency) {
        Some(n @ 1..=256) => usize::from(n),
        Some(n) => {
            return Err(ConfigError::Invalid(format!(
                "concurrency {n}: must be between 1 and 256"
            )));
        }
        None => DEFAULT_CONCURRENCY,
    };
    let http = http_limits(args, file)?;
    let listen = pick(&args.listen, &file.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default address"));

    let webhook_secret = match pick(&args.webhook_secret_file, &file.webhook_secret_file) {
        Some(path) => Some(read_secret(&path)?),
        None => env("FLIGHTDECK_WEBHOOK_SECRET")
            .map(Secret::new)
            .filter(|s| !s.expose().is_empty()),
    };
    let watch_local = pick(&args.watch_local, &file.watch_local).unwrap_or(false);
    let verify_keys = pick_list(&args.verify_keys, &file.verify_keys);
    if watch_local && !verify_keys.is_empty() {
        // A working directory has no commits to verify; ignoring the keys would apply unsigned files.
        return Err(ConfigError::Invalid(
            "--verify-keys needs a git source: --watch-local reads a working directory, which has no signed commits".into(),
        ));
    }
    let source = if watch_local {
        SourceKind::Local {
            root: PathBuf::from(&repo),
        }
    } else {
        let token = match pick(&args.git_token_file, &file.git_token_file) {
            Some(path) => Some(read_secret(&path)?),
            None => env("FLIGHTDECK_GIT_TOKEN")
                .map(Secret::new)
                .filter(|s| !s.expose().is_empty()),
        };
        SourceKind::Git {
            url: repo,
            reference,
            cache_dir: pick(&args.cache_dir, &file.cache_dir)
                .unwrap_or_else(|| std::env::temp_dir().join("flightdeck-agent-cache")),
            auth: GitAuth {
                token,
                ssh_key: pick(&args.ssh_key_file, &file.ssh_key_file),
                known_hosts: pick(&args.known_hosts, &file.known_hosts),
            },
        }
    };
    let lease = if pick(&args.leader_elect, &file.leader_elect).unwrap_or(false) {
        let namespace = pick(&args.lease_namespace, &file.lease_namespace)
            .or_else(|| {
                std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
                    .ok()
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_else(|| "default".to_string());
        let advertise_url = match pick(&args.advertise_url, &file.advertise_url) {
            Some(text) => {
                let url = url::Url::parse(&text)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                    .ok_or_else(|| {
                        ConfigError::Invalid(format!(
                            "advertise-url {text:?}: expected http://HOST:PORT"
                        ))
                    })?;
                Some(url.as_str().trim_end_matches('/').to_string())
            }
            // The downward API's pod IP, as deploy/agent/deployment.yaml sets it.
            None => env("POD_IP")
                .and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
                .map(|ip| format!("http://{}", SocketAddr::new(ip, listen.port()))),
        };
        Some(LeaseSettings {
            name: pick(&args.lease_name, &file.lease_name)
                .unwrap_or_else(|| DEFAULT_LEASE_NAME.into()),
            namespace,
            advertise_url,
        })
    } else {
        None
    };
    Ok(AgentConfig {
        source,
        paths,
        interval,
        concurrency,
        listen,
        webhook_secret,
        lease,
        verify_keys,
        arm_endpoint: pick(&args.arm_endpoint, &file.arm_endpoint),
        http,
    })
}

fn http_limits(args: &AgentArgs, file: &FileConfig) -> Result<HttpLimits, ConfigError> {
    fn duration(
        name: &str,
        flag: Option<humantime::Duration>,
        text: &Option<String>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let value = match (flag, text) {
            (Some(d), _) => d.into(),
            (None, Some(text)) => humantime::parse_duration(text)
                .map_err(|e| ConfigError::Invalid(format!("{name} {text:?}: {e}")))?,
            (None, None) => default,
        };
        if value.is_zero() {
            return Err(ConfigError::Invalid(format!(
                "{name} must be greater than zero"
            )));
        }
        Ok(value)
    }
    let defaults = HttpLimits::default();
    let max_connections = args
        .http_max_connections
        .or(file.http_max_connections)
        .unwrap_or(defaults.max_connections);
    if max_connections == 0 {
        return Err(ConfigError::Invalid(
            "http-max-connections must be at least 1".into(),
        ));
    }
    Ok(HttpLimits {
        header_timeout: duration(
            "http-header-timeout",
            args.http_header_timeout,
            &file.http_header_timeout,
            defaults.header_timeout,
        )?,
        body_timeout: duration(
            "http-body-timeout",
            args.http_body_timeout,
            &file.http_body_timeout,
            defaults.body_timeout,
        )?,
        max_connections,
    })
}

/// A local `--repo` must exist: otherwise git2 answers "unsupported URL protocol" on every
/// tick and the agent never says what is wrong.
pub fn check_repository(source: &SourceKind) -> Result<(), ConfigError> {
    let (shown, path) = match source {
        SourceKind::Git { url, .. } => match local_repo_path(url) {
            Some(path) => (url.as_str(), path),
            None => return Ok(()),
        },
        SourceKind::Local { root } => (root.to_str().unwrap_or_default(), root.clone()),
    };
    if path.exists() {
        Ok(())
    } else {
        let shown = if shown.is_empty() {
            path.display().to_string()
        } else {
            shown.to_string()
        };
        Err(ConfigError::Invalid(format!("no such repository: {shown}")))
    }
}

/// The directory `repo` names when it is a local path or a `file://` URL; `None` for remote
/// URLs (`https://`, `ssh://`) and scp-like addresses (`git@host:org/repo.git`, `host:repo`),
/// which git reads as remote when a `:` comes before any `/`.
fn local_repo_path(repo: &str) -> Option<PathBuf> {
    if let Some(rest) = repo.strip_prefix("file://") {
        return Some(PathBuf::from(rest));
    }
    if repo.contains("://") {
        return None;
    }
    match (repo.find(':'), repo.find('/')) {
        (Some(colon), Some(slash)) if colon < slash => None,
        (Some(_), None) => None,
        _ => Some(PathBuf::from(repo)),
    }
}

fn reference_of(branch: &Option<String>, rev: &Option<String>) -> Result<GitRef, ConfigError> {
    match (branch, rev) {
        (Some(_), Some(_)) => Err(ConfigError::Invalid(
            "give either branch or rev, not both".into(),
        )),
        (_, Some(rev)) => Ok(GitRef::Rev(rev.clone())),
        (Some(branch), None) => Ok(GitRef::Branch(branch.clone())),
        (None, None) => Ok(GitRef::Branch("main".into())),
    }
}

fn read_secret(path: &Path) -> Result<Secret, ConfigError> {
    Secret::from_file(path).map_err(|e| ConfigError::Invalid(e.to_string()))
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

    fn no_env(_: &str) -> Option<String> {
        None
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

    fn file(yaml: &str) -> FileConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let args = Cli::parse_from(["x", "--interval", "5s", "--path", "environments/a"]).agent;
        let f =
            file("repo: /srv/repo\ninterval: 30s\nlisten: 0.0.0.0:9000\npath: [environments/b]\n");
        let c = resolve(&args, &f, &no_env).unwrap();
        assert_eq!(c.interval, Duration::from_secs(5));
        assert_eq!(c.paths, [PathBuf::from("environments/a")]);
        assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
        assert!(
            matches!(c.source, SourceKind::Git { ref reference, .. } if *reference == GitRef::Branch("main".into()))
        );
        assert!(c.lease.is_none());
    }

    #[test]
    fn concurrency_comes_from_the_flag_then_the_file_and_defaults_to_eight() {
        let f = file("repo: /srv/repo\npath: [e]\nconcurrency: 3\n");
        let none = Cli::parse_from(["x"]).agent;
        assert_eq!(resolve(&none, &f, &no_env).unwrap().concurrency, 3);
        let flag = Cli::parse_from(["x", "--concurrency", "16"]).agent;
        assert_eq!(resolve(&flag, &f, &no_env).unwrap().concurrency, 16);
        let bare = file("repo: /srv/repo\npath: [e]\n");
        assert_eq!(resolve(&none, &bare, &no_env).unwrap().concurrency, 8);
        let zero = file("repo: /srv/repo\npath: [e]\nconcurrency: 0\n");
        let err = resolve(&none, &zero, &no_env).unwrap_err().to_string();
        assert!(
            err.contains("concurrency 0: must be between 1 and 256"),
            "{err}"
        );
        assert!(Cli::try_parse_from(["x", "--concurrency", "0"]).is_err());
    }

    #[test]
    fn environment_variables_sit_between_flags_and_the_file() {
        // The only test that touches FLIGHTDECK_LEASE_NAME (no other test reads it).
        unsafe {
            std::env::set_var("FLIGHTDECK_LEASE_NAME", "from-env");
        }
        let f = file(
            "repo: r\npath: [e]\nleader-elect: true\nlease-name: from-file\nlease-namespace: ops\nbranch: dev\n",
        );
        let from_env = Cli::parse_from(["x"]).agent;
        let c = resolve(&from_env, &f, &no_env).unwrap();
        assert_eq!(c.lease.as_ref().unwrap().name, "from-env");
        assert_eq!(c.lease.as_ref().unwrap().namespace, "ops");
        assert!(
            matches!(c.source, SourceKind::Git { ref reference, .. } if *reference == GitRef::Branch("dev".into()))
        );
        // A higher layer naming a rev replaces the file's branch instead of conflicting with it.
        let pinned = Cli::parse_from(["x", "--rev", "v1.2.0"]).agent;
        let c = resolve(&pinned, &f, &no_env).unwrap();
        assert!(
            matches!(c.source, SourceKind::Git { ref reference, .. } if *reference == GitRef::Rev("v1.2.0".into()))
        );
        let from_flag = Cli::parse_from(["x", "--lease-name", "from-flag"]).agent;
        assert_eq!(
            resolve(&from_flag, &f, &no_env)
                .unwrap()
                .lease
                .unwrap()
                .name,
            "from-flag"
        );
        unsafe {
            std::env::remove_var("FLIGHTDECK_LEASE_NAME");
        }
    }

    #[test]
    fn the_advertised_url_comes_from_the_flag_or_the_pod_ip() {
        let f = file("repo: r\npath: [e]\nleader-elect: true\nlisten: 0.0.0.0:9090\n");
        let pod = |k: &str| (k == "POD_IP").then(|| "10.1.2.3".to_string());
        let c = resolve(&AgentArgs::default(), &f, &pod).unwrap();
        assert_eq!(
            c.lease.unwrap().advertise_url.as_deref(),
            Some("http://10.1.2.3:9090")
        );
        let v6 = |k: &str| (k == "POD_IP").then(|| "fd00::7".to_string());
        let c = resolve(&AgentArgs::default(), &f, &v6).unwrap();
        assert_eq!(
            c.lease.unwrap().advertise_url.as_deref(),
            Some("http://[fd00::7]:9090")
        );
        let flag = Cli::parse_from(["x", "--advertise-url", "http://agent-0.agents:8080/"]).agent;
        let c = resolve(&flag, &f, &pod).unwrap();
        assert_eq!(
            c.lease.unwrap().advertise_url.as_deref(),
            Some("http://agent-0.agents:8080")
        );
        let c = resolve(&AgentArgs::default(), &f, &no_env).unwrap();
        assert_eq!(c.lease.unwrap().advertise_url, None);
        let bad = Cli::parse_from(["x", "--advertise-url", "agent-0:8080"]).agent;
        let err = resolve(&bad, &f, &no_env).unwrap_err();
        assert!(err.to_string().starts_with("advertise-url"), "{err}");
    }

    #[test]
    fn boolean_flags_can_override_a_file_that_enables_them() {
        let f = file("repo: r\npath: [e]\nleader-elect: true\n");
        let off = Cli::parse_from(["x", "--leader-elect=false"]).agent;
        assert!(resolve(&off, &f, &no_env).unwrap().lease.is_none());
        let on = Cli::parse_from(["x", "--leader-elect"]).agent;
        assert_eq!(on.leader_elect, Some(true));
    }

    #[test]
    fn secrets_come_from_files_or_variables_and_stay_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("hook");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let f = file(&format!(
            "repo: r\npath: [e]\nwebhook-secret-file: {}\n",
            secret.display()
        ));
        let env = |k: &str| (k == "FLIGHTDECK_GIT_TOKEN").then(|| "tok".to_string());
        let c = resolve(&AgentArgs::default(), &f, &env).unwrap();
        assert_eq!(c.webhook_secret.as_ref().unwrap().expose(), "s3cret");
        let SourceKind::Git { auth, .. } = &c.source else {
            panic!("git source")
        };
        assert_eq!(auth.token.as_ref().unwrap().expose(), "tok");
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("s3cret") && !debug.contains("tok\""),
            "{debug}"
        );
    }

    #[test]
    fn http_limits_default_to_10s_30s_256_and_reject_zero() {
        let f = file("repo: r\npath: [e]\nhttp-body-timeout: 5s\n");
        let c = resolve(&AgentArgs::default(), &f, &no_env).unwrap();
        assert_eq!(
            c.http,
            HttpLimits {
                header_timeout: Duration::from_secs(10),
                body_timeout: Duration::from_secs(5),
                max_connections: 256,
            }
        );
        let args = Cli::parse_from(["x", "--http-header-timeout", "250ms"]).agent;
        let c = resolve(&args, &f, &no_env).unwrap();
        assert_eq!(c.http.header_timeout, Duration::from_millis(250));
        let zero = Cli::parse_from(["x", "--http-max-connections", "0"]).agent;
        let err = resolve(&zero, &f, &no_env).unwrap_err();
        assert_eq!(err.to_string(), "http-max-connections must be at least 1");
        let err = resolve(
            &AgentArgs::default(),
            &file("repo: r\npath: [e]\nhttp-header-timeout: 0s\n"),
            &no_env,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "http-header-timeout must be greater than zero"
        );
    }

    #[test]
    fn only_local_paths_and_file_urls_are_checked_for_existence() {
        for remote in [
            "https://github.com/org/repo.git",
            "ssh://git@host:2222/org/repo.git",
            "git@github.com:org/repo.git",
            "host:repo.git",
        ] {
            assert_eq!(local_repo_path(remote), None, "{remote}");
        }
        assert_eq!(
            local_repo_path("file:///srv/repo"),
            Some(PathBuf::from("/srv/repo"))
        );
        assert_eq!(
            local_repo_path("./repos/a:b"),
            Some(PathBuf::from("./repos/a:b"))
        );
        assert_eq!(local_repo_path("repo"), Some(PathBuf::from("repo")));
    }

    #[test]
    fn missing_and_conflicting_settings_are_clear_errors() {
        let err = resolve(&AgentArgs::default(), &file("path: [e]\n"), &no_env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--repo is required (a URL or a local path)"
        );
        let err = resolve(&AgentArgs::default(), &file("repo: r\n"), &no_env).unwrap_err();
        assert!(err.to_string().contains("--path"));
        let err = resolve(
            &AgentArgs::default(),
            &file("repo: r\npath: [e]\nbranch: a\nrev: b\n"),
            &no_env,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "give either branch or rev, not both");
        let err = resolve(
            &AgentArgs::default(),
            &file("repo: r\npath: [e]\nwatch-local: true\nverify-keys: [keys.asc]\n"),
            &no_env,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--verify-keys needs a git source")
        );
        let unknown: Result<FileConfig, _> = serde_yaml::from_str("repos: r\n");
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("unknown field `repos`")
        );
    }
}
