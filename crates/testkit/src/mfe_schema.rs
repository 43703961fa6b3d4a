//! Turns mfe.json (Swagger 2.0) definitions into JSON Schema (2020-12) for the `jsonschema`
//! crate: `allOf` parents are flattened into one object (so `additionalProperties: false`
//! sees every inherited property), discriminated bases become `oneOf` their subtypes with the
//! discriminator pinned, and `x-nullable` admits null. The common-types definitions that were
//! not copied (TrackedResource, Sku, ManagedServiceIdentity, systemData, ErrorResponse) are
//! hand-written from [AML §2.1, §2.5 and §4.1], plus the ARM operation-status body (§3).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Map, Value, json};

/// Where the reference files live; override with FLIGHTDECK_AZUREML_REFERENCE.
pub fn reference_dir() -> PathBuf {
    std::env::var_os("FLIGHTDECK_AZUREML_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            // The in-repo copy, kept equal to the contracts by
            // `scripts/check-reference-fixtures.sh`.
            crate::repo_root().join("tests/fixtures/reference/azureml")
        })
        .join("2025-12-01")
}

pub fn load_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn common_types() -> BTreeMap<&'static str, Value> {
    let s = |t: &str| json!({"type": t});
    let mut m = BTreeMap::new();
    m.insert(
        "SkuTier",
        json!({"type": "string", "enum": ["Free", "Basic", "Standard", "Premium"]}),
    );
    m.insert("Sku", json!({
        "type": "object", "required": ["name"], "additionalProperties": false,
        "properties": {"name": s("string"), "tier": {"$ref": "#/$defs/SkuTier"}, "size": s("string"), "family": s("string"), "capacity": s("integer")}
    }));
    m.insert("ManagedServiceIdentityType", json!({"type": "string", "enum": ["None", "SystemAssigned", "UserAssigned", "SystemAssigned,UserAssigned"]}));
    m.insert(
        "ManagedServiceIdentity",
        json!({
            "type": "object", "required": ["type"], "additionalProperties": false,
            "properties": {
                "principalId": s("string"), "tenantId": s("string"),
                "type": {"$ref": "#/$defs/ManagedServiceIdentityType"},
                "userAssignedIdentities": {"type": "object", "additionalProperties": {
                    "type": "object", "additionalProperties": false,
                    "properties": {"principalId": s("string"), "clientId": s("string")}
                }}
            }
        }),
    );
    m.insert("systemData", json!({
        "type": "object", "additionalProperties": false,
        "properties": {
            "createdBy": s("string"), "createdAt": s("string"), "lastModifiedBy": s("string"), "lastModifiedAt": s("string"),
            "createdByType": {"enum": ["User", "Application", "ManagedIdentity", "Key"]},
            "lastModifiedByType": {"enum": ["User", "Application", "ManagedIdentity", "Key"]}
        }
    }));
    // TrackedResource's own properties; flattened into the resources that inherit it.
    m.insert(
        "TrackedResource",
        json!({
            "type": "object", "required": ["location"],
            "properties": {
                "id": s("string"), "name": s("string"), "type": s("string"),
                "systemData": {"$ref": "#/$defs/systemData"},
                "tags": {"type": "object", "additionalProperties": s("string")},
                "location": s("string")
            }
        }),
    );
    m.insert("ErrorDetail", json!({
        "type": "object", "additionalProperties": false,
        "properties": {
            "code": s("string"), "message": s("string"), "target": s("string"),
            "details": {"type": "array", "items": {"$ref": "#/$defs/ErrorDetail"}},
            "additionalInfo": {"type": "array", "items": {"type": "object", "properties": {"type": s("string"), "info": s("object")}}}
        }
    }));
    m.insert(
        "ErrorResponse",
        json!({
            "type": "object", "additionalProperties": false, "required": ["error"],
            "properties": {"error": {"$ref": "#/$defs/ErrorDetail"}}
        }),
    );
    m.insert(
        "OperationStatus",
        json!({
            "type": "object", "additionalProperties": false, "required": ["id", "name", "status"],
            "properties": {
                "id": s("string"), "name": s("string"),
                "status": {"enum": ["InProgress", "Succeeded", "Failed", "Canceled"]},
                "startTime": s("string"), "endTime": s("string"), "percentComplete": s("number"),
                "error": {"$ref": "#/$defs/ErrorDetail"}
            }
        }),
    );
    m
}

/// Converts mfe.json definitions on demand.
pub struct MfeSchemas {
    defs: Map<String, Value>,
    out: Map<String, Value>,
    validators: BTreeMap<String, jsonschema::Validator>,
}

fn ref_name(r: &str) -> String {
    r.rsplit('/').next().unwrap_or(r).to_string()
}

impl MfeSchemas {
    pub fn load() -> Self {
        let mfe = load_json(&reference_dir().join("mfe.json"));
        let defs = mfe["definitions"]
            .as_object()
            .expect("mfe.json has definitions")
            .clone();
        let mut out = Map::new();
        for (k, v) in common_types() {
            out.insert(k.to_string(), v);
        }
        MfeSchemas {
            defs,
            out,
            validators: BTreeMap::new(),
        }
    }

