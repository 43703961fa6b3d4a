//! Stage one for `rollout:` in `environment.yaml`: the metrics source, the default policy and
//! the per-endpoint overrides, each checked on its own (stages, weights, bakes, gates). Override
//! keys are checked against the declared endpoints later, in `load`, where endpoints are known.

use std::time::Duration;

use super::diagnostics::Sink;
use super::fields::{
    Obj, PROMETHEUS_QUERIES, ROLLOUT, ROLLOUT_METRICS, ROLLOUT_MIRROR, ROLLOUT_POLICY,
    ROLLOUT_STAGE,
};
use super::gate_expr::parse_gate;
use super::located::{Loc, field};
use super::yaml::{Entry, Kind, Node, Pos, ScalarType};
use crate::model::Weights;
use crate::rollout::gates::SMOKE;
use crate::rollout::policy::MetricsSource;
use crate::rollout::{OnFailure, RolloutPolicy, RolloutSettings, Stage, StageTarget};

/// The section as read, with where each override key was written.
#[derive(Clone, Debug, Default)]
pub(crate) struct RawRollout {
    pub settings: RolloutSettings,
    pub overrides: Vec<(String, Pos)>,
    /// Each policy's mirror percent (`rollout.default`, ...) and where it was written: checked
    /// against the platform's mirror limits in `load`, where the target is known.
    pub mirrors: Vec<(String, Loc<u32>)>,
    /// Each policy (`rollout.default`, ...) with a `smoke` gate, and where the first is
    /// written: checked in `load` against the endpoints' tests.
    pub smokes: Vec<(String, Pos)>,
}

const DURATION_HINT: &str = "`30s`, `5m`, `1h 30m`";

pub(crate) fn rollout(sink: &mut Sink<'_>, e: &Entry) -> RawRollout {
    let mut raw = RawRollout::default();
    let Some(fields) = sink.mapping("rollout", &e.value, "rollout", &ROLLOUT) else {
        return raw;
    };
    // Where each policy first declares gates: they need `rollout.metrics`.
    let mut gated: Vec<Pos> = Vec::new();
    let metrics_entry = field(fields, "metrics");
    raw.settings.metrics = metrics_entry.and_then(|m| metrics(sink, m));
    if let Some(d) = field(fields, "default") {
        let default = policy(sink, d, "rollout.default", &mut gated, &mut raw);
        raw.settings.default = default;
    }
    if let Some(list) = field(fields, "endpoints")
        && let Some(entries) = sink.any_mapping("endpoints", &list.value)
    {
        for over in entries {
            raw.overrides.push((over.key.clone(), over.key_pos));
            let what = format!("rollout.endpoints.{}", over.key);
            match &over.value.kind {
                Kind::Scalar {
                    text,
                    ty: ScalarType::Str,
                } if text == "none" => {
                    raw.settings.endpoints.insert(over.key.clone(), None);
                }
                Kind::Map(_) => {
                    if let Some(p) = policy(sink, over, &what, &mut gated, &mut raw) {
                        raw.settings.endpoints.insert(over.key.clone(), Some(p));
                    }
                }
                _ => sink.error(
                    over.value.pos,
                    format!(
                        "{what}: expected a policy (a mapping) or `none`, found {}",
                        describe(&over.value)
                    ),
                ),
            }
        }
    }
    // A `metrics:` that is present but wrong has its own errors; do not pile on.
    if metrics_entry.is_none() {
        for pos in gated {
            sink.error(pos, "gates need `rollout.metrics`");
        }
    }
    raw
}

fn describe(node: &Node) -> String {
    match &node.kind {
        Kind::Scalar {
            text,
            ty: ScalarType::Str,
        } => format!("`{text}`"),
        _ => node.describe().to_string(),
    }
}

