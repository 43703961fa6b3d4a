//! Every class of bad input is reported as `file:line:col: message`, all at once.

use std::fs;
use std::path::Path;

use flightdeck::spec::{Diagnostics, load_environment, validate_paths};
use tempfile::TempDir;

const STATE_FILE_ENV: &str = "name: test-env\ntarget:\n  state_file:\n    path: live.json\n";
const AZURE_ENV: &str = "name: test-env\ntarget:\n  azureml:\n    subscription_id: 00000000-0000-0000-0000-000000000000\n    resource_group: rg\n    workspace: ws\n    location: westus2\n";
const K8S_ENV: &str =
    "name: test-env\ntarget:\n  kubernetes:\n    namespace: models\n    router: istio\n";

const ENDPOINT: &str = "name: my-endpoint\ntraffic:\n  blue: 100\n";
const BLUE: &str =
    "name: blue\nendpoint_name: my-endpoint\nmodel: azureml:model-1:1\ninstance_count: 1\n";

fn write(root: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let path = root.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
}

/// Loads an environment made of `files` and returns its diagnostics, paths relative to it.
fn problems(files: &[(&str, &str)]) -> Vec<String> {
    let tmp = TempDir::new().unwrap();
    write(tmp.path(), files);
    match load_environment(tmp.path(), flightdeck::backend::profile_of) {
        Ok(state) => panic!("expected problems, loaded {state:#?}"),
        Err(d) => relative(&d, tmp.path()),
    }
}

fn relative(d: &Diagnostics, root: &Path) -> Vec<String> {
    let prefix = format!("{}/", root.display());
    d.to_string()
        .lines()
        .map(|l| l.replace(&prefix, ""))
        .collect()
}

#[test]
fn traffic_that_sums_to_90_is_reported_with_its_location() {
    let endpoint = "name: my-endpoint\ntraffic:\n  blue: 80\n  green: 10\n";
    let green = BLUE.replace("blue", "green");
    assert_eq!(
        problems(&[
            ("environment.yaml", STATE_FILE_ENV),
            ("endpoint.yml", endpoint),
            ("blue.yml", BLUE),
            ("green.yml", &green),
        ]),
        ["endpoint.yml:2:1: traffic sums to 90, expected 100"]
    );
}

#[test]
fn all_zero_and_empty_traffic_are_allowed() {
    let tmp = TempDir::new().unwrap();
    write(
        tmp.path(),
        &[
            ("environment.yaml", STATE_FILE_ENV),
            ("a.yml", "name: end-a\ntraffic:\n  blue: 0\n"),
            ("b.yml", "name: end-b\ntraffic: {}\n"),
            ("blue.yml", &BLUE.replace("my-endpoint", "end-a")),
        ],
    );
    let state = load_environment(tmp.path(), flightdeck::backend::profile_of).unwrap();
    assert_eq!(
        state.endpoints["end-a"].traffic,
        Some([("blue".into(), 0)].into())
    );
    assert_eq!(state.endpoints["end-b"].traffic, Some(Default::default()));
}

#[test]
fn a_misspelled_field_gets_a_suggestion() {
    let endpoint = "name: my-endpoint\ntrafic:\n  blue: 100\n";
    assert_eq!(
        problems(&[
            ("environment.yaml", STATE_FILE_ENV),
            ("endpoint.yml", endpoint),
            ("blue.yml", BLUE),
        ]),
        ["endpoint.yml:2:1: unknown field `trafic` in endpoint, did you mean `traffic`?"]
    );
}

#[test]
fn a_misspelled_model_mount_path_gets_a_suggestion_and_the_right_one_loads() {
    let typo = format!("{BLUE}model_mount_pth: /models\n");
    assert_eq!(
        problems(&[
            ("environment.yaml", AZURE_ENV),
            ("endpoint.yml", ENDPOINT),
            ("blue.yml", &typo),
        ]),
        [
            "blue.yml:5:1: unknown field `model_mount_pth` in deployment, did you mean `model_mount_path`?"
        ]
    );
    let tmp = TempDir::new().unwrap();
    let right = format!("{BLUE}model_mount_path: /models\n");
    write(
        tmp.path(),
        &[
            ("environment.yaml", AZURE_ENV),
            ("endpoint.yml", ENDPOINT),
            ("blue.yml", &right),
        ],
    );
    let state = load_environment(tmp.path(), flightdeck::backend::profile_of).unwrap();
    let blue = &state.endpoints["my-endpoint"].deployments["blue"];
    assert_eq!(blue.settings.model_mount_path.as_deref(), Some("/models"));
}

