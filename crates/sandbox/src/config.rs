//! Sandbox knobs: the `flightdeck sandbox` flags and the in-process configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::SANDBOX_SUBSCRIPTION_ID;
use super::throttle::ThrottleSpec;

/// `flightdeck sandbox` flags.
#[derive(clap::Args, Clone)]
pub struct SandboxArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: SocketAddr,
    /// How long each create/update/scale/delete operation stays in progress.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub provisioning_delay: Duration,
    /// After a deployment is provisioned, how long its containers take to answer (503 until then).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub startup_delay: Duration,
    /// The one Azure region (workspace location) this sandbox emulates.
    #[arg(long, default_value = "westus2")]
    pub location: String,
    /// Items per page in list responses (before `nextLink`).
    #[arg(long, default_value_t = 50)]
    pub page_size: usize,
    /// Client id accepted by the token endpoint (default: generated at start).
    #[arg(long)]
    pub client_id: Option<String>,
    /// Client secret accepted by the token endpoint (default: generated at start).
    #[arg(long)]
    pub client_secret: Option<String>,
    /// Tenant id of the token endpoint (default: generated at start).
    #[arg(long)]
    pub tenant_id: Option<String>,
    /// The Retry-After (seconds) that LRO responses advertise, or `none` to send no Retry-After.
    #[arg(long, default_value = "1", value_parser = parse_retry_after)]
    pub retry_after: RetryAfter,
    /// Serve HTTPS with a self-signed certificate generated at start, written (PEM) to this path.
    #[arg(long, value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// Keep the generated tenant, client id and secret in DIR/credentials.json (mode 0600) and
    /// reuse them on the next start, so exported variables keep working across restarts.
    /// Endpoints stay in memory.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<std::path::PathBuf>,
    /// The Azure Monitor time grain of the data-plane metrics (whole seconds; Azure has PT1M only).
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub metrics_grain: Duration,
    /// How long after a metrics bucket closes the Azure Monitor API shows it (publication lag).
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    pub metrics_lag: Duration,
    /// How long metrics buckets (and idle Prometheus series) are kept.
    #[arg(long, default_value = "2h", value_parser = humantime::parse_duration)]
    pub metrics_retention: Duration,
    /// ARM-like throttling: a token bucket per principal for reads and for writes, `arm`
    /// (ARM's 250 reads with 25/s back, 200 writes with 10/s back) or
    /// `reads=CAPACITY/PER_SECOND,writes=CAPACITY/PER_SECOND`. Off by default.
    #[arg(long, value_name = "SPEC", value_parser = ThrottleSpec::parse)]
    pub throttle: Option<ThrottleSpec>,
}

/// `--retry-after`: whole seconds, or `None` for "send no Retry-After header".
pub type RetryAfter = Option<u64>;

fn parse_retry_after(raw: &str) -> Result<RetryAfter, String> {
    if raw.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    raw.parse::<u64>()
        .map(Some)
        .map_err(|_| format!("{raw:?} is not a whole number of seconds or `none`"))
}

impl std::fmt::Debug for SandboxArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxArgs")
            .field("listen", &self.listen)
            .field("provisioning_delay", &self.provisioning_delay)
            .field("startup_delay", &self.startup_delay)
            .field("location", &self.location)
            .field("page_size", &self.page_size)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .field("tenant_id", &self.tenant_id)
            .field("retry_after", &self.retry_after)
            .field("tls_cert", &self.tls_cert)
            .field("state_dir", &self.state_dir)
            .field("metrics_grain", &self.metrics_grain)
            .field("metrics_lag", &self.metrics_lag)
            .field("metrics_retention", &self.metrics_retention)
            .field("throttle", &self.throttle)
            .finish()
    }
}

impl SandboxArgs {
    pub fn into_config(self) -> SandboxConfig {
        SandboxConfig {
            listen: self.listen,
            provisioning_delay: self.provisioning_delay,
            startup_delay: self.startup_delay,
            location: self.location,
            page_size: self.page_size,
            client_id: self.client_id,
            client_secret: self.client_secret,
            tenant_id: self.tenant_id,
            retry_after: self.retry_after,
            tls_cert: self.tls_cert,
            metrics: MetricsConfig {
                grain: self.metrics_grain,
                lag: self.metrics_lag,
                retention: self.metrics_retention,
            },
            throttle: self.throttle,
        }
    }
}

