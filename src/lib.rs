//! flightdeck: a GitOps reconciler for ML model endpoints.
//!
//! Layout: `spec` loads and validates the desired state, `plan` is the pure planner, `apply`
//! executes a plan through a `backend`; `sandbox` emulates Azure ML locally; `agent` is the
//! long-running reconciler.

pub mod apply;
pub mod backend;
pub mod model;
pub mod plan;
