//! End to end: a Git repository, the in-process sandbox and the agent. A traffic commit reaches
//! the sandbox; invalid YAML changes nothing and shows `file:line` in /status; a change made
//! behind the agent's back is corrected.

use std::time::Duration;

use flightdeck_testkit::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_applies_commits_rejects_invalid_yaml_and_corrects_drift() {
    let sandbox = start_sandbox().await;
    let arm = Arm::new(&sandbox).await;
    let repo = GitRepo::with_sandbox_environment();
    let mut config = agent_config(repo.dir.path(), &sandbox, Duration::from_millis(300), None);
    // Drift on an endpoint Git did not touch is corrected by a full resync: here every tick
    // is one (`--full-resync-interval 0s`; the default is every 10 minutes).
    config.full_resync = Duration::ZERO;
    let agent = start_agent(config).await;
    let base = agent.base.clone();
    let t = Duration::from_secs(20);

    eventually("the endpoint is created with blue at 100%", t, || async {
        arm.traffic("my-endpoint").await == Some(json!({"blue": 100}))
    })
    .await;
    eventually("the agent is ready", t, || async {
        reqwest::get(format!("{base}/readyz"))
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;

    // 1. A traffic change: add green, flight 10%.
    repo.write(
        "environments/sandbox/my-endpoint.yml",
        &endpoint_yaml(&[("blue", 1), ("green", 2)], &[("blue", 90), ("green", 10)]),
    );
    let flight = repo.commit("flight green 10%");
    eventually("the sandbox reaches blue 90 / green 10", t, || async {
        arm.traffic("my-endpoint").await == Some(json!({"blue": 90, "green": 10}))
    })
    .await;
    eventually("status shows the commit applied", t, || async {
        status(&base).await["environments"]["environments/sandbox"]["applied_commit"]
            == flight.as_str()
    })
    .await;

    // 2. Drift: traffic changed directly through ARM is put back.
    arm.put_traffic("my-endpoint", json!({"blue": 100, "green": 0}))
        .await;
    eventually("the drift is corrected", t, || async {
        arm.traffic("my-endpoint").await == Some(json!({"blue": 90, "green": 10}))
    })
    .await;
    let metrics = metrics(&base).await;
    assert!(metrics.contains(
        "flightdeck_steps_total{env=\"environments/sandbox\",kind=\"set_traffic\",outcome=\"ok\"}"
    ));
    assert!(metrics.contains(&format!(
        "flightdeck_applied_commit_info{{env=\"environments/sandbox\",commit=\"{flight}\"}} 1"
    )));

    // 3. Invalid YAML: nothing is written, the error names file and line.
    let before = arm.last_seq().await;
    repo.write(
        "environments/sandbox/my-endpoint.yml",
        "name: my-endpoint\ntraffic:\n  blue: 100\n  green: [unclosed\n",
    );
    let broken = repo.commit("broken yaml");
    eventually("status reports the invalid revision", t, || async {
        let s = status(&base).await;
        let env = &s["environments"]["environments/sandbox"];
        env["commit"] == broken.as_str() && env["last_result"] == "invalid"
    })
    .await;
    let s = status(&base).await;
    let error = s["environments"]["environments/sandbox"]["last_error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains("environments/sandbox/my-endpoint.yml:5:1: invalid YAML"),
        "the error carries file:line: {error}"
    );
    assert_eq!(
        s["environments"]["environments/sandbox"]["applied_commit"],
        flight.as_str()
    );
    another_round(&base).await;
    assert_eq!(
        arm.writes_after(before).await,
        Vec::<serde_json::Value>::new(),
        "no writes for invalid YAML"
    );
    assert_eq!(
        arm.traffic("my-endpoint").await,
        Some(json!({"blue": 90, "green": 10}))
    );

    agent.stop().await;
    sandbox.shutdown().await;
}
