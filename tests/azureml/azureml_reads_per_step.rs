//! #13 item 5: within one apply an endpoint is read once per step that needs fresh state, never
//! twice for the same decision. A blue→green with a pre-traffic test against the sandbox, the
//! sandbox's request log counting the GETs of the endpoint resource itself.

use std::time::Duration;

use flightdeck_testkit::azureml_sandbox::*;
use serde_json::Value;

const TESTS: &str = "tests:\n  \"*\":\n    request_dir: smoke/\n";

fn endpoint_gets(log: &[Value], endpoint: &str) -> Vec<String> {
    let suffix = format!("/onlineEndpoints/{endpoint}");
    log.iter()
        .filter(|e| e["method"] == "GET" && e["path"].as_str().unwrap().ends_with(&suffix))
        .map(|e| format!("{} {}", e["seq"], e["path"].as_str().unwrap()))
        .collect()
}

#[tokio::test]
async fn a_blue_green_with_a_test_step_reads_the_endpoint_only_for_its_traffic_write() {
    let env = Env::start(Duration::from_millis(10)).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    env.write_environment(dir, TESTS);
    std::fs::create_dir_all(dir.join("smoke")).unwrap();
    let sample = std::fs::read_to_string(reference("model-1/sample-request.json")).unwrap();
    std::fs::write(dir.join("smoke/a.json"), &sample).unwrap();
    std::fs::copy(flow_file(0), dir.join("my-endpoint.yml")).unwrap();
    let desired = load(dir);
    let backend = env.backend(&desired);
    let (_, report) = reconcile(&desired, &backend, 8).await;
    assert!(report.succeeded(), "blue lands: {:?}", report.error());

    // Green declared at 100 without blue: create green, wait, test it, shift, delete blue.
    std::fs::copy(flow_file(5), dir.join("my-endpoint.yml")).unwrap();
    let desired = load(dir);
    env.clear_log().await;
    let (plan, report) = reconcile(&desired, &backend, 8).await;
    assert!(report.succeeded(), "green lands: {:?}", report.error());
    let actions: Vec<&str> = plan.steps.iter().map(|s| s.action.kind()).collect();
    assert!(
        actions.contains(&"test_deployment") && actions.contains(&"set_traffic"),
        "{actions:?}"
    );

    let log = env.log().await;
    let lines: Vec<String> = log
        .iter()
        .map(|e| format!("{} {} {}", e["seq"], e["method"], e["path"]))
        .collect();
    let endpoint_put = log
        .iter()
        .position(|e| e["method"] == "PUT" && e["path"].as_str().unwrap().ends_with("/my-endpoint"))
        .expect("the traffic step PUTs the endpoint");
    // Before the traffic PUT, one read of the endpoint: the traffic step's own (it PUTs the body
    // whole, so it needs fresh state). The test step knows the scoring URI and auth mode from
    // the live read and sends no GET of its own. After the PUT, the one GET of the original URI
    // that ends its long-running operation [AML §3].
    let before = endpoint_gets(&log[..endpoint_put], "my-endpoint");
    let after = endpoint_gets(&log[endpoint_put..], "my-endpoint");
    assert_eq!(
        (before.len(), after.len()),
        (1, 1),
        "{before:#?}\n{after:#?}\n{lines:#?}"
    );
    assert_converged(&desired, &backend, "after green").await;
}
