//! Blue/green slots: an endpoint that declares two deployment names (`slots.<endpoint>.names`
//! in `environment.yaml`) and one deployment template instead of named deployments. Before
//! planning, [`resolve`] turns each such endpoint into an ordinary declared endpoint, from the
//! live state: which slot gets the template, the traffic (all of it to that slot) and what
//! becomes of the other slot. Pure: no I/O, no clock. docs/rollouts.md "Blue/green slots".
//!
//! The rules, chosen so that resolving again gives the same answer on every tick, in the middle
//! of a staged rollout and after a rollback (the rollout record's digest is over the resolved
//! endpoint, so a held release stays held):
//! - a slot whose live settings already equal the template (compared as the planner compares:
//!   only what the template declares, minus `drift.ignore`, under the platform profile) is the
//!   target; with both, the one with more live traffic (the first name on a tie);
//! - otherwise the idle slot (not live, or at 0% live) gets the template (the first name when
//!   both are idle); when both take live traffic and neither runs the template, the release is
//!   refused: updating a deployment that serves requests in place is no blue/green release;
//! - the other slot keeps its live settings until the target holds all live traffic; then
//!   `after_swap` applies. Without a rollout policy the swap is one plan, so `after_swap` is in
//!   that plan too: the planner's order (`plan::order`) shifts traffic before it scales down or
//!   deletes, and a failed step skips the rest of the endpoint's steps.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{DesiredState, Endpoint, LiveEndpoint, LiveState, Weights};
use crate::plan::compare::deployment_changes;
use crate::plan::{Note, PlatformProfile, Refusal};

/// What becomes of the slot that served before, once the other holds all traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterSwap {
    /// Kept as it is, at 0%: the next release goes there, and a rollback by hand is one
    /// traffic change.
    #[default]
    Keep,
    /// Kept at 0% with one instance (the least a managed online deployment may have).
    ScaleDown,
    /// Deleted once it takes no traffic.
    Delete,
}

impl AfterSwap {
    pub fn as_str(self) -> &'static str {
        match self {
            AfterSwap::Keep => "keep",
            AfterSwap::ScaleDown => "scale_down",
            AfterSwap::Delete => "delete",
        }
    }
}

/// The instance count `after_swap: scale_down` leaves the old slot with.
pub const SCALED_DOWN_INSTANCES: u32 = 1;

/// One endpoint's slots, as `environment.yaml` declares them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Slots {
    /// Exactly two distinct deployment names, in the order written.
    pub names: [String; 2],
    /// The template file, relative to the environment directory (for messages).
    pub template_file: String,
    /// The template deployment; its `name` is replaced by the chosen slot.
    pub template: crate::model::Deployment,
    #[serde(default)]
    pub after_swap: AfterSwap,
}

/// One endpoint resolved: the concrete endpoint to plan, the slot that gets the template, and
/// why (`None` in steady state: the target serves everything and nothing is left to do).
#[derive(Clone, Debug, PartialEq)]
pub struct Resolution {
    pub endpoint: Endpoint,
    pub target: String,
    pub note: Option<String>,
}

