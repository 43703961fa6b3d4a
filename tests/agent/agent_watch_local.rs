//! `--watch-local` end to end: the agent reads a working directory (no Git commit), and a file
//! saved there reaches the sandbox through the notify watcher, with the poll interval far away.

use std::time::Duration;

use flightdeck::agent::config::SourceKind;
use flightdeck_testkit::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saved_file_in_a_watched_directory_is_applied() {
    let sandbox = start_sandbox().await;
    let arm = Arm::new(&sandbox).await;
    let workdir = GitRepo::new();
    workdir.write_sandbox_environment();
    let mut config = agent_config(workdir.dir.path(), &sandbox, Duration::from_secs(600), None);
    config.source = SourceKind::Local {
        root: workdir.dir.path().to_path_buf(),
    };
    let agent = start_agent(config).await;
    let base = agent.base.clone();
    let t = Duration::from_secs(20);
    eventually("the first sync creates blue at 100%", t, || async {
        arm.traffic("my-endpoint").await == Some(json!({"blue": 100}))
    })
    .await;

    workdir.write(
        "environments/sandbox/my-endpoint.yml",
        &endpoint_yaml(&[("blue", 1), ("green", 2)], &[("blue", 90), ("green", 10)]),
    );
    eventually("the saved change is applied without a poll", t, || async {
        arm.traffic("my-endpoint").await == Some(json!({"blue": 90, "green": 10}))
    })
    .await;
    let s = status(&base).await;
    assert!(
        s["source"]
            .as_str()
            .unwrap()
            .contains(&workdir.dir.path().display().to_string()),
        "{s}"
    );
    assert_eq!(
        s["environments"]["environments/sandbox"]["last_result"],
        "applied"
    );

    agent.stop().await;
    sandbox.shutdown().await;
}
