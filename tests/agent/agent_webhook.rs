//! The webhook end to end: unsigned or wrongly signed pushes get 401 and write nothing; a signed
//! push is applied long before the next poll. Logs the webhook-to-first-write latency measured
//! from the sandbox's request log timestamps (logged, not asserted). Only a push event syncs:
//! a ping is answered without a sync, other events and a missing event header get 400.

use std::time::Duration;

use flightdeck::agent::webhook::sign_github;
use flightdeck::agent::{Agent, AgentOptions};
use flightdeck_testkit::recorder::{Recorder, git_config};
use flightdeck_testkit::*;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn only_a_push_event_syncs_a_ping_is_answered_and_other_events_are_refused() {
    let repo = GitRepo::new();
    repo.write("environments/prod/environment.yaml", "name: prod\n");
    let first = repo.commit("init");
    let cache = tempfile::tempdir().unwrap();
    // Polling every 10 minutes: every fetch after the first is a webhook's.
    let config = git_config(
        repo.dir.path(),
        cache.path(),
        &["environments/prod"],
        Duration::from_secs(600),
        Some("hook-secret"),
    );
    let recorder = std::sync::Arc::new(Recorder::default());
    let cancel = CancellationToken::new();
    let agent = Agent::start(
        config,
        recorder.clone(),
        AgentOptions::default(),
        cancel.clone(),
    )
    .await
    .unwrap();
    let base = format!("http://{}", agent.local_addr());
    let t = Duration::from_secs(10);
    eventually("the first sync", t, || async {
        recorder.reconciled(&first)
    })
    .await;
    repo.write("environments/prod/more.yaml", "x: 1\n");
    let second = repo.commit("more");

    let client = reqwest::Client::new();
    let body = r#"{"ref":"refs/heads/main"}"#;
    let send = |headers: &'static [(&'static str, &'static str)], signature: Option<String>| {
        let mut request = client.post(format!("{base}/webhook")).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(signature) = signature {
            request = request.header("x-hub-signature-256", signature);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let signed = || Some(sign_github(b"hook-secret", body.as_bytes()));

    let (code, answer) = send(&[("x-github-event", "ping")], signed()).await;
    assert_eq!(
        (code, &answer["status"]),
        (200, &json!("ignored")),
        "{answer}"
    );
    let (code, answer) = send(&[("x-github-event", "issues")], signed()).await;
    assert_eq!(code, 400, "{answer}");
    assert_eq!(
        answer["error"],
        "unsupported event X-GitHub-Event: \"issues\" (expected push or ping)"
    );
    let (code, answer) = send(&[], signed()).await;
    assert_eq!(
        code, 400,
        "a signed body without its event header is not a push"
    );
    assert_eq!(
        answer["error"],
        "missing event header: expected X-GitHub-Event"
    );
    // GitLab's header on a GitHub-signed body does not stand in for X-GitHub-Event.
    let (code, _) = send(&[("x-gitlab-event", "Push Hook")], signed()).await;
    assert_eq!(code, 400);
    let (code, _) = send(
        &[
            ("x-gitlab-event", "Merge Request Hook"),
            ("x-gitlab-token", "hook-secret"),
        ],
        None,
    )
    .await;
    assert_eq!(code, 400);
    // Unauthenticated deliveries are 401 whatever their event.
    let (code, _) = send(&[("x-github-event", "ping")], None).await;
    assert_eq!(code, 401);
    let text = metrics(&base).await;
    assert!(
        !text.contains("flightdeck_webhooks_total{result=\"sync\"}"),
        "nothing triggered a sync yet:\n{text}"
    );
    assert_eq!(
        status(&base).await["sync_requests"],
        0,
        "the ping and the refused events asked for no fetch"
    );

    let (code, _) = send(
        &[
            ("x-gitlab-event", "Push Hook"),
            ("x-gitlab-token", "hook-secret"),
        ],
        None,
    )
    .await;
    assert_eq!(code, 202, "a GitLab push syncs");
    eventually("the pushed commit is reconciled", t, || async {
        recorder.reconciled(&second)
    })
    .await;
    let text = metrics(&base).await;
    for line in [
        "flightdeck_webhooks_total{result=\"sync\"} 1\n",
        "flightdeck_webhooks_total{result=\"ignored\"} 1\n",
        "flightdeck_webhooks_total{result=\"bad_request\"} 4\n",
        "flightdeck_webhooks_total{result=\"unauthorized\"} 1\n",
        // The start-up fetch and the push's: the ping and the refused events fetched nothing.
        "flightdeck_git_fetch_duration_seconds_count 2\n",
    ] {
        assert!(text.contains(line), "{line}{text}");
    }
    cancel.cancel();
    agent.wait().await;
}

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
    // Polling is every 10 minutes, so only a sync request could start a fetch, and the agent
    // counts one before it answers the webhook: no request means no fetch, now or later.
    let after_rejected = status(&base).await;
    assert_eq!(
        after_rejected["sync_requests"], 0,
        "rejected webhooks ask for no sync"
    );
    assert_eq!(
        after_rejected["fetch_rounds"], 1,
        "only the start-up fetch ran"
    );
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
    assert_eq!(status(&base).await["sync_requests"], 1);
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