#[test]
fn a_wrong_type_is_reported_at_the_value() {
    let blue = BLUE.replace("instance_count: 1", "instance_count: two");
    assert_eq!(
        problems(&[
            ("environment.yaml", STATE_FILE_ENV),
            ("endpoint.yml", ENDPOINT),
            ("blue.yml", &blue),
        ]),
        ["blue.yml:4:17: instance_count: expected an integer, found a string"]
    );
}

#[test]
fn yaml_syntax_errors_carry_their_location() {
    let found = problems(&[
        ("environment.yaml", STATE_FILE_ENV),
        ("endpoint.yml", "name: my-endpoint\ntraffic: {blue: 100\n"),
    ]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("endpoint.yml:3:1: invalid YAML: "),
        "{found:?}"
    );
}

#[test]
fn duplicate_keys_are_reported_at_the_second_one() {
    let endpoint =
        "name: my-endpoint\ntraffic:\n  blue: 100\nauth_mode: key\ntraffic:\n  blue: 100\n";
    assert_eq!(
        problems(&[
            ("environment.yaml", STATE_FILE_ENV),
            ("endpoint.yml", endpoint),
            ("blue.yml", BLUE),
        ]),
        ["endpoint.yml:5:1: duplicate key `traffic` (first declared at line 2, column 1)"]
    );
}

#[test]
fn an_endpoint_declared_in_two_files_is_reported_once_at_the_second() {
    assert_eq!(
        problems(&[
            ("environment.yaml", STATE_FILE_ENV),
            ("a.yml", ENDPOINT),
            ("b.yml", ENDPOINT),
            ("blue.yml", BLUE),
        ]),
        ["b.yml:1:7: endpoint `my-endpoint` is already declared at a.yml:1:7"]
    );
}

#[test]
fn a_deployment_declared_twice_in_an_endpoint_is_reported() {
    assert_eq!(
        problems(&[
            ("environment.yaml", STATE_FILE_ENV),
            ("endpoint.yml", ENDPOINT),
            ("blue.yml", BLUE),
            ("blue-again.yml", BLUE),
        ]),
        [
            "blue.yml:1:7: deployment `blue` of endpoint `my-endpoint` is already declared at blue-again.yml:1:7"
        ]
    );
}

#[test]
fn a_deployment_for_an_unknown_endpoint_is_reported_with_a_suggestion() {
    let blue = BLUE.replace("endpoint_name: my-endpoint", "endpoint_name: my-endpont");
    assert_eq!(
        problems(&[
            ("environment.yaml", STATE_FILE_ENV),
            ("endpoint.yml", "name: my-endpoint\n"),
            ("blue.yml", &blue),
        ]),
        [
            "blue.yml:2:16: endpoint_name `my-endpont` names no declared endpoint, did you mean `my-endpoint`?"
        ]
    );
}

#[test]
fn traffic_naming_an_undeclared_deployment_is_reported_at_its_key() {
    let endpoint = "name: my-endpoint\ntraffic:\n  blue: 90\n  gren: 10\n";
    let green = BLUE.replace("blue", "green");
    assert_eq!(
        problems(&[
            ("environment.yaml", STATE_FILE_ENV),
            ("endpoint.yml", endpoint),
            ("blue.yml", BLUE),
            ("green.yml", &green),
        ]),
        [
            "endpoint.yml:4:3: traffic names deployment `gren`, which endpoint `my-endpoint` does not declare, did you mean `green`?"
        ]
    );
}

