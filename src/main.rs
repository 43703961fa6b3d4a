//! `flightdeck`: parse the command line, set up logging, run, exit with the command's code.

use std::process::ExitCode;

use clap::Parser;
use flightdeck::cli::{Cli, Command, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Agent(_)) {
        // Before the runtime starts its threads (src/allocator.rs says why).
        flightdeck::allocator::one_arena();
    }
    // Long-running commands log their lifecycle; one-shot commands only warnings.
    let default = match cli.command {
        Command::Sandbox(_) | Command::Agent(_) => "info",
        _ => "warn",
    };
    flightdeck::logging::init(cli.log_format == LogFormat::Json, default);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(flightdeck::cli::run(cli))
}
