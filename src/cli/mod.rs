//! Command-line interface: argument types and dispatch. Exit codes (documented in README):
//! `plan`/`diff`: 0 no changes, 1 changes pending, 2 error (the `kubectl diff` convention);
//! `validate`: 0 valid, 2 invalid; `apply`: 0 applied (or nothing to do), 1 a step failed,
//! 2 invalid input or could not start (nothing applied), 130 interrupted (Ctrl-C or SIGTERM).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::plan::render::Format;

pub use backend_args::{BackendArgs, backend_config};

mod apply;
mod backend_args;
mod commands;
mod dashboard;
mod interrupt;
mod live;
mod promote;
mod revert;
mod revert_select;
mod rollout;

/// GitOps reconciler for ML model endpoints.
#[derive(Debug, Parser)]
#[command(name = "flightdeck", version, about, long_about = None)]
pub struct Cli {
    /// Log format for diagnostics on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "FLIGHTDECK_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check environment directories or YAML files; print every problem with file:line:col.
    Validate {
        /// Environment directories (with environment.yaml) or endpoint/deployment YAML files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Print the ordered steps that would bring live state to the desired state.
    Plan(PlanArgs),
    /// Print a unified diff of the live and desired endpoint documents.
    Diff(PlanArgs),
    /// Execute the plan through the environment's backend, step by step.
    Apply(ApplyArgs),
    /// Write the live state of an environment to a snapshot file (for `--live`).
    Export(ExportArgs),
    /// Run a local emulator of the Azure ML online endpoint API, with a data plane.
    Sandbox(crate::sandbox::SandboxArgs),
    /// Write the JSON Schemas of the environment format (generated from the field table).
    Schema {
        /// Directory to write endpoint, deployment, kubernetes-deployment and environment
        /// `.schema.json` files into (created if missing; existing files are replaced).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Run the long-running GitOps reconciler (git poll + webhook, drift, health, metrics).
    Agent(Box<crate::agent::AgentArgs>),
    /// Staged rollouts by hand: `status`, `resume` a paused one, `abort` one in progress.
    Rollout(rollout::RolloutArgs),
    /// After a failed rollout (the endpoint is held), write a commit on a new branch that makes
    /// the YAML match what is live (`traffic`, `mirror_traffic`, a deleted candidate's file, a
    /// deleted baseline's file restored from the last 1,000 commits, a slot endpoint's template
    /// set back to what the serving slot runs), ready for a pull request. The checked-out branch, index and work tree are not touched.
    /// Exit 0 written; 2 refused (nothing held, not a Git repository, dirty directory, branch
    /// exists, result invalid or not in sync), nothing written.
    Revert(revert::RevertArgs),
    /// Set one deployment's model version (or image), or a slot template's, as a minimal edit
    /// of its YAML; validate and plan the result; commit it on a new branch (the checked-out
    /// branch, index and work tree are not touched); optionally `--push` it and `--open-pr`.
    /// Exit 0 written; 2 refused (no such endpoint or deployment, version already declared,
    /// result invalid, branch exists), nothing written; 1 committed but push or PR failed.
    Promote(Box<promote::PromoteArgs>),
    /// Serve the read-only rollout dashboard of one environment on this machine, reading the
    /// platform every few seconds (no agent needed): traffic per deployment, stages, gates.
    Dashboard(dashboard::DashboardArgs),
}

/// Where live state comes from.
#[derive(Debug, Args, Clone)]
pub struct LiveArgs {
    /// Read live state from a snapshot written by `flightdeck export`.
    #[arg(long, value_name = "FILE", conflicts_with = "against_rev")]
    pub live: Option<PathBuf>,
    /// Compare against the same environment directory at another Git revision of the
    /// enclosing repository (no credentials needed), e.g. `origin/main` or `HEAD~1`.
    #[arg(long, value_name = "REV")]
    pub against_rev: Option<String>,
    #[command(flatten)]
    pub backend: BackendArgs,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The environment directory (environments/<env>).
    pub env_dir: PathBuf,
    #[command(flatten)]
    pub live: LiveArgs,
    /// Output format.
    #[arg(long, short, value_enum, default_value = "text")]
    pub output: Format,
    /// Also delete live endpoints that are not declared.
    #[arg(long)]
    pub prune: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The environment directory (environments/<env>).
    pub env_dir: PathBuf,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Print what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also delete live endpoints that are not declared.
    #[arg(long)]
    pub prune: bool,
    /// Endpoints applied in parallel (steps of one endpoint always run one at a time).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Report format (progress lines are always text on stderr).
    #[arg(long, short, value_enum, default_value = "text")]
    pub output: Format,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The environment directory (environments/<env>).
    pub env_dir: PathBuf,
    /// Snapshot file to write (stdout when absent).
    #[arg(long, short = 'f', value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub backend: BackendArgs,
}

/// Runs the parsed command line and returns the process exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let code = match cli.command {
        Command::Validate { paths } => commands::validate(&paths),
        Command::Plan(args) => commands::plan(&args).await,
        Command::Diff(args) => commands::diff(&args).await,
        Command::Apply(args) => apply::apply(&args).await,
        Command::Export(args) => commands::export(&args).await,
        Command::Rollout(args) => rollout::run(&args).await,
        Command::Revert(args) => revert::revert(&args).await,
        Command::Promote(args) => promote::promote(&args).await,
        Command::Dashboard(args) => report(dashboard::run(&args).await),
        Command::Schema { out } => commands::schema(&out),
        Command::Sandbox(args) => report(crate::sandbox::run(args).await),
        Command::Agent(args) => report(crate::agent::run(*args).await),
    };
    ExitCode::from(code)
}

fn report(result: anyhow::Result<()>) -> u8 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}