fn metrics(sink: &mut Sink<'_>, e: &Entry) -> Option<MetricsSource> {
    let fields = sink.mapping("metrics", &e.value, "rollout.metrics", &ROLLOUT_METRICS)?;
    let provider = match field(fields, "provider") {
        Some(p) => sink.one_of(p, ROLLOUT_METRICS.allowed("provider")),
        None => {
            sink.error(e.key_pos, "rollout.metrics has no `provider`");
            None
        }
    };
    let provider = provider?;
    let prometheus = provider.value == "prometheus";
    let (others, other_name) = if prometheus {
        (&["ingestion_delay", "base_url"][..], "azure_monitor")
    } else {
        (&["url", "queries", "token_env"][..], "prometheus")
    };
    let before = sink.out.len();
    for f in fields.iter().filter(|f| others.contains(&f.key.as_str())) {
        sink.error(
            f.key_pos,
            format!(
                "rollout.metrics: `{}` is only for provider `{other_name}`",
                f.key
            ),
        );
    }
    if !prometheus {
        let ingestion_delay = field(fields, "ingestion_delay").and_then(|d| duration(sink, d));
        let base_url = field(fields, "base_url").and_then(|u| http_url(sink, u));
        return (sink.out.len() == before).then(|| MetricsSource::AzureMonitor {
            ingestion_delay: ingestion_delay.map(|d| d.value),
            base_url: base_url.map(|u| u.value),
        });
    }
    let url = match field(fields, "url") {
        Some(u) => http_url(sink, u),
        None => {
            sink.error(
                e.key_pos,
                "rollout.metrics has no `url` (provider `prometheus` needs one)",
            );
            None
        }
    };
    let mut queries = std::collections::BTreeMap::new();
    if let Some(q) = field(fields, "queries")
        && let Some(entries) = sink.mapping(
            "queries",
            &q.value,
            "rollout.metrics.queries",
            &PROMETHEUS_QUERIES,
        )
    {
        for query in entries {
            if let Some(text) = sink.string(query) {
                queries.insert(query.key.clone(), text.value);
            }
        }
    }
    let token_env = field(fields, "token_env").and_then(|t| sink.string(t));
    if let Some(t) = &token_env
        && !is_env_name(&t.value)
    {
        sink.error(
            t.pos,
            format!(
                "token_env `{}` is not an environment variable name (letters, digits, `_`)",
                t.value
            ),
        );
    }
    let url = url?;
    (sink.out.len() == before).then(|| MetricsSource::Prometheus {
        url: url.value,
        queries,
        token_env: token_env.map(|t| t.value),
    })
}

fn http_url(sink: &mut Sink<'_>, e: &Entry) -> Option<Loc<String>> {
    let u = sink.string(e)?;
    let ok = url::Url::parse(&u.value)
        .map(|p| matches!(p.scheme(), "http" | "https"))
        .unwrap_or(false);
    if !ok {
        let message = format!(
            "rollout.metrics.{} `{}` is not an http(s) URL",
            e.key, u.value
        );
        sink.error(u.pos, message);
        return None;
    }
    Some(u)
}

fn is_env_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A humantime duration written as a string: `30s`, `5m`, `1h 30m`.
pub(crate) fn duration(sink: &mut Sink<'_>, e: &Entry) -> Option<Loc<Duration>> {
    let text = match &e.value.kind {
        Kind::Scalar {
            text,
            ty: ScalarType::Str,
        } => text,
        _ => {
            let found = e.value.describe();
            let message = format!(
                "{}: expected a duration ({DURATION_HINT}), found {found}",
                e.key
            );
            sink.error(e.value.pos, message);
            return None;
        }
    };
    match humantime::parse_duration(text) {
        Ok(d) => Some(Loc {
            value: d,
            pos: e.value.pos,
            key_pos: e.key_pos,
        }),
        Err(_) => {
            let message = format!("{}: `{text}` is not a duration ({DURATION_HINT})", e.key);
            sink.error(e.value.pos, message);
            None
        }
    }
}

