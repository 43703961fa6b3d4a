//! The agent integration tests, one binary (see docs/benchmarks.md, "CI time").

mod agent_cache;
mod agent_cli;
mod agent_dashboard;
mod agent_http_limits;
mod agent_lease;
mod agent_loop;
mod agent_mlflow;
mod agent_resume;
mod agent_rollout_resume;
mod agent_sandbox;
mod agent_signed_commits;
mod agent_source;
mod agent_supervision;
mod agent_targeted;
mod agent_token_revoked;
mod agent_watch_local;
mod agent_webhook;
mod commit_signatures;
mod git_http_source;
mod hostile_sources;
mod hostile_trees;