/// Resolves one slot endpoint. `declared` is the endpoint as loaded (its other deployments,
/// settings and mirror; no traffic), `live` the endpoint as read, `direct` whether the swap is
/// one plan (no rollout policy for this endpoint). `Err` is the refusal's message.
pub fn resolve_endpoint(
    slots: &Slots,
    declared: &Endpoint,
    live: Option<&LiveEndpoint>,
    direct: bool,
    ignore: &[String],
    profile: &PlatformProfile,
) -> Result<Resolution, String> {
    let live_dep = |n: &str| live.and_then(|l| l.deployments.get(n));
    let live_weight = |n: &str| live.and_then(|l| l.traffic.get(n)).copied().unwrap_or(0);
    let runs_template = |n: &str| {
        live_dep(n).is_some_and(|d| {
            deployment_changes(&slots.template.settings, &d.settings, ignore, profile).is_empty()
        })
    };
    let [first, second] = &slots.names;
    let model = slots
        .template
        .settings
        .model
        .as_ref()
        .map(|m| format!(" (model {m})"))
        .unwrap_or_default();
    let (target, mut why) = match (runs_template(first), runs_template(second)) {
        (true, true) if live_weight(second) > live_weight(first) => (second, None),
        (true, _) => (first, None),
        (false, true) => (second, None),
        (false, false) => {
            let idle = |n: &str| live_dep(n).is_none() || live_weight(n) == 0;
            let target = match (idle(first), idle(second)) {
                (true, _) => first,
                (false, true) => second,
                (false, false) => {
                    return Err(format!(
                        "slots {first} ({}% live) and {second} ({}% live) both take traffic and \
                         neither runs the template {}: no slot is idle to deploy it into; finish or \
                         abort the release in progress (or move all traffic to one slot) first",
                        live_weight(first),
                        live_weight(second),
                        slots.template_file
                    ));
                }
            };
            let state = if live_dep(target).is_some() {
                "idle, 0% live"
            } else {
                "idle, not live"
            };
            let message = if live
                .is_none_or(|l| !slots.names.iter().any(|n| l.deployments.contains_key(n)))
            {
                format!("slot {target} gets the template{model}: no slot is live yet")
            } else {
                let other = if target == first { second } else { first };
                let serving = if live_weight(other) > 0 {
                    format!("; {other} keeps serving until the swap")
                } else {
                    String::new()
                };
                format!("slot {target} ({state}) gets the template{model}{serving}")
            };
            (target, Some(message))
        }
    };
    let other = if target == first { second } else { first };
    let swapped = live_weight(target) == 100;
    if why.is_none() && !swapped {
        why = Some(match live_weight(other) {
            0 => format!("slot {target} runs the template{model}; traffic moves to it"),
            w => format!(
                "slot {target} runs the template{model}; traffic swaps to it from {other} ({w}% live)"
            ),
        });
    }
    let mut endpoint = declared.clone();
    let mut deployment = slots.template.clone();
    deployment.name = target.clone();
    endpoint.deployments.insert(target.clone(), deployment);
    let after = if swapped || direct {
        slots.after_swap
    } else {
        AfterSwap::Keep
    };
    let mut after_note = None;
    if let Some(old) = live_dep(other) {
        let mut kept = crate::model::Deployment {
            name: other.clone(),
            settings: old.settings.clone(),
            test: None,
        };
        match after {
            AfterSwap::Keep => {
                endpoint.deployments.insert(other.clone(), kept);
            }
            AfterSwap::ScaleDown => {
                if old.settings.instance_count != Some(SCALED_DOWN_INSTANCES) {
                    after_note = Some(format!(
                        "{other} is scaled down to {SCALED_DOWN_INSTANCES} instance (after_swap: scale_down)"
                    ));
                }
                kept.settings.instance_count = Some(SCALED_DOWN_INSTANCES);
                endpoint.deployments.insert(other.clone(), kept);
            }
            AfterSwap::Delete => {
                after_note = Some(format!("{other} is deleted (after_swap: delete)"));
            }
        }
    }
    let mut traffic = Weights::new();
    traffic.insert(target.clone(), 100);
    if endpoint.deployments.contains_key(other) {
        traffic.insert(other.clone(), 0);
    }
    endpoint.traffic = Some(traffic);
    let note = match (why, after_note) {
        (Some(w), Some(a)) => Some(format!("{w}; then {a}")),
        (Some(w), None) => Some(w),
        (None, Some(a)) => Some(format!("slot {target} took the swap; {a}")),
        (None, None) => None,
    };
    Ok(Resolution {
        endpoint,
        target: target.clone(),
        note,
    })
}

/// Replaces every slot endpoint of `desired` with its resolution against `live`, and returns
/// the notes that say which slot and why (one per endpoint with something to do), for the
/// plan, `diff` and the apply report. Any refusal refuses the whole environment, as the
/// planner does; nothing is changed then.
pub fn resolve(
    desired: &mut DesiredState,
    live: &LiveState,
    profile: &PlatformProfile,
) -> Result<Vec<Note>, Vec<Refusal>> {
    let environment = &desired.environment;
    let mut resolved = BTreeMap::new();
    let mut notes = Vec::new();
    let mut refusals = Vec::new();
    for (name, slots) in &environment.slots {
        let Some(declared) = desired.endpoints.get(name) else {
            continue;
        };
        let direct = environment.rollout.policy_for(name).is_none();
        let ignore = &environment.drift.ignore;
        match resolve_endpoint(
            slots,
            declared,
            live.endpoints.get(name),
            direct,
            ignore,
            profile,
        ) {
            Ok(r) => {
                if let Some(message) = r.note {
                    notes.push(Note {
                        endpoint: name.clone(),
                        deployment: None,
                        message,
                    });
                }
                resolved.insert(name.clone(), r.endpoint);
            }
            Err(message) => refusals.push(Refusal {
                endpoint: name.clone(),
                deployment: None,
                message,
            }),
        }
    }
    if !refusals.is_empty() {
        return Err(refusals);
    }
    desired.endpoints.extend(resolved);
    Ok(notes)
}

#[cfg(test)]
#[path = "slots_tests.rs"]
mod tests;
