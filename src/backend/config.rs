//! What [`connect`](super::connect) needs to reach a platform, built at the edges: the CLI from
//! its flags and `FLIGHTDECK_*` variables (`src/cli/backend_args.rs`), the agent from its flag >
//! variable > file layering (`src/agent/config`). Nothing below `backend::connect` reads the
//! process environment; the Azure SDK credentials it delegates to (managed identity, `az login`)
//! do their own discovery.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use url::Url;

use super::azureml::AzureMlConfig;
use super::kubernetes::KubernetesOptions;

/// One layer of backend settings (flags, variables, a config file); `None` means "not set here".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackendSettings {
    /// ARM base URL instead of https://management.azure.com (the sandbox's URL).
    pub arm_endpoint: Option<String>,
    /// Longest one pre-traffic test request may go unanswered, both backends (default 30 s).
    pub test_request_timeout: Option<Duration>,
    /// Azure ML: floor of any server-requested wait, a non-zero Retry-After while polling or
    /// throttled (default 1 s; a `Retry-After: 0` means the client's own backoff).
    pub poll_interval_min: Option<Duration>,
    /// Azure ML: cap on any server-requested wait, Retry-After while polling or throttled
    /// (default 30 s).
    pub poll_interval_max: Option<Duration>,
    /// Kubernetes: how long a create, update or scale may roll out (default 10 min).
    pub k8s_rollout_timeout: Option<Duration>,
    /// Kubernetes: poll interval while waiting for a rollout (default 2 s).
    pub k8s_poll_interval: Option<Duration>,
    /// Kubernetes with Istio: the make-before-break wait (default 5 s).
    pub k8s_make_before_break: Option<Duration>,
    /// Kubernetes: connect, read and write timeout of every API call (default 30 s).
    pub k8s_api_timeout: Option<Duration>,
}

impl BackendSettings {
    /// This layer over `lower`: each setting from the first layer that sets it.
    pub fn over(&self, lower: &BackendSettings) -> BackendSettings {
        fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
            a.clone().or_else(|| b.clone())
        }
        BackendSettings {
            arm_endpoint: pick(&self.arm_endpoint, &lower.arm_endpoint),
            test_request_timeout: pick(&self.test_request_timeout, &lower.test_request_timeout),
            poll_interval_min: pick(&self.poll_interval_min, &lower.poll_interval_min),
            poll_interval_max: pick(&self.poll_interval_max, &lower.poll_interval_max),
            k8s_rollout_timeout: pick(&self.k8s_rollout_timeout, &lower.k8s_rollout_timeout),
            k8s_poll_interval: pick(&self.k8s_poll_interval, &lower.k8s_poll_interval),
            k8s_make_before_break: pick(&self.k8s_make_before_break, &lower.k8s_make_before_break),
            k8s_api_timeout: pick(&self.k8s_api_timeout, &lower.k8s_api_timeout),
        }
    }
}

/// The Azure credential variables flightdeck itself reads to choose a credential
/// (`azureml::credential_from_vars`), captured once at the edge. `Debug` shows only which are set.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CredentialVars(BTreeMap<&'static str, String>);

impl CredentialVars {
    pub const NAMES: [&'static str; 5] = [
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_CLIENT_SECRET",
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_AUTHORITY_HOST",
    ];

