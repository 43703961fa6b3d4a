//! `slots:` in `environment.yaml`: stage one (shapes, from the field table) and stage two (the
//! rules across files: the endpoint, its deployments, the template file, its traffic). Every
//! problem is reported with its location, all at once. docs/environment-format.md "Slots".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::diagnostics::{Diagnostic, Sink};
use super::fields::SLOTS;
use super::files::normalize;
use super::located::{Loc, field, suggestion};
use super::paths::inside_environment;
use super::raw_deployment::RawDeployment;
use super::raw_endpoint::RawEndpoint;
use super::validate::Declared;
use super::yaml::{Entry, Pos};
use crate::plan::profile::PlatformProfile;
use crate::slots::{AfterSwap, Slots};

/// One endpoint's `slots` entry as written.
#[derive(Clone, Debug)]
pub(crate) struct RawSlots {
    pub endpoint: String,
    pub key_pos: Pos,
    pub names: Vec<Loc<String>>,
    pub names_pos: Pos,
    pub template: Option<Loc<String>>,
    pub after_swap: AfterSwap,
}

pub(crate) fn slots(sink: &mut Sink<'_>, e: &Entry) -> Vec<RawSlots> {
    let mut out = Vec::new();
    let Some(keys) = sink.any_mapping("slots", &e.value) else {
        return out;
    };
    for key in keys {
        let what = format!("slots.{}", key.key);
        let Some(fields) = sink.mapping(&key.key, &key.value, &what, &SLOTS) else {
            continue;
        };
        let (names, names_pos) = match field(fields, "names") {
            Some(n) => (sink.string_list(n).unwrap_or_default(), n.value.pos),
            None => {
                sink.error(key.key_pos, format!("{what} has no `names`"));
                (Vec::new(), key.key_pos)
            }
        };
        let template = match field(fields, "template") {
            Some(t) => sink.string(t),
            None => {
                sink.error(key.key_pos, format!("{what} has no `template`"));
                None
            }
        };
        let after_swap = field(fields, "after_swap")
            .and_then(|a| sink.one_of(a, SLOTS.allowed("after_swap")))
            .map_or(AfterSwap::Keep, |a| match a.value.as_str() {
                "scale_down" => AfterSwap::ScaleDown,
                "delete" => AfterSwap::Delete,
                _ => AfterSwap::Keep,
            });
        out.push(RawSlots {
            endpoint: key.key.clone(),
            key_pos: key.key_pos,
            names,
            names_pos,
            template,
            after_swap,
        });
    }
    out
}

