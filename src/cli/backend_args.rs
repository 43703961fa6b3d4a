//! The backend flags every command that connects shares (`plan`, `diff`, `apply`, `export`, and
//! `agent`), each with its `FLIGHTDECK_*` variable: clap lays the flag over the variable, and
//! [`BackendArgs::settings`] hands the result to `backend::BackendConfig`.

use crate::backend::BackendSettings;

/// Where the platform is and how long to wait for it.
#[derive(clap::Args, Clone, Debug, Default, PartialEq)]
pub struct BackendArgs {
    /// Azure Resource Manager base URL instead of https://management.azure.com (for the
    /// sandbox: the URL it prints).
    #[arg(long, value_name = "URL", env = "FLIGHTDECK_ARM_ENDPOINT")]
    pub arm_endpoint: Option<String>,
    /// Longest one pre-traffic test request may go unanswered, both backends (default 30s).
    #[arg(long, value_name = "DURATION", env = "FLIGHTDECK_TEST_REQUEST_TIMEOUT")]
    pub test_request_timeout: Option<humantime::Duration>,
    /// Azure ML: floor of a server-requested wait (a non-zero Retry-After) while polling or
    /// throttled (default 1s; `Retry-After: 0` means the client's own backoff).
    #[arg(long, value_name = "DURATION", env = "FLIGHTDECK_POLL_INTERVAL_MIN")]
    pub poll_interval_min: Option<humantime::Duration>,
    /// Azure ML: cap on a server-requested wait (Retry-After) while polling or throttled
    /// (default 30s; `apply` also re-reads live state this often while another writer works,
    /// default 5s).
    #[arg(long, value_name = "DURATION", env = "FLIGHTDECK_POLL_INTERVAL_MAX")]
    pub poll_interval_max: Option<humantime::Duration>,
    /// Kubernetes: how long a create, update or scale may roll out (default 10m).
    #[arg(long, value_name = "DURATION", env = "FLIGHTDECK_K8S_ROLLOUT_TIMEOUT")]
    pub k8s_rollout_timeout: Option<humantime::Duration>,
    /// Kubernetes: poll interval while waiting for a rollout (default 2s).
    #[arg(long, value_name = "DURATION", env = "FLIGHTDECK_K8S_POLL_INTERVAL")]
    pub k8s_poll_interval: Option<humantime::Duration>,
    /// Kubernetes with Istio: wait between adding a subset and routing to it, and between
    /// unrouting and removing it (default 5s).
    #[arg(
        long,
        value_name = "DURATION",
        env = "FLIGHTDECK_K8S_MAKE_BEFORE_BREAK"
    )]
    pub k8s_make_before_break: Option<humantime::Duration>,
    /// Kubernetes: connect, read and write timeout of every API call (default 30s).
    #[arg(long, value_name = "DURATION", env = "FLIGHTDECK_K8S_API_TIMEOUT")]
    pub k8s_api_timeout: Option<humantime::Duration>,
}

impl BackendArgs {
    /// This layer (flags over variables) as backend settings.
    pub fn settings(&self) -> BackendSettings {
        let d = |v: &Option<humantime::Duration>| v.map(Into::into);
        BackendSettings {
            arm_endpoint: self.arm_endpoint.clone().filter(|s| !s.is_empty()),
            test_request_timeout: d(&self.test_request_timeout),
            poll_interval_min: d(&self.poll_interval_min),
            poll_interval_max: d(&self.poll_interval_max),
            k8s_rollout_timeout: d(&self.k8s_rollout_timeout),
            k8s_poll_interval: d(&self.k8s_poll_interval),
            k8s_make_before_break: d(&self.k8s_make_before_break),
            k8s_api_timeout: d(&self.k8s_api_timeout),
        }
    }
}

/// The CLI's backend configuration: `args` plus the Azure credential variables of this process.
pub fn backend_config(args: &BackendArgs) -> anyhow::Result<crate::backend::BackendConfig> {
    let credentials = crate::backend::CredentialVars::capture(&|name| std::env::var(name).ok());
    Ok(crate::backend::BackendConfig::from_settings(
        &args.settings(),
        credentials,
    )?)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        backend: BackendArgs,
    }

    #[test]
    fn backend_flags_become_backend_settings() {
        let args = Cli::parse_from([
            "x",
            "--arm-endpoint",
            "http://127.0.0.1:7070",
            "--poll-interval-max",
            "50ms",
            "--poll-interval-min",
            "10ms",
            "--k8s-make-before-break",
            "30ms",
        ])
        .backend;
        let s = args.settings();
        assert_eq!(s.arm_endpoint.as_deref(), Some("http://127.0.0.1:7070"));
        assert_eq!(s.poll_interval_max, Some(Duration::from_millis(50)));
        assert_eq!(s.poll_interval_min, Some(Duration::from_millis(10)));
        assert_eq!(s.k8s_make_before_break, Some(Duration::from_millis(30)));
        assert_eq!(s.k8s_api_timeout, None);
        let bad = Cli::try_parse_from(["x", "--k8s-api-timeout", "soon"]);
        assert!(bad.is_err());
    }
}
