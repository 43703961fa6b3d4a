//! `flightdeck sandbox`: a local emulator of the Azure ML managed online endpoint API
//! (the reference contract `reference/azureml/CONTRACT.md`, cited as `[AML §N]` / `[AML RN]`, is its spec) with a real data plane, an
//! Entra-shaped token endpoint, fault injection and introspection. See docs/sandbox.md.
//!
//! Layout: `config` (knobs), `server` (router and shared state), `state` (store, operation
//! settlement), `rules` / `deployment_input` (validation), `shapes` (response bodies), `lro`
//! (operations), `clock` (the one time source), `arm_endpoints` / `arm_deployments` / `paging`
//! (control plane), `auth` (tokens),
//! `data_plane` / `routing` (scoring), `metrics` (the data plane's request metrics) with its
//! views `prometheus` (`/metrics`) and `monitor` / `monitor_query` / `monitor_series` (the Azure
//! Monitor metrics API), `workspace` (the workspace GET), `faults`, `throttle` (ARM-like token buckets), `holds` (operations kept in progress), `journal`, `history` (routing changes),
//! `net` / `tls` (listeners).

mod arm_deployments;
mod arm_endpoints;
mod auth;
mod clock;
mod config;
mod data_plane;
mod deployment_input;
mod error;
mod faults;
mod history;
mod holds;
mod journal;
mod lro;
mod metrics;
mod monitor;
mod monitor_query;
mod monitor_series;
mod net;
mod paging;
mod prometheus;
mod routing;
mod rules;
mod server;
mod shapes;
mod state;
mod state_dir;
mod throttle;
mod tls;
mod workspace;

pub use config::{MetricsConfig, SandboxArgs, SandboxConfig, SandboxCredentials};
pub use error::SandboxError;
pub use server::{Sandbox, SandboxHandle};
pub use throttle::{BucketSpec, ThrottleSpec};

pub(crate) use server::AppState;

/// The subscription id printed in `env_lines` (any subscription is accepted).
pub const SANDBOX_SUBSCRIPTION_ID: &str = "00000000-0000-0000-0000-000000000000";

/// `flightdeck sandbox`: starts the emulator, prints the `KEY=value` lines a client needs on
/// stdout, logs to stderr, and shuts down cleanly on SIGINT or SIGTERM.
pub async fn run(args: SandboxArgs) -> anyhow::Result<()> {
    let state_dir = args.state_dir.clone();
    let mut config = args.into_config();
    if let Some(dir) = &state_dir {
        match state_dir::keep_credentials(dir, &mut config)? {
            state_dir::KeptOutcome::Reused(path) => {
                tracing::info!(file = %path.display(), "reusing the kept credentials");
            }
            state_dir::KeptOutcome::Created(path) => {
                tracing::info!(file = %path.display(), "credentials generated and kept");
            }
            state_dir::KeptOutcome::Changed(path, names) => tracing::warn!(
                file = %path.display(),
                changed = %names.join(", "),
                "the credentials changed (flags differ from the kept ones): clients must export the new lines"
            ),
        }
    }
    let handle = Sandbox::start(config).await?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for line in handle.env_lines() {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
    }
    tracing::info!(base_url = %handle.base_url(), "sandbox listening");
    wait_for_signal().await?;
    tracing::info!("sandbox shutting down");
    handle.shutdown().await;
    Ok(())
}

#[cfg(unix)]
async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

#[cfg(not(unix))]
async fn wait_for_signal() -> anyhow::Result<()> {
    tokio::signal::ctrl_c().await?;
    Ok(())
}
