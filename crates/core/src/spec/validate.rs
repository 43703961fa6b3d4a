//! Stage two: rules that span fields and files. Names, links between endpoint and deployment
//! files, traffic and mirror weights ([AML R1]–[AML R5]), instance counts and the fields each
//! target understands. Every platform rule (names, fields, mirror limits) comes from the
//! `PlatformProfile` passed in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::diagnostics::{Diagnostic, Sink};
use super::located::suggestion;
use super::raw_deployment::RawDeployment;
use super::raw_endpoint::{RawEndpoint, RawWeights};
use super::yaml::Pos;
use crate::model::{Deployment, Endpoint, Weights};
use crate::plan::profile::PlatformProfile;

/// Where something was declared, for "already declared at ..." messages.
#[derive(Clone, Debug)]
pub(crate) struct Origin {
    path: PathBuf,
    pos: Pos,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}",
            self.path.display(),
            self.pos.line,
            self.pos.column
        )
    }
}

struct Building {
    endpoint: Endpoint,
    /// Whether `endpoint` is built in full (see `full` in [`endpoints`]).
    full: bool,
    /// The file's path and weights as written (checked once every deployment is known).
    path: PathBuf,
    traffic: Option<RawWeights>,
    mirror_traffic: Option<RawWeights>,
    deployments: BTreeMap<String, Origin>,
}

/// Every declared endpoint with the names of its deployments: all that the checks across the
/// environment file (`tests`, `slots`, `rollout.endpoints`, `promotion`) read of an endpoint.
pub(crate) type Declared = BTreeMap<String, BTreeSet<String>>;

/// Links endpoint and deployment files and checks everything across them, with the rules of
/// `profile` (`profile::NEUTRAL` when no environment is known: single files).
/// `incomplete`: some file did not parse, so a deployment naming an unknown endpoint may name
/// that file's endpoint and is not reported. Every endpoint is checked; only those `full`
/// names are built (the others' settings are not needed: see `spec::incremental`). Returns
/// the built endpoints and every declared one.
pub(crate) fn endpoints(
    profile: &PlatformProfile,
    raw_endpoints: Vec<RawEndpoint>,
    split: Vec<RawDeployment>,
    incomplete: bool,
    full: &dyn Fn(&str) -> bool,
    out: &mut Vec<Diagnostic>,
) -> (BTreeMap<String, Endpoint>, Declared) {
    let mut building: BTreeMap<String, Building> = BTreeMap::new();
    let mut origins: BTreeMap<String, Origin> = BTreeMap::new();
    for mut raw in raw_endpoints {
        let mut sink = Sink {
            path: &raw.path.clone(),
            out,
        };
        let built = raw.name.as_ref().is_some_and(|n| full(&n.value));
        let embedded = std::mem::take(&mut raw.deployments);
        let mut checked = Vec::new();
        for d in embedded {
            if let (Some(en), Some(n)) = (&d.endpoint_name, &raw.name)
                && en.value != n.value
            {
                sink.error(
                    en.pos,
                    format!(
                        "endpoint_name `{}` does not match the endpoint `{}` this deployment is declared in",
                        en.value, n.value
                    ),
                );
            }
            if let Some(d) = deployment(&mut sink, profile, d, built) {
                checked.push(d);
            }
        }
        let Some(name) = raw.name.clone() else {
            continue;
        };
        if let Some(problem) = profile.name_problem("endpoint", &name.value) {
            sink.error(name.pos, problem);
        }
        let here = Origin {
            path: raw.path.clone(),
            pos: name.pos,
        };
        if let Some(first) = origins.get(&name.value) {
            sink.error(
                name.pos,
                format!("endpoint `{}` is already declared at {first}", name.value),
            );
            continue;
        }
        origins.insert(name.value.clone(), here);
        let settings = if built {
            std::mem::take(&mut raw.settings)
        } else {
            Default::default()
        };
        let mut b = Building {
            endpoint: Endpoint {
                name: name.value.clone(),
                settings,
                traffic: None,
                mirror_traffic: None,
                deployments: BTreeMap::new(),
            },
            full: built,
            path: raw.path,
            traffic: raw.traffic,
            mirror_traffic: raw.mirror_traffic,
            deployments: BTreeMap::new(),
        };
        for d in checked {
            add_deployment(&mut b, d, profile, out);
        }
        building.insert(name.value, b);
    }
    for d in split {
        let path = d.path.clone();
        let mut sink = Sink { path: &path, out };
        let endpoint_name = d.endpoint_name.clone();
        let built = endpoint_name
            .as_ref()
            .is_some_and(|n| building.get(&n.value).is_some_and(|b| b.full));
        let Some(checked) = deployment(&mut sink, profile, d, built) else {
            continue;
        };
        let Some(endpoint_name) = endpoint_name else {
            continue;
        };
        match building.get_mut(&endpoint_name.value) {
            Some(b) => add_deployment(b, checked, profile, out),
            None if incomplete => {}
            None => {
                let known: Vec<&str> = building.keys().map(String::as_str).collect();
                let hint = suggestion(&endpoint_name.value, &known);
                sink.error(
                    endpoint_name.pos,
                    format!(
                        "endpoint_name `{}` names no declared endpoint{hint}",
                        endpoint_name.value
                    ),
                );
            }
        }
    }
    let mut built = BTreeMap::new();
    let mut declared = Declared::new();
    for (name, mut b) in building {
        let path = std::mem::take(&mut b.path);
        let mut sink = Sink { path: &path, out };
        let traffic = b.traffic.as_ref().map(|w| {
            let declared = &b.deployments;
            let weights = weights(&mut sink, "traffic", w, &name, declared);
            if w.complete && weights.len() == w.entries.len() {
                // R1: sum to 100, except all zero or empty.
                let sum: i64 = w.entries.iter().map(|e| e.weight).sum();
                if sum != 100 && sum != 0 {
                    sink.error(w.key_pos, format!("traffic sums to {sum}, expected 100"));
                }
            }
            weights
        });
        let mirror = b.mirror_traffic.as_ref().map(|w| {
            let m = weights(&mut sink, "mirror_traffic", w, &name, &b.deployments);
            mirror_rules(&mut sink, profile, w, traffic.as_ref());
            m
        });
        declared.insert(name.clone(), b.deployments.into_keys().collect());
        if b.full {
            b.endpoint.traffic = traffic;
            b.endpoint.mirror_traffic = mirror;
            built.insert(name, b.endpoint);
        }
    }
    (built, declared)
}

