//! The cli integration tests, one binary (see docs/benchmarks.md, "CI time").

mod against_rev_cache;
mod cli;
mod cli_control_chars;
mod cli_credentials;
mod cli_interrupt;
mod seed_flow;
