//! flightdeck: a GitOps reconciler for ML model endpoints.
//!
//! Layout: `spec` loads and validates the desired state, `plan` is the pure planner, `apply`
//! executes a plan through a `backend`; `sandbox` emulates Azure ML locally; `agent` is the
//! long-running reconciler. `escape` and `logging` keep control characters out of every line
//! flightdeck prints.

pub mod agent;
pub mod apply;
pub mod backend;
pub mod cli;
pub mod escape;
pub mod logging;
pub mod model;
pub mod plan;
pub mod retry;
pub mod sandbox;
pub mod source;
pub mod spec;