/// A deployment checked on its own: its name, where it was written, and (when built) the
/// deployment itself.
pub(crate) struct Checked {
    name: String,
    origin: Origin,
    deployment: Option<Deployment>,
}

fn add_deployment(
    b: &mut Building,
    d: Checked,
    profile: &PlatformProfile,
    out: &mut Vec<Diagnostic>,
) {
    let origin = d.origin;
    if let Some(problem) = profile.object_name_problem(&b.endpoint.name, &d.name) {
        out.push(Diagnostic::new(&origin.path, origin.pos, problem));
        return;
    }
    if let Some(first) = b.deployments.get(&d.name) {
        out.push(Diagnostic::new(
            &origin.path,
            origin.pos,
            format!(
                "deployment `{}` of endpoint `{}` is already declared at {first}",
                d.name, b.endpoint.name
            ),
        ));
        return;
    }
    if let Some(deployment) = d.deployment.filter(|_| b.full) {
        b.endpoint.deployments.insert(d.name.clone(), deployment);
    }
    b.deployments.insert(d.name, origin);
}

/// Checks one deployment on its own; returns it (built when `build`) with where its name was
/// written.
pub(crate) fn deployment(
    sink: &mut Sink<'_>,
    profile: &PlatformProfile,
    raw: RawDeployment,
    build: bool,
) -> Option<Checked> {
    let mut instance_count = None;
    if let Some(count) = &raw.instance_count {
        if (1..=100).contains(&count.value) {
            instance_count = u32::try_from(count.value).ok();
        } else {
            sink.error(
                count.pos,
                format!(
                    "instance_count must be between 1 and 100, found {}",
                    count.value
                ),
            );
        }
    }
    let name = raw.name.as_ref();
    let anchor = name.map_or(raw.root_pos, |n| n.key_pos);
    let written = raw.keys.iter().map(|(k, p)| (k.as_str(), *p));
    let subfields = raw.kubernetes_probe_fields.iter();
    for (key, pos) in written.chain(subfields.map(|(k, p)| (k.as_str(), *p))) {
        if let Some(f) = profile.foreign(key) {
            let (owner, hint) = (f.owner, f.hint);
            sink.error(pos, format!("`{key}` is only for {owner} targets{hint}"));
        }
    }
    for key in profile.required_fields {
        if !raw.keys.contains_key(*key) {
            let who = name.map_or("deployment".to_string(), |n| {
                format!("deployment `{}`", n.value)
            });
            let platform = profile.name;
            sink.error(anchor, format!("{who} needs `{key}` on {platform} targets"));
        }
    }
    let name = name?;
    if let Some(problem) = profile.name_problem("deployment", &name.value) {
        sink.error(name.pos, problem);
    }
    let pos = name.pos;
    let deployment = build.then(|| {
        let mut settings = raw.settings.unwrap_or_default();
        if instance_count.is_some() {
            settings.instance_count = instance_count;
        }
        Deployment {
            name: name.value.clone(),
            settings,
            test: None,
        }
    });
    let name = name.value.clone();
    let origin = Origin {
        path: raw.path,
        pos,
    };
    Some(Checked {
        name,
        origin,
        deployment,
    })
}

