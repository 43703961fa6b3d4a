//! The `rollout:` section of environment.yaml through the real binary: a full policy validates,
//! loads and plans; every class of mistake is reported at once as `file:line:col: message`.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use flightdeck::spec::load_environment;
use serde_json::json;
use tempfile::TempDir;

const TARGET: &str = "name: test-env\ntarget:\n  state_file:\n    path: .live.json\n";
const MY_ENDPOINT: &str = "name: my-endpoint\ntraffic:\n  blue: 100\n";
const OTHER_ENDPOINT: &str = "name: other-endpoint\n";
const BLUE: &str =
    "name: blue\nendpoint_name: my-endpoint\nmodel: azureml:model-1:1\ninstance_count: 1\n";

/// The full format of the brief (and of docs/environment-format.md, "Rollout policy").
const FULL: &str = r#"rollout:
  metrics:
    provider: azure_monitor
    ingestion_delay: 3m
  default:
    steps:
      - weight: 10
        bake: 5m
        gates: ["error_rate < 2%", "p99 < 1.2x baseline"]
      - weight: 50
        bake: 10m
        pause: true
      - traffic: {blue: 50, green: 30, red: 20}
        bake: 1m
        gates:
          - p95 <= 250ms
          - requests >= 100
    min_requests: 100
    max_bake: 30m
    on_no_data: pause
    on_failure: rollback
    deadline: 2h
    keep_failed: true
  endpoints:
    my-endpoint:
      steps: [{weight: 25, bake: 1m}]
    other-endpoint: none
"#;

/// An environment directory `env` inside a temp dir, with `environment.yaml` = TARGET + `rollout`.
fn env_with(rollout: &str) -> TempDir {
    let tmp = TempDir::new().unwrap();
    let env = tmp.path().join("env");
    fs::create_dir_all(&env).unwrap();
    let files = [
        ("environment.yaml", format!("{TARGET}{rollout}")),
        ("my-endpoint.yml", MY_ENDPOINT.to_string()),
        ("other.yml", OTHER_ENDPOINT.to_string()),
        ("blue.yml", BLUE.to_string()),
    ];
    for (name, text) in files {
        fs::write(env.join(name), text).unwrap();
    }
    tmp
}

fn flightdeck(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flightdeck"))
        .args(args)
        .current_dir(cwd)
        .env_remove("FLIGHTDECK_ARM_ENDPOINT")
        .output()
        .expect("run flightdeck")
}

/// `flightdeck validate env`'s located problems (exit code 2), in order.
fn problems(rollout: &str) -> Vec<String> {
    let tmp = env_with(rollout);
    let out = flightdeck(&["validate", "env"], tmp.path());
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    stderr
        .lines()
        .filter(|l| !l.starts_with("error:"))
        .map(str::to_string)
        .collect()
}

// Positions below are as in environment.yaml: TARGET is four lines, so line `n` of a rollout
// text is line `n + 4` of the file.

