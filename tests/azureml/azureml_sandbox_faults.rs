//! The real Azure ML client against the sandbox's control-plane faults [AML §3, §4.1]:
//! throttling with Retry-After, server errors, a dropped connection on a PUT, an operation that
//! ends Failed, 409 while another operation holds the endpoint; and a rollout over several
//! endpoints that runs them in parallel with one write at a time per endpoint.

use std::time::Duration;

use tokio::time::Instant;

use flightdeck::apply::StepStatus;
use flightdeck::backend::Backend;
use flightdeck::backend::azureml::RetryPolicy;
use flightdeck::model::Weights;
use flightdeck::plan::{Action, Step};
use flightdeck_testkit::azureml_sandbox::*;
use serde_json::{Value, json};

/// An environment directory holding flow file `i` as the endpoint file.
fn env_dir(env: &Env, i: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    env.write_environment(dir.path(), "");
    std::fs::copy(flow_file(i), dir.path().join("my-endpoint.yml")).unwrap();
    dir
}

fn on(log: &[Value], method: &str, path_ends: &str) -> Vec<Value> {
    log.iter()
        .filter(|e| e["method"] == method && e["path"].as_str().unwrap().ends_with(path_ends))
        .cloned()
        .collect()
}

fn statuses(entries: &[Value]) -> Vec<u64> {
    entries
        .iter()
        .map(|e| e["status"].as_u64().unwrap())
        .collect()
}

// Paused time: the client's sleeps and the sandbox's operations run on tokio's clock, so the
// bound below measures only what the client chose to wait, whatever the machine's load.
#[tokio::test(start_paused = true)]
async fn throttling_with_retry_after_and_server_errors_are_retried_until_the_flow_lands() {
    let env = Env::start(Duration::from_millis(10)).await;
    env.fault(json!({"rules": [
        {"match": {"method": "PUT", "path_contains": "/deployments/blue"},
         "respond": {"status": 429, "retry_after": 1}, "times": 2},
        {"match": {"method": "PUT", "path_contains": "/onlineEndpoints/my-endpoint"},
         "respond": {"status": 500}, "times": 2},
        {"match": {"method": "GET", "path_contains": "/onlineEndpoints"},
         "respond": {"status": 503, "retry_after": 1}, "times": 1}
    ]}))
    .await;
    let dir = env_dir(&env, 0);
    let desired = load(dir.path());
    let backend = env.backend(&desired);

    let started = Instant::now();
    let (_, report) = reconcile(&desired, &backend, 8).await;
    assert!(report.succeeded(), "{:?}", report.error());
    // Retry-After: 1 is capped by max_poll_interval (20 ms): no second-long sleeps.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    let log = env.log().await;
    assert_eq!(
        statuses(&on(&log, "PUT", "/deployments/blue")),
        [429, 429, 201],
        "blue was created once, after two throttled tries"
    );
    let endpoint_puts = statuses(&on(&log, "PUT", "/onlineEndpoints/my-endpoint"));
    assert_eq!(endpoint_puts[..3], [500, 500, 201], "{endpoint_puts:?}");
    assert_eq!(env.traffic("my-endpoint").await["blue"], 100);
    assert_converged(&desired, &backend, "after throttling").await;
}

#[tokio::test]
async fn a_put_whose_connection_drops_is_checked_before_it_is_sent_again() {
    let env = Env::start(Duration::from_millis(10)).await;
    env.fault(
        json!({"match": {"method": "PUT", "path_contains": "/deployments/blue"},
                     "drop_connection": true, "times": 1}),
    )
    .await;
    let dir = env_dir(&env, 0);
    let desired = load(dir.path());
    let backend = env.backend(&desired);
    let (_, report) = reconcile(&desired, &backend, 8).await;
    assert!(report.succeeded(), "{:?}", report.error());

    let log = env.log().await;
    let blue: Vec<(String, u64)> = log
        .iter()
        .filter(|e| e["path"].as_str().unwrap().ends_with("/deployments/blue"))
        .map(|e| {
            (
                e["method"].as_str().unwrap().to_string(),
                e["status"].as_u64().unwrap(),
            )
        })
        .collect();
    // The dropped PUT (status 0) is followed by a GET that finds nothing, then one create.
    assert_eq!(blue[0], ("PUT".into(), 0), "{blue:?}");
    assert_eq!(blue[1], ("GET".into(), 404), "{blue:?}");
    let creates = blue.iter().filter(|(m, s)| m == "PUT" && *s == 201).count();
    let puts = blue.iter().filter(|(m, _)| m == "PUT").count();
    assert_eq!((puts, creates), (2, 1), "no duplicate create: {blue:?}");
    assert_converged(&desired, &backend, "after a dropped PUT").await;
}

