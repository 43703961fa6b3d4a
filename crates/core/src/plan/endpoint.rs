//! Planning one endpoint: classify each deployment (create, update, recreate, scale, wait,
//! delete) and emit a step, each in its phase, for every change; `order` then sorts them into
//! the safe order. Platform rules (create-only fields, asset forms, the mirror rule's citation)
//! come from the `PlatformProfile` passed in.

use std::collections::{BTreeMap, BTreeSet};

use super::compare::{self, Comparison};
use super::planner::PlanOptions;
use super::profile::PlatformProfile;
use super::reasons::{describe, mirror_reason, traffic_reason};
use super::{Action, FieldChange, Note, Phase, Refusal, Step};
use crate::model::{
    AssetRef, DeploymentSettings, DeploymentState, Endpoint, LiveEndpoint, Weights, effective,
};

/// What happens to one deployment.
#[derive(Default)]
struct Fate {
    created: bool,
    updated: bool,
    deleted: bool,
}

pub(super) struct EndpointPlanner<'a> {
    want: &'a Endpoint,
    have: Option<&'a LiveEndpoint>,
    opts: &'a PlanOptions,
    profile: &'a PlatformProfile,
    fates: BTreeMap<&'a str, Fate>,
    pub(super) steps: Vec<Step>,
    pub(super) notes: Vec<Note>,
    pub(super) refusals: Vec<Refusal>,
    /// Live traffic and mirror with zero entries dropped, computed once.
    live_traffic: Weights,
    live_mirror: Weights,
}

impl<'a> EndpointPlanner<'a> {
    pub(super) fn new(
        want: &'a Endpoint,
        have: Option<&'a LiveEndpoint>,
        opts: &'a PlanOptions,
        profile: &'a PlatformProfile,
    ) -> Self {
        EndpointPlanner {
            want,
            have,
            opts,
            profile,
            fates: BTreeMap::new(),
            steps: Vec::new(),
            notes: Vec::new(),
            refusals: Vec::new(),
            live_traffic: have.map(|h| effective(&h.traffic)).unwrap_or_default(),
            live_mirror: have
                .map(|h| effective(&h.mirror_traffic))
                .unwrap_or_default(),
        }
    }

    /// Adds a step in the usual phase of its action.
    fn push(&mut self, action: Action, reason: String) {
        self.steps
            .push(Step::new(self.want.name.clone(), action, reason));
    }

