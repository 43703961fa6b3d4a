//! The spec integration tests, one binary (see docs/benchmarks.md, "CI time").

mod golden_plans;
mod incremental_properties;
mod plan_properties;
mod slot_properties;
mod spec_errors;
mod spec_load;
mod spec_pod_settings;
mod spec_promotion;
mod spec_rollout;
mod spec_schemas;
mod spec_slots;
