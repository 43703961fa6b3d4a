//! flightdeck: a GitOps reconciler for ML model endpoints.
//!
//! The workspace: `flightdeck-core` (crates/core) holds the format, the pure planner, the
//! executor and the `Backend` trait; `flightdeck-azureml` and `flightdeck-kubernetes` are the
//! platforms; `flightdeck-sandbox` emulates Azure ML and depends on nothing of flightdeck. This
//! crate is the binary's side: `cli`, the long-running `agent`, the desired-state `source`s (Git,
//! a local directory), `logging`, `backend::connect`, which wires a target to its platform, and `reconcile`, the one
//! load → read live → plan → apply → report that `flightdeck apply` and the agent's tick share.
//! The core's modules are re-exported under their usual names.

pub use flightdeck_core::{
    apply, clock, escape, metrics, model, plan, promotion, retry, rollout, slots, spec,
};
pub use flightdeck_sandbox as sandbox;

pub mod agent;
pub mod allocator;
pub mod backend;
pub mod cli;
pub mod dashboard;
pub mod git_branch;
pub mod hosting;
pub mod logging;
pub mod mlflow;
pub mod promote;
pub mod reconcile;
pub mod rollouts;
pub mod source;