#[test]
fn negative_and_oversized_weights_are_reported_at_the_value() {
    let endpoint = "name: my-endpoint\ntraffic:\n  blue: 120\n  green: -20\n";
    let green = BLUE.replace("blue", "green");
    assert_eq!(
        problems(&[
            ("environment.yaml", STATE_FILE_ENV),
            ("endpoint.yml", endpoint),
            ("blue.yml", BLUE),
            ("green.yml", &green),
        ]),
        [
            "endpoint.yml:3:9: traffic weight of `blue` must be between 0 and 100, found 120",
            "endpoint.yml:4:10: traffic weight of `green` must be between 0 and 100, found -20",
        ]
    );
}

#[test]
fn mirror_traffic_follows_the_azure_ml_rules() {
    let endpoint =
        "name: my-endpoint\ntraffic:\n  blue: 100\nmirror_traffic:\n  blue: 30\n  green: 30\n";
    let green = BLUE.replace("blue", "green");
    assert_eq!(
        problems(&[
            ("environment.yaml", STATE_FILE_ENV),
            ("endpoint.yml", endpoint),
            ("blue.yml", BLUE),
            ("green.yml", &green),
        ]),
        [
            "endpoint.yml:4:1: mirror_traffic can name only one deployment, found 2",
            "endpoint.yml:4:1: mirror_traffic sums to 60, at most 50 is allowed",
            "endpoint.yml:5:3: deployment `blue` takes live traffic, so it cannot also get mirror traffic",
        ]
    );
}

#[test]
fn mirror_traffic_must_name_a_declared_deployment() {
    let endpoint = "name: my-endpoint\ntraffic:\n  blue: 100\nmirror_traffic:\n  green: 10\n";
    assert_eq!(
        problems(&[
            ("environment.yaml", STATE_FILE_ENV),
            ("endpoint.yml", endpoint),
            ("blue.yml", BLUE),
        ]),
        [
            "endpoint.yml:5:3: mirror_traffic names deployment `green`, which endpoint `my-endpoint` does not declare"
        ]
    );
}

#[test]
fn instance_count_outside_1_to_100_is_reported() {
    let blue = BLUE.replace("instance_count: 1", "instance_count: 0");
    let preview = "name: my-endpoint\ntraffic:\n  blue: 100\ndeployments:\n  - name: blue\n    scale_settings:\n      scale_type: manual\n      instance_count: 101\n";
    assert_eq!(
        problems(&[
            ("environment.yaml", STATE_FILE_ENV),
            ("endpoint.yml", ENDPOINT),
            ("blue.yml", &blue),
            (
                "other.yml",
                &preview.replace("my-endpoint", "other-endpoint")
            ),
        ]),
        [
            "blue.yml:4:17: instance_count must be between 1 and 100, found 0",
            "other.yml:8:23: instance_count must be between 1 and 100, found 101",
        ]
    );
}

#[test]
fn bad_endpoint_and_deployment_names_are_reported() {
    let blue = BLUE.replace("name: blue", "name: b_1");
    assert_eq!(
        problems(&[
            ("environment.yaml", STATE_FILE_ENV),
            ("endpoint.yml", "name: 1-endpoint\n"),
            ("short.yml", "name: ab\n"),
            ("blue.yml", &blue.replace("my-endpoint", "1-endpoint")),
        ]),
        [
            "blue.yml:1:7: deployment name `b_1` may contain only letters, digits and `-`",
            "endpoint.yml:1:7: endpoint name `1-endpoint` must start with a letter",
            "short.yml:1:7: endpoint name `ab` must be 3 to 32 characters long, found 2",
        ]
    );
}

#[test]
fn files_over_1_mib_are_refused() {
    let big = format!(
        "name: my-endpoint\ndescription: \"{}\"\n",
        "x".repeat(1024 * 1024)
    );
    assert_eq!(
        problems(&[("environment.yaml", STATE_FILE_ENV), ("endpoint.yml", &big)]),
        [format!(
            "endpoint.yml: file is larger than the 1 MiB limit ({} bytes)",
            big.len()
        )]
    );
}

