//! An agent whose ARM tokens were revoked recovers on its next tick, not when the old token
//! would have expired (3599 s): the 401 drops the cached token and a new one is fetched.

use std::time::Duration;

use flightdeck_testkit::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_tokens_were_revoked_applies_the_next_commit_on_its_next_tick() {
    let sandbox = start_sandbox().await;
    let arm = Arm::new(&sandbox).await;
    let repo = GitRepo::with_sandbox_environment();
    let config = agent_config(repo.dir.path(), &sandbox, Duration::from_millis(300), None);
    let agent = start_agent(config).await;
    let t = Duration::from_secs(20);
    eventually("the endpoint is created with blue at 100%", t, || async {
        arm.traffic("my-endpoint").await == Some(json!({"blue": 100}))
    })
    .await;

    let revoked: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/_sandbox/tokens/revoke", sandbox.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(revoked["revoked"].as_u64().unwrap() >= 1);
    // The test's own token went too; get a new one for reading.
    let arm = Arm::new(&sandbox).await;

    repo.write(
        "environments/sandbox/my-endpoint.yml",
        &endpoint_yaml(&[("blue", 1), ("green", 2)], &[("blue", 90), ("green", 10)]),
    );
    repo.commit("flight green 10%");
    eventually("the commit lands with a fresh token", t, || async {
        arm.traffic("my-endpoint").await == Some(json!({"blue": 90, "green": 10}))
    })
    .await;
    let refused = arm
        .log()
        .await
        .iter()
        .filter(|e| e["status"] == 401)
        .count();
    assert_eq!(refused, 1, "one 401, then the new token works");
    agent.stop().await;
}
