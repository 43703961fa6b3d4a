//! Response bodies in the spec's shapes ([AML §2], mfe.json OnlineEndpointTrackedResource /
//! OnlineDeploymentTrackedResource) and the service-side defaults of §2.3 / §2.5.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::state::{ComputeType, Deployment, Endpoint, Envelope, Timestamps};

pub const ENDPOINT_TYPE: &str = "Microsoft.MachineLearningServices/workspaces/onlineEndpoints";
pub const DEPLOYMENT_TYPE: &str =
    "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments";
pub const DEFAULT_INSTANCE_TYPE: &str = "Standard_F4s_v2";

/// Context needed to render: the sandbox's base URL, tenant and client ids.
pub struct RenderCtx<'a> {
    pub base_url: &'a str,
    pub tenant_id: &'a str,
    pub client_id: &'a str,
}

pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A stable UUID-shaped id derived from a seed, for read-only principal/client ids.
pub fn stable_uuid(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

pub fn scoring_base(ctx: &RenderCtx, ep: &Endpoint) -> String {
    format!(
        "{}/inference/{}/{}/{}/{}",
        ctx.base_url, ep.ws.subscription, ep.ws.resource_group, ep.ws.workspace, ep.name
    )
}

fn system_data(ctx: &RenderCtx, times: &Timestamps) -> Value {
    json!({
        "createdAt": timestamp(times.created_at),
        "createdBy": ctx.client_id,
        "createdByType": "Application",
        "lastModifiedAt": timestamp(times.modified_at),
        "lastModifiedBy": ctx.client_id,
        "lastModifiedByType": "Application",
    })
}

/// ManagedServiceIdentity v3 with its read-only ids filled in (§2.5).
fn identity(ctx: &RenderCtx, id: &str, identity: &Value) -> Value {
    let mut out = identity.clone();
    let kind = identity
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("None");
    if kind.contains("SystemAssigned") {
        out["principalId"] = json!(stable_uuid(&format!("principal:{id}")));
        out["tenantId"] = json!(ctx.tenant_id);
    }
    if let Some(uais) = identity
        .get("userAssignedIdentities")
        .and_then(Value::as_object)
    {
        let filled: Map<String, Value> = uais
            .keys()
            .map(|k| {
                (
                    k.clone(),
                    json!({
                        "principalId": stable_uuid(&format!("principal:{k}")),
                        "clientId": stable_uuid(&format!("client:{k}")),
                    }),
                )
            })
            .collect();
        out["userAssignedIdentities"] = Value::Object(filled);
    }
    out
}

/// The identifying head of a tracked resource.
struct Head<'a> {
    id: String,
    name: &'a str,
    kind_type: &'a str,
    location: &'a str,
}

fn envelope(
    ctx: &RenderCtx,
    head: Head,
    env: &Envelope,
    properties: Value,
    times: &Timestamps,
) -> Value {
    let id = head.id;
    let mut out = json!({
        "id": id,
        "name": head.name,
        "type": head.kind_type,
        "location": head.location,
        "tags": env.tags,
    });
    if let Some(kind) = &env.kind {
        out["kind"] = json!(kind);
    }
    if let Some(ident) = &env.identity {
        out["identity"] = identity(ctx, &id, ident);
    }
    if let Some(sku) = &env.sku {
        out["sku"] = Value::Object(sku.clone());
    }
    out["properties"] = properties;
    out["systemData"] = system_data(ctx, times);
    out
}

/// OnlineEndpointTrackedResource. `keys` is always null (§2.2); `traffic` is always present;
/// `mirrorTraffic` when it was set (§7.6).
pub fn endpoint(ctx: &RenderCtx, ep: &Endpoint) -> Value {
    let id = ep.ws.endpoint_id(&ep.name);
    let mut props = ep.props.clone();
    props.insert("authMode".into(), json!(ep.auth_mode.as_str()));
    props.insert("keys".into(), Value::Null);
    props.insert("traffic".into(), json!(ep.traffic));
    if let Some(mirror) = &ep.mirror {
        props.insert("mirrorTraffic".into(), json!(mirror));
    }
    if let Some(compute) = &ep.compute {
        props.insert("compute".into(), json!(compute));
    }
    props.insert("provisioningState".into(), json!(ep.state.as_str()));
    let base = scoring_base(ctx, ep);
    props.insert("scoringUri".into(), json!(format!("{base}/score")));
    props.insert("swaggerUri".into(), json!(format!("{base}/swagger.json")));
    let head = Head {
        id,
        name: &ep.name,
        kind_type: ENDPOINT_TYPE,
        location: &ep.location,
    };
    envelope(ctx, head, &ep.envelope, Value::Object(props), &ep.times)
}

