//! Deployment PUT bodies [AML §2.3]: required fields, the compute-type rule R14 and the
//! create-only rule R13.

use serde_json::{Map, Value, json};

use super::error::ArmError;
use super::rules::{envelope_of, location_of, same_location, sku_of};
use super::shapes::{fill_deployment_defaults, fill_sku_defaults};
use super::state::{ComputeType, Deployment, Envelope};

/// A validated deployment PUT body, defaults filled in.
#[derive(Debug)]
pub struct DeploymentInput {
    pub location: String,
    pub envelope: Envelope,
    pub compute_type: ComputeType,
    pub props: Map<String, Value>,
}

const COMMON_PROPS: [&str; 18] = [
    "endpointComputeType",
    "model",
    "modelMountPath",
    "environmentId",
    "environmentVariables",
    "codeConfiguration",
    "instanceType",
    "scaleSettings",
    "requestSettings",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "appInsightsEnabled",
    "egressPublicNetworkAccess",
    "dataCollector",
    "description",
    "properties",
    "provisioningState",
];

fn bad(message: String, target: &str) -> ArmError {
    ArmError::bad_argument(message).with_target(target.to_string())
}

fn check_types(props: &Map<String, Value>) -> Result<(), ArmError> {
    for (key, value) in props {
        if value.is_null() {
            continue;
        }
        let ok = match key.as_str() {
            "model" | "modelMountPath" | "environmentId" | "instanceType" | "description" => {
                value.is_string()
            }
            "appInsightsEnabled" => value.is_boolean(),
            "egressPublicNetworkAccess" => matches!(value.as_str(), Some("Enabled" | "Disabled")),
            "environmentVariables" | "properties" => value
                .as_object()
                .is_some_and(|m| m.values().all(|v| v.is_string() || v.is_null())),
            "scaleSettings" => matches!(
                value.get("scaleType").and_then(Value::as_str),
                Some("Default" | "TargetUtilization")
            ),
            "codeConfiguration" => value
                .get("scoringScript")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty()),
            _ => true,
        };
        if !ok {
            return Err(bad(
                format!("properties.{key} has an invalid value {value}"),
                key,
            ));
        }
    }
    Ok(())
}

/// Parses a deployment PUT body. `endpoint_kubernetes` is whether the endpoint has `compute`
/// set: R14 requires Managed deployments on managed endpoints and Kubernetes ones otherwise.
pub fn deployment_put(
    body: &Value,
    configured_location: &str,
    endpoint_kubernetes: bool,
) -> Result<DeploymentInput, ArmError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ArmError::bad_argument("request body must be a JSON object"))?;
    let location = location_of(obj, configured_location)?;
    let props = obj
        .get("properties")
        .and_then(Value::as_object)
        .ok_or_else(|| {
            bad(
                "properties is required and must be an object".into(),
                "properties",
            )
        })?;
    let compute_type = match props.get("endpointComputeType").and_then(Value::as_str) {
        Some("Managed") => ComputeType::Managed,
        Some("Kubernetes") => ComputeType::Kubernetes,
        Some(other) => {
            return Err(bad(
                format!(
                    "properties.endpointComputeType {other:?} is not supported (Managed or Kubernetes)"
                ),
                "endpointComputeType",
            ));
        }
        None => {
            return Err(bad(
                "properties.endpointComputeType is required".into(),
                "endpointComputeType",
            ));
        }
    };
    // R14: the deployment's compute type must match the endpoint's kind.
    match (compute_type, endpoint_kubernetes) {
        (ComputeType::Managed, true) => {
            return Err(bad("a Managed deployment cannot be added to a kubernetes endpoint (the endpoint has compute set)".into(), "endpointComputeType"));
        }
        (ComputeType::Kubernetes, false) => {
            return Err(bad(
                "a Kubernetes deployment needs an endpoint with compute set".into(),
                "endpointComputeType",
            ));
        }
        _ => {}
    }
    let allowed = |k: &str| {
        COMMON_PROPS.contains(&k)
            || (compute_type == ComputeType::Kubernetes && k == "containerResourceRequirements")
    };
    if let Some(unknown) = props.keys().find(|k| !allowed(k)) {
        return Err(bad(
            format!(
                "properties.{unknown} is not a known {} deployment property",
                compute_type.as_str()
            ),
            unknown,
        ));
    }
    check_types(props)?;
    let mut stored: Map<String, Value> = props
        .iter()
        .filter(|(k, v)| *k != "provisioningState" && !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !stored.contains_key("properties") {
        stored.insert("properties".into(), json!({}));
    }
    fill_deployment_defaults(&mut stored, compute_type);
    let mut envelope = envelope_of(obj)?;
    let mut sku = match obj.get("sku").filter(|v| !v.is_null()) {
        Some(v) => sku_of(v)?,
        None => Map::new(),
    };
    fill_sku_defaults(&mut sku);
    envelope.sku = Some(sku);
    Ok(DeploymentInput {
        location,
        envelope,
        compute_type,
        props: stored,
    })
}

/// R13: `instanceType`, `codeConfiguration` and `location` are create-only. The endpoint
/// compute type cannot change either (R14).
pub fn check_create_only(existing: &Deployment, input: &DeploymentInput) -> Result<(), ArmError> {
    if !same_location(&existing.location, &input.location) {
        return Err(bad(
            "location is create-only and cannot be changed".into(),
            "location",
        ));
    }
    if existing.compute_type != input.compute_type {
        return Err(bad(
            "endpointComputeType cannot be changed".into(),
            "endpointComputeType",
        ));
    }
    for key in ["instanceType", "codeConfiguration"] {
        if existing.props.get(key) != input.props.get(key) {
            return Err(bad(
                format!(
                    "properties.{key} is create-only; deploy a new deployment (blue/green) to change it"
                ),
                key,
            ));
        }
    }
    Ok(())
}

/// `properties.properties` can be added to, but not removed or altered (§2.2, §2.3): the
/// stored dictionary is the union. Altering an existing value is refused.
pub fn merge_add_only(
    existing: &Map<String, Value>,
    incoming: &mut Map<String, Value>,
) -> Result<(), ArmError> {
    for (k, v) in existing {
        match incoming.get(k) {
            Some(new) if new != v => {
                return Err(bad(
                    format!("properties.properties.{k} cannot be altered once set"),
                    "properties",
                ));
            }
            Some(_) => {}
            None => {
                incoming.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(())
}

/// Whether an update changes nothing but the sku (§7.2: such a PUT goes through `Scaling`).
pub fn is_scale_only(existing: &Deployment, input: &DeploymentInput) -> bool {
    existing.props == input.props
        && existing.envelope.tags == input.envelope.tags
        && existing.envelope.sku != input.envelope.sku
}
