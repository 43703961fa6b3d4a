//! The API server's semantic checks (after strict decoding, `strict.rs`) for the pod fields
//! flightdeck's production settings write, and for HorizontalPodAutoscalers and
//! PodDisruptionBudgets: the rules of kubernetes `pkg/apis/core/validation`,
//! `pkg/apis/autoscaling/validation` and `pkg/apis/policy/validation` that these fields meet,
//! with the API server's messages.

use serde_json::Value;

fn arr<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

const POD: &str = "spec.template.spec";

pub fn pod_spec(pod: &Value, problems: &mut Vec<String>) {
    if int(pod, "terminationGracePeriodSeconds").is_some_and(|n| n < 0) {
        problems.push(format!(
            "{POD}.terminationGracePeriodSeconds: Invalid value: must be greater than or equal to 0"
        ));
    }
    for (i, t) in arr(pod, "topologySpreadConstraints").iter().enumerate() {
        let at = format!("{POD}.topologySpreadConstraints[{i}]");
        if int(t, "maxSkew").is_none_or(|n| n <= 0) {
            problems.push(format!(
                "{at}.maxSkew: Invalid value: must be greater than zero"
            ));
        }
        if t["topologyKey"].as_str().is_none_or(str::is_empty) {
            problems.push(format!(
                "{at}.topologyKey: Required value: can not be empty"
            ));
        }
        let when = t["whenUnsatisfiable"].as_str().unwrap_or("");
        if !["DoNotSchedule", "ScheduleAnyway"].contains(&when) {
            problems.push(format!(
                "{at}.whenUnsatisfiable: Unsupported value: \"{when}\": supported values: \"DoNotSchedule\", \"ScheduleAnyway\""
            ));
        }
    }
    for (i, t) in arr(pod, "tolerations").iter().enumerate() {
        let at = format!("{POD}.tolerations[{i}]");
        let op = t["operator"].as_str().unwrap_or("Equal");
        match op {
            "Exists" if t["value"].as_str().is_some_and(|v| !v.is_empty()) => problems.push(
                format!("{at}.operator: Invalid value: value must be empty when `operator` is 'Exists'"),
            ),
            "Equal" if t["key"].as_str().is_none_or(str::is_empty) => problems.push(format!(
                "{at}.operator: Invalid value: operator must be Exists when `key` is empty"
            )),
            "Exists" | "Equal" => {}
            other => problems.push(format!(
                "{at}.operator: Unsupported value: \"{other}\": supported values: \"Equal\", \"Exists\""
            )),
        }
        if let Some(effect) = t["effect"].as_str()
            && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect)
        {
            problems.push(format!("{at}.effect: Unsupported value: \"{effect}\""));
        }
        if t.get("tolerationSeconds").is_some() && t["effect"].as_str() != Some("NoExecute") {
            problems.push(format!(
                "{at}.effect: Invalid value: effect must be 'NoExecute' when `tolerationSeconds` is set"
            ));
        }
    }
    for (i, c) in arr(pod, "containers").iter().enumerate() {
        let at = format!("{POD}.containers[{i}]");
        if let Some(pre) = c.pointer("/lifecycle/preStop") {
            let handlers = ["exec", "httpGet", "tcpSocket", "sleep"]
                .iter()
                .filter(|h| pre.get(**h).is_some())
                .count();
            if handlers != 1 {
                problems.push(format!(
                    "{at}.lifecycle.preStop: Required value: must specify exactly 1 handler type"
                ));
            }
            if pre
                .pointer("/sleep/seconds")
                .and_then(Value::as_i64)
                .is_some_and(|n| n < 0)
            {
                problems.push(format!(
                    "{at}.lifecycle.preStop.sleep.seconds: Invalid value: must be non-negative"
                ));
            }
            if pre.get("exec").is_some() && arr(&pre["exec"], "command").is_empty() {
                problems.push(format!(
                    "{at}.lifecycle.preStop.exec.command: Required value"
                ));
            }
        }
        if let Some(sc) = c.get("securityContext")
            && sc["privileged"] == Value::Bool(true)
            && sc["allowPrivilegeEscalation"] == Value::Bool(false)
        {
            problems.push(format!(
                "{at}.securityContext: Invalid value: cannot set `allowPrivilegeEscalation` to false and `privileged` to true"
            ));
        }
    }
}

/// `pkg/apis/autoscaling/validation` ValidateHorizontalPodAutoscalerSpec.
pub fn hpa(spec: &Value, problems: &mut Vec<String>) {
    let min = int(spec, "minReplicas").unwrap_or(1);
    let max = int(spec, "maxReplicas").unwrap_or(0);
    if min < 1 {
        problems.push("spec.minReplicas: Invalid value: must be greater than or equal to 1".into());
    }
    if max < min {
        problems.push(format!(
            "spec.maxReplicas: Invalid value: {max}: must be greater than or equal to `minReplicas`"
        ));
    }
    let target = &spec["scaleTargetRef"];
    if target["kind"].as_str().is_none_or(str::is_empty) {
        problems.push("spec.scaleTargetRef.kind: Required value".into());
    }
    if target["name"].as_str().is_none_or(str::is_empty) {
        problems.push("spec.scaleTargetRef.name: Required value".into());
    }
    for (i, m) in arr(spec, "metrics").iter().enumerate() {
        let at = format!("spec.metrics[{i}]");
        if m["type"] != "Resource" {
            continue;
        }
        let Some(r) = m.get("resource") else {
            problems.push(format!("{at}.resource: Required value: must populate information for the given metric source"));
            continue;
        };
        if r["target"]["type"] == "Utilization"
            && r.pointer("/target/averageUtilization")
                .and_then(Value::as_i64)
                .is_none_or(|n| n <= 0)
        {
            problems.push(format!(
                "{at}.resource.target.averageUtilization: Required value: must set averageUtilization when type is Utilization"
            ));
        }
    }
}

/// `pkg/apis/policy/validation` ValidatePodDisruptionBudgetSpec.
pub fn pdb(spec: &Value, problems: &mut Vec<String>) {
    if spec.get("minAvailable").is_some() && spec.get("maxUnavailable").is_some() {
        problems
            .push("spec: Invalid value: minAvailable and maxUnavailable cannot be both set".into());
    }
    for key in ["minAvailable", "maxUnavailable"] {
        match spec.get(key) {
            Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n < 0) => problems.push(format!(
                "spec.{key}: Invalid value: must be greater than or equal to 0"
            )),
            Some(Value::String(s)) => {
                let ok = s
                    .strip_suffix('%')
                    .and_then(|d| d.parse::<u32>().ok())
                    .is_some_and(|p| p <= 100);
                if !ok {
                    problems.push(format!(
                        "spec.{key}: Invalid value: \"{s}\": must be an integer or a percentage between 0% and 100%"
                    ));
                }
            }
            _ => {}
        }
    }
}
