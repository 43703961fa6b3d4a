//! The reference az ml files and every shipped environment load into the expected model.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use flightdeck::model::{AssetRef, CodeConfiguration, Router, Target, Weights};
use flightdeck::spec::{
    DiskFiles, MemFiles, load_endpoint_files, load_environment, load_environment_from,
};
use tempfile::TempDir;

/// The in-repo copy of the reference az ml files (kept equal to the contracts by
/// `scripts/check-reference-fixtures.sh`).
fn reference(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference/azureml-cli-yaml")
        .join(dir)
}

fn shipped(env: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("environments")
        .join(env)
}

/// A deployment name with a weight or an instance count.
type Pair = (&'static str, u32);

fn weights(pairs: &[(&str, u32)]) -> Weights {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn registered(name: &str, version: &str) -> AssetRef {
    AssetRef::Registered {
        name: name.into(),
        version: version.into(),
    }
}

#[test]
fn the_six_canary_flow_files_replay_the_expected_traffic_sequence() {
    let expected: [(&str, &[Pair], &[Pair]); 6] = [
        (
            "1-create-endpoint-with-blue.yml",
            &[("blue", 100)],
            &[("blue", 1)],
        ),
        ("2-scale-blue.yml", &[("blue", 100)], &[("blue", 2)]),
        (
            "3-create-green.yml",
            &[("blue", 100), ("green", 0)],
            &[("blue", 2), ("green", 2)],
        ),
        (
            "4-flight-green.yml",
            &[("blue", 90), ("green", 10)],
            &[("blue", 2), ("green", 2)],
        ),
        (
            "5-full-green.yml",
            &[("blue", 0), ("green", 100)],
            &[("blue", 2), ("green", 2)],
        ),
        ("6-delete-blue.yml", &[("green", 100)], &[("green", 2)]),
    ];
    for (file, traffic, counts) in expected {
        let path = reference("canary-declarative-flow").join(file);
        let endpoints = load_endpoint_files(&DiskFiles, &[path])
            .unwrap_or_else(|d| panic!("{file} does not load:\n{d}"));
        assert_eq!(endpoints.len(), 1, "{file}");
        let ep = &endpoints[0];
        assert_eq!(ep.name, "my-endpoint");
        assert_eq!(ep.traffic, Some(weights(traffic)), "{file}");
        assert_eq!(ep.mirror_traffic, None, "{file}");
        let found: BTreeMap<&str, u32> = ep
            .deployments
            .values()
            .map(|d| (d.name.as_str(), d.settings.instance_count.unwrap()))
            .collect();
        let wanted: BTreeMap<&str, u32> = counts.iter().copied().collect();
        assert_eq!(found, wanted, "{file}");
        for d in ep.deployments.values() {
            let n = if d.name == "blue" { 1 } else { 2 };
            let s = &d.settings;
            assert_eq!(s.model, Some(registered(&format!("model-{n}"), "1")));
            assert_eq!(
                s.environment,
                Some(registered(&format!("env-model{n}"), "1"))
            );
            assert_eq!(
                s.image.as_deref(),
                Some("mcr.microsoft.com/azureml/openmpi3.1.2-ubuntu18.04:20210727.v1")
            );
            assert_eq!(s.instance_type.as_deref(), Some("Standard_F2s_v2"));
            assert_eq!(
                s.code_configuration,
                Some(CodeConfiguration {
                    code: format!("../../model-{n}/onlinescoring/"),
                    scoring_script: "score.py".into(),
                })
            );
        }
    }
}

#[test]
fn the_managed_sample_loads_as_one_endpoint_with_two_local_deployments() {
    let dir = reference("managed-sample");
    let paths: Vec<PathBuf> = [
        "endpoint.yml",
        "blue-deployment.yml",
        "green-deployment.yml",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect();
    let endpoints = load_endpoint_files(&DiskFiles, &paths).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(endpoints.len(), 1);
    let ep = &endpoints[0];
    assert_eq!(ep.name, "my-endpoint");
    assert_eq!(
        ep.traffic, None,
        "traffic is not declared, so it is not managed"
    );
    assert_eq!(ep.deployments.len(), 2);
    let blue = &ep.deployments["blue"].settings;
    assert_eq!(
        blue.model,
        Some(AssetRef::Local {
            path: "../../model-1/model/".into()
        })
    );
    assert_eq!(
        blue.environment,
        Some(AssetRef::Local {
            path: "../../model-1/environment/conda.yaml".into()
        })
    );
    assert_eq!(
        blue.image.as_deref(),
        Some("mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest")
    );
    assert_eq!(blue.instance_type.as_deref(), Some("Standard_DS3_v2"));
    assert_eq!(blue.instance_count, Some(1));
    assert_eq!(
        blue.code_configuration.as_ref().map(|c| c.code.as_str()),
        Some("../../model-1/onlinescoring/")
    );
}

#[test]
fn the_sandbox_environment_starts_with_blue_at_100_and_a_test() {
    let state = load_environment(&shipped("sandbox"), flightdeck::backend::profile_of)
        .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(state.environment.name, "sandbox");
    let Target::AzureMl(t) = &state.environment.target else {
        panic!("sandbox targets azureml");
    };
    assert_eq!(t.subscription_id, "00000000-0000-0000-0000-000000000000");
    assert_eq!(
        (t.resource_group.as_str(), t.workspace.as_str()),
        ("flightdeck-demo", "demo")
    );
    let ep = &state.endpoints["my-endpoint"];
    assert_eq!(ep.traffic, Some(weights(&[("blue", 100)])));
    let blue = &ep.deployments["blue"];
    assert_eq!(blue.settings.model, Some(registered("model-1", "1")));
    assert_eq!(
        blue.settings.instance_type.as_deref(),
        Some("Standard_DS3_v2")
    );
    assert_eq!(blue.settings.instance_count, Some(1));
    let test = blue.test.as_ref().expect("blue has the endpoint's test");
    assert_eq!(test.requests[0].file, "sample-request.json");
    assert!(test.requests[0].body.contains("\"data\""));
    assert_eq!(test.expect_status, Some(200));
}

#[test]
fn the_kubernetes_environments_load_blue_and_green_from_images() {
    for (env, router) in [
        ("aks-istio", Router::Istio),
        ("aks-gateway", Router::GatewayApi),
    ] {
        let state = load_environment(&shipped(env), flightdeck::backend::profile_of)
            .unwrap_or_else(|d| panic!("{env}:\n{d}"));
        let Target::Kubernetes(k) = &state.environment.target else {
            panic!("{env} targets kubernetes");
        };
        assert_eq!(k.router, router);
        assert_eq!(k.namespace, "models");
        assert_eq!(k.pin_header.as_deref(), Some("x-model-deployment"));
        let ep = &state.endpoints["scoring"];
        assert_eq!(ep.traffic, Some(weights(&[("blue", 100), ("green", 0)])));
        let green = &ep.deployments["green"].settings;
        assert_eq!(green.port, Some(8080));
        assert!(green.image.as_deref().unwrap().ends_with(":1.5.0"));
        let resources = green.resources.as_ref().unwrap();
        assert_eq!(resources.requests["cpu"], "250m");
        assert_eq!(resources.limits["memory"], "1Gi");
        let probe = green.readiness_probe.as_ref().unwrap();
        assert_eq!(probe.path.as_deref(), Some("/ready"));
        assert_eq!(
            green.environment_variables.as_ref().unwrap()["WORKERS"],
            "2"
        );
        assert!(ep.deployments.values().all(|d| d.test.is_some()));
    }
    let gw = load_environment(&shipped("aks-gateway"), flightdeck::backend::profile_of).unwrap();
    let Target::Kubernetes(k) = &gw.environment.target else {
        unreachable!()
    };
    assert_eq!(k.gateways, ["infra/public-gw"]);
}

#[test]
fn scaling_blue_in_git_is_a_step_in_every_shipped_environment_not_an_ignored_field() {
    for env in ["aks-istio", "aks-gateway", "local", "sandbox"] {
        let mut desired = load_environment(&shipped(env), flightdeck::backend::profile_of)
            .unwrap_or_else(|d| panic!("{env}:\n{d}"));
        let live = flightdeck::model::LiveState::from_desired(&desired);
        let opts = flightdeck::plan::PlanOptions {
            prune: false,
            ignore: desired.environment.drift.ignore.clone(),
        };
        let endpoint = desired.endpoints.values_mut().next().expect("an endpoint");
        let blue = endpoint.deployments.get_mut("blue").expect("blue");
        let count = blue.settings.instance_count.unwrap_or(1);
        blue.settings.instance_count = Some(count + 1);
        let plan = flightdeck::plan::plan(
            &desired,
            &live,
            &opts,
            flightdeck::backend::profile_of(&desired.environment.target),
        )
        .expect("no refusal");
        assert!(
            plan.steps.iter().any(|s| matches!(
                s.action,
                flightdeck::plan::Action::ScaleDeployment { ref deployment, to, .. }
                    if deployment == "blue" && to == count + 1
            )),
            "{env}: {plan:#?}"
        );
    }
}

#[test]
fn every_shipped_environment_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("environments");
    let mut count = 0;
    for entry in fs::read_dir(&root).unwrap() {
        let dir = entry.unwrap().path();
        load_environment(&dir, flightdeck::backend::profile_of)
            .unwrap_or_else(|d| panic!("{}:\n{d}", dir.display()));
        count += 1;
    }
    assert!(count >= 4, "found {count} environments");
    let local = load_environment(&shipped("local"), flightdeck::backend::profile_of).unwrap();
    assert_eq!(
        local.environment.target,
        Target::StateFile {
            path: ".live.json".into()
        }
    );
}

#[test]
fn the_most_specific_test_key_wins() {
    let tmp = TempDir::new().unwrap();
    let files = [
        (
            "environment.yaml",
            "name: tests-env\ntarget:\n  state_file: {path: live.json}\ntests:\n  \"*\": {request_file: any.json}\n  my-endpoint: {request_file: endpoint.json, expect_body_contains: ok}\n  my-endpoint/green: {request_file: green.json, expect_status: 201}\n",
        ),
        ("any.json", "{\"any\": 1}"),
        ("endpoint.json", "{\"endpoint\": 1}"),
        ("green.json", "{\"green\": 1}"),
        (
            "a.yml",
            "name: my-endpoint\ndeployments:\n  - {name: blue}\n  - {name: green}\n",
        ),
        (
            "b.yml",
            "name: other-endpoint\ndeployments:\n  - {name: blue}\n",
        ),
    ];
    for (name, text) in files {
        fs::write(tmp.path().join(name), text).unwrap();
    }
    let state = load_environment(tmp.path(), flightdeck::backend::profile_of)
        .unwrap_or_else(|d| panic!("{d}"));
    let file = |ep: &str, d: &str| {
        state.endpoints[ep].deployments[d]
            .test
            .as_ref()
            .map(|t| t.files())
    };
    assert_eq!(file("my-endpoint", "green").as_deref(), Some("green.json"));
    assert_eq!(
        file("my-endpoint", "blue").as_deref(),
        Some("endpoint.json")
    );
    assert_eq!(file("other-endpoint", "blue").as_deref(), Some("any.json"));
    let green = state.endpoints["my-endpoint"].deployments["green"]
        .test
        .as_ref()
        .unwrap();
    assert_eq!(
        (green.expect_status, green.requests[0].body.as_str()),
        (Some(201), "{\"green\": 1}")
    );
}

#[test]
fn an_environment_loads_the_same_from_memory_and_from_disk() {
    let dir = Path::new("environments/sandbox");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut mem = BTreeMap::new();
    for name in ["environment.yaml", "my-endpoint.yml", "sample-request.json"] {
        mem.insert(dir.join(name), fs::read(root.join(dir).join(name)).unwrap());
    }
    let from_memory = load_environment_from(&MemFiles(mem), dir, flightdeck::backend::profile_of)
        .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        from_memory,
        load_environment(&shipped("sandbox"), flightdeck::backend::profile_of).unwrap()
    );
}

#[test]
fn a_combined_endpoint_accepts_extra_split_deployment_files() {
    let tmp = TempDir::new().unwrap();
    let endpoint = tmp.path().join("endpoint.yml");
    let green = tmp.path().join("green.yml");
    fs::write(
        &endpoint,
        "name: my-endpoint\ntraffic: {blue: 90, green: 10}\ndeployments:\n  - name: blue\n    model: azureml:model-1:1\n",
    )
    .unwrap();
    fs::write(
        &green,
        "name: green\nendpoint_name: my-endpoint\nmodel: azureml://registries/r/models/m/versions/2\nenvironment: azureml:env:3\n",
    )
    .unwrap();
    let eps = load_endpoint_files(&DiskFiles, &[endpoint, green]).unwrap_or_else(|d| panic!("{d}"));
    let ep = &eps[0];
    assert_eq!(ep.deployments.len(), 2);
    let green = &ep.deployments["green"].settings;
    assert_eq!(
        green.model,
        Some(AssetRef::Id {
            id: "azureml://registries/r/models/m/versions/2".into()
        })
    );
    assert_eq!(green.environment, Some(registered("env", "3")));
}
