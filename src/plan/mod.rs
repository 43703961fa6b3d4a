//! The pure planner: `plan(&DesiredState, &LiveState, &PlanOptions) -> Plan`. No I/O, no clock.

mod step;

pub use step::{Action, FieldChange, Note, Plan, Refusal, Step};
