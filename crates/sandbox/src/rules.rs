//! Parsing and validation of request bodies: the service-side rules R1–R6 and R13–R15 of
//! [AML §4.2], plus the required fields of §2. Pure functions: no store, no clock.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::ArmError;
use super::state::{AuthMode, Deployment, Envelope, ProvisioningState};

/// §1: `^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$` for endpoint and deployment names.
pub fn check_name(kind: &str, name: &str) -> Result<(), ArmError> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if first_ok && rest_ok && name.len() <= 255 {
        Ok(())
    } else {
        Err(ArmError::bad_argument(format!(
            "invalid {kind} name {name:?}: must match ^[a-zA-Z0-9][a-zA-Z0-9\\-_]{{0,254}}$"
        )))
    }
}

/// Parses a JSON request body; an empty body counts as `{}`.
pub fn parse_body(bytes: &[u8]) -> Result<Value, ArmError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ArmError::bad_argument(format!("request body is not valid JSON: {e}")))
}

fn as_object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>, ArmError> {
    v.as_object()
        .ok_or_else(|| ArmError::bad_argument(format!("{what} must be a JSON object")))
}

fn opt_string(obj: &Map<String, Value>, key: &str, what: &str) -> Result<Option<String>, ArmError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => {
            Err(ArmError::bad_argument(format!("{what}.{key} must be a string")).with_target(key))
        }
    }
}

/// Compares ARM locations the way ARM does: case-insensitive, spaces ignored.
pub fn same_location(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.to_ascii_lowercase().replace(' ', "");
    norm(a) == norm(b)
}

pub fn location_of(obj: &Map<String, Value>, configured: &str) -> Result<String, ArmError> {
    let loc = opt_string(obj, "location", "body")?
        .ok_or_else(|| ArmError::bad_argument("location is required").with_target("location"))?;
    // §2.1 [emu]: the location must be the workspace's location.
    if !same_location(&loc, configured) {
        return Err(ArmError::bad_argument(format!(
            "location {loc:?} does not match the workspace location {configured:?}"
        ))
        .with_target("location"));
    }
    Ok(loc)
}

fn string_map(v: Option<&Value>, what: &str) -> Result<Map<String, Value>, ArmError> {
    match v {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => {
            if m.values().all(|v| v.is_string() || v.is_null()) {
                Ok(m.clone())
            } else {
                Err(ArmError::bad_argument(format!(
                    "{what} values must be strings"
                )))
            }
        }
        Some(_) => Err(ArmError::bad_argument(format!("{what} must be an object"))),
    }
}

pub fn envelope_of(obj: &Map<String, Value>) -> Result<Envelope, ArmError> {
    let identity = match obj.get("identity") {
        None | Some(Value::Null) => None,
        Some(v) => Some(identity(v)?),
    };
    let sku = match obj.get("sku") {
        None | Some(Value::Null) => None,
        Some(v) => Some(sku_of(v)?),
    };
    Ok(Envelope {
        tags: string_map(obj.get("tags"), "tags")?,
        kind: opt_string(obj, "kind", "body")?,
        identity,
        sku,
    })
}

/// ManagedServiceIdentity input: `type` plus `userAssignedIdentities`; read-only ids dropped.
fn identity(v: &Value) -> Result<Value, ArmError> {
    let obj = as_object(v, "identity")?;
    let kind = opt_string(obj, "type", "identity")?.unwrap_or_else(|| "None".to_string());
    const TYPES: [&str; 4] = [
        "None",
        "SystemAssigned",
        "UserAssigned",
        "SystemAssigned,UserAssigned",
    ];
    if !TYPES.contains(&kind.replace(' ', "").as_str()) {
        return Err(ArmError::bad_argument(format!(
            "identity.type {kind:?} is not one of {TYPES:?}"
        )));
    }
    let mut out = Map::new();
    out.insert("type".into(), Value::String(kind));
    if let Some(uais) = obj.get("userAssignedIdentities").filter(|v| !v.is_null()) {
        let uais = as_object(uais, "identity.userAssignedIdentities")?;
        let keys: Map<String, Value> = uais
            .keys()
            .map(|k| (k.clone(), Value::Object(Map::new())))
            .collect();
        out.insert("userAssignedIdentities".into(), Value::Object(keys));
    }
    Ok(Value::Object(out))
}

