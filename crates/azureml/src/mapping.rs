//! ARM bodies ↔ the backend-neutral model. Pure: no I/O.
//!
//! Writes overlay only the declared settings onto a base body (empty for a create, the live
//! resource for an update), because PUT is a full replace [AML §4.2 R8] and create-only
//! fields must be sent back unchanged (R13). Reads map every field the desired model can declare,
//! so a re-plan after apply finds nothing to do.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::arm_read::{ArmDeployment, ArmEndpoint, ArmProbe, Object, decode};
use super::error::AzureMlError;
use super::iso;
use super::rollout_tags;
use super::shape::Shape;
use flightdeck_core::model::{
    AssetRef, AuthMode, CodeConfiguration, DeploymentSettings, DeploymentState, EndpointSettings,
    LiveDeployment, LiveEndpoint, Probe, RequestSettings, Weights,
};

/// The workspace, for turning `azureml:NAME:V` into an ARM asset id and back.
#[derive(Clone, Debug)]
pub(crate) struct Workspace {
    /// `/subscriptions/S/resourceGroups/RG/providers/Microsoft.MachineLearningServices/workspaces/W`
    pub id: String,
}

impl Workspace {
    /// The ARM id of a registered asset: `{workspace}/models/NAME/versions/V`.
    fn asset_id(&self, kind: &str, name: &str, version: &str) -> String {
        format!("{}/{kind}/{name}/versions/{version}", self.id)
    }

    /// Sends an asset: registered → ARM id, id verbatim, local as `local:PATH`.
    fn asset_to_arm(&self, kind: &str, asset: &AssetRef) -> String {
        match asset {
            AssetRef::Registered { name, version } => self.asset_id(kind, name, version),
            other => other.to_string(),
        }
    }

    /// Reads an asset back: an ARM id in this workspace → registered; `local:` → local.
    fn asset_from_arm(&self, kind: &str, text: &str) -> AssetRef {
        let prefix = format!("{}/{kind}/", self.id);
        let in_workspace = text.len() > prefix.len()
            && text.is_char_boundary(prefix.len())
            && text[..prefix.len()].eq_ignore_ascii_case(&prefix);
        if in_workspace {
            let parts: Vec<&str> = text[prefix.len()..].split('/').collect();
            if let [name, versions, version] = parts[..]
                && versions.eq_ignore_ascii_case("versions")
                && !name.is_empty()
                && !version.is_empty()
            {
                return AssetRef::Registered {
                    name: name.to_string(),
                    version: version.to_string(),
                };
            }
        }
        if let Some(path) = text.strip_prefix("local:") {
            return AssetRef::Local {
                path: path.to_string(),
            };
        }
        AssetRef::Id {
            id: text.to_string(),
        }
    }
}

fn auth_mode_to_arm(mode: AuthMode) -> &'static str {
    match mode {
        AuthMode::Key => "Key",
        AuthMode::AmlToken => "AMLToken",
        AuthMode::AadToken => "AADToken",
    }
}

pub(crate) fn auth_mode_from_arm(text: &str) -> Option<AuthMode> {
    match text.to_ascii_lowercase().as_str() {
        "key" => Some(AuthMode::Key),
        "amltoken" => Some(AuthMode::AmlToken),
        "aadtoken" => Some(AuthMode::AadToken),
        _ => None,
    }
}

fn public_access_to_arm(text: &str) -> Result<&'static str, AzureMlError> {
    match text.to_ascii_lowercase().as_str() {
        "enabled" => Ok("Enabled"),
        "disabled" => Ok("Disabled"),
        other => Err(AzureMlError::Config(format!(
            "public_network_access must be enabled or disabled, not {other:?}"
        ))),
    }
}

/// An object member, created as `{}` when missing or not an object.
fn object<'a>(value: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    let map = value.as_object_mut().expect("ARM bodies are objects");
    let slot = map.entry(key.to_string()).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut().expect("just made an object")
}