    /// A complete JSON Schema document validating one definition (mfe.json or hand-written).
    pub fn schema_for(&mut self, name: &str) -> Value {
        self.ensure(name);
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": self.out.clone(),
            "$ref": format!("#/$defs/{name}"),
        })
    }

    /// Validates `instance` against definition `name`; the error lists every violation.
    pub fn check(&mut self, name: &str, instance: &Value) -> Result<(), String> {
        if !self.validators.contains_key(name) {
            let schema = self.schema_for(name);
            let validator = jsonschema::validator_for(&schema)
                .map_err(|e| format!("bad schema for {name}: {e}"))?;
            self.validators.insert(name.to_string(), validator);
        }
        let validator = &self.validators[name];
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("{name}: {}", errors.join("; ")))
        }
    }

    fn ensure(&mut self, name: &str) {
        if self.out.contains_key(name) {
            return;
        }
        self.out.insert(name.to_string(), json!({})); // placeholder breaks reference cycles
        let def = self
            .defs
            .get(name)
            .unwrap_or_else(|| panic!("no definition {name}"))
            .clone();
        let schema = match def.get("discriminator").and_then(Value::as_str) {
            Some(disc) => self.discriminated(name, disc),
            None => self.flatten(&def, None),
        };
        self.out.insert(name.to_string(), schema);
    }

    fn discriminated(&mut self, base: &str, disc: &str) -> Value {
        let target = format!("#/definitions/{base}");
        let subtypes: Vec<(String, Value)> = self
            .defs
            .iter()
            .filter(|(_, v)| {
                v.get("allOf")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|p| p["$ref"] == target.as_str()))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let variants: Vec<Value> = subtypes
            .into_iter()
            .map(|(name, def)| {
                let value = def
                    .get("x-ms-discriminator-value")
                    .and_then(Value::as_str)
                    .unwrap_or(&name)
                    .to_string();
                self.flatten(&def, Some((disc, value)))
            })
            .collect();
        json!({ "oneOf": variants })
    }

    /// Properties and required names from a definition and its `allOf` ancestors.
    fn collect(&mut self, def: &Value, props: &mut Map<String, Value>, required: &mut Vec<Value>) {
        for parent in def
            .get("allOf")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
        {
            if let Some(r) = parent.get("$ref").and_then(Value::as_str) {
                let name = ref_name(r);
                let parent_def = if r.starts_with("#/definitions/") {
                    self.defs[&name].clone()
                } else {
                    common_types()
                        .get(name.as_str())
                        .cloned()
                        .unwrap_or_else(|| panic!("unknown external parent {r}"))
                };
                if r.starts_with("#/definitions/") {
                    self.collect(&parent_def, props, required);
                } else {
                    // Hand-written schemas are already JSON Schema.
                    for (k, v) in parent_def["properties"]
                        .as_object()
                        .cloned()
                        .unwrap_or_default()
                    {
                        props.insert(k, v);
                    }
                    required.extend(
                        parent_def["required"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default(),
                    );
                }
            }
        }
        for (k, v) in def
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
        {
            let converted = self.convert(&v);
            props.insert(k, converted);
        }
        required.extend(
            def.get("required")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        );
    }

    fn flatten(&mut self, def: &Value, pinned: Option<(&str, String)>) -> Value {
        let is_object = def.get("properties").is_some()
            || def.get("allOf").is_some()
            || def["type"] == "object";
        if !is_object || def.get("enum").is_some() {
            return self.convert(def);
        }
        let mut props = Map::new();
        let mut required = Vec::new();
        self.collect(def, &mut props, &mut required);
        if let Some((disc, value)) = pinned {
            props.insert(disc.to_string(), json!({ "const": value }));
            required.push(json!(disc));
        }
        let mut seen = std::collections::BTreeSet::new();
        required.retain(|r| seen.insert(r.to_string()));
        let mut out = json!({ "type": "object", "properties": props, "required": required });
        match def.get("additionalProperties") {
            Some(Value::Bool(b)) => out["additionalProperties"] = json!(b),
            Some(schema @ Value::Object(_)) => out["additionalProperties"] = self.convert(schema),
            _ => {}
        }
        out
    }

    /// Converts an inline Swagger schema node.
    fn convert(&mut self, node: &Value) -> Value {
        let nullable = node
            .get("x-nullable")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let converted = if let Some(r) = node.get("$ref").and_then(Value::as_str) {
            let name = ref_name(r);
            if r.starts_with("#/definitions/") {
                self.ensure(&name);
            } else {
                assert!(
                    self.out.contains_key(&name),
                    "external ref {r} has no hand-written schema"
                );
            }
            json!({ "$ref": format!("#/$defs/{name}") })
        } else if node.get("allOf").is_some() || node.get("properties").is_some() {
            self.flatten(node, None)
        } else {
            let mut out = Map::new();
            for key in [
                "type",
                "enum",
                "minLength",
                "pattern",
                "minimum",
                "maximum",
                "minItems",
                "maxItems",
            ] {
                if let Some(v) = node.get(key) {
                    out.insert(key.to_string(), v.clone());
                }
            }
            if let Some(items) = node.get("items") {
                out.insert("items".into(), self.convert(items));
            }
            // additionalProperties only constrains objects; enum definitions carry a stray `false`.
            if node["type"] == "object" {
                match node.get("additionalProperties") {
                    Some(Value::Bool(b)) => {
                        out.insert("additionalProperties".into(), json!(b));
                    }
                    Some(schema @ Value::Object(_)) => {
                        let s = self.convert(schema);
                        out.insert("additionalProperties".into(), s);
                    }
                    _ => {}
                }
            }
            Value::Object(out)
        };
        if nullable {
            json!({ "anyOf": [converted, { "type": "null" }] })
        } else {
            converted
        }
    }
}