#[test]
fn a_full_policy_validates_loads_as_written_and_plans() {
    let tmp = env_with(FULL);
    let out = flightdeck(&["validate", "env"], tmp.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let state = load_environment(&tmp.path().join("env"), flightdeck::backend::profile_of)
        .unwrap_or_else(|d| panic!("{d}"));
    let loaded = serde_json::to_value(&state.environment.rollout).unwrap();
    let absolute = |signal: &str, comparison: &str, value: f64| {
        json!({"signal": signal, "comparison": comparison,
               "threshold": {"kind": "absolute", "value": value}})
    };
    assert_eq!(
        loaded,
        json!({
            "default": {
                "steps": [
                    {"target": {"weight": 10}, "bake": "5m", "pause": false, "gates": [
                        absolute("error_rate", "below", 0.02),
                        {"signal": "latency_p99", "comparison": "below",
                         "threshold": {"kind": "relative_to_baseline", "value": 1.2}},
                    ]},
                    {"target": {"weight": 50}, "bake": "10m", "pause": true},
                    {"target": {"traffic": {"blue": 50, "green": 30, "red": 20}}, "bake": "1m",
                     "pause": false, "gates": [
                        absolute("latency_p95", "at_most", 250.0),
                        absolute("requests", "at_least", 100.0),
                    ]},
                ],
                "min_requests": 100,
                "max_bake": "30m",
                "on_no_data": "pause",
                "on_failure": "rollback",
                "deadline": "2h",
                "keep_failed": true,
            },
            "endpoints": {
                "my-endpoint": {
                    "steps": [{"target": {"weight": 25}, "bake": "1m", "pause": false}],
                    "min_requests": 0,
                    "on_no_data": "rollback",
                    "on_failure": "rollback",
                    "keep_failed": true,
                },
                "other-endpoint": null,
            },
            "metrics": {"provider": "azure_monitor", "ingestion_delay": "3m"},
        })
    );

    let plan = flightdeck(&["plan", "env"], tmp.path());
    let stdout = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(
        plan.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    assert!(stdout.contains("route 100% to blue"), "{stdout}");
}

#[test]
fn a_policy_without_a_rollout_section_loads_as_no_rollout() {
    let tmp = env_with("");
    let state = load_environment(&tmp.path().join("env"), flightdeck::backend::profile_of)
        .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        serde_json::to_value(&state.environment.rollout).unwrap(),
        json!({})
    );
}

#[test]
fn prometheus_metrics_load_with_their_url_queries_and_token_variable() {
    let rollout = "rollout:\n  metrics:\n    provider: prometheus\n    url: http://prometheus.monitoring:9090\n    queries: {error_rate: \"sum(rate(x[{window}]))\"}\n    token_env: PROM_TOKEN\n  default:\n    steps: [{weight: 10, bake: 1m, gates: [\"p99 < 300ms\"]}]\n";
    let tmp = env_with(rollout);
    let state = load_environment(&tmp.path().join("env"), flightdeck::backend::profile_of)
        .unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(
        serde_json::to_value(&state.environment.rollout.metrics).unwrap(),
        json!({"provider": "prometheus", "url": "http://prometheus.monitoring:9090",
               "queries": {"error_rate": "sum(rate(x[{window}]))"}, "token_env": "PROM_TOKEN"})
    );
}

#[test]
fn every_mistake_in_a_policy_is_reported_at_once_with_its_location() {
    let rollout = r#"rollout:
  metrics: {provider: azure_monitor}
  default:
    steps:
      - weight: 50
        bake: 5m
        gates: ["erorr_rate < 2%", "p99 > 250ms"]
      - weight: 40
        bake: 0s
      - traffic: {blue: 50, green: 40}
        bake: soon
      - weight: 100
        bake: 1m
      - {weight: 60, traffic: {blue: 100}, bake: 1m}
      - {pause: true}
    max_bake: 2m
    on_failure: rollbak
    on_no_data: wait
    deadline: 1m
    keep_failed: yes
    min_request: 5
"#;
    assert_eq!(
        problems(rollout),
        [
            "env/environment.yaml:11:18: rollout.default stage 1: gate `erorr_rate < 2%`: unknown signal `erorr_rate`, expected one of `error_rate`, `p95`, `p99`, `requests`, did you mean `error_rate`?",
            "env/environment.yaml:11:41: rollout.default stage 1: gate `p99 > 250ms`: unknown comparison `>`, expected `<`, `<=` or `>=`",
            "env/environment.yaml:12:17: rollout.default stage 2: weight 40 must be above stage 1's 50 (weights only increase)",
            "env/environment.yaml:13:15: rollout.default stage 2: bake must be longer than 0s",
            "env/environment.yaml:14:9: rollout.default stage 3: traffic sums to 90, expected 100",
            "env/environment.yaml:15:15: bake: `soon` is not a duration (`30s`, `5m`, `1h 30m`)",
            "env/environment.yaml:16:17: weight must be between 1 and 99, found 100",
            "env/environment.yaml:18:22: rollout.default stage 5 has both `weight` and `traffic`, keep one",
            "env/environment.yaml:19:9: rollout.default stage 6 has no `bake`",
            "env/environment.yaml:19:9: rollout.default stage 6 needs `weight` or `traffic`",
            "env/environment.yaml:20:15: rollout.default: max_bake 2m is shorter than stage 1's bake 5m",
            "env/environment.yaml:21:17: on_failure: unknown value `rollbak`, expected one of `rollback`, `pause`, did you mean `rollback`?",
            "env/environment.yaml:22:17: on_no_data: unknown value `wait`, expected one of `rollback`, `pause`",
            "env/environment.yaml:23:15: rollout.default: deadline 1m is shorter than the stages' bakes together (7m)",
            "env/environment.yaml:24:18: keep_failed: expected a boolean, found a string",
            "env/environment.yaml:25:5: unknown field `min_request` in rollout.default, did you mean `min_requests`?",
        ]
    );
}

#[test]
fn gates_without_metrics_and_overrides_of_undeclared_endpoints_are_refused() {
    let rollout = r#"rollout:
  default:
    steps: [{weight: 10, bake: 1m, gates: ["error_rate < 1%"]}]
  endpoints:
    my-endpont:
      steps: []
    other-endpoint:
    third: {steps: [{weight: 10, bake: 1m, gates: [requests >= 1.5]}]}
  metric: {}
"#;
    assert_eq!(
        problems(rollout),
        [
            "env/environment.yaml:7:36: gates need `rollout.metrics`",
            "env/environment.yaml:9:5: rollout.endpoints: endpoint `my-endpont` is not declared, did you mean `my-endpoint`?",
            "env/environment.yaml:10:14: rollout.endpoints.my-endpont: `steps` is empty, a policy needs at least one stage",
            "env/environment.yaml:11:5: rollout.endpoints.other-endpoint: expected a policy (a mapping) or `none`, found null",
            "env/environment.yaml:12:5: rollout.endpoints: endpoint `third` is not declared",
            "env/environment.yaml:12:44: gates need `rollout.metrics`",
            "env/environment.yaml:12:64: rollout.endpoints.third stage 1: gate `requests >= 1.5`: requests takes a whole number (`100`) or a factor (`1.2x baseline`), found `1.5`",
            "env/environment.yaml:13:3: unknown field `metric` in rollout, did you mean `metrics`?",
        ]
    );
}

#[test]
fn prometheus_needs_a_url_and_each_provider_only_its_own_fields() {
    let rollout = r#"rollout:
  metrics:
    provider: prometheus
    ingestion_delay: 3m
    queries: {error_rate: "x", p90: "y"}
    token_env: "PROM-TOKEN"
  endpoints:
    my-endpoint: none
"#;
    assert_eq!(
        problems(rollout),
        [
            "env/environment.yaml:6:3: rollout.metrics has no `url` (provider `prometheus` needs one)",
            "env/environment.yaml:8:5: rollout.metrics: `ingestion_delay` is only for provider `azure_monitor`",
            "env/environment.yaml:9:32: unknown field `p90` in rollout.metrics.queries, did you mean `p99`?",
            "env/environment.yaml:10:16: token_env `PROM-TOKEN` is not an environment variable name (letters, digits, `_`)",
        ]
    );
    let azure = "rollout:\n  metrics:\n    provider: azure_monitr\n  default: {steps: [{weight: 5, bake: 1m}]}\n";
    assert_eq!(
        problems(azure),
        [
            "env/environment.yaml:7:15: provider: unknown value `azure_monitr`, expected one of `azure_monitor`, `prometheus`, did you mean `azure_monitor`?"
        ]
    );
    let mixed = "rollout:\n  metrics:\n    provider: azure_monitor\n    url: http://prom:9090\n    base_url: ftp://arm\n";
    assert_eq!(
        problems(mixed),
        [
            "env/environment.yaml:8:5: rollout.metrics: `url` is only for provider `prometheus`",
            "env/environment.yaml:9:15: rollout.metrics.base_url `ftp://arm` is not an http(s) URL",
        ]
    );
}

#[test]
fn an_override_is_not_reported_missing_when_an_endpoint_file_does_not_parse() {
    // `broken-endpoint` may be the endpoint of the file that does not parse: that file's own
    // error is the problem, not the override.
    let rollout = "rollout:\n  endpoints:\n    my-endpoint: none\n    broken-endpoint: none\n";
    let tmp = env_with(rollout);
    fs::write(tmp.path().join("env/broken.yml"), "name: [\n").unwrap();
    let out = flightdeck(&["validate", "env"], tmp.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("error:"))
        .collect();
    assert!(!problems.is_empty(), "{stderr}");
    assert!(
        problems.iter().all(|l| l.starts_with("env/broken.yml:")),
        "{stderr}"
    );
}

#[test]
fn the_shipped_environment_schema_accepts_the_full_policy_and_refuses_a_broken_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = fs::read_to_string(root.join("schemas/environment.schema.json")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let doc = |text: &str| {
        let (node, errors) = flightdeck::spec::yaml::parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        flightdeck::spec::yaml::to_json(&node.unwrap())
    };
    let full = doc(&format!("{TARGET}{FULL}"));
    let found: Vec<String> = validator
        .iter_errors(&full)
        .map(|e| e.to_string())
        .collect();
    assert!(found.is_empty(), "{found:#?}");
    for broken in [
        "rollout:\n  default: {steps: [{weight: 100, bake: 1m}]}\n",
        "rollout:\n  default: {steps: [{weight: 10, bake: 1m, gates: [\"latency < 2\"]}]}\n",
        "rollout:\n  default: {steps: [{weight: 10}]}\n",
        "rollout:\n  default: {steps: [{weight: 10, bake: 1m}], on_failure: retry}\n",
        "rollout:\n  endpoints: {my-endpoint: off}\n",
        "rollout:\n  metrics: {provider: datadog}\n",
    ] {
        let instance = doc(&format!("{TARGET}{broken}"));
        assert!(!validator.is_valid(&instance), "accepted:\n{broken}");
    }
}

#[test]
fn scale_with_traffic_loads_as_a_bool_and_anything_else_is_a_located_error() {
    let rollout =
        "rollout:\n  default:\n    steps: [{weight: 10, bake: 1m}]\n    scale_with_traffic: true\n";
    let tmp = env_with(rollout);
    let state = load_environment(&tmp.path().join("env"), flightdeck::backend::profile_of)
        .unwrap_or_else(|d| panic!("{d}"));
    let loaded = serde_json::to_value(&state.environment.rollout).unwrap();
    assert_eq!(loaded["default"]["scale_with_traffic"], true, "{loaded:#}");
    // Off by default, and then not written out at all.
    let tmp = env_with("rollout:\n  default:\n    steps: [{weight: 10, bake: 1m}]\n");
    let state = load_environment(&tmp.path().join("env"), flightdeck::backend::profile_of)
        .unwrap_or_else(|d| panic!("{d}"));
    let loaded = serde_json::to_value(&state.environment.rollout).unwrap();
    assert!(
        loaded["default"].get("scale_with_traffic").is_none(),
        "{loaded:#}"
    );

    let bad = "rollout:\n  default:\n    steps: [{weight: 10, bake: 1m}]\n    scale_with_traffic: sometimes\n";
    assert_eq!(
        problems(bad),
        ["env/environment.yaml:8:25: scale_with_traffic: expected a boolean, found a string"]
    );
}

#[test]
fn a_mirror_stage_loads_as_the_first_stage_and_a_percent_above_the_platform_limit_is_refused() {
    let tmp = env_with(
        "rollout:\n  default:\n    mirror: {percent: 10, bake: 1m}\n    steps: [{weight: 20, bake: 1m}]\n",
    );
    let state = load_environment(&tmp.path().join("env"), flightdeck::backend::profile_of)
        .unwrap_or_else(|d| panic!("{d}"));
    let policy = state.environment.rollout.default.expect("a default policy");
    assert_eq!(
        serde_json::to_value(&policy.steps).unwrap()[0]["target"],
        json!({"mirror": 10})
    );
    assert_eq!(policy.steps.len(), 2);
    assert_eq!(
        problems(
            "rollout:\n  default:\n    mirror: {percent: 60, bake: 0s}\n    steps: [{weight: 20, bake: 1m}]\n"
        ),
        [
            "env/environment.yaml:7:23: rollout.default: mirror percent 60 is above the state_file limit of 50%",
            "env/environment.yaml:7:33: rollout.default mirror: bake must be longer than 0s",
        ]
    );
}

/// A policy whose second stage has the `smoke` gate (and no metric gate: no `rollout.metrics`).
const SMOKE_POLICY: &str = r#"rollout:
  default:
    steps:
      - {weight: 10, bake: 1m}
      - weight: 50
        bake: 1m
        gates: [smoke]
  endpoints:
    other-endpoint: none
"#;

#[test]
fn a_smoke_gate_on_an_endpoint_without_a_test_is_a_located_error() {
    assert_eq!(
        problems(SMOKE_POLICY),
        [
            "env/environment.yaml:11:9: rollout.default: the `smoke` gate re-runs the candidate's test, but no deployment of endpoint my-endpoint has one (add a `tests:` entry for it)",
        ]
    );
    let twice = SMOKE_POLICY.replace("[smoke]", "[smoke, \" smoke\"]");
    assert_eq!(
        problems(&twice),
        ["env/environment.yaml:11:24: rollout.default stage 2: gate `smoke` is listed twice"]
    );
}

#[test]
fn a_smoke_gate_with_a_test_loads_without_metrics_and_sits_on_its_stage() {
    let tests = "tests:\n  my-endpoint:\n    request_file: smoke.json\n";
    let tmp = env_with(&format!("{tests}{SMOKE_POLICY}"));
    let env = tmp.path().join("env");
    fs::write(env.join("smoke.json"), "{}").unwrap();
    let out = flightdeck(&["validate", "env"], tmp.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let desired = load_environment(&env, flightdeck::backend::profile_of).expect("loads");
    let policy = desired
        .environment
        .rollout
        .policy_for("my-endpoint")
        .unwrap();
    let smoked: Vec<bool> = policy.steps.iter().map(|s| s.smoke).collect();
    assert_eq!(smoked, [false, true]);
    assert!(policy.steps[1].gates.is_empty(), "smoke is no metric gate");
}