/// In-process configuration. `Default` suits tests: an ephemeral port and 20 ms operations.
#[derive(Clone)]
pub struct SandboxConfig {
    pub listen: SocketAddr,
    pub provisioning_delay: Duration,
    pub startup_delay: Duration,
    pub location: String,
    pub page_size: usize,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub tenant_id: Option<String>,
    /// `None`: LRO responses carry no Retry-After.
    pub retry_after: RetryAfter,
    /// When set, serve HTTPS and write the self-signed certificate (PEM) here.
    pub tls_cert: Option<PathBuf>,
    /// The data-plane metrics knobs (grain, publication lag, retention).
    pub metrics: MetricsConfig,
    /// ARM-like throttling from the start (`None`: off; switchable at run time).
    pub throttle: Option<ThrottleSpec>,
}

/// The data-plane metrics knobs (docs/sandbox.md, "Metrics").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// The bucket width and the one time grain the Azure Monitor API serves and advertises
    /// (default 1 min, the only grain Azure ML's metrics have [MON R17]).
    pub grain: Duration,
    /// A bucket appears in the Azure Monitor API this long after it closes (default 120 s,
    /// [MON R18 emu]).
    pub lag: Duration,
    /// Buckets older than this are dropped, and Prometheus series idle this long vanish.
    pub retention: Duration,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            grain: Duration::from_secs(60),
            lag: Duration::from_secs(120),
            retention: Duration::from_secs(2 * 3600),
        }
    }
}

/// At most this many buckets per endpoint are kept (retention / grain).
pub const MAX_METRIC_BUCKETS: u64 = 10_080;

impl MetricsConfig {
    fn validate(&self) -> Result<(), String> {
        let grain = self.grain.as_secs();
        if self.grain.subsec_nanos() != 0 || grain == 0 || grain > 86_400 {
            return Err(format!(
                "metrics grain must be a whole number of seconds from 1s to 1d, got {:?}",
                self.grain
            ));
        }
        if self.retention < self.grain {
            return Err("metrics retention must be at least one grain".into());
        }
        if self.retention.as_secs() / grain > MAX_METRIC_BUCKETS {
            return Err(format!(
                "metrics retention / grain must be at most {MAX_METRIC_BUCKETS} buckets, got {}",
                self.retention.as_secs() / grain
            ));
        }
        if self.lag > self.retention {
            return Err("metrics lag must not exceed the retention".into());
        }
        Ok(())
    }
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            provisioning_delay: Duration::from_millis(20),
            startup_delay: Duration::ZERO,
            location: "westus2".to_string(),
            page_size: 50,
            client_id: None,
            client_secret: None,
            tenant_id: None,
            retry_after: Some(1),
            tls_cert: None,
            metrics: MetricsConfig::default(),
            throttle: None,
        }
    }
}

impl std::fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("listen", &self.listen)
            .field("provisioning_delay", &self.provisioning_delay)
            .field("startup_delay", &self.startup_delay)
            .field("location", &self.location)
            .field("page_size", &self.page_size)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "***"))
            .field("tenant_id", &self.tenant_id)
            .field("retry_after", &self.retry_after)
            .field("tls_cert", &self.tls_cert)
            .field("metrics", &self.metrics)
            .field("throttle", &self.throttle)
            .finish()
    }
}

/// The configuration with every generated value filled in.
#[derive(Clone)]
pub(crate) struct Resolved {
    pub provisioning_delay: Duration,
    pub startup_delay: Duration,
    pub location: String,
    pub page_size: usize,
    pub client_id: String,
    pub client_secret: String,
    pub tenant_id: String,
    pub retry_after: RetryAfter,
    pub metrics: MetricsConfig,
    pub throttle: Option<ThrottleSpec>,
}

impl Resolved {
    pub fn new(config: &SandboxConfig) -> Result<Self, super::SandboxError> {
        if config.page_size == 0 {
            return Err(super::SandboxError::Config(
                "page size must be at least 1".into(),
            ));
        }
        if config.location.trim().is_empty() {
            return Err(super::SandboxError::Config(
                "location must not be empty".into(),
            ));
        }
        config
            .metrics
            .validate()
            .map_err(super::SandboxError::Config)?;
        if let Some(t) = &config.throttle {
            t.validate().map_err(super::SandboxError::Config)?;
        }
        Ok(Resolved {
            metrics: config.metrics,
            throttle: config.throttle,
            provisioning_delay: config.provisioning_delay,
            startup_delay: config.startup_delay,
            location: config.location.clone(),
            page_size: config.page_size,
            client_id: config
                .client_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            client_secret: config
                .client_secret
                .clone()
                .unwrap_or_else(super::auth::random_secret),
            tenant_id: config
                .tenant_id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            retry_after: config.retry_after,
        })
    }
}

