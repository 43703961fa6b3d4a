//! The LRO follower polls fast when the platform sends no `Retry-After` and backs off from
//! there: a 1 s sandbox operation is followed to its end in a handful of polls, about 1 s after
//! it started, not after a flat 10 s wait (src/backend/azureml/lro.rs `poll_policy`).

use std::time::Duration;

use flightdeck::backend::Backend;
use flightdeck::backend::azureml::{AzureMlBackend, AzureMlConfig, credential_from_vars};
use flightdeck::model::{AzureMlTarget, EndpointSettings};
use flightdeck::plan::{Action, Step};
use flightdeck::sandbox::SandboxConfig;
use flightdeck_testkit::azureml_sandbox::*;

#[tokio::test]
async fn a_one_second_operation_without_retry_after_is_seen_done_within_a_few_polls() {
    let env = Env::start_with(SandboxConfig {
        provisioning_delay: Duration::from_secs(1),
        retry_after: None,
        ..Default::default()
    })
    .await;
    // The production poll cap (30 s), not the 20 ms the other sandbox tests use.
    let config = AzureMlConfig {
        max_poll_interval: AzureMlConfig::default().max_poll_interval,
        step_timeout: Duration::from_secs(60),
        ..env.config()
    };
    let target = AzureMlTarget {
        subscription_id: env.subscription().to_string(),
        resource_group: RG.into(),
        workspace: WS.into(),
        location: "westus2".into(),
    };
    let vars = env.vars.clone();
    let credential =
        credential_from_vars(&config.arm_endpoint, &move |k| vars.get(k).cloned()).unwrap();
    let backend = AzureMlBackend::new(&target, config, credential).unwrap();
    env.clear_log().await;

    let step = Step::new(
        "polled".into(),
        Action::CreateEndpoint {
            settings: EndpointSettings::default(),
        },
        "test".into(),
    );
    // Generous: the old flat 10 s wait without Retry-After cannot meet it; the new schedule
    // needs about 1.4 s.
    tokio::time::timeout(Duration::from_secs(8), backend.execute(&step))
        .await
        .expect("the operation is followed to its end long before a 10 s poll would fire")
        .expect("the endpoint is created");

    let log = env.log().await;
    assert!(
        log.iter().all(|e| e["status"].as_u64() != Some(429)),
        "no throttling in this test"
    );
    let polls = log
        .iter()
        .filter(|e| e["method"] == "GET" && e["path"].as_str().unwrap().contains("/mfeOperations"))
        .count();
    // 0, 200, 600, 1400 ms: the fourth poll sees Succeeded. Allow for a slow machine, but not for
    // a hot loop (a 1 s operation polled every few ms would log hundreds).
    assert!(
        (3..=8).contains(&polls),
        "{polls} operation polls for a 1 s operation: {log:#?}"
    );
}