/// OnlineDeploymentTrackedResource: the stored properties (defaults filled) plus the state.
pub fn deployment(ctx: &RenderCtx, ep: &Endpoint, dep: &Deployment) -> Value {
    let id = ep.ws.deployment_id(&ep.name, &dep.name);
    let mut props = dep.props.clone();
    props.insert("provisioningState".into(), json!(dep.state.as_str()));
    let head = Head {
        id,
        name: &dep.name,
        kind_type: DEPLOYMENT_TYPE,
        location: &dep.location,
    };
    envelope(ctx, head, &dep.envelope, Value::Object(props), &dep.times)
}

fn fill(obj: &mut Map<String, Value>, key: &str, value: Value) {
    if !obj.contains_key(key) || obj.get(key) == Some(&Value::Null) {
        obj.insert(key.to_string(), value);
    }
}

fn probe_defaults(probe: &mut Map<String, Value>) {
    // ProbeSettings defaults (§2.3); initialDelay has no default (null).
    fill(probe, "failureThreshold", json!(30));
    fill(probe, "successThreshold", json!(1));
    fill(probe, "timeout", json!("PT2S"));
    fill(probe, "period", json!("PT10S"));
}

fn object_entry<'a>(props: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    if !props.get(key).is_some_and(Value::is_object) {
        props.insert(key.to_string(), Value::Object(Map::new()));
    }
    props
        .get_mut(key)
        .and_then(Value::as_object_mut)
        .expect("object inserted above")
}

/// Fills the service-side defaults of [AML §2.3] into deployment properties.
pub fn fill_deployment_defaults(props: &mut Map<String, Value>, compute: ComputeType) {
    fill(props, "instanceType", json!(DEFAULT_INSTANCE_TYPE));
    fill(props, "appInsightsEnabled", json!(false));
    fill(props, "egressPublicNetworkAccess", json!("Enabled"));
    match compute {
        ComputeType::Managed => fill(props, "scaleSettings", json!({"scaleType": "Default"})),
        ComputeType::Kubernetes => {
            fill(
                props,
                "scaleSettings",
                json!({"scaleType": "TargetUtilization"}),
            );
        }
    }
    let scale = object_entry(props, "scaleSettings");
    if scale.get("scaleType").and_then(Value::as_str) == Some("TargetUtilization") {
        fill(scale, "minInstances", json!(1));
        fill(scale, "maxInstances", json!(1));
        fill(scale, "pollingInterval", json!("PT1S"));
        fill(scale, "targetUtilizationPercentage", json!(70));
    }
    let request = object_entry(props, "requestSettings");
    fill(request, "requestTimeout", json!("PT5S"));
    fill(request, "maxConcurrentRequestsPerInstance", json!(1));
    fill(request, "maxQueueWait", json!("PT0.5S"));
    // Readiness "properties and defaults are the same as liveness" (§2.3).
    for probe in ["livenessProbe", "readinessProbe"] {
        probe_defaults(object_entry(props, probe));
    }
    if let Some(startup) = props.get_mut("startupProbe").and_then(Value::as_object_mut) {
        probe_defaults(startup);
    }
}

/// The deployment `sku` with its defaults: name `Default`, capacity 1 (§2.3 [emu]).
pub fn fill_sku_defaults(sku: &mut Map<String, Value>) {
    fill(sku, "name", json!("Default"));
    fill(sku, "capacity", json!(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_defaults_follow_the_contract() {
        let mut props = Map::new();
        fill_deployment_defaults(&mut props, ComputeType::Managed);
        assert_eq!(props["instanceType"], "Standard_F4s_v2");
        assert_eq!(props["scaleSettings"], json!({"scaleType": "Default"}));
        assert_eq!(props["requestSettings"]["requestTimeout"], "PT5S");
        assert_eq!(props["requestSettings"]["maxQueueWait"], "PT0.5S");
        assert_eq!(props["livenessProbe"]["failureThreshold"], 30);
        assert_eq!(props["readinessProbe"]["period"], "PT10S");
        assert!(!props.contains_key("startupProbe"));
    }

    #[test]
    fn kubernetes_deployments_default_to_target_utilization() {
        let mut props = Map::new();
        fill_deployment_defaults(&mut props, ComputeType::Kubernetes);
        assert_eq!(props["scaleSettings"]["scaleType"], "TargetUtilization");
        assert_eq!(props["scaleSettings"]["targetUtilizationPercentage"], 70);
    }

    #[test]
    fn explicit_values_are_kept() {
        let mut props = Map::new();
        props.insert("instanceType".into(), json!("Standard_DS3_v2"));
        props.insert("livenessProbe".into(), json!({"period": "PT5M"}));
        fill_deployment_defaults(&mut props, ComputeType::Managed);
        assert_eq!(props["instanceType"], "Standard_DS3_v2");
        assert_eq!(props["livenessProbe"]["period"], "PT5M");
        assert_eq!(props["livenessProbe"]["timeout"], "PT2S");
    }

    #[test]
    fn stable_uuids_are_stable_and_distinct() {
        assert_eq!(stable_uuid("a"), stable_uuid("a"));
        assert_ne!(stable_uuid("a"), stable_uuid("b"));
        assert_eq!(stable_uuid("a").len(), 36);
    }
}
