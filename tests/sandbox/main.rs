//! The sandbox integration tests, one binary (see docs/benchmarks.md, "CI time").

mod sandbox_auth;
mod sandbox_contract;
mod sandbox_data_plane;
mod sandbox_faults;
mod sandbox_holds;
mod sandbox_lifecycle;
mod sandbox_metrics;
mod sandbox_metrics_monitor;
mod sandbox_rolling_update;
mod sandbox_rules;
mod sandbox_sdk_surface;
mod sandbox_throttle;
