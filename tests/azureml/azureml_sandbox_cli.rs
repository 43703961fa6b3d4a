//! The real `flightdeck` binary against the in-process sandbox, configured only through the
//! environment variables the sandbox prints: apply / plan / diff exit codes, `--output json`,
//! export + `plan --live`, and the pre-traffic test gate stopping a rollout.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use flightdeck_testkit::azureml_sandbox::*;
use serde_json::{Value, json};

/// Runs the binary with only the sandbox's variables (plus PATH) in its environment.
async fn flightdeck(env: &Env, args: &[&str]) -> Output {
    let mut cmd = env.command(args);
    tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("flightdeck finished within 30s")
        .expect("flightdeck runs")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn use_flow_file(dir: &Path, i: usize) {
    std::fs::copy(flow_file(i), dir.join("my-endpoint.yml")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_then_plan_and_diff_report_no_changes_and_a_flight_edit_is_pending() {
    let env = Env::start(Duration::from_millis(20)).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    env.write_environment(&dir, "");
    let d = dir.to_str().unwrap();

    use_flow_file(&dir, 2);
    let out = flightdeck(&env, &["apply", d]).await;
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_eq!(env.traffic("my-endpoint").await["blue"], 100);

    let out = flightdeck(&env, &["plan", d]).await;
    assert_eq!(code(&out), 0, "plan after apply: {}", show(&out));
    let out = flightdeck(&env, &["diff", d]).await;
    assert_eq!(code(&out), 0, "diff after apply: {}", show(&out));

    let snapshot = tmp.path().join("live.json");
    let snap = snapshot.to_str().unwrap();
    let out = flightdeck(&env, &["export", d, "-f", snap]).await;
    assert_eq!(code(&out), 0, "{}", show(&out));
    let out = flightdeck(&env, &["plan", d, "--live", snap]).await;
    assert_eq!(code(&out), 0, "plan --live of the export: {}", show(&out));

    // Edit the YAML: flight green 10%.
    use_flow_file(&dir, 3);
    let out = flightdeck(&env, &["plan", d]).await;
    assert_eq!(code(&out), 1, "{}", show(&out));
    let out = flightdeck(&env, &["plan", d, "--output", "json"]).await;
    assert_eq!(code(&out), 1, "{}", show(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    assert_eq!(doc["changes"], true);
    let steps = doc["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{doc:#}");
    assert_eq!(steps[0]["action"], "set_traffic");
    assert_eq!(steps[0]["endpoint"], "my-endpoint");
    assert_eq!(steps[0]["traffic"], json!({"blue": 90, "green": 10}));
    let out = flightdeck(&env, &["diff", d]).await;
    assert_eq!(code(&out), 1, "{}", show(&out));

    // The snapshot still holds the old live state: the edit is pending against it too.
    let out = flightdeck(&env, &["plan", d, "--live", snap]).await;
    assert_eq!(code(&out), 1, "{}", show(&out));
    // The sandbox was not touched by plan/diff/export.
    assert_eq!(env.traffic("my-endpoint").await["green"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pre_traffic_test_stops_apply_and_leaves_traffic_on_blue() {
    let env = Env::start(Duration::from_millis(20)).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    env.write_environment(
        &dir,
        "tests:\n  \"*\":\n    request_file: sample-request.json\n",
    );
    std::fs::copy(
        reference("model-1/sample-request.json"),
        dir.join("sample-request.json"),
    )
    .unwrap();
    let d = dir.to_str().unwrap();

    use_flow_file(&dir, 0);
    let out = flightdeck(&env, &["apply", d]).await;
    assert_eq!(code(&out), 0, "blue passes its test: {}", show(&out));

    env.fault(json!({"endpoint": "my-endpoint", "deployment": "green", "error_rate": 1.0}))
        .await;
    use_flow_file(&dir, 3);
    let out = flightdeck(&env, &["apply", d]).await;
    assert_eq!(code(&out), 1, "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("test failed"), "{}", show(&out));
    assert!(stdout.contains("green"), "{}", show(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("set_traffic: skipped"), "{}", show(&out));

    let traffic = env.traffic("my-endpoint").await;
    assert_eq!(traffic["blue"], 100, "{traffic:?}");
    assert_eq!(traffic.get("green").copied().unwrap_or(0), 0, "{traffic:?}");
    // Green was created (and may be retried after a fix), but never took traffic.
    assert!(env.deployments("my-endpoint").await.contains_key("green"));

    // The report in JSON names the failed step.
    let out = flightdeck(&env, &["apply", d, "--output", "json"]).await;
    assert_eq!(code(&out), 1, "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    let failed: Vec<&Value> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"]["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{report:#}");
    assert_eq!(failed[0]["step"]["action"], "test_deployment");
    assert_eq!(failed[0]["step"]["deployment"], "green");

    // Clearing the fault lets the same apply finish the flight.
    let resp = reqwest::Client::new()
        .delete(format!("{}/_sandbox/faults", env.base))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let out = flightdeck(&env, &["apply", d]).await;
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_eq!(env.traffic("my-endpoint").await["green"], 10);
}

/// The failed steps of an `apply --output json` report.
fn failed_steps(report: &Value) -> Vec<Value> {
    report["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["outcome"]["status"] == "failed")
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_report_tells_a_platform_500_after_retries_from_a_failed_test() {
    let env = Env::start(Duration::from_millis(20)).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    env.write_environment(
        &dir,
        "tests:\n  \"*\":\n    request_file: sample-request.json\n",
    );
    std::fs::copy(
        reference("model-1/sample-request.json"),
        dir.join("sample-request.json"),
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    use_flow_file(&dir, 0);
    let out = flightdeck(&env, &["apply", d]).await;
    assert_eq!(code(&out), 0, "blue lands: {}", show(&out));

    // Every PUT of green answers 500 (Retry-After: 1, capped by FLIGHTDECK_POLL_INTERVAL_MAX).
    env.fault(
        json!({"match": {"method": "PUT", "path_contains": "/deployments/green"},
                     "respond": {"status": 500, "retry_after": 1}, "times": 1000}),
    )
    .await;
    env.clear_log().await;
    use_flow_file(&dir, 3);
    let out = flightdeck(&env, &["apply", d, "--output", "json"]).await;
    assert_eq!(code(&out), 1, "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    let failed = failed_steps(&report);
    assert_eq!(failed.len(), 1, "{report:#}");
    assert_eq!(failed[0]["step"]["action"], "create_deployment");
    let outcome = &failed[0]["outcome"];
    assert_eq!(outcome["kind"], "platform", "{outcome:#}");
    assert_eq!(outcome["transient"], true, "{outcome:#}");
    assert!(
        outcome["detail"].as_str().unwrap().contains("returned 500"),
        "{outcome:#}"
    );
    // The default policy's six tries, then the report.
    let puts = env
        .log()
        .await
        .iter()
        .filter(|e| e["method"] == "PUT" && e["path"].as_str().unwrap().ends_with("/green"))
        .count();
    assert_eq!(puts, 6, "green was sent six times");

    // Green lands, but its pre-traffic test fails: not transient, a different kind.
    let resp = reqwest::Client::new()
        .delete(format!("{}/_sandbox/faults", env.base))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    env.fault(json!({"endpoint": "my-endpoint", "deployment": "green", "error_rate": 1.0}))
        .await;
    let out = flightdeck(&env, &["apply", d, "--output", "json"]).await;
    assert_eq!(code(&out), 1, "{}", show(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    let failed = failed_steps(&report);
    assert_eq!(failed.len(), 1, "{report:#}");
    assert_eq!(failed[0]["step"]["action"], "test_deployment");
    let outcome = &failed[0]["outcome"];
    assert_eq!(outcome["kind"], "test_failed", "{outcome:#}");
    assert_eq!(outcome["transient"], false, "{outcome:#}");
    assert!(
        outcome["detail"].as_str().unwrap().contains("test failed"),
        "{outcome:#}"
    );
    // Done and skipped steps carry no kind.
    for r in report["results"].as_array().unwrap() {
        if r["outcome"]["status"] != "failed" {
            assert!(r["outcome"].get("kind").is_none(), "{r:#}");
        }
    }
}

/// Flow file 2 with `model_mount_path` on its blue deployment (`path` on the line after `name`).
fn use_flow_file_with_mount_path(dir: &Path, path: &str) {
    let text = std::fs::read_to_string(flow_file(2)).unwrap();
    let text = text.replacen(
        "  - name: blue\n",
        &format!("  - name: blue\n    model_mount_path: {path}\n"),
        1,
    );
    assert!(
        text.contains("model_mount_path"),
        "flow file 2 changed shape"
    );
    std::fs::write(dir.join("my-endpoint.yml"), text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_mount_path_is_applied_read_back_and_a_change_to_it_is_planned_in_place() {
    let env = Env::start(Duration::from_millis(20)).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    env.write_environment(&dir, "");
    let d = dir.to_str().unwrap();

    use_flow_file_with_mount_path(&dir, "/var/azureml-app/models");
    let out = flightdeck(&env, &["apply", d]).await;
    assert_eq!(code(&out), 0, "{}", show(&out));
    let blue = env
        .arm_get("/onlineEndpoints/my-endpoint/deployments/blue")
        .await
        .expect("blue exists");
    assert_eq!(
        blue["properties"]["modelMountPath"], "/var/azureml-app/models",
        "{blue:#}"
    );
    let out = flightdeck(&env, &["plan", d]).await;
    assert_eq!(code(&out), 0, "plan after apply: {}", show(&out));

    // A new path is an in-place update of blue (modelMountPath is not create-only).
    use_flow_file_with_mount_path(&dir, "/models");
    let out = flightdeck(&env, &["plan", d, "--output", "json"]).await;
    assert_eq!(code(&out), 1, "{}", show(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    let steps = doc["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{doc:#}");
    assert_eq!(steps[0]["action"], "update_deployment", "{doc:#}");
    let text = doc.to_string();
    assert!(text.contains("model_mount_path"), "{doc:#}");
    let out = flightdeck(&env, &["apply", d]).await;
    assert_eq!(code(&out), 0, "{}", show(&out));
    let blue = env
        .arm_get("/onlineEndpoints/my-endpoint/deployments/blue")
        .await
        .unwrap();
    assert_eq!(blue["properties"]["modelMountPath"], "/models", "{blue:#}");
}
