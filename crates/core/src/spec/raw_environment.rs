//! Stage one for `environment.yaml`: name, target, drift policy, pre-traffic tests and the
//! rollout section (`raw_rollout`).

use std::path::PathBuf;
use std::time::Duration;

use super::diagnostics::Sink;
use super::fields::{
    AZUREML_TARGET, DRIFT, ENVIRONMENT, KUBERNETES_TARGET, STATE_FILE_TARGET, TARGET, TEST,
    drift_names,
};
use super::located::{Loc, field, suggestion};
use super::raw_promotion::{RawPromotion, promotion};
use super::raw_rollout::{RawRollout, duration, rollout};
use super::raw_slots::{RawSlots, slots};
use super::yaml::{Entry, Node, Pos, to_json};
use crate::model::{
    AzureMlTarget, DriftMode, DriftPolicy, JsonCheck, KubernetesTarget, Router, Target,
};
use crate::smoke::MAX_RETRIES;

#[derive(Clone, Debug)]
pub(crate) struct RawTest {
    /// `endpoint`, `endpoint/deployment` or `*`.
    pub key: String,
    pub key_pos: Pos,
    pub source: RequestSource,
    pub expect_status: Option<u16>,
    pub expect_body_contains: Option<String>,
    pub expect_json: Vec<JsonCheck>,
    pub latency_budget: Option<Duration>,
    pub retries: u32,
}

/// Where a test's request bodies come from: exactly one of the three keys.
#[derive(Clone, Debug)]
pub(crate) enum RequestSource {
    File(Loc<String>),
    Files(Vec<Loc<String>>),
    /// Every `*.json` directly in the directory, sorted by name.
    Dir(Loc<String>),
}

/// The keys that name request bodies; a test has exactly one.
const SOURCES: [&str; 3] = ["request_file", "request_files", "request_dir"];

#[derive(Clone, Debug)]
pub(crate) struct RawEnvironment {
    pub path: PathBuf,
    pub name: Option<Loc<String>>,
    pub target: Option<Target>,
    pub drift: DriftPolicy,
    pub tests: Vec<RawTest>,
    pub rollout: RawRollout,
    pub slots: Vec<RawSlots>,
    pub promotion: RawPromotion,
}

pub(crate) fn environment(sink: &mut Sink<'_>, root: &Node) -> RawEnvironment {
    let mut raw = RawEnvironment {
        path: sink.path.to_path_buf(),
        name: None,
        target: None,
        drift: DriftPolicy::default(),
        tests: Vec::new(),
        rollout: RawRollout::default(),
        slots: Vec::new(),
        promotion: RawPromotion::default(),
    };
    let Some(entries) = sink.mapping("environment", root, "environment", &ENVIRONMENT) else {
        return raw;
    };
    match field(entries, "name") {
        Some(e) => raw.name = sink.string(e),
        None => sink.error(root.pos, "environment has no `name`"),
    }
    match field(entries, "target") {
        Some(e) => raw.target = target(sink, e),
        None => sink.error(root.pos, "environment has no `target`"),
    }
    if let Some(e) = field(entries, "drift") {
        raw.drift = drift(sink, e);
    }
    if let Some(e) = field(entries, "tests") {
        raw.tests = tests(sink, e);
    }
    if let Some(e) = field(entries, "rollout") {
        raw.rollout = rollout(sink, e);
    }
    if let Some(e) = field(entries, "slots") {
        raw.slots = slots(sink, e);
    }
    if let Some(e) = field(entries, "promotion") {
        raw.promotion = promotion(sink, e);
    }
    raw
}