    /// The [`NAMES`](Self::NAMES) that `var` has, empty values left out.
    pub fn capture(var: &dyn Fn(&str) -> Option<String>) -> CredentialVars {
        CredentialVars(
            Self::NAMES
                .iter()
                .filter_map(|name| var(name).filter(|v| !v.is_empty()).map(|v| (*name, v)))
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

impl fmt::Debug for CredentialVars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// Everything `connect` needs, resolved.
#[derive(Clone, Debug, Default)]
pub struct BackendConfig {
    pub azureml: AzureMlConfig,
    pub kubernetes: KubernetesOptions,
    pub credentials: CredentialVars,
}

#[derive(Debug, thiserror::Error)]
pub enum BackendConfigError {
    #[error("arm-endpoint {value:?} is not a URL")]
    ArmEndpoint {
        value: String,
        #[source]
        source: url::ParseError,
    },
    #[error(
        "poll-interval-min ({}) is above poll-interval-max ({})",
        humantime::format_duration(*min),
        humantime::format_duration(*max)
    )]
    PollIntervals { min: Duration, max: Duration },
}

impl BackendConfig {
    /// The defaults overridden by `settings`.
    pub fn from_settings(
        settings: &BackendSettings,
        credentials: CredentialVars,
    ) -> Result<BackendConfig, BackendConfigError> {
        let mut azureml = AzureMlConfig::default();
        let mut kubernetes = KubernetesOptions::default();
        if let Some(raw) = &settings.arm_endpoint {
            azureml.arm_endpoint =
                Url::parse(raw).map_err(|source| BackendConfigError::ArmEndpoint {
                    value: raw.clone(),
                    source,
                })?;
        }
        if let Some(d) = settings.test_request_timeout {
            azureml.test_request_timeout = d;
            kubernetes.test_request_timeout = d;
        }
        // Both set and crossed is a mistake; the default floor (1 s) under a small cap (the
        // tests' 20 ms) is not: the cap wins there (`RetryPolicy::wait`).
        if let (Some(min), Some(max)) = (settings.poll_interval_min, settings.poll_interval_max)
            && min > max
        {
            return Err(BackendConfigError::PollIntervals { min, max });
        }
        let knobs = [
            (settings.poll_interval_min, &mut azureml.min_poll_interval),
            (settings.poll_interval_max, &mut azureml.max_poll_interval),
            (
                settings.k8s_rollout_timeout,
                &mut kubernetes.rollout_timeout,
            ),
            (settings.k8s_poll_interval, &mut kubernetes.poll_interval),
            (
                settings.k8s_make_before_break,
                &mut kubernetes.make_before_break_delay,
            ),
            (settings.k8s_api_timeout, &mut kubernetes.api_timeout),
        ];
        for (value, slot) in knobs {
            if let Some(d) = value {
                *slot = d;
            }
        }
        Ok(BackendConfig {
            azureml,
            kubernetes,
            credentials,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_override_the_defaults_and_the_test_timeout_reaches_both_backends() {
        let settings = BackendSettings {
            arm_endpoint: Some("http://127.0.0.1:9/".into()),
            test_request_timeout: Some(Duration::from_secs(3)),
            k8s_poll_interval: Some(Duration::from_millis(20)),
            ..BackendSettings::default()
        };
        let config = BackendConfig::from_settings(&settings, CredentialVars::default()).unwrap();
        assert_eq!(config.azureml.arm_endpoint.as_str(), "http://127.0.0.1:9/");
        assert_eq!(config.azureml.test_request_timeout, Duration::from_secs(3));
        assert_eq!(
            config.kubernetes.test_request_timeout,
            Duration::from_secs(3)
        );
        assert_eq!(config.kubernetes.poll_interval, Duration::from_millis(20));
        assert_eq!(
            config.kubernetes.rollout_timeout,
            KubernetesOptions::default().rollout_timeout
        );
        let bad = BackendSettings {
            arm_endpoint: Some("not a url".into()),
            ..BackendSettings::default()
        };
        let err = BackendConfig::from_settings(&bad, CredentialVars::default()).unwrap_err();
        assert!(
            err.to_string().starts_with("arm-endpoint \"not a url\""),
            "{err}"
        );
    }

    #[test]
    fn a_poll_interval_floor_above_the_cap_is_refused() {
        let crossed = BackendSettings {
            poll_interval_min: Some(Duration::from_secs(5)),
            poll_interval_max: Some(Duration::from_secs(2)),
            ..BackendSettings::default()
        };
        let err = BackendConfig::from_settings(&crossed, CredentialVars::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "poll-interval-min (5s) is above poll-interval-max (2s)"
        );
        let floor = BackendSettings {
            poll_interval_min: Some(Duration::from_secs(2)),
            ..BackendSettings::default()
        };
        let config = BackendConfig::from_settings(&floor, CredentialVars::default()).unwrap();
        assert_eq!(config.azureml.min_poll_interval, Duration::from_secs(2));
    }

    #[test]
    fn a_higher_layer_wins_setting_by_setting() {
        let high = BackendSettings {
            k8s_api_timeout: Some(Duration::from_secs(1)),
            ..BackendSettings::default()
        };
        let low = BackendSettings {
            k8s_api_timeout: Some(Duration::from_secs(9)),
            poll_interval_max: Some(Duration::from_secs(2)),
            ..BackendSettings::default()
        };
        let both = high.over(&low);
        assert_eq!(both.k8s_api_timeout, Some(Duration::from_secs(1)));
        assert_eq!(both.poll_interval_max, Some(Duration::from_secs(2)));
    }

    #[test]
    fn captured_credentials_show_only_their_names() {
        let vars = CredentialVars::capture(&|name| match name {
            "AZURE_CLIENT_SECRET" => Some("hunter2".into()),
            "AZURE_TENANT_ID" => Some(String::new()),
            "HOME" => Some("/root".into()),
            _ => None,
        });
        assert_eq!(vars.get("AZURE_CLIENT_SECRET").as_deref(), Some("hunter2"));
        assert_eq!(vars.get("AZURE_TENANT_ID"), None);
        assert_eq!(format!("{vars:?}"), "{\"AZURE_CLIENT_SECRET\"}");
    }
}
