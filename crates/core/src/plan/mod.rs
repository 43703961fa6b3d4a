//! The pure planner: `plan(&DesiredState, &LiveState, &PlanOptions, &PlatformProfile) -> Plan`.
//! No I/O, no clock; the platform's rules arrive as data (`profile`).

pub mod compare;
pub mod diff;
mod diff_yaml;
mod endpoint;
mod order;
mod planner;
pub mod profile;
pub mod quantity;
mod reasons;
pub mod render;
mod step;

pub use planner::pending;
pub use planner::{PlanOptions, plan};
pub use profile::PlatformProfile;
pub use step::{Action, FieldChange, Note, Pending, Phase, Plan, Refusal, Step};
