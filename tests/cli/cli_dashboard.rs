//! `flightdeck dashboard ENV_DIR`: the dashboard without an agent, from the real binary against
//! the sandbox. It shows what is live, pushes an update on every poll, writes nothing to the
//! platform, and refuses a directory that is no environment.

use std::process::Stdio;
use std::time::Duration;

use flightdeck_testkit::azureml_sandbox::*;
use flightdeck_testkit::eventually;
use tokio::io::{AsyncBufReadExt, BufReader};

const PATIENCE: Duration = Duration::from_secs(30);

/// Platform writes in the sandbox's log (token requests are not platform writes).
fn writes(log: &[serde_json::Value]) -> usize {
    log.iter()
        .filter(|e| e["method"] != "GET")
        .filter(|e| !e["path"].as_str().unwrap_or("").contains("oauth2"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_dashboard_shows_live_traffic_pushes_updates_and_writes_nothing() {
    let env = Env::start(Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().unwrap();
    env.write_environment(dir.path(), "");
    std::fs::copy(flow_file(0), dir.path().join("my-endpoint.yml")).unwrap();
    let applied = env
        .command(&["apply", dir.path().to_str().unwrap()])
        .output()
        .await
        .unwrap();
    assert!(applied.status.success(), "{applied:?}");
    let before = writes(&env.log().await);

    let mut child = env
        .command(&[
            "dashboard",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--every",
            "200ms",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(PATIENCE, stderr.next_line())
        .await
        .expect("the dashboard prints its address")
        .unwrap()
        .unwrap();
    let base = line
        .strip_prefix("dashboard on ")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("{line}"))
        .trim_end_matches('/')
        .to_string();

    let page = |base: String| async move {
        reqwest::get(format!("{base}/"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    eventually("the page shows blue live at 100%", PATIENCE, || {
        let base = base.clone();
        async move {
            let page = page(base).await;
            page.contains("data-deployment=\"blue\" data-weight=\"100\"")
                && page.contains("<span class=\"badge ok\">in_sync</span>")
        }
    })
    .await;

    // Each poll is pushed: two updates arrive on the stream without any request of ours.
    let mut stream = reqwest::get(format!("{base}/dashboard/events"))
        .await
        .unwrap();
    let mut text = String::new();
    tokio::time::timeout(PATIENCE, async {
        while text.matches("event: update").count() < 3 {
            let chunk = stream
                .chunk()
                .await
                .unwrap()
                .expect("the stream stays open");
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no pushed updates: {text}"));
    assert!(text.contains("\"kind\":\"live\""), "{text}");

    assert_eq!(
        writes(&env.log().await),
        before,
        "the dashboard wrote to the platform"
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;
}

#[tokio::test]
async fn a_directory_without_an_environment_is_refused_with_exit_2() {
    let env = Env::start(Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().unwrap();
    let out = env
        .command(&[
            "dashboard",
            dir.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not an environment directory (no environment.yaml)"),
        "{stderr}"
    );
    let dir2 = tempfile::tempdir().unwrap();
    env.write_environment(dir2.path(), "");
    let out = env
        .command(&[
            "dashboard",
            dir2.path().to_str().unwrap(),
            "--commit-url",
            "javascript:alert(1)",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expected an http(s) URL with {sha}"),
        "{out:?}"
    );
}
