//! The `--config` file: the same keys as the flags, read with the located YAML loader the
//! environments use (`spec::yaml`), so every problem is reported at once as `path:line:col:
//! message` and an unknown key gets a did-you-mean. A key set to null counts as not set.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::ConfigError;
use crate::backend::BackendSettings;
use crate::spec::yaml::{self, Entry, Kind, Node, Pos, ScalarType};
use crate::spec::{Diagnostic, Diagnostics, suggestion};

/// The largest configuration file read (1 MiB): a real one is a few hundred bytes.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The settings a `--config` file holds; `None` or empty means "not set in the file".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileConfig {
    pub repo: Option<String>,
    pub branch: Option<String>,
    pub rev: Option<String>,
    /// `path` (alias `paths`): a list, or one directory.
    pub path: Vec<PathBuf>,
    pub interval: Option<Duration>,
    pub full_resync_interval: Option<Duration>,
    pub concurrency: Option<usize>,
    pub listen: Option<SocketAddr>,
    pub webhook_secret_file: Option<PathBuf>,
    pub leader_elect: Option<bool>,
    pub lease_name: Option<String>,
    pub lease_namespace: Option<String>,
    pub advertise_url: Option<String>,
    pub dashboard_token_file: Option<PathBuf>,
    pub commit_url: Option<String>,
    pub cache_dir: Option<PathBuf>,
    pub git_token_file: Option<PathBuf>,
    pub ssh_key_file: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub verify_keys: Vec<PathBuf>,
    pub watch_local: Option<bool>,
    pub http_header_timeout: Option<Duration>,
    pub http_body_timeout: Option<Duration>,
    pub http_max_connections: Option<usize>,
    pub mlflow_uri: Option<String>,
    pub mlflow_token_file: Option<PathBuf>,
    pub mlflow_username: Option<String>,
    pub mlflow_password_file: Option<PathBuf>,
    pub mlflow_webhook_secret_file: Option<PathBuf>,
    pub promotion_interval: Option<Duration>,
    pub pr_provider: Option<String>,
    pub pr_repo: Option<String>,
    pub pr_api: Option<String>,
    pub pr_token_file: Option<PathBuf>,
    /// `arm-endpoint`, `test-request-timeout`, `poll-interval-min`, `poll-interval-max`, `k8s-*`.
    pub backend: BackendSettings,
}

/// Every key the file accepts, for did-you-mean (`paths` is an alias of `path`).
pub const KEYS: &[&str] = &[
    "repo",
    "branch",
    "rev",
    "path",
    "paths",
    "interval",
    "full-resync-interval",
    "concurrency",
    "listen",
    "webhook-secret-file",
    "leader-elect",
    "lease-name",
    "lease-namespace",
    "advertise-url",
    "dashboard-token-file",
    "commit-url",
    "cache-dir",
    "git-token-file",
    "ssh-key-file",
    "known-hosts",
    "verify-keys",
    "watch-local",
    "http-header-timeout",
    "http-body-timeout",
    "http-max-connections",
    "mlflow-uri",
    "mlflow-token-file",
    "mlflow-username",
    "mlflow-password-file",
    "mlflow-webhook-secret-file",
    "promotion-interval",
    "pr-provider",
    "pr-repo",
    "pr-api",
    "pr-token-file",
    "arm-endpoint",
    "test-request-timeout",
    "poll-interval-min",
    "poll-interval-max",
    "k8s-rollout-timeout",
    "k8s-poll-interval",
    "k8s-make-before-break",
    "k8s-api-timeout",
];

/// Reads and parses `path` (at most [`MAX_CONFIG_BYTES`]).
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let read_error = |source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CONFIG_BYTES + 1).read_to_string(&mut text))
        .map_err(read_error)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        let message = format!(
            "the configuration file is larger than {} KiB",
            MAX_CONFIG_BYTES / 1024
        );
        return Err(ConfigError::File(Diagnostics(vec![Diagnostic::new(
            path,
            Pos::FILE,
            message,
        )])));
    }
    parse_file(path, &text)
}