impl Checked {
    /// The deployment built (`None` when it was only checked).
    pub(crate) fn into_deployment(self) -> Option<Deployment> {
        self.deployment
    }
}

/// Every weight names a declared deployment and lies in 0..=100.
fn weights(
    sink: &mut Sink<'_>,
    which: &str,
    raw: &RawWeights,
    endpoint: &str,
    declared: &BTreeMap<String, Origin>,
) -> Weights {
    let mut out = Weights::new();
    let known: Vec<&str> = declared.keys().map(String::as_str).collect();
    for w in &raw.entries {
        if !declared.contains_key(&w.deployment) {
            let hint = suggestion(&w.deployment, &known);
            sink.error(
                w.name_pos,
                format!(
                    "{which} names deployment `{}`, which endpoint `{endpoint}` does not declare{hint}",
                    w.deployment
                ),
            );
        }
        match u32::try_from(w.weight) {
            Ok(v) if v <= 100 => {
                out.insert(w.deployment.clone(), v);
            }
            _ => sink.error(
                w.weight_pos,
                format!(
                    "{which} weight of `{}` must be between 0 and 100, found {}",
                    w.deployment, w.weight
                ),
            ),
        }
    }
    out
}

/// The profile's mirror limits (on Azure ML: [AML R4] one mirrored deployment at most,
/// [AML R3] a sum of at most 50), and never a deployment that takes live traffic ([AML R5]).
fn mirror_rules(
    sink: &mut Sink<'_>,
    profile: &PlatformProfile,
    mirror: &RawWeights,
    traffic: Option<&Weights>,
) {
    let positive: Vec<_> = mirror.entries.iter().filter(|w| w.weight > 0).collect();
    let sum: i64 = positive.iter().map(|w| w.weight).sum();
    for problem in profile.mirror_problems(positive.len(), mirror.complete.then_some(sum)) {
        sink.error(mirror.key_pos, problem);
    }
    for w in positive {
        if traffic
            .and_then(|t| t.get(&w.deployment))
            .is_some_and(|t| *t > 0)
        {
            sink.error(
                w.name_pos,
                format!(
                    "deployment `{}` takes live traffic, so it cannot also get mirror traffic",
                    w.deployment
                ),
            );
        }
    }
}

/// Test keys must name declared endpoints and deployments.
pub(crate) fn test_key_problem(key: &str, endpoints: &Declared) -> Option<String> {
    if key == "*" {
        return None;
    }
    let (endpoint, deployment) = match key.split_once('/') {
        Some((e, d)) => (e, Some(d)),
        None => (key, None),
    };
    let known: Vec<&str> = endpoints.keys().map(String::as_str).collect();
    let Some(ep) = endpoints.get(endpoint) else {
        let hint = suggestion(endpoint, &known);
        return Some(format!(
            "tests: endpoint `{endpoint}` is not declared{hint}"
        ));
    };
    let deployment = deployment?;
    if ep.contains(deployment) {
        return None;
    }
    let known: Vec<&str> = ep.iter().map(String::as_str).collect();
    let hint = suggestion(deployment, &known);
    Some(format!(
        "tests: endpoint `{endpoint}` has no deployment `{deployment}`{hint}"
    ))
}

/// `rollout.endpoints` keys must name declared endpoints (an override is a whole endpoint's
/// policy; there is no `endpoint/deployment` form).
pub(crate) fn rollout_key_problem(key: &str, endpoints: &Declared) -> Option<String> {
    if endpoints.contains_key(key) {
        return None;
    }
    let known: Vec<&str> = endpoints.keys().map(String::as_str).collect();
    let hint = suggestion(key, &known);
    Some(format!(
        "rollout.endpoints: endpoint `{key}` is not declared{hint}"
    ))
}
