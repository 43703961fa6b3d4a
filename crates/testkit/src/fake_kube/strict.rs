//! `fieldValidation=Strict` for the built-in kinds whose bodies flightdeck writes with the
//! production settings (Deployments, HorizontalPodAutoscalers, PodDisruptionBudgets): the
//! object is decoded into the kind's `k8s-openapi` type, which is generated from the Kubernetes
//! OpenAPI schema (k8s-openapi 0.29, feature v1_33), and encoded again. A wrong type fails the
//! decode; a field the schema does not declare is dropped by it, so every path present in the
//! object but missing after the round trip is an unknown field, as strict decoding reports it.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::serde::Serialize;
use k8s_openapi::serde::de::DeserializeOwned;
use serde_json::Value;

use super::store::Kind;

fn round_trip<T: DeserializeOwned + Serialize>(obj: &Value) -> Result<Value, String> {
    let typed: T = serde_json::from_value(obj.clone()).map_err(|e| e.to_string())?;
    serde_json::to_value(typed).map_err(|e| e.to_string())
}

/// Paths (`spec.template.spec.containers[0].foo`) of `have` that `kept` lost.
fn lost(have: &Value, kept: &Value, at: &str, out: &mut Vec<String>) {
    match (have, kept) {
        (Value::Object(h), Value::Object(k)) => {
            for (key, v) in h {
                if v.is_null() {
                    continue;
                }
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                match k.get(key) {
                    Some(kv) => lost(v, kv, &path, out),
                    None => out.push(path),
                }
            }
        }
        (Value::Array(h), Value::Array(k)) => {
            for (i, (hv, kv)) in h.iter().zip(k).enumerate() {
                lost(hv, kv, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The unknown fields of `obj`, or the decode error; `Ok(empty)` for kinds not checked here.
pub fn unknown_fields(kind: Kind, obj: &Value) -> Result<Vec<String>, String> {
    let kept = match kind.plural {
        "deployments" => round_trip::<Deployment>(obj)?,
        "horizontalpodautoscalers" => round_trip::<HorizontalPodAutoscaler>(obj)?,
        "poddisruptionbudgets" => round_trip::<PodDisruptionBudget>(obj)?,
        _ => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    lost(obj, &kept, "", &mut out);
    Ok(out)
}
