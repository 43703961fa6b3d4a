//! The shipped JSON Schemas accept every shipped environment file and the reference az ml files
//! as they are, and refuse broken ones.

use std::fs;
use std::path::{Path, PathBuf};

use jsonschema::Validator;
use serde_json::Value;

fn crate_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The in-repo copy of the reference az ml files (kept equal to the contracts by
/// `scripts/check-reference-fixtures.sh`).
fn reference(dir: &str) -> PathBuf {
    crate_root()
        .join("tests/fixtures/reference/azureml-cli-yaml")
        .join(dir)
}

fn validator(schema: &str) -> Validator {
    let text = fs::read_to_string(crate_root().join("schemas").join(schema)).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("{e}"))
}

fn yaml(text: &str) -> Value {
    let (root, errors) = flightdeck::spec::yaml::parse(text);
    assert!(errors.is_empty(), "{errors:?}");
    root.map(|r| flightdeck::spec::yaml::to_json(&r))
        .unwrap_or(Value::Null)
}

fn errors(v: &Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

/// The shipped schema a file declares in its `$schema` line.
fn declared_schema(doc: &Value) -> String {
    let line = doc["$schema"]
        .as_str()
        .expect("shipped files carry $schema");
    line.rsplit('/').next().unwrap().to_string()
}

#[test]
fn every_shipped_environment_file_validates_against_the_schema_it_names() {
    let mut checked = 0;
    for env in fs::read_dir(crate_root().join("environments")).unwrap() {
        for file in fs::read_dir(env.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if !matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yml" | "yaml")
            ) {
                continue;
            }
            let doc = yaml(&fs::read_to_string(&path).unwrap());
            let schema = declared_schema(&doc);
            let found = errors(&validator(&schema), &doc);
            assert!(found.is_empty(), "{}: {found:#?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 10, "checked only {checked} files");
}

#[test]
fn the_reference_az_ml_files_validate_unchanged() {
    let endpoint = validator("endpoint.schema.json");
    let deployment = validator("deployment.schema.json");
    let mut checked = 0;
    for dir in ["canary-declarative-flow", "managed-sample"] {
        for file in fs::read_dir(reference(dir)).unwrap() {
            let path = file.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("yml") {
                continue;
            }
            let doc = yaml(&fs::read_to_string(&path).unwrap());
            let v = if doc.get("endpoint_name").is_some() {
                &deployment
            } else {
                &endpoint
            };
            let found = errors(v, &doc);
            assert!(found.is_empty(), "{}: {found:#?}", path.display());
            checked += 1;
        }
    }
    assert_eq!(checked, 9);
}

#[test]
fn model_mount_path_is_a_string_in_the_managed_deployment_schema_only() {
    let file = "name: blue\nendpoint_name: e-1\nmodel_mount_path: /var/models\n";
    let managed = validator("deployment.schema.json");
    assert_eq!(errors(&managed, &yaml(file)), Vec::<String>::new());
    let number = "name: blue\nendpoint_name: e-1\nmodel_mount_path: 5\n";
    assert!(!errors(&managed, &yaml(number)).is_empty());
    let k8s = validator("kubernetes-deployment.schema.json");
    let k8s_file = format!("{file}image: x\nport: 8080\n");
    assert!(!errors(&k8s, &yaml(&k8s_file)).is_empty());
}

#[test]
fn broken_files_are_refused() {
    let cases = [
        (
            "endpoint.schema.json",
            "name: my-endpoint\ntrafic:\n  blue: 100\n",
        ),
        (
            "endpoint.schema.json",
            "name: my-endpoint\ntraffic:\n  blue: 120\n",
        ),
        ("endpoint.schema.json", "name: my-endpoint\ntraffic: blue\n"),
        ("endpoint.schema.json", "name: 1-endpoint\n"),
        (
            "endpoint.schema.json",
            "name: my-endpoint\nauth_mode: keys\n",
        ),
        (
            "endpoint.schema.json",
            "name: my-endpoint\nmirror_traffic: {green: 60}\n",
        ),
        (
            "deployment.schema.json",
            "name: blue\nendpoint_name: e-1\ninstance_count: two\n",
        ),
        (
            "deployment.schema.json",
            "name: blue\ninstance_type: Standard_DS3_v2\n",
        ),
        (
            "deployment.schema.json",
            "name: blue\nendpoint_name: e-1\ncode_configuration: {code: ./src}\n",
        ),
        (
            "kubernetes-deployment.schema.json",
            "name: blue\nendpoint_name: e-1\nport: 8080\n",
        ),
        (
            "kubernetes-deployment.schema.json",
            "name: blue\nendpoint_name: e-1\nimage: x\nport: 8080\nresources: {requests: {cpu: lots}}\n",
        ),
        (
            "kubernetes-deployment.schema.json",
            "name: blue\nendpoint_name: e-1\nimage: x\nport: 8080\ninstance_type: Standard_DS3_v2\n",
        ),
        ("environment.schema.json", "name: prod\n"),
        (
            "environment.schema.json",
            "name: prod\ntarget:\n  state_file: {path: a}\n  kubernetes: {namespace: m, router: istio}\n",
        ),
        (
            "environment.schema.json",
            "name: prod\ntarget:\n  kubernetes: {namespace: m, router: linkerd}\n",
        ),
        (
            "environment.schema.json",
            "name: prod\ntarget:\n  state_file: {path: a}\ntests:\n  e-1: {expect_status: 200}\n",
        ),
    ];
    for (schema, text) in cases {
        let found = errors(&validator(schema), &yaml(text));
        assert!(!found.is_empty(), "{schema} accepted:\n{text}");
    }
}

#[test]
fn the_shipped_schemas_equal_the_ones_generated_from_the_field_table() {
    let out = tempfile::tempdir().unwrap();
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .args(["schema", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let mut generated: Vec<String> = fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    generated.sort();
    let mut shipped: Vec<String> = fs::read_dir(crate_root().join("schemas"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    shipped.sort();
    let regenerate = "the schemas are generated from src/spec/fields.rs; \
                      regenerate them with `cargo run -- schema --out schemas/`";
    assert_eq!(generated, shipped, "{regenerate}");
    for name in generated {
        let want = fs::read(out.path().join(&name)).unwrap();
        let have = fs::read(crate_root().join("schemas").join(&name)).unwrap();
        assert!(want == have, "schemas/{name} differs: {regenerate}");
    }
}