/// One policy, under `what` (`rollout.default`, `rollout.endpoints.<name>`). `None` when it
/// has any problem (all of them reported).
fn policy(
    sink: &mut Sink<'_>,
    e: &Entry,
    what: &str,
    gated: &mut Vec<Pos>,
    raw: &mut RawRollout,
) -> Option<RolloutPolicy> {
    let mut smoked: Option<Pos> = None;
    let before = sink.out.len();
    let fields = sink.mapping(&e.key, &e.value, what, &ROLLOUT_POLICY)?;
    let mut stages: Vec<Stage> = Vec::new();
    // The mirror stage, when declared, is the first stage (numbered 1).
    let mut bakes_mirror: Option<Duration> = None;
    if let Some(m) = field(fields, "mirror") {
        let label = format!("{what} mirror");
        let read = stage(sink, &m.value, &label, gated, &ROLLOUT_MIRROR);
        if let Some(percent) = read.weight {
            raw.mirrors.push((what.to_string(), percent));
        }
        smoked = smoked.or(read.smoke);
        bakes_mirror = read.bake;
        stages.extend(read.stage);
    }
    let offset = usize::from(field(fields, "mirror").is_some());
    // Every bake that parsed, by stage number, valid stage or not: the policy-wide checks
    // (max_bake, deadline, increasing weights) still run when one stage has other problems.
    let mut bakes: Vec<(usize, Duration)> = bakes_mirror.map(|b| (1, b)).into_iter().collect();
    match field(fields, "steps") {
        None => sink.error(e.key_pos, format!("{what} has no `steps`")),
        Some(steps) => {
            if let Some(items) = sink.sequence("steps", &steps.value) {
                if items.is_empty() {
                    sink.error(
                        steps.value.pos,
                        format!("{what}: `steps` is empty, a policy needs at least one stage"),
                    );
                }
                let mut previous: Option<(usize, u32)> = None;
                for (i, item) in items.iter().enumerate() {
                    let i = i + offset;
                    let label = format!("{what} stage {}", i + 1);
                    let read = stage(sink, item, &label, gated, &ROLLOUT_STAGE);
                    if let (Some(w), Some((n, prev))) = (&read.weight, previous)
                        && w.value <= prev
                    {
                        sink.error(
                            w.pos,
                            format!(
                                "{label}: weight {} must be above stage {n}'s {prev} (weights only increase)",
                                w.value
                            ),
                        );
                    }
                    if let Some(w) = &read.weight {
                        previous = Some((i + 1, w.value));
                    }
                    if let Some(b) = read.bake {
                        bakes.push((i + 1, b));
                    }
                    smoked = smoked.or(read.smoke);
                    stages.extend(read.stage);
                }
            }
        }
    }
    let min_requests = field(fields, "min_requests")
        .and_then(|m| sink.int_in(m, 0, i64::MAX))
        .map_or(0, |m| m.value as u64);
    let max_bake = field(fields, "max_bake").and_then(|d| duration(sink, d));
    let deadline = field(fields, "deadline").and_then(|d| duration(sink, d));
    let mut on = |name: &str| {
        field(fields, name)
            .and_then(|v| sink.one_of(v, ROLLOUT_POLICY.allowed(name)))
            .map_or(OnFailure::Rollback, |v| match v.value.as_str() {
                "pause" => OnFailure::Pause,
                _ => OnFailure::Rollback,
            })
    };
    let on_no_data = on("on_no_data");
    let on_failure = on("on_failure");
    let keep_failed = field(fields, "keep_failed")
        .and_then(|k| sink.bool(k))
        .unwrap_or(true);
    let scale_with_traffic = field(fields, "scale_with_traffic")
        .and_then(|k| sink.bool(k))
        .unwrap_or(false);
    if let Some(max) = &max_bake
        && let Some((n, bake)) = bakes
            .iter()
            .filter(|(_, b)| *b > max.value)
            .max_by_key(|(_, b)| *b)
    {
        sink.error(
            max.pos,
            format!(
                "{what}: max_bake {} is shorter than stage {n}'s bake {}",
                humantime::format_duration(max.value),
                humantime::format_duration(*bake)
            ),
        );
    }
    if let Some(deadline) = &deadline {
        let total: Duration = bakes.iter().map(|(_, b)| *b).sum();
        if deadline.value < total {
            sink.error(
                deadline.pos,
                format!(
                    "{what}: deadline {} is shorter than the stages' bakes together ({})",
                    humantime::format_duration(deadline.value),
                    humantime::format_duration(total)
                ),
            );
        }
    }
    // Checked against the endpoints' tests only when the policy is otherwise valid.
    if let Some(pos) = smoked.filter(|_| sink.out.len() == before) {
        raw.smokes.push((what.to_string(), pos));
    }
    (sink.out.len() == before).then(|| RolloutPolicy {
        steps: stages,
        min_requests,
        max_bake: max_bake.map(|d| d.value),
        on_no_data,
        on_failure,
        deadline: deadline.map(|d| d.value),
        keep_failed,
        scale_with_traffic,
    })
}

/// One stage as read: the stage when it has no problem, and its bake and weight whenever they
/// are valid on their own.
#[derive(Default)]
struct StageRead {
    stage: Option<Stage>,
    bake: Option<Duration>,
    weight: Option<Loc<u32>>,
    /// Where its `gates` list a `smoke` gate.
    smoke: Option<Pos>,
}

