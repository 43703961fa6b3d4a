//! The cli integration tests, one binary (see docs/benchmarks.md, "CI time").

mod against_rev_cache;
mod ci_azure_devops;
mod ci_runner;
mod ci_workflow;
mod cli;
mod cli_control_chars;
mod cli_credentials;
mod cli_dashboard;
mod cli_interrupt;
mod promote;
mod promote_publish;
mod seed_flow;
