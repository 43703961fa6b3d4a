//! The azureml integration tests, one binary (see docs/benchmarks.md, "CI time").

mod azureml_actions;
mod azureml_auth;
mod azureml_faults;
mod azureml_gate;
mod azureml_lro_polling;
mod azureml_malformed;
mod azureml_mirror;
mod azureml_monitor;
mod azureml_reads_per_step;
mod azureml_revert;
mod azureml_rollout_agent_crash;
mod azureml_rollout_crash;
mod azureml_rollout_scale;
mod azureml_rollouts;
mod azureml_sandbox_cli;
mod azureml_sandbox_faults;
mod azureml_sandbox_pending;
mod azureml_sandbox_rollout_tags;
mod azureml_sandbox_seed_flow;
mod azureml_slots;
mod azureml_smoke;
mod azureml_smoke_gate;
mod azureml_timeouts;
mod azureml_token_refresh;