pub fn sku_of(v: &Value) -> Result<Map<String, Value>, ArmError> {
    let obj = as_object(v, "sku")?;
    for (k, v) in obj {
        let ok = match k.as_str() {
            "name" | "size" | "family" => v.is_string(),
            "tier" => v
                .as_str()
                .is_some_and(|t| ["Free", "Basic", "Standard", "Premium"].contains(&t)),
            "capacity" => v.as_i64().is_some_and(|c| c >= 1),
            _ => {
                return Err(ArmError::bad_argument(format!(
                    "sku.{k} is not a known property"
                )));
            }
        };
        if !ok && !v.is_null() {
            return Err(
                ArmError::bad_argument(format!("sku.{k} has an invalid value {v}"))
                    .with_target(format!("sku.{k}")),
            );
        }
    }
    Ok(obj
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}

/// A traffic or mirror map: integers 0..100 by deployment name (R1).
fn weights(v: Option<&Value>, what: &str) -> Result<Option<BTreeMap<String, u32>>, ArmError> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => as_object(v, what)?,
    };
    let mut out = BTreeMap::new();
    for (name, w) in obj {
        let w = w.as_u64().filter(|w| *w <= 100).ok_or_else(|| {
            ArmError::bad_argument(format!(
                "{what}[{name}] must be an integer between 0 and 100, got {w}"
            ))
            .with_target(what)
        })?;
        out.insert(name.clone(), w as u32);
    }
    Ok(Some(out))
}

/// A validated endpoint PUT body.
#[derive(Debug)]
pub struct EndpointInput {
    pub location: String,
    pub envelope: Envelope,
    pub auth_mode: AuthMode,
    pub compute: Option<String>,
    pub traffic: BTreeMap<String, u32>,
    pub mirror: Option<BTreeMap<String, u32>>,
    pub props: Map<String, Value>,
    /// `keys` is create-only (§2.2) and never echoed.
    pub keys: (Option<String>, Option<String>),
}

const ENDPOINT_PROPS: [&str; 11] = [
    "authMode",
    "description",
    "properties",
    "keys",
    "traffic",
    "mirrorTraffic",
    "publicNetworkAccess",
    "compute",
    "provisioningState",
    "scoringUri",
    "swaggerUri",
];

/// Parses an endpoint PUT body (§2.1, §2.2). Read-only fields are ignored (§2.5).
pub fn endpoint_put(body: &Value, configured_location: &str) -> Result<EndpointInput, ArmError> {
    let obj = as_object(body, "request body")?;
    let location = location_of(obj, configured_location)?;
    let props = obj
        .get("properties")
        .filter(|v| !v.is_null())
        .ok_or_else(|| {
            ArmError::bad_argument("properties is required").with_target("properties")
        })?;
    let props = as_object(props, "properties")?;
    if let Some(unknown) = props.keys().find(|k| !ENDPOINT_PROPS.contains(&k.as_str())) {
        return Err(ArmError::bad_argument(format!(
            "properties.{unknown} is not a known endpoint property"
        ))
        .with_target(unknown.clone()));
    }
    let auth = opt_string(props, "authMode", "properties")?.ok_or_else(|| {
        ArmError::bad_argument("properties.authMode is required").with_target("authMode")
    })?;
    let auth_mode = AuthMode::parse(&auth).ok_or_else(|| {
        ArmError::bad_argument(format!(
            "properties.authMode {auth:?} is not one of AMLToken, Key, AADToken"
        ))
    })?;
    let mut rest = Map::new();
    if let Some(d) = opt_string(props, "description", "properties")? {
        rest.insert("description".into(), Value::String(d));
    }
    let access =
        opt_string(props, "publicNetworkAccess", "properties")?.unwrap_or_else(|| "Enabled".into());
    if access != "Enabled" && access != "Disabled" {
        return Err(ArmError::bad_argument(format!(
            "properties.publicNetworkAccess {access:?} is not Enabled or Disabled"
        )));
    }
    rest.insert("publicNetworkAccess".into(), Value::String(access));
    rest.insert(
        "properties".into(),
        Value::Object(string_map(
            props.get("properties"),
            "properties.properties",
        )?),
    );
    let keys = match props.get("keys").filter(|v| !v.is_null()) {
        Some(k) => {
            let k = as_object(k, "properties.keys")?;
            (
                opt_string(k, "primaryKey", "keys")?,
                opt_string(k, "secondaryKey", "keys")?,
            )
        }
        None => (None, None),
    };
    Ok(EndpointInput {
        location,
        envelope: envelope_of(obj)?,
        auth_mode,
        compute: opt_string(props, "compute", "properties")?.filter(|c| !c.is_empty()),
        traffic: weights(props.get("traffic"), "traffic")?.unwrap_or_default(),
        mirror: weights(props.get("mirrorTraffic"), "mirrorTraffic")?,
        props: rest,
        keys,
    })
}

