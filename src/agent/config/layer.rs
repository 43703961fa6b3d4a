//! Lays the layers: flags and `FLIGHTDECK_*` variables (clap merged those) over the `--config`
//! file over defaults, into the resolved [`AgentConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::validate::{advertise_url, read_secret, reference_of};
use super::{
    AgentArgs, AgentConfig, ConfigError, DEFAULT_CONCURRENCY, DEFAULT_INTERVAL, DEFAULT_LEASE_NAME,
    DEFAULT_LISTEN, FileConfig, HttpLimits, LeaseSettings, SourceKind,
};
use crate::backend::{BackendConfig, CredentialVars};
use crate::source::{GitAuth, Secret};

const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

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
    let interval = args
        .interval
        .map(Duration::from)
        .or(file.interval)
        .unwrap_or(DEFAULT_INTERVAL);
    if interval < Duration::from_millis(100) {
        return Err(ConfigError::Invalid(
            "interval must be at least 100ms".into(),
        ));
    }
    let full_resync = args
        .full_resync_interval
        .map(Duration::from)
        .or(file.full_resync_interval)
        .unwrap_or(crate::agent::scope::DEFAULT_FULL_RESYNC);
    let concurrency = match args.concurrency.map(usize::from).or(file.concurrency) {
        Some(n @ 1..=256) => n,
        Some(n) => {
            return Err(ConfigError::Invalid(format!(
                "concurrency {n}: must be between 1 and 256"
            )));
        }
        None => DEFAULT_CONCURRENCY,
    };
    let http = http_limits(args, file)?;
    let backend = BackendConfig::from_settings(
        &args.backend.settings().over(&file.backend),
        CredentialVars::capture(env),
    )?;
    let listen = pick(&args.listen, &file.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default address"));

    let webhook_secret = match pick(&args.webhook_secret_file, &file.webhook_secret_file) {
        Some(path) => Some(read_secret(&path)?),
        None => env("FLIGHTDECK_WEBHOOK_SECRET")
            .map(Secret::new)
            .filter(|s| !s.expose().is_empty()),
    };
    let dashboard = super::DashboardSettings {
        token: match pick(&args.dashboard_token_file, &file.dashboard_token_file) {
            Some(path) => Some(read_secret(&path)?),
            None => env("FLIGHTDECK_DASHBOARD_TOKEN")
                .map(Secret::new)
                .filter(|s| !s.expose().is_empty()),
        },
        commit_url: pick(&args.commit_url, &file.commit_url)
            .map(|t| crate::dashboard::commit_url_template(&t))
            .transpose()
            .map_err(ConfigError::Invalid)?,
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
            Some(text) => Some(advertise_url(&text)?),
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
    let promotion = super::promotion::resolve(args, file, env, &source)?;
    Ok(AgentConfig {
        promotion,
        source,
        paths,
        interval,
        full_resync,
        concurrency,
        listen,
        webhook_secret,
        dashboard,
        lease,
        verify_keys,
        http,
        backend,
    })
}

fn http_limits(args: &AgentArgs, file: &FileConfig) -> Result<HttpLimits, ConfigError> {
    fn duration(
        name: &str,
        flag: Option<humantime::Duration>,
        file: Option<Duration>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let value = flag.map(Duration::from).or(file).unwrap_or(default);
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
            file.http_header_timeout,
            defaults.header_timeout,
        )?,
        body_timeout: duration(
            "http-body-timeout",
            args.http_body_timeout,
            file.http_body_timeout,
            defaults.body_timeout,
        )?,
        max_connections,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::agent::config::parse_file;
    use crate::source::GitRef;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        agent: AgentArgs,
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn file(yaml: &str) -> FileConfig {
        parse_file(Path::new("agent.yaml"), yaml).unwrap()
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
    fn backend_knobs_layer_flag_over_file_and_credentials_come_from_the_environment() {
        let f = file(
            "repo: r\npath: [e]\ntest-request-timeout: 7s\nk8s-poll-interval: 50ms\narm-endpoint: http://127.0.0.1:9/\n",
        );
        let args = Cli::parse_from(["x", "--test-request-timeout", "2s"]).agent;
        let env = |k: &str| (k == "AZURE_CLIENT_SECRET").then(|| "s3cret".to_string());
        let c = resolve(&args, &f, &env).unwrap();
        assert_eq!(
            c.backend.azureml.test_request_timeout,
            Duration::from_secs(2)
        );
        assert_eq!(
            c.backend.kubernetes.test_request_timeout,
            Duration::from_secs(2)
        );
        assert_eq!(
            c.backend.kubernetes.poll_interval,
            Duration::from_millis(50)
        );
        assert_eq!(
            c.backend.azureml.arm_endpoint.as_str(),
            "http://127.0.0.1:9/"
        );
        assert_eq!(
            c.backend.credentials.get("AZURE_CLIENT_SECRET").as_deref(),
            Some("s3cret")
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        let bad = file("repo: r\npath: [e]\narm-endpoint: nowhere\n");
        let err = resolve(&AgentArgs::default(), &bad, &no_env).unwrap_err();
        assert!(
            err.to_string().starts_with("arm-endpoint \"nowhere\""),
            "{err}"
        );
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
    fn the_full_resync_interval_comes_from_the_flag_then_the_file_then_ten_minutes() {
        let f = file("repo: r\npath: [e]\nfull-resync-interval: 2m\n");
        let none = Cli::parse_from(["x"]).agent;
        assert_eq!(
            resolve(&none, &f, &no_env).unwrap().full_resync,
            Duration::from_secs(120)
        );
        let flag = Cli::parse_from(["x", "--full-resync-interval", "0s"]).agent;
        assert_eq!(
            resolve(&flag, &f, &no_env).unwrap().full_resync,
            Duration::ZERO
        );
        let bare = file("repo: r\npath: [e]\n");
        assert_eq!(
            resolve(&none, &bare, &no_env).unwrap().full_resync,
            Duration::from_secs(600)
        );
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
    fn the_dashboard_token_and_commit_link_come_from_the_layers_and_a_bad_template_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("dash");
        std::fs::write(&token, "d4sh\n").unwrap();
        let f = file(&format!(
            "repo: r\npath: [e]\ndashboard-token-file: {}\ncommit-url: https://git.example.com/o/r/commit/{{sha}}\n",
            token.display()
        ));
        let c = resolve(&AgentArgs::default(), &f, &no_env).unwrap();
        assert_eq!(c.dashboard.token.as_ref().unwrap().expose(), "d4sh");
        assert!(!format!("{c:?}").contains("d4sh"), "the token stays hidden");
        assert_eq!(
            c.dashboard.commit_url.as_deref(),
            Some("https://git.example.com/o/r/commit/{sha}")
        );
        let env = |k: &str| (k == "FLIGHTDECK_DASHBOARD_TOKEN").then(|| "from-env".to_string());
        let c = resolve(&AgentArgs::default(), &file("repo: r\npath: [e]\n"), &env).unwrap();
        assert_eq!(c.dashboard.token.unwrap().expose(), "from-env");
        for bad in [
            "javascript:alert(1)//{sha}",
            "https://git.example.com/no-placeholder",
        ] {
            let f = file(&format!("repo: r\npath: [e]\ncommit-url: \"{bad}\"\n"));
            let err = resolve(&AgentArgs::default(), &f, &no_env).unwrap_err();
            assert!(
                err.to_string()
                    .contains("expected an http(s) URL with {sha}"),
                "{err}"
            );
        }
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
    }
}
