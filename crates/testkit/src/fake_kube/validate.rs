//! Validation of objects written for the CRD kinds: the `openAPIV3Schema` of the CRD's `v1`
//! version (from the in-repo copy `tests/fixtures/reference/k8s/*.yaml`), plus the CEL rules and webhook checks that
//! CONTRACT.md lists, checked by hand. Deployments and Services get a few structural checks.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::Value;

use super::store::Kind;

/// The in-repo copy of the reference CRDs (kept equal to the contracts by
/// `scripts/check-reference-fixtures.sh`).
pub fn reference_dir() -> String {
    crate::repo_root()
        .join("tests/fixtures/reference/k8s")
        .display()
        .to_string()
}

fn load(file: &str) -> jsonschema::Validator {
    let path = format!("{}/{file}", reference_dir());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let (root, errors) = flightdeck::spec::yaml::parse(&text);
    assert!(errors.is_empty(), "parse {path}: {errors:?}");
    let crd: Value = flightdeck::spec::yaml::to_json(&root.expect("a CRD document"));
    let versions = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .expect("versions");
    let v1 = versions
        .iter()
        .find(|v| v["name"] == "v1")
        .unwrap_or_else(|| panic!("{path}: no v1 version"));
    let schema = v1
        .pointer("/schema/openAPIV3Schema")
        .expect("openAPIV3Schema");
    // OpenAPI v3.0 schemas are closest to JSON Schema draft 4.
    jsonschema::draft4::new(schema).unwrap_or_else(|e| panic!("{path}: bad schema: {e}"))
}

fn schemas() -> &'static BTreeMap<&'static str, jsonschema::Validator> {
    static SCHEMAS: OnceLock<BTreeMap<&'static str, jsonschema::Validator>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        BTreeMap::from([
            ("virtualservices", load("virtualservice-crd.yaml")),
            ("destinationrules", load("destinationrule-crd.yaml")),
            (
                "httproutes",
                load("gateway.networking.k8s.io_httproutes.yaml"),
            ),
        ])
    })
}