/// Parses `text` (the contents of `path`), reporting every problem at once.
pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    let (root, errors) = yaml::parse(text);
    let mut reader = Reader {
        path,
        problems: errors
            .into_iter()
            .map(|e| Diagnostic::new(path, e.pos, e.message))
            .collect(),
        path_key: None,
    };
    let mut file = FileConfig::default();
    match &root {
        None => {}
        Some(Node {
            kind: Kind::Map(entries),
            ..
        }) => {
            for entry in entries {
                reader.entry(entry, &mut file);
            }
        }
        Some(other) => reader.error(
            other.pos,
            format!(
                "expected a mapping of settings (`repo: ...`), found {}",
                other.describe()
            ),
        ),
    }
    if reader.problems.is_empty() {
        Ok(file)
    } else {
        Err(ConfigError::File(Diagnostics::from_unsorted(
            reader.problems,
        )))
    }
}

struct Reader<'a> {
    path: &'a Path,
    problems: Vec<Diagnostic>,
    /// The first of `path` / `paths`, which are one setting.
    path_key: Option<(String, Pos)>,
}

impl Reader<'_> {
    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        self.problems.push(Diagnostic::new(self.path, pos, message));
    }

    fn entry(&mut self, entry: &Entry, f: &mut FileConfig) {
        let (key, v) = (entry.key.as_str(), &entry.value);
        let b = &mut f.backend;
        match key {
            "repo" => f.repo = self.text(key, v),
            "branch" => f.branch = self.text(key, v),
            "rev" => f.rev = self.text(key, v),
            "path" | "paths" => {
                if let Some((first, pos)) = &self.path_key {
                    let message = format!(
                        "`{key}` and `{first}` (line {}, column {}) are the same setting: keep one",
                        pos.line, pos.column
                    );
                    self.error(entry.key_pos, message);
                } else {
                    self.path_key = Some((key.to_string(), entry.key_pos));
                    f.path = self.paths(key, v);
                }
            }
            "interval" => f.interval = self.duration(key, v),
            "full-resync-interval" => f.full_resync_interval = self.duration(key, v),
            "concurrency" => f.concurrency = self.count(key, v),
            "listen" => f.listen = self.address(key, v),
            "webhook-secret-file" => f.webhook_secret_file = self.text(key, v).map(PathBuf::from),
            "leader-elect" => f.leader_elect = self.boolean(key, v),
            "lease-name" => f.lease_name = self.text(key, v),
            "lease-namespace" => f.lease_namespace = self.text(key, v),
            "advertise-url" => f.advertise_url = self.text(key, v),
            "dashboard-token-file" => f.dashboard_token_file = self.text(key, v).map(PathBuf::from),
            "commit-url" => f.commit_url = self.text(key, v),
            "cache-dir" => f.cache_dir = self.text(key, v).map(PathBuf::from),
            "git-token-file" => f.git_token_file = self.text(key, v).map(PathBuf::from),
            "ssh-key-file" => f.ssh_key_file = self.text(key, v).map(PathBuf::from),
            "known-hosts" => f.known_hosts = self.text(key, v).map(PathBuf::from),
            "verify-keys" => f.verify_keys = self.paths(key, v),
            "watch-local" => f.watch_local = self.boolean(key, v),
            "http-header-timeout" => f.http_header_timeout = self.duration(key, v),
            "http-body-timeout" => f.http_body_timeout = self.duration(key, v),
            "http-max-connections" => f.http_max_connections = self.count(key, v),
            "mlflow-uri" => f.mlflow_uri = self.text(key, v),
            "mlflow-token-file" => f.mlflow_token_file = self.text(key, v).map(PathBuf::from),
            "mlflow-username" => f.mlflow_username = self.text(key, v),
            "mlflow-password-file" => f.mlflow_password_file = self.text(key, v).map(PathBuf::from),
            "mlflow-webhook-secret-file" => {
                f.mlflow_webhook_secret_file = self.text(key, v).map(PathBuf::from)
            }
            "promotion-interval" => f.promotion_interval = self.duration(key, v),
            "pr-provider" => f.pr_provider = self.text(key, v),
            "pr-repo" => f.pr_repo = self.text(key, v),
            "pr-api" => f.pr_api = self.text(key, v),
            "pr-token-file" => f.pr_token_file = self.text(key, v).map(PathBuf::from),
            "arm-endpoint" => b.arm_endpoint = self.text(key, v),
            "test-request-timeout" => b.test_request_timeout = self.duration(key, v),
            "poll-interval-min" => b.poll_interval_min = self.duration(key, v),
            "poll-interval-max" => b.poll_interval_max = self.duration(key, v),
            "k8s-rollout-timeout" => b.k8s_rollout_timeout = self.duration(key, v),
            "k8s-poll-interval" => b.k8s_poll_interval = self.duration(key, v),
            "k8s-make-before-break" => b.k8s_make_before_break = self.duration(key, v),
            "k8s-api-timeout" => b.k8s_api_timeout = self.duration(key, v),
            other => {
                let message = format!("unknown key `{other}`{}", suggestion(other, KEYS));
                self.error(entry.key_pos, message);
            }
        }
    }

    fn expected(&mut self, key: &str, node: &Node, what: &str) {
        let message = format!("{key}: expected {what}, found {}", node.describe());
        self.error(node.pos, message);
    }

    /// Any non-null scalar as text (`rev: 1234` is a commit, not a number).
    fn text(&mut self, key: &str, node: &Node) -> Option<String> {
        match &node.kind {
            Kind::Scalar {
                ty: ScalarType::Null,
                ..
            } => None,
            Kind::Scalar { text, .. } => Some(text.clone()),
            _ => {
                self.expected(key, node, "a string");
                None
            }
        }
    }

    fn paths(&mut self, key: &str, node: &Node) -> Vec<PathBuf> {
        match &node.kind {
            Kind::Seq(items) => items
                .iter()
                .filter_map(|item| match &item.kind {
                    Kind::Scalar { text, ty } if *ty != ScalarType::Null => {
                        Some(PathBuf::from(text))
                    }
                    _ => {
                        self.expected(key, item, "a path");
                        None
                    }
                })
                .collect(),
            _ => self
                .text(key, node)
                .map(PathBuf::from)
                .into_iter()
                .collect(),
        }
    }

    fn duration(&mut self, key: &str, node: &Node) -> Option<Duration> {
        let text = self.text(key, node)?;
        match humantime::parse_duration(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                let message =
                    format!("{key}: expected a duration such as 30s or 5m, found {text:?} ({e})");
                self.error(node.pos, message);
                None
            }
        }
    }

    fn address(&mut self, key: &str, node: &Node) -> Option<SocketAddr> {
        let text = self.text(key, node)?;
        match text.parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                let message =
                    format!("{key}: expected an address such as 0.0.0.0:8080, found {text:?}");
                self.error(node.pos, message);
                None
            }
        }
    }

    fn boolean(&mut self, key: &str, node: &Node) -> Option<bool> {
        match &node.kind {
            Kind::Scalar {
                ty: ScalarType::Null,
                ..
            } => None,
            Kind::Scalar {
                ty: ScalarType::Bool,
                text,
            } => Some(text.eq_ignore_ascii_case("true")),
            _ => {
                self.expected(key, node, "true or false");
                None
            }
        }
    }

    fn count(&mut self, key: &str, node: &Node) -> Option<usize> {
        match &node.kind {
            Kind::Scalar {
                ty: ScalarType::Null,
                ..
            } => None,
            Kind::Scalar {
                ty: ScalarType::Int,
                text,
            } => match yaml::int_value(text).and_then(|n| usize::try_from(n).ok()) {
                Some(n) => Some(n),
                None => {
                    self.error(node.pos, format!("{key}: {text} is out of range"));
                    None
                }
            },
            _ => {
                self.expected(key, node, "a whole number");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> String {
        match parse_file(Path::new("agent.yaml"), text) {
            Ok(f) => panic!("accepted: {f:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_key_of_the_deploy_example_reads_into_its_setting() {
        let f = parse_file(
            Path::new("agent.yaml"),
            "repo: https://example.com/r.git\nbranch: main\npath:\n  - environments/prod\n\
             interval: 60s\nlisten: 0.0.0.0:8080\nwebhook-secret-file: /s/hook\n\
             leader-elect: true\nlease-name: a\nverify-keys: [k.asc]\n\
             http-max-connections: 16\ntest-request-timeout: 3s\nk8s-api-timeout: 250ms\n\
             arm-endpoint: http://127.0.0.1:1/\nrev: 1234\n",
        )
        .unwrap();
        assert_eq!(f.path, [PathBuf::from("environments/prod")]);
        assert_eq!(f.interval, Some(Duration::from_secs(60)));
        assert_eq!(f.listen, Some("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(f.leader_elect, Some(true));
        assert_eq!(f.http_max_connections, Some(16));
        assert_eq!(f.rev.as_deref(), Some("1234"));
        assert_eq!(f.backend.test_request_timeout, Some(Duration::from_secs(3)));
        assert_eq!(f.backend.k8s_api_timeout, Some(Duration::from_millis(250)));
        assert_eq!(
            f.backend.arm_endpoint.as_deref(),
            Some("http://127.0.0.1:1/")
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_line_and_column() {
        let found = problems(
            "repos: r\ninterval: soon\nleader-elect: maybe\nlisten: [a]\nhttp-max-connections: -1\n",
        );
        assert_eq!(
            found,
            "agent.yaml:1:1: unknown key `repos`, did you mean `repo`?\n\
             agent.yaml:2:11: interval: expected a duration such as 30s or 5m, found \"soon\" (expected number at 0)\n\
             agent.yaml:3:15: leader-elect: expected true or false, found a string\n\
             agent.yaml:4:9: listen: expected a string, found a sequence\n\
             agent.yaml:5:23: http-max-connections: -1 is out of range"
        );
    }

    #[test]
    fn yaml_errors_and_a_file_that_is_not_a_mapping_are_located() {
        let found = problems("repo: r\nrepo: s\n");
        assert_eq!(
            found,
            "agent.yaml:2:1: duplicate key `repo` (first declared at line 1, column 1)"
        );
        assert!(
            problems("repo: [\n").starts_with("agent.yaml:"),
            "{}",
            problems("repo: [\n")
        );
        assert_eq!(
            problems("- repo\n"),
            "agent.yaml:1:1: expected a mapping of settings (`repo: ...`), found a sequence"
        );
        assert_eq!(
            problems("path: [a]\npaths: [b]\n"),
            "agent.yaml:2:1: `paths` and `path` (line 1, column 1) are the same setting: keep one"
        );
    }

    #[test]
    fn an_empty_file_and_null_values_set_nothing() {
        let empty = parse_file(Path::new("agent.yaml"), "# nothing yet\n").unwrap();
        assert_eq!(empty, FileConfig::default());
        let nulls = parse_file(Path::new("agent.yaml"), "repo:\ninterval: ~\n").unwrap();
        assert_eq!(nulls, FileConfig::default());
    }

    #[test]
    fn a_file_over_the_size_limit_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.yaml");
        let line = "# padding padding padding padding padding padding padding padding\n";
        let big = line.repeat((MAX_CONFIG_BYTES as usize / line.len()) + 1);
        std::fs::write(&path, big).unwrap();
        let err = load_file(&path).unwrap_err().to_string();
        assert!(
            err.ends_with("the configuration file is larger than 1024 KiB"),
            "{err}"
        );
        let err = load_file(&dir.path().join("missing.yaml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read the configuration file"),
            "{err}"
        );
    }
}