#[test]
fn nesting_deeper_than_32_levels_is_refused() {
    let deep = format!(
        "name: my-endpoint\ntags: {}1{}\n",
        "[".repeat(40),
        "]".repeat(40)
    );
    assert_eq!(
        problems(&[
            ("environment.yaml", STATE_FILE_ENV),
            ("endpoint.yml", &deep)
        ]),
        ["endpoint.yml:2:38: YAML nesting is deeper than 32 levels"]
    );
}

#[test]
fn more_files_than_the_limit_are_refused() {
    let tmp = TempDir::new().unwrap();
    write(tmp.path(), &[("environment.yaml", STATE_FILE_ENV)]);
    let many = tmp.path().join("many");
    fs::create_dir(&many).unwrap();
    for i in 0..flightdeck::spec::MAX_FILES {
        fs::write(many.join(format!("{i}.json")), b"{}").unwrap();
    }
    let found = relative(
        &load_environment(tmp.path(), flightdeck::backend::profile_of).unwrap_err(),
        tmp.path(),
    );
    let shown = tmp.path().display().to_string();
    assert_eq!(
        found,
        [format!(
            "{shown}: the environment directory holds more than {} files",
            flightdeck::spec::MAX_FILES
        )]
    );
}

#[test]
fn kubernetes_deployments_need_image_and_port_and_refuse_azure_only_fields() {
    let blue = "name: blue\nendpoint_name: my-endpoint\ninstance_type: Standard_DS3_v2\ncode_configuration:\n  code: ./src\n  scoring_script: score.py\n";
    assert_eq!(
        problems(&[
            ("environment.yaml", K8S_ENV),
            ("endpoint.yml", ENDPOINT),
            ("blue.yml", blue),
        ]),
        [
            "blue.yml:1:1: deployment `blue` needs `image` on kubernetes targets",
            "blue.yml:1:1: deployment `blue` needs `port` on kubernetes targets",
            "blue.yml:3:1: `instance_type` is only for azureml targets",
            "blue.yml:4:1: `code_configuration` is only for azureml targets",
        ]
    );
}

#[test]
fn azure_targets_refuse_kubernetes_only_fields() {
    let blue = format!("{BLUE}image: repo/model:1\nreadiness_probe:\n  path: /ready\n");
    assert_eq!(
        problems(&[
            ("environment.yaml", AZURE_ENV),
            ("endpoint.yml", ENDPOINT),
            ("blue.yml", &blue),
        ]),
        [
            "blue.yml:5:1: `image` is only for kubernetes targets (on azureml, set `environment.image`)",
            "blue.yml:7:3: `readiness_probe.path` is only for kubernetes targets",
        ]
    );
}

#[test]
fn a_missing_environment_file_is_reported_for_the_directory() {
    let tmp = TempDir::new().unwrap();
    write(
        tmp.path(),
        &[("endpoint.yml", ENDPOINT), ("blue.yml", BLUE)],
    );
    let d = load_environment(tmp.path(), flightdeck::backend::profile_of).unwrap_err();
    assert_eq!(
        d.to_string(),
        format!(
            "{}: no environment.yaml in this directory",
            tmp.path().display()
        )
    );
}

#[test]
fn tests_naming_unknown_endpoints_or_deployments_and_missing_files_are_reported() {
    let env = format!(
        "{STATE_FILE_ENV}tests:\n  my-endpont:\n    request_file: req.json\n  my-endpoint/green:\n    request_file: req.json\n  my-endpoint:\n    request_file: missing.json\n    expect_status: 700\n"
    );
    assert_eq!(
        problems(&[
            ("environment.yaml", &env),
            ("req.json", "{}"),
            ("endpoint.yml", ENDPOINT),
            ("blue.yml", BLUE),
        ]),
        [
            "environment.yaml:6:3: tests: endpoint `my-endpont` is not declared, did you mean `my-endpoint`?",
            "environment.yaml:8:3: tests: endpoint `my-endpoint` has no deployment `green`",
            "environment.yaml:11:19: request_file `missing.json`: file not found",
            "environment.yaml:12:20: expect_status must be between 100 and 599, found 700",
        ]
    );
}

