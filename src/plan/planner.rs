//! `plan(desired, live) -> Plan`: pairs endpoints and deployments by name, classifies each pair,
//! and emits steps in the one order that keeps traffic safe:
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
//! The function is pure: no I/O, no clock, and BTreeMaps throughout, so the same input always
//! gives the same plan.

use std::collections::{BTreeMap, BTreeSet};

use super::compare::{self, CREATE_ONLY};
use super::{Action, FieldChange, Note, Plan, Refusal, Step};
use crate::model::{
    AssetRef, DeploymentSettings, DeploymentState, DesiredState, Endpoint, LiveEndpoint, LiveState,
    Weights, effective, weights_display,
};

/// Knobs that change what the planner may do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// Delete live endpoints that are not declared.
    pub prune: bool,
    /// Field names never corrected (drift `ignore`): `instance_count`, `tags`, `traffic`, ...
    pub ignore: Vec<String>,
}

impl PlanOptions {
    fn ignores(&self, field: &str) -> bool {
        self.ignore.iter().any(|i| i == field)
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
) -> Result<Plan, Vec<Refusal>> {
    let names: Vec<&String> = desired
        .endpoints
        .keys()
        .chain(live.endpoints.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = names.len().div_ceil(threads).max(PARALLEL_CHUNK);
    let partials: Vec<Partial> = if names.len() <= chunk {
        vec![plan_endpoints(&names, desired, live, opts)]
    } else {
        std::thread::scope(|scope| {
            let handles: Vec<_> = names
                .chunks(chunk)
                .map(|part| scope.spawn(move || plan_endpoints(part, desired, live, opts)))
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
    if refusals.is_empty() {
        Ok(plan)
    } else {
        Err(refusals)
    }
}

fn plan_endpoints(
    names: &[&String],
    desired: &DesiredState,
    live: &LiveState,
    opts: &PlanOptions,
) -> Partial {
    let mut out = Partial::default();
    for name in names {
        let name = *name;
        match (desired.endpoints.get(name), live.endpoints.get(name)) {
            (Some(want), have) => {
                let mut p = EndpointPlanner::new(want, have, opts);
                p.run();
                out.steps.extend(p.steps);
                out.notes.extend(p.notes);
                out.refusals.extend(p.refusals);
            }
            (None, Some(_)) if opts.prune => out.steps.push(Step {
                endpoint: name.clone(),
                action: Action::DeleteEndpoint,
                reason: format!("delete {name}: no longer declared (prune)"),
            }),
            (None, Some(_)) => out.notes.push(Note {
                endpoint: name.clone(),
                deployment: None,
                message: "live but not declared; left alone (use --prune to delete it)".into(),
            }),
            (None, None) => {}
        }
    }
    out
}

/// What happens to one deployment.
#[derive(Default)]
struct Fate {
    created: bool,
    updated: bool,
    deleted: bool,
}

struct EndpointPlanner<'a> {
    want: &'a Endpoint,
    have: Option<&'a LiveEndpoint>,
    opts: &'a PlanOptions,
    fates: BTreeMap<&'a str, Fate>,
    steps: Vec<Step>,
    notes: Vec<Note>,
    refusals: Vec<Refusal>,
    scale_downs: Vec<Step>,
    waits: Vec<Step>,
    /// Live traffic and mirror with zero entries dropped, computed once.
    live_traffic: Weights,
    live_mirror: Weights,
}

impl<'a> EndpointPlanner<'a> {
    fn new(want: &'a Endpoint, have: Option<&'a LiveEndpoint>, opts: &'a PlanOptions) -> Self {
        EndpointPlanner {
            want,
            have,
            opts,
            fates: BTreeMap::new(),
            steps: Vec::new(),
            notes: Vec::new(),
            refusals: Vec::new(),
            scale_downs: Vec::new(),
            waits: Vec::new(),
            live_traffic: have.map(|h| effective(&h.traffic)).unwrap_or_default(),
            live_mirror: have
                .map(|h| effective(&h.mirror_traffic))
                .unwrap_or_default(),
        }
    }

    fn push(&mut self, action: Action, reason: String) {
        self.steps.push(Step {
            endpoint: self.want.name.clone(),
            action,
            reason,
        });
    }

    fn refuse(&mut self, deployment: Option<&str>, message: String) {
        self.refusals.push(Refusal {
            endpoint: self.want.name.clone(),
            deployment: deployment.map(str::to_string),
            message,
        });
    }

    /// Traffic after the plan: the declared split, or the live one when traffic is not managed.
    fn target_traffic(&self) -> Weights {
        match &self.want.traffic {
            Some(t) if !self.opts.ignores("traffic") => effective(t),
            _ => self.live_traffic.clone(),
        }
    }

    fn run(&mut self) {
        self.endpoint_settings();
        self.note_local_assets();
        let target = self.target_traffic();
        self.classify_deployments(&target);
        // Endpoint steps first, then recreate-deletes (idle deployments only), then creates,
        // updates and scale-ups, in deployment name order.
        let emitted = std::mem::take(&mut self.steps);
        let (endpoint_steps, deployment_steps): (Vec<Step>, Vec<Step>) = emitted
            .into_iter()
            .partition(|s| s.action.deployment().is_none());
        let (recreate_deletes, others): (Vec<Step>, Vec<Step>) = deployment_steps
            .into_iter()
            .partition(|s| matches!(s.action, Action::DeleteDeployment { .. }));
        self.steps = endpoint_steps;
        self.steps.extend(recreate_deletes);
        self.steps.extend(others);
        let waits = std::mem::take(&mut self.waits);
        self.steps.extend(waits);
        self.tests(&target);
        self.traffic_and_mirror(&target);
        let downs = std::mem::take(&mut self.scale_downs);
        self.steps.extend(downs);
        self.deletes(&target);
    }

    fn endpoint_settings(&mut self) {
        let name = &self.want.name;
        match self.have {
            None => self.push(
                Action::CreateEndpoint {
                    settings: self.want.settings.clone(),
                },
                format!("create endpoint {name}: declared, not live"),
            ),
            Some(have) => {
                let changes = compare::endpoint_changes(
                    &self.want.settings,
                    &have.settings,
                    &self.opts.ignore,
                );
                if !changes.is_empty() {
                    let reason = format!("update endpoint {name}: {}", describe(&changes));
                    let mut settings = have.settings.clone();
                    overlay_endpoint(&mut settings, &self.want.settings);
                    self.push(Action::UpdateEndpoint { settings, changes }, reason);
                }
            }
        }
    }

    fn note_local_assets(&mut self) {
        for d in self.want.deployments.values() {
            let s = &d.settings;
            let mut locals: Vec<String> = [("model", &s.model), ("environment", &s.environment)]
                .into_iter()
                .filter_map(|(what, a)| match a {
                    Some(AssetRef::Local { path }) => Some(format!("{what} {path}")),
                    _ => None,
                })
                .collect();
            if let Some(code) = &s.code_configuration {
                if is_local_path(&code.code) {
                    locals.push(format!("code {}", code.code));
                }
            }
            if !locals.is_empty() {
                self.notes.push(Note {
                    endpoint: self.want.name.clone(),
                    deployment: Some(d.name.clone()),
                    message: format!(
                        "relies on local files ({}); flightdeck does not upload assets: register \
                         them (az ml model/environment/code create) and reference azureml:NAME:VERSION",
                        locals.join(", ")
                    ),
                });
            }
        }
    }

    fn classify_deployments(&mut self, target: &Weights) {
        let want = self.want;
        let have = self.have;
        let names: BTreeSet<&'a str> = want
            .deployments
            .keys()
            .chain(have.into_iter().flat_map(|h| h.deployments.keys()))
            .map(String::as_str)
            .collect();
        for name in names {
            let live_dep = have.and_then(|h| h.deployments.get(name));
            let fate = match (want.deployments.get(name), live_dep) {
                (Some(d), None) => {
                    self.push(
                        Action::CreateDeployment {
                            deployment: name.to_string(),
                            settings: d.settings.clone(),
                        },
                        format!("create {name} at 0% traffic"),
                    );
                    Fate {
                        created: true,
                        ..Fate::default()
                    }
                }
                (None, Some(_)) => Fate {
                    deleted: true,
                    ..Fate::default()
                },
                (Some(d), Some(l)) => {
                    let busy = self.live_traffic.contains_key(name)
                        || self.live_mirror.contains_key(name)
                        || target.contains_key(name)
                        || self
                            .want
                            .mirror_traffic
                            .as_ref()
                            .is_some_and(|m| m.get(name).is_some_and(|w| *w > 0));
                    self.existing(name, &d.settings, &l.settings, &l.state, busy)
                }
                (None, None) => continue,
            };
            self.fates.insert(name, fate);
        }
    }

    fn existing(
        &mut self,
        name: &str,
        want: &DeploymentSettings,
        have: &DeploymentSettings,
        state: &DeploymentState,
        busy: bool,
    ) -> Fate {
        let changes = compare::deployment_changes(want, have, &self.opts.ignore);
        let (create_only, rest): (Vec<FieldChange>, Vec<FieldChange>) =
            changes.into_iter().partition(|c| {
                CREATE_ONLY
                    .iter()
                    .any(|f| c.field == *f || c.field.starts_with(&format!("{f}.")))
            });
        if !create_only.is_empty() {
            let fields = create_only
                .iter()
                .map(|c| c.field.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            if busy {
                self.refuse(
                    Some(name),
                    format!(
                        "{fields} cannot be changed in place (CONTRACT R13: create-only) and {name} \
                         takes traffic; roll the change out as a new deployment name (blue/green) \
                         instead of recreating {name}"
                    ),
                );
                return Fate::default();
            }
            self.push(
                Action::DeleteDeployment {
                    deployment: name.to_string(),
                },
                format!("recreate {name}: {fields} is create-only and {name} takes no traffic"),
            );
            self.push(
                Action::CreateDeployment {
                    deployment: name.to_string(),
                    settings: want.clone(),
                },
                format!("recreate {name} with {}", describe(&create_only)),
            );
            return Fate {
                created: true,
                ..Fate::default()
            };
        }
        let (count, rest): (Vec<FieldChange>, Vec<FieldChange>) =
            rest.into_iter().partition(|c| c.field == "instance_count");
        let live_count = have.instance_count.unwrap_or(1);
        let mut fate = Fate::default();
        let failed = match state {
            DeploymentState::Failed { message } => Some(message.clone()),
            _ => None,
        };
        if !rest.is_empty() || failed.is_some() {
            let mut settings = compare::merged(want, have);
            settings.instance_count = Some(live_count);
            let reason = match (&failed, rest.is_empty()) {
                (Some(msg), true) => {
                    format!("re-provision {name}: last provisioning failed: {msg}")
                }
                (Some(_), false) => format!("update {name} (failed before): {}", describe(&rest)),
                (None, _) => format!("update {name}: {}", describe(&rest)),
            };
            self.push(
                Action::UpdateDeployment {
                    deployment: name.to_string(),
                    settings,
                    changes: rest,
                },
                reason,
            );
            fate.updated = true;
        } else if matches!(state, DeploymentState::Provisioning) {
            self.waits.push(Step {
                endpoint: self.want.name.clone(),
                action: Action::WaitReady {
                    deployment: name.to_string(),
                },
                reason: format!("wait for {name}: still provisioning"),
            });
        }
        if let Some(to) = want.instance_count.filter(|_| !count.is_empty()) {
            let step = Step {
                endpoint: self.want.name.clone(),
                action: Action::ScaleDeployment {
                    deployment: name.to_string(),
                    from: live_count,
                    to,
                },
                reason: format!("scale {name} {live_count} → {to}"),
            };
            if to > live_count {
                self.steps.push(step);
            } else {
                self.scale_downs.push(step);
            }
        }
        fate
    }

    fn tests(&mut self, target: &Weights) {
        for (name, weight) in target {
            let Some(d) = self.want.deployments.get(name) else {
                continue;
            };
            let Some(test) = &d.test else { continue };
            let fate = self.fates.get(name.as_str());
            let changed = fate.is_some_and(|f| f.created || f.updated);
            if *weight > 0 && (changed || !self.live_traffic.contains_key(name)) {
                self.push(
                    Action::TestDeployment {
                        deployment: name.clone(),
                        test: test.clone(),
                    },
                    format!(
                        "test {name} with {} before it takes traffic",
                        test.request_file
                    ),
                );
            }
        }
    }

    fn traffic_and_mirror(&mut self, target: &Weights) {
        // Moved out: this is their last use in the plan of this endpoint, and the steps pushed
        // below borrow self mutably.
        let live_traffic = std::mem::take(&mut self.live_traffic);
        let live_mirror = std::mem::take(&mut self.live_mirror);
        let deleted: BTreeSet<&str> = self
            .fates
            .iter()
            .filter(|(_, f)| f.deleted)
            .map(|(n, _)| *n)
            .collect();
        // Mirroring may never target a deployment with live traffic (R5) or one that goes away.
        let keep = |name: &str| !target.contains_key(name) && !deleted.contains(name);
        let wanted_mirror: Weights = match &self.want.mirror_traffic {
            Some(m) if !self.opts.ignores("mirror_traffic") => effective(m),
            _ => live_mirror
                .iter()
                .filter(|(n, _)| keep(n))
                .map(|(n, w)| (n.clone(), *w))
                .collect(),
        };
        if let Some(name) = wanted_mirror.keys().find(|n| target.contains_key(*n)) {
            self.refuse(
                Some(name),
                format!(
                    "mirror traffic to {name} is declared, but {name} takes live traffic that the \
                     YAML does not manage (CONTRACT R5: live or mirror traffic, not both); declare \
                     traffic too"
                ),
            );
            return;
        }
        let mut mirror = live_mirror.clone();
        if live_mirror.keys().any(|n| !keep(n)) {
            let interim: Weights = live_mirror
                .iter()
                .filter(|(n, _)| keep(n))
                .map(|(n, w)| (n.clone(), *w))
                .collect();
            self.push(
                Action::SetMirrorTraffic {
                    mirror_traffic: interim.clone(),
                },
                mirror_reason(&live_mirror, &interim),
            );
            mirror = interim;
        }
        if target != &live_traffic {
            let traffic = self.want.traffic.clone().unwrap_or_default();
            self.push(
                Action::SetTraffic { traffic },
                traffic_reason(&live_traffic, target),
            );
        }
        if mirror != wanted_mirror {
            self.push(
                Action::SetMirrorTraffic {
                    mirror_traffic: wanted_mirror.clone(),
                },
                mirror_reason(&mirror, &wanted_mirror),
            );
        }
    }

    fn deletes(&mut self, target: &Weights) {
        let doomed: Vec<&str> = self
            .fates
            .iter()
            .filter(|(_, f)| f.deleted)
            .map(|(n, _)| *n)
            .collect();
        for name in doomed {
            if let Some(w) = target.get(name) {
                self.refuse(
                    Some(name),
                    format!(
                        "{name} is no longer declared but would still take {w}% of traffic; \
                         declare traffic without it first"
                    ),
                );
                continue;
            }
            // Drained now (by this plan's traffic step) or earlier (a 0 entry is left live).
            let drained = self.have.is_some_and(|h| h.traffic.contains_key(name));
            let reason = if drained {
                format!("delete {name}: no longer declared, drained")
            } else {
                format!("delete {name}: no longer declared, takes no traffic")
            };
            self.push(
                Action::DeleteDeployment {
                    deployment: name.to_string(),
                },
                reason,
            );
        }
    }
}

fn overlay_endpoint(
    settings: &mut crate::model::EndpointSettings,
    want: &crate::model::EndpointSettings,
) {
    if want.auth_mode.is_some() {
        settings.auth_mode = want.auth_mode;
    }
    if want.description.is_some() {
        settings.description.clone_from(&want.description);
    }
    if want.tags.is_some() {
        settings.tags.clone_from(&want.tags);
    }
    if want.public_network_access.is_some() {
        settings
            .public_network_access
            .clone_from(&want.public_network_access);
    }
}

fn is_local_path(code: &str) -> bool {
    !(code.starts_with("azureml:") || code.starts_with("/subscriptions/"))
}

fn describe(changes: &[FieldChange]) -> String {
    changes
        .iter()
        .map(|c| match &c.from {
            Some(from) => format!("{} {from} → {}", c.field, c.to),
            None => format!("{} → {}", c.field, c.to),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// "flight green 10%", "full traffic to green", "drain all traffic", or the plain split.
fn traffic_reason(from: &Weights, to: &Weights) -> String {
    let was = weights_display(from);
    if to.is_empty() {
        return format!("drain all traffic (was {was})");
    }
    if to.len() == 1 {
        let (name, _) = to.iter().next().expect("one entry");
        if from.is_empty() {
            return format!("route 100% to {name}");
        }
        return format!("full traffic to {name} (was {was})");
    }
    let new: Vec<(&String, &u32)> = to.iter().filter(|(n, _)| !from.contains_key(*n)).collect();
    if let [(name, weight)] = new.as_slice() {
        return format!("flight {name} {weight}% (was {was})");
    }
    format!("set traffic {} (was {was})", weights_display(to))
}

fn mirror_reason(from: &Weights, to: &Weights) -> String {
    match (from.is_empty(), to.is_empty()) {
        (_, true) => format!("stop mirroring (was {})", weights_display(from)),
        (true, false) => format!("mirror {}", describe_mirror(to)),
        (false, false) => format!(
            "mirror {} (was {})",
            describe_mirror(to),
            describe_mirror(from)
        ),
    }
}

fn describe_mirror(w: &Weights) -> String {
    w.iter()
        .map(|(n, p)| format!("{p}% to {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        AuthMode, Deployment, DriftPolicy, Endpoint, EndpointSettings, Environment, Target,
    };

    fn endpoint(i: usize) -> Endpoint {
        let deployment = |name: &str, count: u32| Deployment {
            name: name.into(),
            settings: DeploymentSettings {
                model: Some(AssetRef::parse(&format!("azureml:m{i}:1"))),
                instance_count: Some(count),
                ..DeploymentSettings::default()
            },
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
        let names: Vec<&String> = desired
            .endpoints
            .keys()
            .chain(live.endpoints.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let single = plan_endpoints(&names, &desired, &live, &opts);
        let threaded = plan(&desired, &live, &opts).expect("no refusals");
        assert!(threaded.steps.len() > 3 * PARALLEL_CHUNK);
        assert_eq!(threaded.steps, single.steps);
        assert_eq!(threaded.notes, single.notes);
    }
}
