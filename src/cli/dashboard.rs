//! `flightdeck dashboard ENV_DIR [--listen ADDR]`: the agent's dashboard on this machine,
//! without an agent. It polls the platform (`dashboard::local`) and serves the same page, the
//! same server-sent events and the same optional token. Read-only: it writes nothing anywhere.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use tokio_util::sync::CancellationToken;

use super::BackendArgs;
use crate::dashboard::local::{self, LocalSettings};
use crate::dashboard::{DashboardContext, Hub};
use crate::source::Secret;

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// The environment directory (environments/<env>).
    pub env_dir: PathBuf,
    /// Where to serve the page (keep it on loopback unless a token is set).
    #[arg(
        long,
        default_value = "127.0.0.1:8090",
        env = "FLIGHTDECK_DASHBOARD_LISTEN"
    )]
    pub listen: SocketAddr,
    /// How often to read the platform again.
    #[arg(long, default_value = "3s", value_name = "DURATION")]
    pub every: humantime::Duration,
    /// Link commits through this template, e.g. `https://github.com/o/r/commit/{sha}`.
    #[arg(long, value_name = "TEMPLATE", env = "FLIGHTDECK_COMMIT_URL")]
    pub commit_url: Option<String>,
    /// File holding a token every request must present (Bearer, or Basic with the token as
    /// password); or set FLIGHTDECK_DASHBOARD_TOKEN.
    #[arg(long, value_name = "FILE", env = "FLIGHTDECK_DASHBOARD_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub backend: BackendArgs,
}

pub async fn run(args: &DashboardArgs) -> anyhow::Result<()> {
    if !args.env_dir.join("environment.yaml").is_file() {
        anyhow::bail!(
            "{}: not an environment directory (no environment.yaml)",
            args.env_dir.display()
        );
    }
    let every = std::time::Duration::from(args.every);
    if every < std::time::Duration::from_millis(200) {
        anyhow::bail!("--every {}: at least 200ms", args.every);
    }
    let commit_url = args
        .commit_url
        .as_deref()
        .map(crate::dashboard::commit_url_template)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let token = match &args.token_file {
        Some(path) => Some(Secret::from_file(path)?),
        None => std::env::var("FLIGHTDECK_DASHBOARD_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(Secret::new),
    };
    let backend = super::backend_config(&args.backend)?;
    let hub = Arc::new(Hub::new(args.env_dir.display().to_string(), commit_url));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("listening on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read the address from this line (`--listen 127.0.0.1:0`).
    eprintln!("dashboard on http://{addr}/ (read-only; Ctrl-C stops)");
    let cancel = CancellationToken::new();
    let poller = tokio::spawn(local::poll(
        LocalSettings {
            env_dir: args.env_dir.clone(),
            every,
            backend,
        },
        hub.clone(),
        cancel.clone(),
    ));
    let router = crate::dashboard::routes(DashboardContext::new(hub.clone(), token));
    let stop = cancel.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    #[cfg(unix)]
    {
        let stop = cancel.clone();
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::spawn(async move {
                term.recv().await;
                stop.cancel();
            });
        }
    }
    let shutdown = cancel.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.cancelled().await;
            hub.close();
        })
        .await?;
    let _ = poller.await;
    Ok(())
}