/// Takes each slot endpoint's template out of the split deployments (it is no deployment of
/// its own: its `name` is replaced by a slot), and drops the traffic of slot endpoints (the
/// slots route all of it), reporting a `traffic` or a `mirror_traffic` that names a slot.
/// Returns the templates by endpoint.
pub(crate) fn take_templates(
    dir: &Path,
    env_path: &Path,
    raw: &[RawSlots],
    endpoints: &mut [RawEndpoint],
    deployments: &mut Vec<RawDeployment>,
    out: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Option<RawDeployment>> {
    // `None`: the template's problem is already reported.
    let mut templates = BTreeMap::new();
    for s in raw {
        let Some(template) = &s.template else {
            continue;
        };
        let rel = match inside_environment(&template.value) {
            Ok(rel) => rel,
            Err(why) => {
                let message = format!("slots.{}: template `{}`: {why}", s.endpoint, template.value);
                out.push(Diagnostic::new(env_path, template.pos, message));
                templates.insert(s.endpoint.clone(), None);
                continue;
            }
        };
        let path: PathBuf = normalize(&dir.join(rel));
        if let Some(i) = deployments.iter().position(|d| normalize(&d.path) == path) {
            templates.insert(s.endpoint.clone(), Some(deployments.remove(i)));
        } else if endpoints.iter().any(|e| normalize(&e.path) == path) {
            let message = format!(
                "slots.{}: template `{}` is an endpoint file, expected a deployment file (one with `endpoint_name`)",
                s.endpoint, template.value
            );
            out.push(Diagnostic::new(env_path, template.pos, message));
            templates.insert(s.endpoint.clone(), None);
        }
    }
    for e in endpoints.iter_mut() {
        let Some(name) = &e.name else { continue };
        let Some(s) = raw.iter().find(|s| s.endpoint == name.value) else {
            continue;
        };
        let names: Vec<&str> = s.names.iter().map(|n| n.value.as_str()).collect();
        if let Some(traffic) = e.traffic.take() {
            let named: Vec<&str> = traffic
                .entries
                .iter()
                .map(|w| w.deployment.as_str())
                .filter(|d| names.contains(d))
                .collect();
            let which = if named.is_empty() {
                String::new()
            } else {
                format!(" (it names slot `{}`)", named.join("`, `"))
            };
            let message = format!(
                "endpoint `{}` has slots (environment.yaml `slots.{}`): flightdeck routes its traffic to the slot that runs the template, remove `traffic`{which}",
                name.value, name.value
            );
            out.push(Diagnostic::new(&e.path, traffic.key_pos, message));
        }
        if let Some(mirror) = &mut e.mirror_traffic {
            for w in mirror
                .entries
                .iter()
                .filter(|w| names.contains(&w.deployment.as_str()))
            {
                let message = format!(
                    "mirror_traffic names slot `{}` of endpoint `{}`: a slot is no deployment of its own to mirror to",
                    w.deployment, name.value
                );
                out.push(Diagnostic::new(&e.path, w.name_pos, message));
            }
            mirror
                .entries
                .retain(|w| !names.contains(&w.deployment.as_str()));
        }
    }
    templates
}

/// Stage two: checks every `slots` entry against the endpoints as loaded and builds the
/// [`Slots`] of each. `template_of` checks a template deployment as any deployment is checked.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check(
    env_path: &Path,
    raw: Vec<RawSlots>,
    mut templates: BTreeMap<String, Option<RawDeployment>>,
    endpoints: &Declared,
    profile: &PlatformProfile,
    incomplete: bool,
    template_of: &mut dyn FnMut(
        &RawDeployment,
        &mut Vec<Diagnostic>,
    ) -> Option<crate::model::Deployment>,
    out: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Slots> {
    let mut result = BTreeMap::new();
    let known: Vec<&str> = endpoints.keys().map(String::as_str).collect();
    let mut error = |pos: Pos, message: String| out.push(Diagnostic::new(env_path, pos, message));
    let mut checked = Vec::new();
    for s in raw {
        let what = format!("slots.{}", s.endpoint);
        let Some(endpoint) = endpoints.get(&s.endpoint) else {
            if !incomplete {
                let hint = suggestion(&s.endpoint, &known);
                error(
                    s.key_pos,
                    format!("{what}: endpoint `{}` is not declared{hint}", s.endpoint),
                );
            }
            continue;
        };
        let mut ok = true;
        match s.names.len() {
            2 => {}
            n => {
                ok = false;
                error(
                    s.names_pos,
                    format!(
                        "{what}: names lists {n} slot{}, expected exactly two (blue/green)",
                        if n == 1 { "" } else { "s" }
                    ),
                );
            }
        }
        for (i, n) in s.names.iter().enumerate() {
            if s.names[..i].iter().any(|m| m.value == n.value) {
                ok = false;
                error(
                    n.pos,
                    format!(
                        "{what}: slot `{}` is listed twice, the two slots need distinct names",
                        n.value
                    ),
                );
                continue;
            }
            let problem = profile
                .name_problem("deployment", &n.value)
                .or_else(|| profile.object_name_problem(&s.endpoint, &n.value));
            if let Some(problem) = problem {
                ok = false;
                error(n.pos, format!("{what}: slot `{}`: {problem}", n.value));
            }
            if endpoint.contains(&n.value) {
                ok = false;
                error(
                    n.pos,
                    format!(
                        "{what}: slot `{}` clashes with deployment `{}` that endpoint `{}` declares; a slot's deployment comes from the template",
                        n.value, n.value, s.endpoint
                    ),
                );
            }
        }
        let Some(template_loc) = &s.template else {
            continue;
        };
        let raw_template = match templates.remove(&s.endpoint) {
            Some(Some(t)) => t,
            Some(None) => continue,
            None if incomplete => continue,
            None => {
                error(
                    template_loc.pos,
                    format!(
                        "{what}: template `{}`: no deployment file there (file not found, or not a deployment)",
                        template_loc.value
                    ),
                );
                continue;
            }
        };
        if let Some(en) = &raw_template.endpoint_name
            && en.value != s.endpoint
        {
            ok = false;
            error(
                template_loc.pos,
                format!(
                    "{what}: template `{}` is a deployment of endpoint `{}`, not of `{}`",
                    template_loc.value, en.value, s.endpoint
                ),
            );
        }
        checked.push((s, raw_template, ok));
    }
    for (s, raw_template, ok) in checked {
        let template = template_of(&raw_template, out);
        if let (Some(template), true) = (template, ok) {
            let names = [s.names[0].value.clone(), s.names[1].value.clone()];
            result.insert(
                s.endpoint.clone(),
                Slots {
                    names,
                    template_file: s.template.map(|t| t.value).unwrap_or_default(),
                    template,
                    after_swap: s.after_swap,
                },
            );
        }
    }
    result
}