/// Drops what ARM owns ([AML §2.5] read-only list) before a body is sent back with PUT.
pub(crate) fn strip_read_only(body: &mut Value) {
    let Some(map) = body.as_object_mut() else {
        return;
    };
    for key in ["id", "name", "type", "systemData"] {
        map.remove(key);
    }
    if let Some(props) = map.get_mut("properties").and_then(Value::as_object_mut) {
        for key in ["provisioningState", "scoringUri", "swaggerUri", "keys"] {
            props.remove(key);
        }
    }
    if let Some(identity) = map.get_mut("identity").and_then(Value::as_object_mut) {
        identity.remove("principalId");
        identity.remove("tenantId");
        if let Some(users) = identity
            .get_mut("userAssignedIdentities")
            .and_then(Value::as_object_mut)
        {
            for entry in users.values_mut() {
                *entry = json!({});
            }
        }
    }
}

/// Body of the endpoint PUT that creates it: auth mode defaults to Key (it is required, §2.2),
/// traffic and mirror traffic empty.
pub(crate) fn endpoint_create_body(
    settings: &EndpointSettings,
    location: &str,
) -> Result<Value, AzureMlError> {
    let mut body = json!({
        "location": location,
        "properties": {
            "authMode": auth_mode_to_arm(settings.auth_mode.unwrap_or(AuthMode::Key)),
            "traffic": {},
            "mirrorTraffic": {},
        }
    });
    overlay_endpoint(&mut body, settings)?;
    Ok(body)
}

/// Sets the declared endpoint settings on a body (from GET or `endpoint_create_body`).
pub(crate) fn overlay_endpoint(
    body: &mut Value,
    settings: &EndpointSettings,
) -> Result<(), AzureMlError> {
    if let Some(tags) = &settings.tags {
        // Tags are replaced as a whole [AML §2.5]: the live rollout tags go back with them.
        let declared = tags.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        let live = rollout_tags::rollout_tags_of(body);
        body["tags"] = Value::Object(rollout_tags::with_rollout(declared, live)?);
    }
    let props = object(body, "properties");
    if let Some(mode) = settings.auth_mode {
        props.insert("authMode".into(), json!(auth_mode_to_arm(mode)));
    }
    if let Some(description) = &settings.description {
        props.insert("description".into(), json!(description));
    }
    if let Some(access) = &settings.public_network_access {
        props.insert(
            "publicNetworkAccess".into(),
            json!(public_access_to_arm(access)?),
        );
    }
    Ok(())
}

/// Replaces traffic and mirror traffic exactly; both are always sent (R8).
pub(crate) fn set_weights(body: &mut Value, traffic: &Weights, mirror: &Weights) {
    let props = object(body, "properties");
    props.insert("traffic".into(), json!(traffic));
    props.insert("mirrorTraffic".into(), json!(mirror));
}