#[test]
fn every_smoke_test_mistake_is_reported_at_once_with_its_location() {
    let env = format!(
        "{STATE_FILE_ENV}tests:\n  \"*\":\n    request_file: req.json\n    request_dir: smoke\n  my-endpoint:\n    request_dir: empty\n    expect_json: {{\"$.[\": 1}}\n    latency_budget: soon\n    retries: 11\n  my-endpoint/blue:\n    request_files: [req.json, ../out.json]\n"
    );
    assert_eq!(
        problems(&[
            ("environment.yaml", &env),
            ("req.json", "{}"),
            ("smoke/a.json", "{}"),
            ("empty/notes.txt", "-"),
            ("endpoint.yml", ENDPOINT),
            ("blue.yml", BLUE),
        ]),
        [
            "environment.yaml:8:5: tests.*: `request_file` and `request_dir` both name requests, keep exactly one",
            "environment.yaml:10:18: request_dir `empty`: holds no `*.json` file",
            "environment.yaml:11:19: expect_json: `$.[` is not a JSON path (RFC 9535): at position 2, in dot member name, must start with lowercase alpha or '_'",
            "environment.yaml:12:21: latency_budget: `soon` is not a duration (`30s`, `5m`, `1h 30m`)",
            "environment.yaml:13:14: retries must be between 0 and 10, found 11",
            "environment.yaml:15:31: request_files `../out.json`: leaves the environment directory",
        ]
    );
}

#[test]
fn environment_file_problems_are_located() {
    let env = "name: test-env\ntarget:\n  azureml:\n    subscription_id: not-a-guid\n    resource_group: rg\n    workspace: ws\n  kubernetes: {}\ndrift:\n  mode: corect\n  ignore: [instance_cout]\n";
    assert_eq!(
        problems(&[("environment.yaml", env)]),
        [
            "environment.yaml:7:3: target has more than one kind (`azureml` and `kubernetes`), keep exactly one",
            "environment.yaml:9:9: mode: unknown value `corect`, expected one of `correct`, `report`, did you mean `correct`?",
            "environment.yaml:10:12: drift.ignore: unknown setting `instance_cout`, did you mean `instance_count`?",
        ]
    );
}

#[test]
fn many_problems_in_many_files_are_all_reported_at_once() {
    let env = "name: test-env\ntarget:\n  state_file:\n    path: live.json\ntests:\n  nowhere:\n    request_file: req.json\n";
    let endpoint = "name: my-endpoint\nauth_mode: keys\ntraffic:\n  blue: 50\n";
    let blue = "name: blue\nendpoint_name: my-endpoint\ninstance_count: 0\nmodle: azureml:m:1\n";
    let orphan = "name: green\nendpoint_name: nobody\n";
    let files = [
        ("environment.yaml", env),
        ("req.json", "{}"),
        ("endpoint.yml", endpoint),
        ("deployments/blue.yml", blue),
        ("deployments/orphan.yml", orphan),
    ];
    let own = [
        "deployments/blue.yml:3:17: instance_count must be between 1 and 100, found 0",
        "deployments/blue.yml:4:1: unknown field `modle` in deployment, did you mean `model`?",
        "endpoint.yml:2:12: auth_mode: unknown value `keys`",
        "endpoint.yml:3:1: traffic sums to 50, expected 100",
    ];
    let references = [
        "deployments/orphan.yml:2:16: endpoint_name `nobody` names no declared endpoint",
        "environment.yaml:6:3: tests: endpoint `nowhere` is not declared",
    ];
    let check = |found: Vec<String>, expected: Vec<&str>| {
        assert_eq!(found.len(), expected.len(), "{found:#?}");
        for (line, prefix) in found.iter().zip(expected) {
            assert!(
                line.starts_with(prefix),
                "{line:?} should start with {prefix:?}"
            );
        }
    };
    let mut expected: Vec<&str> = own.iter().chain(&references).copied().collect();
    expected.sort();
    check(problems(&files), expected);

    // A file that does not parse might declare `nobody` or `nowhere`: it reports its own error,
    // and references to endpoints it may hold wait until it parses. Every other problem stays.
    let mut with_broken = files.to_vec();
    with_broken.push(("broken.yml", "name: [unclosed\n"));
    let mut expected: Vec<&str> = own.to_vec();
    expected.push("broken.yml:2:1: invalid YAML");
    expected.sort();
    check(problems(&with_broken), expected);
}