/// R1–R6: traffic and mirror traffic against the endpoint's deployments.
pub fn check_traffic(
    traffic: &BTreeMap<String, u32>,
    mirror: Option<&BTreeMap<String, u32>>,
    kubernetes: bool,
    deployments: &BTreeMap<String, Deployment>,
) -> Result<(), ArmError> {
    // R1: sum to 100, or every value 0 / empty.
    let sum: u32 = traffic.values().sum();
    if sum != 0 && sum != 100 {
        return Err(ArmError::bad_argument(format!(
            "traffic values must sum to 100 (or all be 0), got {sum}"
        ))
        .with_target("traffic"));
    }
    for (name, w) in traffic {
        // R2: keys are existing deployments; [emu] live traffic only to a Succeeded one.
        let dep = deployments.get(name).ok_or_else(|| {
            ArmError::bad_argument(format!(
                "traffic names deployment {name}, which does not exist in this endpoint"
            ))
            .with_target("traffic")
        })?;
        if *w > 0 && dep.state != ProvisioningState::Succeeded {
            return Err(ArmError::bad_argument(format!(
                "traffic {w} to deployment {name} is not allowed: its provisioning state is {}",
                dep.state.as_str()
            ))
            .with_target("traffic"));
        }
    }
    let Some(mirror) = mirror else { return Ok(()) };
    let positive: Vec<(&String, &u32)> = mirror.iter().filter(|(_, w)| **w > 0).collect();
    // R6: no mirroring on Kubernetes endpoints.
    if kubernetes && !positive.is_empty() {
        return Err(ArmError::bad_argument(
            "mirror traffic is not supported on kubernetes online endpoints",
        )
        .with_target("mirrorTraffic"));
    }
    // R3: at most 50 in total.
    let mirror_sum: u32 = mirror.values().sum();
    if mirror_sum > 50 {
        return Err(ArmError::bad_argument(format!(
            "mirror traffic values must sum to at most 50, got {mirror_sum}"
        ))
        .with_target("mirrorTraffic"));
    }
    // R4: one mirror deployment.
    if positive.len() > 1 {
        return Err(
            ArmError::bad_argument("mirror traffic may target only one deployment")
                .with_target("mirrorTraffic"),
        );
    }
    for (name, w) in mirror {
        let dep = deployments.get(name).ok_or_else(|| {
            ArmError::bad_argument(format!(
                "mirrorTraffic names deployment {name}, which does not exist in this endpoint"
            ))
            .with_target("mirrorTraffic")
        })?;
        if *w > 0 && dep.state != ProvisioningState::Succeeded {
            return Err(ArmError::bad_argument(format!(
                "mirror traffic to deployment {name} is not allowed: its provisioning state is {}",
                dep.state.as_str()
            ))
            .with_target("mirrorTraffic"));
        }
        // R5: live traffic or mirrored traffic, not both.
        if *w > 0 && traffic.get(name).copied().unwrap_or(0) > 0 {
            return Err(ArmError::bad_argument(format!(
                "deployment {name} cannot receive both live and mirrored traffic"
            ))
            .with_target("mirrorTraffic"));
        }
    }
    Ok(())
}

/// Endpoint PATCH: `tags` and `identity` only (R15).
#[derive(Debug, Default)]
pub struct EndpointPatch {
    pub tags: Option<Map<String, Value>>,
    pub identity: Option<Value>,
}

pub fn endpoint_patch(body: &Value) -> Result<EndpointPatch, ArmError> {
    let obj = as_object(body, "request body")?;
    if let Some(k) = obj.keys().find(|k| *k != "tags" && *k != "identity") {
        return Err(ArmError::bad_argument(format!(
            "{k} cannot be changed with PATCH: an endpoint PATCH accepts only tags and identity; use PUT"
        )).with_target(k.clone()));
    }
    Ok(EndpointPatch {
        tags: obj
            .get("tags")
            .map(|t| string_map(Some(t), "tags"))
            .transpose()?,
        identity: obj
            .get("identity")
            .filter(|v| !v.is_null())
            .map(identity)
            .transpose()?,
    })
}

/// Deployment PATCH: `tags` and `sku` only (R15); sku is a PartialSku.
#[derive(Debug, Default)]
pub struct DeploymentPatch {
    pub tags: Option<Map<String, Value>>,
    pub sku: Option<Map<String, Value>>,
}

pub fn deployment_patch(body: &Value) -> Result<DeploymentPatch, ArmError> {
    let obj = as_object(body, "request body")?;
    if let Some(k) = obj.keys().find(|k| *k != "tags" && *k != "sku") {
        return Err(ArmError::bad_argument(format!(
            "{k} cannot be changed with PATCH: a deployment PATCH accepts only tags and sku; use PUT"
        )).with_target(k.clone()));
    }
    Ok(DeploymentPatch {
        tags: obj
            .get("tags")
            .map(|t| string_map(Some(t), "tags"))
            .transpose()?,
        sku: obj
            .get("sku")
            .filter(|v| !v.is_null())
            .map(sku_of)
            .transpose()?,
    })
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