/// Sets the declared deployment settings on a body. `base` is the live resource for an update
/// (read-only fields already stripped) or `None` for a create.
pub(crate) fn deployment_body(
    ws: &Workspace,
    location: &str,
    base: Option<Value>,
    settings: &DeploymentSettings,
) -> Value {
    let mut body = base.unwrap_or_else(|| json!({}));
    if body.get("location").is_none_or(Value::is_null) {
        body["location"] = json!(location);
    }
    if let Some(tags) = &settings.tags {
        body["tags"] = json!(tags);
    }
    let sku = object(&mut body, "sku");
    sku.entry("name").or_insert_with(|| json!("Default"));
    match settings.instance_count {
        Some(n) => {
            sku.insert("capacity".into(), json!(n));
        }
        None => {
            sku.entry("capacity").or_insert_with(|| json!(1));
        }
    }
    let props = object(&mut body, "properties");
    props
        .entry("endpointComputeType")
        .or_insert_with(|| json!("Managed"));
    let mut set = |key: &str, value: Value| {
        props.insert(key.to_string(), value);
    };
    if let Some(d) = &settings.description {
        set("description", json!(d));
    }
    if let Some(model) = &settings.model {
        set("model", json!(ws.asset_to_arm("models", model)));
    }
    if let Some(path) = &settings.model_mount_path {
        set("modelMountPath", json!(path));
    }
    if let Some(env) = &settings.environment {
        set("environmentId", json!(ws.asset_to_arm("environments", env)));
    }
    if let Some(code) = &settings.code_configuration {
        set(
            "codeConfiguration",
            json!({"codeId": code.code, "scoringScript": code.scoring_script}),
        );
    }
    if let Some(t) = &settings.instance_type {
        set("instanceType", json!(t));
    }
    if let Some(vars) = &settings.environment_variables {
        set("environmentVariables", json!(vars));
    }
    if let Some(rs) = &settings.request_settings {
        let target = object(&mut body, "properties");
        let target = target.entry("requestSettings").or_insert_with(|| json!({}));
        overlay_request_settings(target, rs);
    }
    for (key, probe) in [
        ("livenessProbe", &settings.liveness_probe),
        ("readinessProbe", &settings.readiness_probe),
    ] {
        if let Some(probe) = probe {
            let props = object(&mut body, "properties");
            let target = props.entry(key).or_insert_with(|| json!({}));
            overlay_probe(target, probe);
        }
    }
    body
}

fn ensure_object(value: &mut Value) -> &mut Map<String, Value> {
    if !value.is_object() {
        *value = json!({});
    }
    value.as_object_mut().expect("just made an object")
}

fn overlay_request_settings(target: &mut Value, rs: &RequestSettings) {
    let map = ensure_object(target);
    if let Some(ms) = rs.request_timeout_ms {
        map.insert("requestTimeout".into(), json!(iso::from_millis(ms)));
    }
    if let Some(n) = rs.max_concurrent_requests_per_instance {
        map.insert("maxConcurrentRequestsPerInstance".into(), json!(n));
    }
    if let Some(ms) = rs.max_queue_wait_ms {
        map.insert("maxQueueWait".into(), json!(iso::from_millis(ms)));
    }
}

fn overlay_probe(target: &mut Value, probe: &Probe) {
    let map = ensure_object(target);
    for (key, secs) in [
        ("initialDelay", probe.initial_delay),
        ("period", probe.period),
        ("timeout", probe.timeout),
    ] {
        if let Some(secs) = secs {
            map.insert(key.into(), json!(iso::from_secs(secs)));
        }
    }
    if let Some(n) = probe.failure_threshold {
        map.insert("failureThreshold".into(), json!(n));
    }
    if let Some(n) = probe.success_threshold {
        map.insert("successThreshold".into(), json!(n));
    }
}

fn secs(text: &Option<String>) -> Option<u32> {
    text.as_deref()
        .and_then(iso::to_secs)
        .map(|s| u32::try_from(s).unwrap_or(u32::MAX))
}

fn millis(text: &Option<String>) -> Option<u32> {
    text.as_deref()
        .and_then(iso::to_millis)
        .map(|s| u32::try_from(s).unwrap_or(u32::MAX))
}

fn probe_from_arm(p: ArmProbe) -> Probe {
    Probe {
        initial_delay: secs(&p.initial_delay),
        period: secs(&p.period),
        timeout: secs(&p.timeout),
        failure_threshold: p.failure_threshold,
        success_threshold: p.success_threshold,
        path: None,
        port: None,
    }
}

/// §3: Succeeded, Failed and Canceled are terminal; any other value is busy.
pub(crate) fn deployment_state(provisioning_state: Option<&str>) -> DeploymentState {
    match provisioning_state {
        Some(s) if s.eq_ignore_ascii_case("Succeeded") => DeploymentState::Ready,
        Some(s) if s.eq_ignore_ascii_case("Failed") || s.eq_ignore_ascii_case("Canceled") => {
            DeploymentState::Failed {
                message: format!("provisioning state {s}"),
            }
        }
        _ => DeploymentState::Provisioning,
    }
}