#[tokio::test]
async fn an_operation_that_ends_failed_names_the_deployment_and_code_and_never_gets_traffic() {
    let env = Env::start(Duration::from_millis(10)).await;
    let first = env_dir(&env, 0);
    let desired = load(first.path());
    let backend = env.backend(&desired);
    assert!(reconcile(&desired, &backend, 8).await.1.succeeded());

    env.fault(json!({"endpoint": "my-endpoint", "deployment": "green", "fail_provisioning": true}))
        .await;
    let flight = env_dir(&env, 3);
    let desired = load(flight.path());
    let (_, report) = reconcile(&desired, &backend, 8).await;
    assert!(!report.succeeded());
    let failed: Vec<_> = report.failures().collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].step.action.kind(), "create_deployment");
    let StepStatus::Failed(error) = &failed[0].outcome else {
        unreachable!()
    };
    let message = &error.message;
    assert!(
        message.starts_with("endpoint my-endpoint: deployment green: ResourceNotReady: "),
        "{message}"
    );
    assert!(message.contains("container has crashed"), "{message}");
    let traffic_step = report
        .results
        .iter()
        .find(|r| r.step.action.kind() == "set_traffic")
        .expect("the plan sets traffic");
    assert!(
        matches!(traffic_step.outcome, StepStatus::Skipped(_)),
        "{:?}",
        traffic_step.outcome
    );
    let traffic = env.traffic("my-endpoint").await;
    assert_eq!(traffic.get("green").copied().unwrap_or(0), 0, "{traffic:?}");
    assert_eq!(traffic["blue"], 100);
    // The PUT was accepted (201); the failure came from the operation [AML §3].
    assert_eq!(
        statuses(&on(&env.log().await, "PUT", "/deployments/green")),
        [201]
    );
    assert_eq!(env.deployments("my-endpoint").await["green"].1, "Failed");

    // The fault fired once: applying again repairs green, then flights it.
    let (_, report) = reconcile(&desired, &backend, 8).await;
    assert!(report.succeeded(), "{:?}", report.error());
    let traffic = env.traffic("my-endpoint").await;
    assert_eq!((traffic["blue"], traffic["green"]), (90, 10));
    assert_converged(&desired, &backend, "after repairing green").await;

    // An injected lro_fail on the endpoint PUT: the traffic step fails with the ARM code.
    let log_before = env.log().await.len();
    env.fault(
        json!({"match": {"method": "PUT", "path_contains": "/onlineEndpoints/my-endpoint"},
                     "lro_fail": true, "times": 1}),
    )
    .await;
    let err = backend
        .execute(&set_traffic(&[("blue", 100), ("green", 0)]))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "endpoint my-endpoint: InternalServerError: operation Failed: the operation failed: injected by a sandbox fault rule (lro_fail)"
    );
    assert!(env.log().await.len() > log_before);
    // The sandbox keeps what the failed PUT sent (ARM does not promise a rollback); the next
    // apply puts the declared split back.
    let (_, report) = reconcile(&desired, &backend, 8).await;
    assert!(report.succeeded(), "{:?}", report.error());
    let traffic = env.traffic("my-endpoint").await;
    assert_eq!((traffic["blue"], traffic["green"]), (90, 10));
    assert_converged(&desired, &backend, "after a failed endpoint update").await;
}

fn set_traffic(pairs: &[(&str, u32)]) -> Step {
    let traffic: Weights = pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    Step::new(
        "my-endpoint".into(),
        Action::SetTraffic { traffic },
        "test".into(),
    )
}

