//! Progressive rollouts: a policy of staged weights, bakes, pauses and metric gates (`policy`),
//! the progress the platform stores (`record`), the gates' verdicts (`gates`), the instance counts that follow a stage (`scale`) and the pure
//! engine that decides each tick (`engine`). The driver that reads metrics, plans, applies and
//! writes the record lives at the edge, in the binary's `reconcile`.

pub mod engine;
#[cfg(test)]
mod engine_tests;
pub mod gates;
pub mod policy;
pub mod record;
pub mod revert;
pub mod revert_template;
pub mod scale;
#[cfg(test)]
mod smoke_gate_tests;
pub mod view;

pub use engine::{Decision, Input, RecordWrite, Status, decide};
pub use gates::{GateResult, Verdict};
pub use policy::{
    Comparison, Gate, OnFailure, RolloutPolicy, RolloutSettings, Stage, StageTarget, Threshold,
};
pub use record::{RolloutRecord, RolloutState};
pub use view::RolloutView;
