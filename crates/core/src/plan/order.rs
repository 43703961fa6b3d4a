//! The safety order of a plan, decided in one place: each endpoint's steps sorted by phase
//! (`Phase`, top to bottom), as gitops-engine sorts sync tasks by phase and wave and fluxcd/pkg
//! `ssa` sorts objects by kind. The sort is stable, so within a phase steps keep the order the
//! planner emitted them in (deployment name order).

use super::Step;

/// Sorts one endpoint's steps into the safe order.
pub(super) fn in_safe_order(steps: &mut [Step]) {
    steps.sort_by_key(|s| s.phase);
}
