//! `plan(desired, live, opts, profile) -> Plan`: pairs endpoints and deployments by name,
//! classifies each pair, and gives each step a `Phase`; each endpoint's steps are then sorted by
//! phase (`plan::order`), the one order that keeps traffic safe:
//!
//! 1. create the endpoint, update its settings;
//! 2. recreate idle deployments whose create-only fields changed;
//! 3. create deployments (at 0%), update them, scale up, re-provision failed ones;
//! 4. wait for deployments still provisioning;
//! 5. test each deployment about to take traffic;
//! 6. stop mirroring to deployments that will take live traffic or go away;
//! 7. set traffic; 8. set the new mirror;
//! 9. scale down; 10. delete deployments that are no longer declared (drained by step 7).
//!
//! What a platform allows (create-only fields, asset forms) comes from the `PlatformProfile`
//! passed in; the planner names no platform. The function is pure: no I/O, no clock, and
//! BTreeMaps throughout, so the same input always gives the same plan.

use std::collections::BTreeSet;

use super::endpoint::EndpointPlanner;
use super::profile::PlatformProfile;
use super::{Action, Note, Pending, Plan, Refusal, Step};
use crate::model::{DeploymentState, DesiredState, LiveState};

/// Knobs that change what the planner may do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Delete live endpoints that are not declared.
    pub prune: bool,
    /// Field names never corrected (drift `ignore`): `instance_count`, `tags`, `traffic`, ...
    pub ignore: Vec<String>,
}

impl PlanOptions {
    pub(super) fn ignores(&self, field: &str) -> bool {
        self.ignore.iter().any(|i| i == field)
    }
}

/// The note for a live endpoint that is not declared and stays (no `--prune`); `diff` gives it too.
pub(crate) fn undeclared_note(endpoint: &str) -> Note {
    Note {
        endpoint: endpoint.to_string(),
        deployment: None,
        message: "live but not declared; left alone (use --prune to delete it)".into(),
    }
}

/// Endpoints per thread below which planning stays on the calling thread.
const PARALLEL_CHUNK: usize = 2048;

/// What planning some endpoints produced.
#[derive(Default)]
struct Partial {
    steps: Vec<Step>,
    notes: Vec<Note>,
    refusals: Vec<Refusal>,
}

/// Plans every endpoint; any refusal means no plan at all (nothing may be half-applied).
///
/// Endpoints are independent, so large environments are planned on scoped threads, a chunk of
/// names each; the chunks are joined in name order, so the plan is the same however it was split.
pub fn plan(
    desired: &DesiredState,
    live: &LiveState,
    opts: &PlanOptions,
    profile: &PlatformProfile,
) -> Result<Plan, Vec<Refusal>> {
    let names = endpoint_names(desired, live);
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = names.len().div_ceil(threads).max(PARALLEL_CHUNK);
    let partials: Vec<Partial> = if names.len() <= chunk {
        vec![plan_endpoints(&names, desired, live, opts, profile)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = names
                .chunks(chunk)
                .map(|part| scope.spawn(move || plan_endpoints(part, desired, live, opts, profile)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("planning does not panic"))
                .collect()
        })
    };
    let mut plan = Plan::default();
    let mut refusals = Vec::new();
    for part in partials {
        plan.steps.extend(part.steps);
        plan.notes.extend(part.notes);
        refusals.extend(part.refusals);
    }
    plan.pending = pending(live);
    if refusals.is_empty() {
        Ok(plan)
    } else {
        Err(refusals)
    }
}

/// Every live endpoint or deployment whose state is not terminal, in name order (pure).
pub fn pending(live: &LiveState) -> Vec<Pending> {
    let mut out = Vec::new();
    for (name, endpoint) in &live.endpoints {
        if let Some(state) = &endpoint.busy {
            out.push(Pending {
                endpoint: name.clone(),
                deployment: None,
                state: state.clone(),
            });
        }
        for (d, deployment) in &endpoint.deployments {
            if matches!(deployment.state, DeploymentState::Provisioning) {
                out.push(Pending {
                    endpoint: name.clone(),
                    deployment: Some(d.clone()),
                    state: deployment
                        .phase
                        .clone()
                        .unwrap_or_else(|| "provisioning".to_string()),
                });
            }
        }
    }
    out
}