/// Loads the schemas up front (so the first request is not slow).
pub fn warm_up() {
    let _ = schemas();
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Checks one object; the error lists every problem.
pub fn check(kind: Kind, obj: &Value) -> Result<(), String> {
    let mut problems: Vec<String> = Vec::new();
    if let Some(validator) = schemas().get(kind.plural) {
        for err in validator.iter_errors(obj) {
            problems.push(format!("{}: {err}", err.instance_path));
        }
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    // A Service name is a DNS-1035 label (at most 63 characters); other names are DNS-1123
    // subdomains (at most 253).
    let max = if kind.plural == "services" { 63 } else { 253 };
    if name.len() > max {
        problems.push(format!(
            "metadata.name: Invalid value: \"{name}\": must be no more than {max} characters"
        ));
    }
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    match kind.plural {
        "virtualservices" => virtual_service(&spec, &mut problems),
        "httproutes" => http_route(&spec, &mut problems),
        "destinationrules" => {
            let mut names: Vec<&str> = arr(&spec, "subsets")
                .iter()
                .filter_map(|s| s["name"].as_str())
                .collect();
            let n = names.len();
            names.dedup();
            if names.len() != n {
                problems.push("spec.subsets: duplicate subset name".into());
            }
        }
        "deployments" => {
            let selector = spec
                .pointer("/selector/matchLabels")
                .and_then(Value::as_object);
            let labels = spec
                .pointer("/template/metadata/labels")
                .and_then(Value::as_object);
            match (selector, labels) {
                (Some(sel), Some(labels)) if sel.iter().all(|(k, v)| labels.get(k) == Some(v)) => {}
                _ => problems.push(
                    "spec.template.metadata.labels: `selector` does not match template `labels`"
                        .into(),
                ),
            }
            let pod = spec.pointer("/template/spec").unwrap_or(&Value::Null);
            if arr(pod, "containers").is_empty() {
                problems.push("spec.template.spec.containers: Required value".into());
            }
            super::validate_pod::pod_spec(pod, &mut problems);
        }
        "horizontalpodautoscalers" => super::validate_pod::hpa(&spec, &mut problems),
        "poddisruptionbudgets" => super::validate_pod::pdb(&spec, &mut problems),
        "services" => {
            for p in arr(&spec, "ports") {
                if !p["port"].as_i64().is_some_and(|n| (1..=65535).contains(&n)) {
                    problems.push("spec.ports[].port: must be between 1 and 65535".into());
                }
            }
        }
        _ => {}
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// [ISTIO-VAL] validateHTTPRouteDestinations / validateHTTPMirrors, plus flightdeck's portability
/// rules from [K8S §1] (explicit weights, sum 100).
fn virtual_service(spec: &Value, problems: &mut Vec<String>) {
    for (i, rule) in arr(spec, "http").iter().enumerate() {
        let route = arr(rule, "route");
        let mut sum = 0i64;
        for d in route {
            let w = d.get("weight").and_then(Value::as_i64);
            if let Some(w) = w {
                if w < 0 {
                    problems.push(format!("http[{i}]: weight {w} < 0"));
                }
                sum += w;
            } else if route.len() > 1 {
                problems.push(format!(
                    "http[{i}]: weight omitted on one of {} destinations (silently 0%)",
                    route.len()
                ));
            }
        }
        if route.len() > 1 && sum == 0 {
            problems.push(format!("http[{i}]: total destination weight = 0"));
        }
        if route.len() > 1 && sum != 100 {
            problems.push(format!(
                "http[{i}]: weights sum to {sum}, flightdeck must emit 100"
            ));
        }
        if let Some(p) = rule
            .pointer("/mirrorPercentage/value")
            .and_then(Value::as_f64)
            && !(0.0..=100.0).contains(&p)
        {
            problems.push(format!(
                "http[{i}]: mirror percentage must have a value in range [0, 100]"
            ));
        }
        if rule.get("mirror").is_some() && rule.get("mirrors").is_some() {
            problems.push(format!(
                "http[{i}]: HTTP route cannot contain both mirror and mirrors"
            ));
        }
        for m in arr(rule, "match") {
            if let Some(headers) = m.get("headers").and_then(Value::as_object) {
                for key in headers.keys() {
                    if key.chars().any(|c| c.is_ascii_uppercase()) {
                        problems.push(format!("http[{i}]: header name {key:?} must be lowercase"));
                    }
                }
            }
        }
    }
}

fn service_port_required(b: &Value, at: &str, problems: &mut Vec<String>) {
    let group = b.get("group").and_then(Value::as_str).unwrap_or("");
    let kind = b.get("kind").and_then(Value::as_str).unwrap_or("Service");
    if group.is_empty() && kind == "Service" && b.get("port").is_none() {
        problems.push(format!("{at}: Must have port for Service reference"));
    }
}

/// The HTTPRoute CEL rules [K8S §2] names, and "never emit all-zero".
fn http_route(spec: &Value, problems: &mut Vec<String>) {
    let rules = arr(spec, "rules");
    let matches: usize = rules.iter().map(|r| arr(r, "matches").len()).sum();
    if matches > 128 {
        problems.push(
            "spec.rules: total number of matches across all rules must be less than 128".into(),
        );
    }
    for (i, rule) in rules.iter().enumerate() {
        let refs = arr(rule, "backendRefs");
        for (j, b) in refs.iter().enumerate() {
            service_port_required(b, &format!("spec.rules[{i}].backendRefs[{j}]"), problems);
            let w = b.get("weight").and_then(Value::as_i64).unwrap_or(1);
            if !(0..=1_000_000).contains(&w) {
                problems.push(format!(
                    "spec.rules[{i}].backendRefs[{j}].weight: must be in 0..1000000"
                ));
            }
        }
        if !refs.is_empty()
            && refs
                .iter()
                .all(|b| b.get("weight").and_then(Value::as_i64) == Some(0))
        {
            problems.push(format!(
                "spec.rules[{i}]: all backendRefs weights are 0 ([K8S §2]: never emit all-zero)"
            ));
        }
        for (j, f) in arr(rule, "filters").iter().enumerate() {
            let at = format!("spec.rules[{i}].filters[{j}]");
            let is_mirror = f["type"] == "RequestMirror";
            match (is_mirror, f.get("requestMirror")) {
                (true, None) => problems.push(format!(
                    "{at}: filter.requestMirror must be specified for RequestMirror filter.type"
                )),
                (false, Some(_)) => problems.push(format!(
                    "{at}: filter.requestMirror must be nil if the filter.type is not RequestMirror"
                )),
                (true, Some(m)) => {
                    if m.get("percent").is_some() && m.get("fraction").is_some() {
                        problems.push(format!("{at}: Only one of percent or fraction may be specified in HTTPRequestMirrorFilter"));
                    }
                    if let Some(fr) = m.get("fraction") {
                        let num = fr["numerator"].as_i64().unwrap_or(0);
                        let den = fr.get("denominator").and_then(Value::as_i64).unwrap_or(100);
                        if num > den {
                            problems.push(format!(
                                "{at}: numerator must be less than or equal to denominator"
                            ));
                        }
                    }
                    if let Some(b) = m.get("backendRef") {
                        service_port_required(
                            b,
                            &format!("{at}.requestMirror.backendRef"),
                            problems,
                        );
                    }
                }
                (false, None) => {}
            }
        }
    }
}
