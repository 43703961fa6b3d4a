//! The kubernetes integration tests, one binary (see docs/benchmarks.md, "CI time").

mod k8s_cli;
mod k8s_failures;
mod k8s_fake_api;
mod k8s_fidelity;
mod k8s_planned_flow;
mod k8s_production;
mod k8s_rollout_annotations;
mod k8s_rollout_hpa;
mod k8s_rollout_mirror;
mod k8s_rollout_scale;
mod k8s_rollouts;
mod k8s_seed_flow;
mod k8s_slots;
mod k8s_targeted_read;
mod k8s_timeouts;
