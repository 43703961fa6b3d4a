//! `promotion:` in `environment.yaml`: stage one (shapes, from the field table) and stage two
//! (each mapping's endpoint and deployment exist, one rule per endpoint deployment). Every
//! problem is reported with its location, all at once. docs/environment-format.md "Promotion".

use std::collections::BTreeMap;
use std::path::Path;

use super::diagnostics::{Diagnostic, Sink};
use super::fields::{PROMOTION, PROMOTION_RULE};
use super::located::{Loc, field, suggestion};
use super::validate::Declared;
use super::yaml::{Entry, Pos};
use crate::promotion::{ModelRef, PromotionMode, PromotionRule, PromotionSettings};
use crate::slots::Slots;

/// One `promotion.models` item as written.
#[derive(Clone, Debug)]
pub(crate) struct RawRule {
    /// Its index in `models`, for messages.
    pub index: usize,
    pub pos: Pos,
    pub model: Loc<ModelRef>,
    pub endpoint: Loc<String>,
    pub deployment: Option<Loc<String>>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct RawPromotion {
    pub mode: PromotionMode,
    pub rules: Vec<RawRule>,
}

pub(crate) fn promotion(sink: &mut Sink<'_>, e: &Entry) -> RawPromotion {
    let mut out = RawPromotion::default();
    let Some(fields) = sink.mapping("promotion", &e.value, "promotion", &PROMOTION) else {
        return out;
    };
    if let Some(m) = field(fields, "mode").and_then(|m| sink.one_of(m, PROMOTION.allowed("mode"))) {
        out.mode = if m.value == "pull_request" {
            PromotionMode::PullRequest
        } else {
            PromotionMode::Commit
        };
    }
    let Some(models) = field(fields, "models") else {
        sink.error(e.key_pos, "promotion has no `models`");
        return out;
    };
    let Some(items) = sink.sequence("models", &models.value) else {
        return out;
    };
    for (i, item) in items.iter().enumerate() {
        let what = format!("promotion.models[{i}]");
        let Some(entries) = sink.mapping(&what, item, &what, &PROMOTION_RULE) else {
            continue;
        };
        let model = match field(entries, "model") {
            Some(m) => sink
                .string(m)
                .and_then(|text| match ModelRef::parse(&text.value) {
                    Ok(model) => Some(Loc {
                        value: model,
                        pos: text.pos,
                        key_pos: text.key_pos,
                    }),
                    Err(why) => {
                        sink.error(text.pos, format!("{what}: model {why}"));
                        None
                    }
                }),
            None => {
                sink.error(item.pos, format!("{what} has no `model`"));
                None
            }
        };
        let endpoint = match field(entries, "endpoint") {
            Some(ep) => sink.string(ep),
            None => {
                sink.error(item.pos, format!("{what} has no `endpoint`"));
                None
            }
        };
        let deployment = field(entries, "deployment").and_then(|d| sink.string(d));
        if let (Some(model), Some(endpoint)) = (model, endpoint) {
            out.rules.push(RawRule {
                index: i,
                pos: item.pos,
                model,
                endpoint,
                deployment,
            });
        }
    }
    out
}

/// Stage two: each rule names a declared endpoint and, unless the endpoint has slots (its
/// template is what changes) or exactly one deployment, one of its deployments; a reference
/// feeds a target once. `incomplete`: some endpoint file did not load, so names are not checked.
pub(crate) fn check(
    env_path: &Path,
    raw: RawPromotion,
    endpoints: &Declared,
    slots: &BTreeMap<String, Slots>,
    incomplete: bool,
    out: &mut Vec<Diagnostic>,
) -> PromotionSettings {
    let mut settings = PromotionSettings {
        mode: raw.mode,
        models: Vec::new(),
    };
    let mut seen: Vec<(String, String, Option<String>)> = Vec::new();
    for rule in raw.rules {
        let what = format!("promotion.models[{}]", rule.index);
        let endpoint = &rule.endpoint.value;
        let deployment = rule.deployment.as_ref().map(|d| d.value.clone());
        let problem = if incomplete {
            None
        } else {
            target_problem(endpoint, deployment.as_deref(), endpoints, slots)
        };
        if let Some((part, message)) = problem {
            let pos = match (&rule.deployment, part) {
                (Some(d), Part::Deployment) => d.pos,
                _ => rule.endpoint.pos,
            };
            out.push(Diagnostic::new(env_path, pos, format!("{what}: {message}")));
            continue;
        }
        let key = (
            rule.model.value.to_string(),
            endpoint.clone(),
            deployment.clone(),
        );
        if seen.contains(&key) {
            out.push(Diagnostic::new(
                env_path,
                rule.pos,
                format!(
                    "{what}: {} already feeds endpoint {endpoint} there; keep one",
                    rule.model.value
                ),
            ));
            continue;
        }
        seen.push(key);
        settings.models.push(PromotionRule {
            model: rule.model.value,
            endpoint: endpoint.clone(),
            deployment,
        });
    }
    settings
}

enum Part {
    Endpoint,
    Deployment,
}

fn target_problem(
    endpoint: &str,
    deployment: Option<&str>,
    endpoints: &Declared,
    slots: &BTreeMap<String, Slots>,
) -> Option<(Part, String)> {
    let Some(declared) = endpoints.get(endpoint) else {
        let names: Vec<&str> = endpoints.keys().map(String::as_str).collect();
        let hint = suggestion(endpoint, &names);
        return Some((
            Part::Endpoint,
            format!("endpoint `{endpoint}` is not declared in this environment{hint}"),
        ));
    };
    if slots.contains_key(endpoint) {
        return deployment.map(|d| {
            (
                Part::Deployment,
                format!(
                    "endpoint {endpoint} has slots: its template is what a promotion changes, remove `deployment: {d}`"
                ),
            )
        });
    }
    let names: Vec<&str> = declared.iter().map(String::as_str).collect();
    match deployment {
        Some(d) if !declared.contains(d) => {
            let hint = suggestion(d, &names);
            Some((
                Part::Deployment,
                format!(
                    "endpoint {endpoint}: deployment `{d}` is not declared (declared: {}){hint}",
                    names.join(", ")
                ),
            ))
        }
        None if names.len() > 1 => Some((
            Part::Endpoint,
            format!(
                "endpoint {endpoint} declares {} deployments ({}); add `deployment:`",
                names.len(),
                names.join(", ")
            ),
        )),
        _ => None,
    }
}