// Paused time: the traffic change starts 15 ms into the 60 ms scale on tokio's clock, so it
// always meets the running operation.
#[tokio::test(start_paused = true)]
async fn a_conflict_while_another_operation_runs_is_retried_until_it_converges() {
    let env = Env::start(Duration::from_millis(60)).await;
    let dir = env_dir(&env, 2);
    let desired = load(dir.path());
    let mut config = env.config();
    config.retry = RetryPolicy {
        max_attempts: 10,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        ..RetryPolicy::default()
    };
    let backend = env.backend_for(&desired, config);
    assert!(reconcile(&desired, &backend, 8).await.1.succeeded());
    env.clear_log().await;

    // Another client (here: a second call outside the executor) holds the endpoint with a
    // scale; our traffic change arrives while that operation runs and gets 409s until it ends.
    let scale = Step::new(
        "my-endpoint".into(),
        Action::ScaleDeployment {
            deployment: "green".into(),
            from: 2,
            to: 1,
        },
        "another writer".into(),
    );
    let (scaled, flighted) = tokio::join!(backend.execute(&scale), async {
        tokio::time::sleep(Duration::from_millis(15)).await;
        backend
            .execute(&set_traffic(&[("blue", 90), ("green", 10)]))
            .await
    });
    scaled.expect("the scale lands");
    flighted.expect("the traffic change lands after the conflict");

    let log = env.log().await;
    let puts = statuses(&on(&log, "PUT", "/onlineEndpoints/my-endpoint"));
    assert!(puts.contains(&409), "a conflict was seen: {puts:?}");
    assert_eq!(puts.last(), Some(&200), "{puts:?}");
    let traffic = env.traffic("my-endpoint").await;
    assert_eq!((traffic["blue"], traffic["green"]), (90, 10));
    assert_eq!(env.deployments("my-endpoint").await["green"].0, 1);
}

// Paused time: each operation takes 5 s on the sandbox clock. Parallelism is proven by the
// sandbox journal (every endpoint's create arrives while the others' are still in flight), not
// by a duration.
#[tokio::test(start_paused = true)]
async fn a_rollout_over_several_endpoints_runs_them_in_parallel_one_write_at_a_time_each() {
    let delay = Duration::from_secs(5);
    let env = Env::start(delay).await;
    let dir = tempfile::tempdir().unwrap();
    env.write_environment(dir.path(), "");
    let source = std::fs::read_to_string(flow_file(2)).unwrap();
    let endpoints = 6;
    for n in 0..endpoints {
        let text = source.replace("name: my-endpoint", &format!("name: ep-{n}"));
        std::fs::write(dir.path().join(format!("ep-{n}.yml")), text).unwrap();
    }
    let desired = load(dir.path());
    let backend = env.backend(&desired);

    let (p, report) = reconcile(&desired, &backend, endpoints).await;
    assert!(report.succeeded(), "{:?}", report.error());
    let per_endpoint = p.steps.len() / endpoints;
    // create endpoint, blue, green, set traffic: four operations of `delay` each per endpoint.
    assert_eq!(per_endpoint, 4, "{:?}", p.steps);

    let log = env.log().await;
    let writes: Vec<(String, String)> = log
        .iter()
        .map(method_path)
        .filter(|(m, _)| m != "GET")
        .collect();
    // Parallel: every endpoint's create went out before any endpoint's second write.
    let first: std::collections::BTreeSet<&str> = writes[..endpoints]
        .iter()
        .map(|(_, p)| endpoint_of(p))
        .collect();
    assert_eq!(first.len(), endpoints, "{writes:?}");
    // One write at a time per endpoint: the sandbox refuses overlapping writes with 409.
    assert!(
        log.iter().all(|e| e["status"] != 409),
        "a write overlapped another on the same endpoint: {log:#?}"
    );
    for n in 0..endpoints {
        let name = format!("ep-{n}");
        let order: Vec<&str> = writes
            .iter()
            .filter(|(_, p)| endpoint_of(p) == name)
            .map(|(_, p)| {
                if p.contains("/deployments/") {
                    p.rsplit('/').next().unwrap()
                } else {
                    "endpoint"
                }
            })
            .collect();
        assert_eq!(order, ["endpoint", "blue", "green", "endpoint"], "{name}");
        assert_eq!(env.traffic(&name).await["blue"], 100);
    }
}

fn endpoint_of(path: &str) -> &str {
    let (_, tail) = path.split_once("/onlineEndpoints/").expect("endpoint path");
    tail.split('/').next().unwrap()
}