/// The fake, sandbox-local credentials a client uses ([AML §6] variables).
#[derive(Clone, PartialEq, Eq)]
pub struct SandboxCredentials {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub subscription_id: String,
}

impl SandboxCredentials {
    pub(crate) fn from_resolved(r: &Resolved) -> Self {
        SandboxCredentials {
            tenant_id: r.tenant_id.clone(),
            client_id: r.client_id.clone(),
            client_secret: r.client_secret.clone(),
            subscription_id: SANDBOX_SUBSCRIPTION_ID.to_string(),
        }
    }
}

impl std::fmt::Debug for SandboxCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxCredentials")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("subscription_id", &self.subscription_id)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_client_secret() {
        let config = SandboxConfig {
            client_secret: Some("hunter2-very-secret".into()),
            ..Default::default()
        };
        let resolved = Resolved::new(&config).unwrap();
        let creds = SandboxCredentials::from_resolved(&resolved);
        assert!(!format!("{config:?}").contains("hunter2"));
        assert!(!format!("{creds:?}").contains("hunter2"));
        assert_eq!(creds.client_secret, "hunter2-very-secret");
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: SandboxArgs,
    }

    #[test]
    fn flags_parse_with_the_documented_defaults() {
        use clap::Parser;
        let cli = Cli::try_parse_from(["sandbox"]).unwrap();
        let config = cli.args.into_config();
        assert_eq!(config.listen.to_string(), "127.0.0.1:7070");
        assert_eq!(config.provisioning_delay, Duration::from_secs(2));
        assert_eq!(config.location, "westus2");
        assert_eq!((config.page_size, config.retry_after), (50, Some(1)));
        assert_eq!(config.tls_cert, None);
        assert_eq!(config.metrics, MetricsConfig::default());
        let none = Cli::try_parse_from(["sandbox", "--retry-after", "none"]).unwrap();
        assert_eq!(none.args.retry_after, None);
        assert!(Cli::try_parse_from(["sandbox", "--retry-after", "soon"]).is_err());
        let cli = Cli::try_parse_from([
            "sandbox",
            "--listen",
            "0.0.0.0:9000",
            "--provisioning-delay",
            "150ms",
            "--client-secret",
            "s3cret",
            "--page-size",
            "7",
            "--metrics-grain",
            "1s",
            "--metrics-lag",
            "0s",
        ])
        .unwrap();
        assert!(!format!("{:?}", cli.args).contains("s3cret"));
        let config = cli.args.into_config();
        assert_eq!(config.provisioning_delay, Duration::from_millis(150));
        assert_eq!(config.page_size, 7);
        assert_eq!(config.metrics.grain, Duration::from_secs(1));
        assert_eq!(config.metrics.lag, Duration::ZERO);
        assert!(Cli::try_parse_from(["sandbox", "--provisioning-delay", "soon"]).is_err());
    }

    #[test]
    fn missing_credentials_are_generated() {
        let r = Resolved::new(&SandboxConfig::default()).unwrap();
        assert_eq!(r.client_id.len(), 36);
        assert!(r.client_secret.len() >= 40);
        assert!(
            Resolved::new(&SandboxConfig {
                page_size: 0,
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn metrics_knobs_outside_their_bounds_are_refused() {
        let with = |grain: u64, lag: u64, retention: u64| SandboxConfig {
            metrics: MetricsConfig {
                grain: Duration::from_millis(grain),
                lag: Duration::from_millis(lag),
                retention: Duration::from_millis(retention),
            },
            ..Default::default()
        };
        assert!(Resolved::new(&with(1000, 0, 7_200_000)).is_ok());
        for (grain, lag, retention) in [
            (0, 0, 60_000),
            (1500, 0, 60_000),
            (60_000, 0, 1000),
            (1000, 0, 86_400_000),
            (1000, 120_000, 60_000),
        ] {
            let Err(err) = Resolved::new(&with(grain, lag, retention)) else {
                panic!("{grain} {lag} {retention} must be refused");
            };
            assert!(err.to_string().contains("metrics"), "{err}");
        }
    }
}