    /// Adds a step in a phase of its own (a recreate's delete, an interim mirror change).
    fn push_in(&mut self, phase: Phase, action: Action, reason: String) {
        self.steps
            .push(Step::new(self.want.name.clone(), action, reason).in_phase(phase));
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

    /// Emits every step (each deployment's in name order), then puts them in the safe order:
    /// the order of the calls below does not matter, the steps' phases do.
    pub(super) fn run(&mut self) {
        self.endpoint_settings();
        self.note_local_assets();
        let target = self.target_traffic();
        self.classify_deployments(&target);
        self.tests(&target);
        self.traffic_and_mirror(&target);
        self.deletes(&target);
        super::order::in_safe_order(&mut self.steps);
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
                let mut comparison = Comparison::default();
                compare::visit_endpoint(self.want, have, &self.opts.ignore, &mut comparison);
                self.note_ignored(None, &comparison.ignored);
                // Traffic and mirror are steps of their own (`traffic_and_mirror`).
                let changes: Vec<FieldChange> = comparison
                    .changes
                    .into_iter()
                    .filter(|c| c.field != "traffic" && c.field != "mirror_traffic")
                    .collect();
                let mut settings = have.settings.clone();
                overlay_endpoint(&mut settings, &self.want.settings);
                if !changes.is_empty() {
                    let reason = format!("update endpoint {name}: {}", describe(&changes));
                    let settings = settings.clone();
                    self.push(Action::UpdateEndpoint { settings, changes }, reason);
                }
                if !have.problems.is_empty() {
                    let reason = format!("repair endpoint {name}: {}", have.problems.join("; "));
                    let problems = have.problems.clone();
                    self.push(Action::RepairEndpoint { settings, problems }, reason);
                }
            }
        }
    }

    /// A declared value that differs from live but that `drift.ignore` covers is not applied;
    /// say so, so that a change made in Git is never dropped silently.
    fn note_ignored(&mut self, deployment: Option<&str>, ignored: &[FieldChange]) {
        for change in ignored {
            self.notes.push(Note {
                endpoint: self.want.name.clone(),
                deployment: deployment.map(str::to_string),
                message: compare::ignored_message(change),
            });
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
            if let Some(code) = &s.code_configuration
                && !self.profile.is_registered_asset(&code.code)
            {
                locals.push(format!("code {}", code.code));
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
        let Comparison { changes, ignored } =
            compare::deployment_comparison(want, have, &self.opts.ignore, self.profile);
        self.note_ignored(Some(name), &ignored);
        let rule = &self.profile.create_only;
        let (create_only, rest): (Vec<FieldChange>, Vec<FieldChange>) =
            changes.into_iter().partition(|c| rule.covers(&c.field));
        if !create_only.is_empty() {
            let fields = create_only
                .iter()
                .map(|c| c.field.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            if busy {
                let why = match rule.citation {
                    "" => "create-only".to_string(),
                    citation => format!("{citation}: create-only"),
                };
                self.refuse(
                    Some(name),
                    format!(
                        "{fields} cannot be changed in place ({why}) and {name} takes traffic; \
                         roll the change out as a new deployment name (blue/green) instead of \
                         recreating {name}"
                    ),
                );
                return Fate::default();
            }
            self.push_in(
                Phase::Recreate,
                Action::DeleteDeployment {
                    deployment: name.to_string(),
                },
                format!("recreate {name}: {fields} is create-only and {name} takes no traffic"),
            );
            self.push(
                Action::CreateDeployment {
                    deployment: name.to_string(),
                    settings: Box::new(want.clone()),
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
            // Lowering only an autoscaler's bounds is a scale down: after traffic left.
            let phase = if failed.is_none() && bounds_only_lowered(want, have, &rest) {
                Phase::ScaleDown
            } else {
                Phase::Provision
            };
            self.push_in(
                phase,
                Action::UpdateDeployment {
                    deployment: name.to_string(),
                    settings: Box::new(settings),
                    changes: rest,
                },
                reason,
            );
            fate.updated = true;
        } else if matches!(state, DeploymentState::Provisioning) {
            self.push(
                Action::WaitReady {
                    deployment: name.to_string(),
                },
                format!("wait for {name}: still provisioning"),
            );
        }
        if let Some(to) = want.instance_count.filter(|_| !count.is_empty()) {
            // Up before traffic arrives, down after it left (`Phase::of`).
            self.push(
                Action::ScaleDeployment {
                    deployment: name.to_string(),
                    from: live_count,
                    to,
                },
                format!("scale {name} {live_count} → {to}"),
            );
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
                        test.request_summary()
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
        // Mirroring may never target a deployment with live traffic or one that goes away.
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
            let rule = self.profile.mirror.exclusive_citation;
            self.refuse(
                Some(name),
                format!(
                    "mirror traffic to {name} is declared, but {name} takes live traffic that the \
                     YAML does not manage ({rule}); declare traffic too"
                ),
            );
            return;
        }
        let mut mirror = live_mirror.clone();
        let mut unmirrored_by_shift = None;
        if live_mirror.keys().any(|n| !keep(n)) {
            let interim: Weights = live_mirror
                .iter()
                .filter(|(n, _)| keep(n))
                .map(|(n, w)| (n.clone(), *w))
                .collect();
            // Where the shift's own write drops the mirror of every deployment it gives live
            // weight (`shift_drops_mirror`), and those are the only mirrors to stop, the
            // shift is the one write; otherwise the mirror is stopped first, in its own step.
            let by_shift = self.profile.mirror.shift_drops_mirror
                && target != &live_traffic
                && live_mirror
                    .keys()
                    .filter(|n| !keep(n))
                    .all(|n| target.get(n).is_some_and(|w| *w > 0));
            if by_shift {
                unmirrored_by_shift = Some(mirror_reason(&live_mirror, &interim));
            } else {
                self.push_in(
                    Phase::Unmirror,
                    Action::SetMirrorTraffic {
                        mirror_traffic: interim.clone(),
                    },
                    mirror_reason(&live_mirror, &interim),
                );
            }
            mirror = interim;
        }
        if target != &live_traffic {
            let traffic = self.want.traffic.clone().unwrap_or_default();
            let mut reason = traffic_reason(&live_traffic, target);
            if let Some(unmirror) = unmirrored_by_shift {
                reason = format!("{reason}; in the same write: {unmirror}");
            }
            self.push(Action::SetTraffic { traffic }, reason);
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

/// Whether the one change is an autoscaler's bounds, none of them raised and one lowered.
fn bounds_only_lowered(
    want: &DeploymentSettings,
    have: &DeploymentSettings,
    changes: &[FieldChange],
) -> bool {
    let (Some(w), Some(h)) = (&want.autoscaling, &have.autoscaling) else {
        return false;
    };
    let same_targets = w.target_cpu_utilization_percentage == h.target_cpu_utilization_percentage
        && w.target_memory_utilization_percentage == h.target_memory_utilization_percentage;
    changes.len() == 1
        && changes[0].field == "autoscaling"
        && same_targets
        && w.min_instances <= h.min_instances
        && w.max_instances <= h.max_instances
        && (w.min_instances, w.max_instances) != (h.min_instances, h.max_instances)
}
