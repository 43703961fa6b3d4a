//! `flightdeck`: parse the command line, set up logging, run, exit with the command's code.

use std::process::ExitCode;

use clap::Parser;
use flightdeck::cli::{Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Long-running commands log their lifecycle; one-shot commands only warnings.
    let default = match cli.command {
        Command::Sandbox(_) | Command::Agent(_) => "info",
        _ => "warn",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    flightdeck::cli::run(cli).await
}
