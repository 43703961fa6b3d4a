//! JSON Schemas (draft 2020-12) generated from the field table (`spec::fields`), for editors and
//! CI. `flightdeck schema --out schemas/` writes them; a test checks that the shipped
//! `schemas/*.json` equal these byte for byte.

use serde_json::{Map, Value, json};

use super::fields::{
    self, COMBINED, DEFS, DEPLOYMENT, ENDPOINT, ENVIRONMENT, Field, Forms, KUBERNETES, MANAGED,
    Obj, Ty,
};

/// One generated schema file.
pub struct SchemaFile {
    pub file_name: &'static str,
    /// Pretty-printed JSON with a trailing newline.
    pub text: String,
}

struct Spec {
    file_name: &'static str,
    title: &'static str,
    description: &'static str,
    root: &'static Obj,
    form: Forms,
    defs: bool,
}

const SPECS: &[Spec] = &[
    Spec {
        file_name: "endpoint.schema.json",
        title: "flightdeck online endpoint",
        description: "",
        root: &ENDPOINT,
        form: COMBINED,
        defs: true,
    },
    Spec {
        file_name: "deployment.schema.json",
        title: "flightdeck managed online deployment",
        description: "An Azure ML managed online deployment file (az ml split form), loaded unchanged by flightdeck.",
        root: &DEPLOYMENT,
        form: MANAGED,
        defs: true,
    },
    Spec {
        file_name: "kubernetes-deployment.schema.json",
        title: "flightdeck Kubernetes deployment",
        description: "A deployment for a kubernetes target: one Kubernetes Deployment per version, traffic split by Istio or the Gateway API.",
        root: &DEPLOYMENT,
        form: KUBERNETES,
        defs: true,
    },
    Spec {
        file_name: "environment.schema.json",
        title: "flightdeck environment",
        description: "",
        root: &ENVIRONMENT,
        form: COMBINED,
        defs: false,
    },
];

/// Every schema flightdeck ships, in a fixed order.
pub fn schemas() -> Vec<SchemaFile> {
    SPECS.iter().map(generate).collect()
}

fn generate(spec: &Spec) -> SchemaFile {
    let mut root = Map::new();
    root.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    root.insert("title".into(), json!(spec.title));
    let description = if spec.description.is_empty() {
        spec.root.doc
    } else {
        spec.description
    };
    root.insert("description".into(), json!(description));
    let Value::Object(body) = object(spec.root, spec.form, false) else {
        unreachable!("object() returns an object");
    };
    root.extend(body);
    if spec.defs {
        let mut defs = Map::new();
        for (name, obj) in DEFS {
            // The deployment definition is the combined form; a deployment file is its own root.
            if *name == "deployment" && std::ptr::eq(spec.root, &DEPLOYMENT) {
                continue;
            }
            defs.insert((*name).into(), object(obj, COMBINED, true));
        }
        root.insert("$defs".into(), Value::Object(defs));
    }
    let mut text =
        serde_json::to_string_pretty(&Value::Object(root)).expect("a JSON value always serialises");
    text.push('\n');
    SchemaFile {
        file_name: spec.file_name,
        text,
    }
}

/// The schema of a mapping: the fields of `form`, nothing else, the required ones required.
fn object(obj: &Obj, form: Forms, with_doc: bool) -> Value {
    let mut properties = Map::new();
    if obj.schema_key {
        properties.insert(
            "$schema".into(),
            json!({"type": "string", "description": "Editor hint; ignored by flightdeck."}),
        );
    }
    let mut required = Vec::new();
    for field in obj.fields.iter().filter(|f| f.forms & form != 0) {
        properties.insert(field.name.into(), property(field));
        if field.required & form != 0 {
            required.push(json!(field.name));
        }
    }
    let mut out = Map::new();
    out.insert("type".into(), json!("object"));
    if obj.exactly_one {
        out.insert("minProperties".into(), json!(1));
        out.insert("maxProperties".into(), json!(1));
    }
    out.insert("properties".into(), Value::Object(properties));
    out.insert("additionalProperties".into(), json!(false));
    if !required.is_empty() {
        out.insert("required".into(), Value::Array(required));
    }
    let alternatives: Vec<Value> = obj
        .fields
        .iter()
        .filter(|f| f.alternative && f.forms & form != 0)
        .map(|f| json!({"required": [f.name]}))
        .collect();
    if !alternatives.is_empty() {
        // Exactly one of them: two present match two branches, none matches none.
        out.insert("oneOf".into(), Value::Array(alternatives));
    }
    if with_doc && !obj.doc.is_empty() {
        out.insert("description".into(), json!(obj.doc));
    }
    Value::Object(out)
}

fn property(field: &Field) -> Value {
    let mut value = type_schema(&field.ty);
    if !field.doc.is_empty()
        && let Value::Object(map) = &mut value
    {
        map.insert("description".into(), json!(field.doc));
    }
    value
}

fn type_schema(ty: &Ty) -> Value {
    const SCALAR: [&str; 3] = ["string", "number", "boolean"];
    match ty {
        Ty::Str => json!({"type": "string"}),
        Ty::Pattern(p) => json!({"type": "string", "pattern": p}),
        Ty::Int(min, max) => {
            let mut v = json!({"type": "integer", "minimum": min});
            if let Some(max) = max {
                v["maximum"] = json!(max);
            }
            v
        }
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Enum(values) => json!({"enum": values}),
        Ty::StrOrInt => json!({"type": ["string", "integer"]}),
        Ty::ScalarMap => json!({"type": "object", "additionalProperties": {"type": SCALAR}}),
        Ty::AnyObject => json!({"type": "object"}),
        Ty::Object(obj) => object(obj, COMBINED, true),
        Ty::Ref(name) => json!({"$ref": format!("#/$defs/{name}")}),
        Ty::AnyOf(tys) => json!({"anyOf": tys.iter().map(type_schema).collect::<Vec<_>>()}),
        Ty::List(item) => json!({"type": "array", "items": type_schema(item)}),
        Ty::MapOf(obj) => {
            json!({"type": "object", "additionalProperties": object(obj, COMBINED, true)})
        }
        Ty::Weights(max) => json!({
            "type": ["object", "null"],
            "additionalProperties": {"type": "integer", "minimum": 0, "maximum": max},
        }),
        Ty::Quantities => json!({
            "type": "object",
            "propertyNames": {"pattern": "^(cpu|memory|ephemeral-storage|hugepages-.+|.+/.+)$"},
            "additionalProperties": {
                "type": ["string", "number"],
                "pattern": "^[+-]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(([eE][+-]?[0-9]+)|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$",
            },
        }),
        Ty::DriftNames => json!({"type": "array", "items": {"enum": fields::drift_names()}}),
        Ty::Duration => json!({
            "type": "string",
            "pattern": "^\\s*([0-9]+\\s*[a-zA-Z]+\\s*)+$",
            "description": "A duration: 30s, 5m, 1h 30m.",
        }),
        Ty::Map(value) => json!({"type": "object", "additionalProperties": type_schema(value)}),
    }
}
