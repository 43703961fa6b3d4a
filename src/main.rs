//! `flightdeck`: parse the command line, set up logging, run, exit with the command's code.

use std::process::ExitCode;

use clap::Parser;
use flightdeck::cli::{Cli, Command, LogFormat};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Long-running commands log their lifecycle; one-shot commands only warnings.
    let default = match cli.command {
        Command::Sandbox(_) | Command::Agent(_) => "info",
        _ => "warn",
    };
    flightdeck::logging::init(cli.log_format == LogFormat::Json, default);
    flightdeck::cli::run(cli).await
}