/// A stage of `steps` (`obj` is `ROLLOUT_STAGE`) or the `mirror` stage (`ROLLOUT_MIRROR`:
/// `percent` instead of `weight` or `traffic`; its percent is returned as `weight`).
fn stage(
    sink: &mut Sink<'_>,
    node: &Node,
    what: &str,
    gated: &mut Vec<Pos>,
    obj: &'static Obj,
) -> StageRead {
    let before = sink.out.len();
    let key = if std::ptr::eq(obj, &ROLLOUT_MIRROR) {
        "mirror"
    } else {
        "steps"
    };
    let Some(fields) = sink.mapping(key, node, what, obj) else {
        return StageRead::default();
    };
    let weight_entry = field(fields, "weight").or_else(|| field(fields, "percent"));
    let traffic_entry = field(fields, "traffic");
    let mut weight = None;
    let target = match (weight_entry, traffic_entry) {
        // The platform's own limit (50% on Azure ML) is checked in `load`.
        (Some(w), None) if key == "mirror" => sink.int_in(w, 1, 100).map(|w| {
            let v = w.value as u32;
            weight = Some(Loc {
                value: v,
                pos: w.pos,
                key_pos: w.key_pos,
            });
            StageTarget::Mirror(v)
        }),
        (None, None) if key == "mirror" => {
            sink.error(node.pos, format!("{what} has no `percent`"));
            None
        }
        (Some(w), None) => sink.int_in(w, 1, 99).map(|w| {
            let v = w.value as u32;
            weight = Some(Loc {
                value: v,
                pos: w.pos,
                key_pos: w.key_pos,
            });
            StageTarget::Weight(v)
        }),
        (None, Some(t)) => traffic(sink, t, what).map(StageTarget::Traffic),
        (Some(w), Some(t)) => {
            let second = if t.key_pos > w.key_pos { t } else { w };
            sink.error(
                second.key_pos,
                format!("{what} has both `weight` and `traffic`, keep one"),
            );
            None
        }
        (None, None) => {
            sink.error(node.pos, format!("{what} needs `weight` or `traffic`"));
            None
        }
    };
    let bake = match field(fields, "bake") {
        Some(b) => duration(sink, b),
        None => {
            sink.error(node.pos, format!("{what} has no `bake`"));
            None
        }
    };
    let bake = bake.filter(|b| {
        if b.value.is_zero() {
            sink.error(b.pos, format!("{what}: bake must be longer than 0s"));
        }
        !b.value.is_zero()
    });
    let pause = field(fields, "pause")
        .and_then(|p| sink.bool(p))
        .unwrap_or(false);
    let mut gates = Vec::new();
    let mut smoke = false;
    let mut smoked = None;
    // Whether any entry is a metric gate (parsed or not): those need `rollout.metrics`.
    let mut metric_listed = false;
    if let Some(g) = field(fields, "gates") {
        for item in sink.sequence("gates", &g.value).unwrap_or_default() {
            let Some(text) = sink.string_node("gates", item) else {
                continue;
            };
            // `smoke`: the candidate's smoke requests again, after the bake (no metrics).
            if text.trim() == SMOKE {
                if smoke {
                    sink.error(item.pos, format!("{what}: gate `smoke` is listed twice"));
                }
                smoke = true;
                continue;
            }
            metric_listed = true;
            match parse_gate(&text) {
                Ok(gate) => gates.push(gate),
                Err(e) => {
                    // Point inside the string when it is on one line.
                    let pos = if text.contains('\n') {
                        item.pos
                    } else {
                        Pos {
                            line: item.pos.line,
                            column: item.pos.column + usize::from(item.quoted) + e.offset,
                        }
                    };
                    sink.error(pos, format!("{what}: gate `{text}`: {}", e.message));
                }
            }
        }
        // Metric gates need `rollout.metrics`; the `smoke` gate does not.
        if metric_listed {
            gated.push(g.key_pos);
        }
        if smoke {
            smoked = Some(g.key_pos);
        }
    }
    let bake = bake.map(|b| b.value);
    let stage = match (target, bake) {
        (Some(target), Some(bake)) if sink.out.len() == before => Some(Stage {
            target,
            bake,
            pause,
            gates,
            smoke,
        }),
        _ => None,
    };
    StageRead {
        stage,
        bake,
        weight,
        smoke: smoked,
    }
}

/// A `traffic:` stage: deployment weights 0..=100 that sum to 100.
fn traffic(sink: &mut Sink<'_>, e: &Entry, what: &str) -> Option<Weights> {
    let entries = sink.any_mapping("traffic", &e.value)?;
    let mut out = Weights::new();
    let mut complete = true;
    for w in entries {
        match sink.int_in(w, 0, 100) {
            Some(v) => {
                out.insert(w.key.clone(), v.value as u32);
            }
            None => complete = false,
        }
    }
    let sum: u64 = out.values().map(|w| u64::from(*w)).sum();
    if complete && sum != 100 {
        sink.error(
            e.key_pos,
            format!("{what}: traffic sums to {sum}, expected 100"),
        );
        return None;
    }
    complete.then_some(out)
}