/// Every endpoint declared or live, in name order.
fn endpoint_names<'a>(desired: &'a DesiredState, live: &'a LiveState) -> Vec<&'a String> {
    desired
        .endpoints
        .keys()
        .chain(live.endpoints.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn plan_endpoints(
    names: &[&String],
    desired: &DesiredState,
    live: &LiveState,
    opts: &PlanOptions,
    profile: &PlatformProfile,
) -> Partial {
    let mut out = Partial::default();
    for name in names {
        let name = *name;
        match (desired.endpoints.get(name), live.endpoints.get(name)) {
            (Some(want), have) => {
                let taken: Vec<Refusal> = live
                    .taken
                    .iter()
                    .filter(|t| {
                        t.endpoint == *name
                            && t.deployment
                                .as_ref()
                                .is_none_or(|d| want.deployments.contains_key(d))
                    })
                    .map(|t| Refusal {
                        endpoint: name.clone(),
                        deployment: t.deployment.clone(),
                        message: t.message.clone(),
                    })
                    .collect();
                if !taken.is_empty() {
                    out.refusals.extend(taken);
                    continue;
                }
                let mut p = EndpointPlanner::new(want, have, opts, profile);
                p.run();
                out.steps.extend(p.steps);
                out.notes.extend(p.notes);
                out.refusals.extend(p.refusals);
            }
            (None, Some(_)) if opts.prune => out.steps.push(Step::new(
                name.clone(),
                Action::DeleteEndpoint,
                format!("delete {name}: no longer declared (prune)"),
            )),
            (None, Some(_)) => out.notes.push(undeclared_note(name)),
            (None, None) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        AssetRef, AuthMode, Deployment, DeploymentSettings, DriftPolicy, Endpoint,
        EndpointSettings, Environment, Target,
    };

    fn endpoint(i: usize) -> Endpoint {
        let deployment = |name: &str, count: u32| Deployment {
            name: name.into(),
            settings: Box::new(DeploymentSettings {
                model: Some(AssetRef::parse(&format!("azureml:m{i}:1"))),
                instance_count: Some(count),
                ..DeploymentSettings::default()
            }),
            test: None,
        };
        Endpoint {
            name: format!("ep-{i:05}"),
            settings: EndpointSettings {
                auth_mode: Some(AuthMode::Key),
                ..EndpointSettings::default()
            },
            traffic: Some([("blue".to_string(), 90), ("green".to_string(), 10)].into()),
            mirror_traffic: None,
            deployments: [("blue", 2), ("green", 1)]
                .into_iter()
                .map(|(n, c)| (n.to_string(), deployment(n, c)))
                .collect(),
        }
    }

    #[test]
    fn planning_on_threads_gives_exactly_the_single_threaded_plan() {
        let desired = DesiredState {
            environment: Environment {
                name: "big".into(),
                target: Target::StateFile {
                    path: "live.json".into(),
                },
                drift: DriftPolicy::default(),
                rollout: Default::default(),
                slots: Default::default(),
                promotion: Default::default(),
            },
            endpoints: (0..3 * PARALLEL_CHUNK)
                .map(endpoint)
                .map(|e| (e.name.clone(), e))
                .collect(),
        };
        // Every third endpoint is live (needs a traffic shift), every fifth also live-only.
        let mut live = LiveState::default();
        for (i, e) in desired
            .endpoints
            .values()
            .enumerate()
            .filter(|(i, _)| i % 3 == 0)
        {
            let mut l = LiveState::from_desired(&DesiredState {
                environment: desired.environment.clone(),
                endpoints: [(e.name.clone(), e.clone())].into(),
            });
            let mut ep = l.endpoints.pop_first().expect("one").1;
            ep.traffic = [("blue".to_string(), 100)].into();
            if i % 5 == 0 {
                ep.name = format!("gone-{i:05}");
            }
            live.endpoints.insert(ep.name.clone(), ep);
        }
        let opts = PlanOptions {
            prune: true,
            ignore: vec![],
        };
        let profile = &crate::plan::profile::NEUTRAL;
        let names = endpoint_names(&desired, &live);
        let single = plan_endpoints(&names, &desired, &live, &opts, profile);
        let threaded = plan(&desired, &live, &opts, profile).expect("no refusals");
        assert!(threaded.steps.len() > 3 * PARALLEL_CHUNK);
        assert_eq!(threaded.steps, single.steps);
        assert_eq!(threaded.notes, single.notes);
    }
}