fn target(sink: &mut Sink<'_>, e: &Entry) -> Option<Target> {
    let entries = sink.mapping("target", &e.value, "target", &TARGET)?;
    let kinds: Vec<&Entry> = entries
        .iter()
        .filter(|k| TARGET.field(&k.key).is_some())
        .collect();
    let kind = match kinds.as_slice() {
        [] => {
            sink.error(
                e.key_pos,
                "target needs one of `azureml`, `kubernetes` or `state_file`",
            );
            return None;
        }
        [one] => *one,
        [first, second, ..] => {
            sink.error(
                second.key_pos,
                format!(
                    "target has more than one kind (`{}` and `{}`), keep exactly one",
                    first.key, second.key
                ),
            );
            return None;
        }
    };
    let what = format!("target.{}", kind.key);
    match kind.key.as_str() {
        "azureml" => {
            let fields = sink.mapping(&kind.key, &kind.value, &what, &AZUREML_TARGET)?;
            let mut get = |name: &str| required_string(sink, fields, name, kind, &what);
            let subscription_id = get("subscription_id");
            let resource_group = get("resource_group");
            let workspace = get("workspace");
            let location = get("location");
            let subscription_id = subscription_id?;
            if !is_guid(&subscription_id.value) {
                sink.error(
                    subscription_id.pos,
                    format!(
                        "subscription_id `{}` is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)",
                        subscription_id.value
                    ),
                );
                return None;
            }
            Some(Target::AzureMl(AzureMlTarget {
                subscription_id: subscription_id.value,
                resource_group: resource_group?.value,
                workspace: workspace?.value,
                location: location?.value,
            }))
        }
        "kubernetes" => kubernetes(sink, kind, &what).map(Target::Kubernetes),
        _ => {
            let fields = sink.mapping(&kind.key, &kind.value, &what, &STATE_FILE_TARGET)?;
            let path = required_string(sink, fields, "path", kind, &what)?;
            if let Err(why) = super::paths::inside_environment(&path.value) {
                sink.error(path.pos, format!("state_file.path `{}`: {why}", path.value));
                return None;
            }
            Some(Target::StateFile { path: path.value })
        }
    }
}

