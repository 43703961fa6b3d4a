//! Smoke tests (issue #12 "Smoke gates") through the real binary against the sandbox: several
//! request files (a `request_dir`), JSON-path checks, a latency budget and a retry budget, made
//! to pass or fail with the sandbox's deterministic faults (`fail_first`, `latency_ms`).

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use flightdeck_testkit::azureml_sandbox::*;
use serde_json::json;

const EP: &str = "my-endpoint";

async fn flightdeck(env: &Env, args: &[&str]) -> Output {
    let mut cmd = env.command(args);
    tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("flightdeck finished within 30s")
        .expect("flightdeck runs")
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An environment whose tests are `tests` (YAML under `tests:`), with two request files in
/// `smoke/`, at blue 100 (flow file 1, applied and tested).
async fn blue_live(env: &Env, dir: &Path, tests: &str, extra: &str) {
    env.write_environment(dir, &format!("tests:\n{tests}{extra}"));
    std::fs::create_dir_all(dir.join("smoke")).unwrap();
    let sample = std::fs::read_to_string(reference("model-1/sample-request.json")).unwrap();
    std::fs::write(dir.join("smoke/a.json"), &sample).unwrap();
    std::fs::write(dir.join("smoke/b.json"), r#"{"data": [[1, 2, 3]]}"#).unwrap();
    std::fs::write(dir.join("smoke/notes.txt"), "not a request").unwrap();
    std::fs::copy(flow_file(0), dir.join("my-endpoint.yml")).unwrap();
    let out = flightdeck(env, &["apply", dir.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "blue passes: {}", show(&out));
}

fn green_gets_traffic(dir: &Path, flow: usize) {
    std::fs::copy(flow_file(flow), dir.join("my-endpoint.yml")).unwrap();
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_candidate_passes_within_its_retry_budget_and_the_tries_are_reported() {
    let env = Env::start(Duration::from_millis(20)).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let tests = "  \"*\":\n    request_dir: smoke/\n    retries: 2\n    expect_json: {\"$.endpoint\": my-endpoint}\n";
    blue_live(&env, &dir, tests, "").await;
    // Green's first two answers are 500s: the first request file is tried three times.
    env.fault(json!({"endpoint": EP, "deployment": "green", "fail_first": 2}))
        .await;
    green_gets_traffic(&dir, 3);
    let d = dir.to_str().unwrap();
    let out = flightdeck(&env, &["apply", d, "--output", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    let test = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["step"]["action"] == "test_deployment" && r["step"]["deployment"] == "green")
        .unwrap_or_else(|| panic!("a test of green: {report:#}"));
    assert_eq!(
        test["outcome"]["detail"], "2 requests, 200 from green; smoke/a.json after 3 tries",
        "{test:#}"
    );
    // The plan names both files (size and digest), never a body.
    let requests = test["step"]["test"]["requests"].as_array().unwrap();
    let files: Vec<&str> = requests
        .iter()
        .map(|r| r["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["smoke/a.json", "smoke/b.json"], "{test:#}");
    assert!(!stdout(&out).contains("[[1, 2, 3]]"), "{}", show(&out));
    assert_eq!(env.traffic(EP).await["green"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_that_exhausts_its_retry_budget_takes_no_traffic_and_is_held() {
    let env = Env::start(Duration::from_millis(20)).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let tests = "  \"*\":\n    request_files: [smoke/b.json, smoke/a.json]\n    retries: 2\n";
    let policy = "rollout:\n  default:\n    steps:\n      - weight: 10\n        bake: 1s\n";
    blue_live(&env, &dir, tests, policy).await;
    env.fault(json!({"endpoint": EP, "deployment": "green", "fail_first": 3}))
        .await;
    green_gets_traffic(&dir, 5);
    let d = dir.to_str().unwrap();
    let out = flightdeck(&env, &["apply", d]).await;
    assert_ne!(out.status.code(), Some(0), "{}", show(&out));
    assert!(
        stdout(&out)
            .contains("deployment green: smoke/b.json: got status 500, expected a 2xx status: ")
            && stdout(&out).contains("(tried 3 times)"),
        "{}",
        show(&out)
    );
    assert_eq!(env.traffic(EP).await, [("blue".to_string(), 100)].into());
    // Held: the fault is used up, but the same desired state is not tried again.
    let out = flightdeck(&env, &["apply", d]).await;
    assert_eq!(out.status.code(), Some(3), "{}", show(&out));
    assert_eq!(env.traffic(EP).await, [("blue".to_string(), 100)].into());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_path_that_finds_another_value_or_nothing_fails_the_test_by_name() {
    let env = Env::start(Duration::from_millis(20)).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let tests = "  \"*\":\n    request_file: smoke/a.json\n    expect_json: {\"$.endpoint\": my-endpoint}\n";
    blue_live(&env, &dir, tests, "").await;
    // Green's own test also wants `$.deployment` to be blue.
    let green = "  my-endpoint/green:\n    request_file: smoke/a.json\n    expect_json: {\"$.endpoint\": my-endpoint, \"$.deployment\": blue}\n";
    env.write_environment(&dir, &format!("tests:\n{tests}{green}"));
    green_gets_traffic(&dir, 3);
    let d = dir.to_str().unwrap();
    let out = flightdeck(&env, &["apply", d]).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains(r#"JSON path $.deployment: found "green", expected "blue""#),
        "{}",
        show(&out)
    );
    assert_eq!(env.traffic(EP).await.get("green").copied().unwrap_or(0), 0);

    // A path that matches nothing says so.
    let tests = "  \"*\":\n    request_file: smoke/a.json\n    expect_json: {\"$.scores[0]\": 1}\n";
    env.write_environment(&dir, &format!("tests:\n{tests}"));
    let out = flightdeck(&env, &["apply", d]).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains("JSON path $.scores[0] matches nothing in the answer"),
        "{}",
        show(&out)
    );
    assert_eq!(env.traffic(EP).await.get("green").copied().unwrap_or(0), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_over_the_latency_budget_fails_the_test() {
    let env = Env::start(Duration::from_millis(20)).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("prod");
    let tests = "  \"*\":\n    request_file: smoke/a.json\n    latency_budget: 2s\n";
    blue_live(&env, &dir, tests, "").await;
    // 2.5 s per answer against a 2 s budget (blue answered at once).
    env.fault(json!({"endpoint": EP, "deployment": "green", "latency_ms": 2500}))
        .await;
    green_gets_traffic(&dir, 3);
    let d = dir.to_str().unwrap();
    let out = flightdeck(&env, &["apply", d]).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        stdout(&out).contains("over the latency budget of 2000ms"),
        "{}",
        show(&out)
    );
    assert_eq!(env.traffic(EP).await.get("green").copied().unwrap_or(0), 0);
}
