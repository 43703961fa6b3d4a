//! The webhook end to end: unsigned or wrongly signed pushes get 401 and write nothing; a signed
//! push is applied long before the next poll. Logs the webhook-to-first-write latency measured
//! from the sandbox's request log timestamps (logged, not asserted).

mod support;

use std::time::Duration;

use flightdeck::agent::webhook::sign_github;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_signed_push_triggers_a_sync_and_it_is_applied_at_once() {
    let sandbox = start_sandbox().await;
    let arm = Arm::new(&sandbox).await;
    let repo = GitRepo::with_sandbox_environment();
    // Polling every 10 minutes: only the webhook can explain a quick apply.
    let config = agent_config(
        repo.dir.path(),
        &sandbox,
        Duration::from_secs(600),
        Some("hook-secret"),
    );
    let agent = start_agent(config).await;
    let base = agent.base.clone();
    let t = Duration::from_secs(20);
    eventually("the first sync", t, || async {
        status(&base).await["environments"]["environments/sandbox"]["last_result"] == "applied"
    })
    .await;

    repo.write(
        "environments/sandbox/my-endpoint.yml",
        &endpoint_yaml(&[("blue", 1), ("green", 2)], &[("blue", 90), ("green", 10)]),
    );
    let pushed = repo.commit("flight green");
    let body = format!(r#"{{"ref":"refs/heads/main","after":"{pushed}"}}"#);
    let client = reqwest::Client::new();
    let before = arm.last_seq().await;
    for signature in [None, Some(sign_github(b"wrong-secret", body.as_bytes()))] {
        let mut request = client
            .post(format!("{base}/webhook"))
            .header("x-github-event", "push")
            .body(body.clone());
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        assert_eq!(request.send().await.unwrap().status(), 401);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        arm.writes_after(before).await.is_empty(),
        "rejected webhooks write nothing"
    );
    assert_eq!(arm.traffic("my-endpoint").await, Some(json!({"blue": 100})));

    let sent = chrono::Utc::now();
    let response = client
        .post(format!("{base}/webhook"))
        .header("x-github-event", "push")
        .header(
            "x-hub-signature-256",
            sign_github(b"hook-secret", body.as_bytes()),
        )
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    eventually("the pushed traffic reaches the sandbox", t, || async {
        arm.traffic("my-endpoint").await == Some(json!({"blue": 90, "green": 10}))
    })
    .await;
    let writes = arm.writes_after(before).await;
    let first = writes.first().expect("the push caused writes");
    let first_at = chrono::DateTime::parse_from_rfc3339(first["time"].as_str().unwrap()).unwrap();
    let latency = first_at.with_timezone(&chrono::Utc) - sent;
    eprintln!(
        "webhook-to-first-write latency: {} ms (first write: {} {})",
        latency.num_microseconds().unwrap_or(0) as f64 / 1000.0,
        first["method"].as_str().unwrap(),
        first["path"].as_str().unwrap()
    );
    assert!(
        latency > chrono::Duration::zero(),
        "writes come after the webhook"
    );

    agent.stop().await;
    sandbox.shutdown().await;
}