#[test]
fn validate_paths_reports_every_path_together() {
    let tmp = TempDir::new().unwrap();
    write(
        tmp.path(),
        &[
            ("env/environment.yaml", STATE_FILE_ENV),
            (
                "env/endpoint.yml",
                "name: my-endpoint\ntraffic:\n  blue: 10\n",
            ),
            ("env/blue.yml", BLUE),
            ("loose/endpoint.yml", "name: loose-endpoint\n"),
            (
                "loose/blue.yml",
                &BLUE.replace("my-endpoint", "lose-endpoint"),
            ),
        ],
    );
    let paths = [
        tmp.path().join("env"),
        tmp.path().join("loose/endpoint.yml"),
        tmp.path().join("loose/blue.yml"),
    ];
    let found = relative(
        &validate_paths(&paths, flightdeck::backend::profile_of).unwrap_err(),
        tmp.path(),
    );
    assert_eq!(
        found,
        [
            "env/endpoint.yml:2:1: traffic sums to 10, expected 100",
            "loose/blue.yml:2:16: endpoint_name `lose-endpoint` names no declared endpoint, did you mean `loose-endpoint`?",
        ]
    );
    assert!(
        validate_paths(
            &[tmp.path().join("loose/endpoint.yml")],
            flightdeck::backend::profile_of
        )
        .is_ok()
    );
}

#[test]
fn json_and_hidden_files_are_ignored_but_empty_and_binary_yaml_files_are_not() {
    let tmp = TempDir::new().unwrap();
    write(
        tmp.path(),
        &[
            ("environment.yaml", STATE_FILE_ENV),
            ("endpoint.yml", ENDPOINT),
            ("blue.yml", BLUE),
            ("request.json", "not yaml: ["),
            (".hidden/broken.yml", "not: [yaml"),
            (".editor.yml", "{{{"),
        ],
    );
    assert!(load_environment(tmp.path(), flightdeck::backend::profile_of).is_ok());
    write(tmp.path(), &[("empty.yml", "# nothing yet\n")]);
    fs::write(tmp.path().join("binary.yaml"), [0xff, 0xfe, 0x00]).unwrap();
    let found = relative(
        &load_environment(tmp.path(), flightdeck::backend::profile_of).unwrap_err(),
        tmp.path(),
    );
    assert_eq!(
        found,
        [
            "binary.yaml: file is not valid UTF-8",
            "empty.yml: file is empty"
        ]
    );
}

#[test]
fn nested_fields_are_checked_with_their_own_context() {
    let blue = format!(
        "{BLUE}code_configuration:\n  code: ./src\n  scoring_scrip: score.py\nrequest_settings:\n  request_timeout_ms: fast\n"
    );
    assert_eq!(
        problems(&[
            ("environment.yaml", STATE_FILE_ENV),
            ("endpoint.yml", ENDPOINT),
            ("blue.yml", &blue),
        ]),
        [
            "blue.yml:5:1: code_configuration has no `scoring_script`",
            "blue.yml:7:3: unknown field `scoring_scrip` in code_configuration, did you mean `scoring_script`?",
            "blue.yml:9:23: request_timeout_ms: expected an integer, found a string",
        ]
    );
}

#[test]
fn kubernetes_names_must_be_lowercase() {
    let endpoint = "name: Scoring\ntraffic:\n  blue: 100\n";
    let blue = "name: blue\nendpoint_name: Scoring\nimage: repo/model:1\nport: 8080\n";
    assert_eq!(
        problems(&[
            ("environment.yaml", K8S_ENV),
            ("endpoint.yml", endpoint),
            ("blue.yml", blue),
        ]),
        [
            "endpoint.yml:1:7: endpoint name `Scoring` must be lowercase and not end with `-` on kubernetes targets"
        ]
    );
}
