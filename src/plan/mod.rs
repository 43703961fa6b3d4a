//! The pure planner: `plan(&DesiredState, &LiveState, &PlanOptions) -> Plan`. No I/O, no clock.

pub mod compare;
pub mod diff;
mod diff_yaml;
mod endpoint;
mod planner;
pub mod quantity;
mod reasons;
pub mod render;
mod step;

pub use planner::pending;
pub use planner::{PlanOptions, plan};
pub use step::{Action, FieldChange, Note, Pending, Plan, Refusal, Step};
