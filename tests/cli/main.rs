//! The cli integration tests, one binary (see docs/benchmarks.md, "CI time").

mod cli;
mod cli_control_chars;
mod cli_credentials;
mod cli_dashboard;
mod cli_interrupt;
mod seed_flow;