fn kubernetes(sink: &mut Sink<'_>, kind: &Entry, what: &str) -> Option<KubernetesTarget> {
    let fields = sink.mapping(&kind.key, &kind.value, what, &KUBERNETES_TARGET)?;
    let namespace = required_string(sink, fields, "namespace", kind, what);
    if let Some(ns) = &namespace
        && !is_dns_label(&ns.value)
    {
        sink.error(
            ns.pos,
            format!(
                "namespace `{}` is not a valid Kubernetes name (lowercase letters, digits and `-`, at most 63)",
                ns.value
            ),
        );
    }
    let router = match field(fields, "router") {
        Some(r) => sink
            .one_of(r, KUBERNETES_TARGET.allowed("router"))
            .map(|v| match v.value.as_str() {
                "istio" => Router::Istio,
                _ => Router::GatewayApi,
            }),
        None => {
            sink.error(kind.key_pos, format!("{what} has no `router`"));
            None
        }
    };
    let list = |sink: &mut Sink<'_>, name: &str| {
        field(fields, name)
            .and_then(|e| sink.string_list(e))
            .map(|l| l.into_iter().map(|s| s.value).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let gateways = list(sink, "gateways");
    let hostnames = list(sink, "hostnames");
    let pin_header = field(fields, "pin_header").and_then(|e| sink.string(e));
    if let Some(h) = &pin_header
        && !is_header_name(&h.value)
    {
        // [K8S §1]: Istio header match keys must be lowercase with hyphens.
        sink.error(
            h.pos,
            format!(
                "pin_header `{}` must be a lowercase header name (letters, digits, `-`)",
                h.value
            ),
        );
    }
    let test_base_url = field(fields, "test_base_url").and_then(|e| sink.string(e));
    if let Some(u) = &test_base_url {
        let ok = url::Url::parse(&u.value)
            .map(|p| matches!(p.scheme(), "http" | "https"))
            .unwrap_or(false);
        if !ok {
            sink.error(
                u.pos,
                format!("test_base_url `{}` is not an http(s) URL", u.value),
            );
        }
    }
    Some(KubernetesTarget {
        namespace: namespace?.value,
        router: router?,
        gateways,
        hostnames,
        pin_header: pin_header.map(|h| h.value),
        test_base_url: test_base_url.map(|u| u.value),
    })
}

fn drift(sink: &mut Sink<'_>, e: &Entry) -> DriftPolicy {
    let mut out = DriftPolicy::default();
    let Some(fields) = sink.mapping("drift", &e.value, "drift", &DRIFT) else {
        return out;
    };
    if let Some(m) = field(fields, "mode").and_then(|m| sink.one_of(m, DRIFT.allowed("mode"))) {
        out.mode = if m.value == "report" {
            DriftMode::Report
        } else {
            DriftMode::Correct
        };
    }
    if let Some(list) = field(fields, "ignore").and_then(|i| sink.string_list(i)) {
        let known = drift_names();
        for name in list {
            if known.contains(&name.value.as_str()) {
                out.ignore.push(name.value);
            } else {
                let hint = suggestion(&name.value, &known);
                sink.error(
                    name.pos,
                    format!("drift.ignore: unknown setting `{}`{hint}", name.value),
                );
            }
        }
    }
    out
}

fn tests(sink: &mut Sink<'_>, e: &Entry) -> Vec<RawTest> {
    let mut out = Vec::new();
    let Some(keys) = sink.any_mapping("tests", &e.value) else {
        return out;
    };
    for key in keys {
        let what = format!("tests.{}", key.key);
        let Some(fields) = sink.mapping(&key.key, &key.value, &what, &TEST) else {
            continue;
        };
        let source = request_source(sink, fields, key, &what);
        let expect_status = field(fields, "expect_status")
            .and_then(|s| sink.int_in(s, 100, 599))
            .and_then(|s| u16::try_from(s.value).ok());
        let expect_body_contains = field(fields, "expect_body_contains")
            .and_then(|s| sink.string(s))
            .map(|s| s.value);
        let expect_json = field(fields, "expect_json")
            .map(|e| json_checks(sink, e))
            .unwrap_or_default();
        let latency_budget = field(fields, "latency_budget")
            .and_then(|e| duration(sink, e))
            .map(|d| d.value);
        let retries = field(fields, "retries")
            .and_then(|e| sink.int_in(e, 0, i64::from(MAX_RETRIES)))
            .and_then(|r| u32::try_from(r.value).ok())
            .unwrap_or(0);
        if let Some(source) = source {
            out.push(RawTest {
                key: key.key.clone(),
                key_pos: key.key_pos,
                source,
                expect_status,
                expect_body_contains,
                expect_json,
                latency_budget,
                retries,
            });
        }
    }
    out
}

/// Exactly one of `request_file`, `request_files` (a non-empty list) or `request_dir`.
fn request_source(
    sink: &mut Sink<'_>,
    fields: &[Entry],
    key: &Entry,
    what: &str,
) -> Option<RequestSource> {
    let given: Vec<&Entry> = SOURCES.iter().filter_map(|n| field(fields, n)).collect();
    let one = match given.as_slice() {
        [] => {
            sink.error(
                key.key_pos,
                format!("{what} has no `request_file`, `request_files` or `request_dir`"),
            );
            return None;
        }
        [one] => *one,
        [first, second, ..] => {
            sink.error(
                second.key_pos,
                format!(
                    "{what}: `{}` and `{}` both name requests, keep exactly one",
                    first.key, second.key
                ),
            );
            return None;
        }
    };
    match one.key.as_str() {
        "request_file" => sink.string(one).map(RequestSource::File),
        "request_dir" => sink.string(one).map(RequestSource::Dir),
        _ => {
            let list = sink.string_list(one)?;
            if list.is_empty() {
                sink.error(one.value.pos, format!("{what}: `request_files` is empty"));
                return None;
            }
            Some(RequestSource::Files(list))
        }
    }
}

/// `expect_json: {"$.predictions[0]": 1}`: each key an RFC 9535 JSONPath, checked here.
fn json_checks(sink: &mut Sink<'_>, e: &Entry) -> Vec<JsonCheck> {
    let Some(entries) = sink.any_mapping("expect_json", &e.value) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for check in entries {
        match serde_json_path::JsonPath::parse(&check.key) {
            Ok(_) => out.push(JsonCheck {
                path: check.key.clone(),
                expect: to_json(&check.value),
            }),
            Err(err) => sink.error(
                check.key_pos,
                format!(
                    "expect_json: `{}` is not a JSON path (RFC 9535): {err}",
                    check.key
                ),
            ),
        }
    }
    out
}

fn required_string(
    sink: &mut Sink<'_>,
    fields: &[Entry],
    name: &str,
    parent: &Entry,
    what: &str,
) -> Option<Loc<String>> {
    match field(fields, name) {
        Some(e) => sink.string(e),
        None => {
            sink.error(parent.key_pos, format!("{what} has no `{name}`"));
            None
        }
    }
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// RFC 1123 label: what Kubernetes accepts for namespaces and most object names.
pub(crate) fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}