/// `properties.provisioningState` of any resource body.
pub(crate) fn provisioning_state(body: &Value) -> Option<&str> {
    body.get("properties")?.get("provisioningState")?.as_str()
}

/// A deployment from its ARM body (already checked to be one, see `shape`).
#[cfg(test)]
pub(crate) fn deployment_from_value(
    ws: &Workspace,
    body: &Value,
) -> Result<LiveDeployment, AzureMlError> {
    decode(Shape::Deployment, body).map(|res| deployment_from_arm(ws, res))
}

/// A deployment from its typed ARM body. `image` stays `None`: it belongs to the environment
/// asset.
pub(crate) fn deployment_from_arm(ws: &Workspace, res: ArmDeployment) -> LiveDeployment {
    let name = res.name;
    let Object(p) = res.properties;
    let settings = DeploymentSettings {
        description: p.description,
        tags: res.tags,
        model: p.model.map(|m| ws.asset_from_arm("models", &m)),
        model_mount_path: p.model_mount_path,
        environment: p
            .environment_id
            .map(|e| ws.asset_from_arm("environments", &e)),
        image: None,
        code_configuration: p.code_configuration.and_then(|c| {
            Some(CodeConfiguration {
                code: c.code_id?,
                scoring_script: c.scoring_script?,
            })
        }),
        instance_type: p.instance_type,
        instance_count: res.sku.and_then(|s| s.capacity),
        environment_variables: p.environment_variables,
        request_settings: p.request_settings.map(|r| RequestSettings {
            request_timeout_ms: millis(&r.request_timeout),
            max_concurrent_requests_per_instance: r.max_concurrent_requests_per_instance,
            max_queue_wait_ms: millis(&r.max_queue_wait),
        }),
        liveness_probe: p.liveness_probe.map(probe_from_arm),
        readiness_probe: p.readiness_probe.map(probe_from_arm),
        port: None,
        resources: None,
        // The production pod settings (autoscaling, ...) are Kubernetes-only: no ARM field.
        ..Default::default()
    };
    let state = deployment_state(p.provisioning_state.as_deref());
    LiveDeployment {
        name,
        settings: Box::new(settings),
        phase: p.provisioning_state.filter(|_| !state.is_terminal()),
        state,
    }
}

/// An endpoint from its ARM body (already checked to be one, see `shape`), without its
/// deployments.
pub(crate) fn endpoint_from_value(body: &Value) -> Result<LiveEndpoint, AzureMlError> {
    decode(Shape::Endpoint, body).map(endpoint_from_arm)
}

/// An endpoint from its typed ARM body, without its deployments.
pub(crate) fn endpoint_from_arm(res: ArmEndpoint) -> LiveEndpoint {
    let name = res.name;
    let Object(p) = res.properties;
    let mut tags = res.tags;
    // Rollout tags are flightdeck's, not the user's: stripped, and read as the record. A
    // malformed one loses the record, never the read.
    let rollout = match tags.as_mut().map(rollout_tags::take) {
        Some(Ok(record)) => record,
        Some(Err(why)) => {
            tracing::warn!(endpoint = %name, "{why}; ignoring the stored rollout progress");
            None
        }
        None => None,
    };
    LiveEndpoint {
        name,
        settings: EndpointSettings {
            auth_mode: p.auth_mode.as_deref().and_then(auth_mode_from_arm),
            description: p.description,
            tags,
            public_network_access: p.public_network_access.map(|a| a.to_ascii_lowercase()),
        },
        traffic: p.traffic.unwrap_or_default(),
        mirror_traffic: p.mirror_traffic.unwrap_or_default(),
        deployments: BTreeMap::new(),
        scoring_uri: p.scoring_uri,
        // §3: Succeeded, Failed and Canceled are terminal; anything else is an operation at work.
        busy: p
            .provisioning_state
            .filter(|s| !deployment_state(Some(s)).is_terminal()),
        problems: Vec::new(),
        rollout,
    }
}

#[cfg(test)]
#[path = "mapping_tests.rs"]
mod tests;
