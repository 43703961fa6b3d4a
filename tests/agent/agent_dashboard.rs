//! The agent's dashboard (docs/agent.md "Dashboard"): an agent on the sandbox rolls out a
//! staged release while a client follows `/dashboard/events`; the stream carries every stage
//! change, and the page (and its fragment) shows the final traffic. With a token, every
//! dashboard route asks for it; `/status` keeps its own rules; nothing secret is shown.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use flightdeck::source::Secret;
use flightdeck_testkit::*;
use serde_json::{Value, json};

const ROLLOUT: &str = "rollout:
  default:
    steps:
      - weight: 20
        bake: 1s
      - weight: 60
        bake: 1s
";

/// Follows the event stream in the background; returns every `data:` line parsed.
fn follow(base: &str) -> Arc<Mutex<Vec<Value>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (url, sink) = (format!("{base}/dashboard/events"), seen.clone());
    tokio::spawn(async move {
        let mut response = reqwest::get(url).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let mut buffer = String::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                for line in event.lines() {
                    if let Some(data) = line.strip_prefix("data: ") {
                        sink.lock()
                            .unwrap()
                            .push(serde_json::from_str(data).unwrap());
                    }
                }
            }
        }
    });
    seen
}

/// The stages of `my-endpoint` the stream announced, in order, without repeats.
fn stages(seen: &[Value]) -> Vec<(u64, Value)> {
    let mut out: Vec<(u64, Value)> = Vec::new();
    for event in seen {
        for r in event["detail"]["rollouts"].as_array().into_iter().flatten() {
            if r["endpoint"] != "my-endpoint" {
                continue;
            }
            let stage = (r["stage"].as_u64().unwrap_or(0), r["traffic"].clone());
            if out.last() != Some(&stage) {
                out.push(stage);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_carries_each_stage_of_a_staged_rollout_as_it_happens() {
    let sandbox = start_sandbox().await;
    let arm = Arm::new(&sandbox).await;
    let repo = GitRepo::with_sandbox_environment();
    repo.write(
        "environments/sandbox/environment.yaml",
        &format!("{ENVIRONMENT}{ROLLOUT}"),
    );
    repo.commit("a rollout policy");
    let t = Duration::from_secs(60);
    let agent = start_agent(agent_config(
        repo.dir.path(),
        &sandbox,
        Duration::from_millis(300),
        None,
    ))
    .await;
    eventually("blue takes all traffic", t, || async {
        arm.traffic("my-endpoint").await == Some(json!({"blue": 100}))
    })
    .await;
    let seen = follow(&agent.base);
    eventually("the stream says hello", t, || async {
        seen.lock().unwrap().iter().any(|e| e["kind"] == "hello")
    })
    .await;

    repo.write(
        "environments/sandbox/my-endpoint.yml",
        &endpoint_yaml(&[("blue", 1), ("green", 2)], &[("blue", 0), ("green", 100)]),
    );
    repo.commit("green takes all traffic, in stages");
    eventually("the stream announces the rollout's end", t, || async {
        let seen = seen.lock().unwrap();
        let stages = stages(&seen);
        stages.iter().any(|(s, _)| *s == 3)
            && seen.last().is_some_and(|e| {
                e["kind"] == "sync"
                    || e["detail"]["rollouts"]
                        .as_array()
                        .is_some_and(|r| r.is_empty())
            })
    })
    .await;
    let stages = stages(&seen.lock().unwrap());
    let numbers: Vec<u64> = stages.iter().map(|(s, _)| *s).collect();
    let mut sorted = numbers.clone();
    sorted.dedup();
    assert!(
        sorted.contains(&1) && sorted.contains(&2) && sorted.contains(&3),
        "stages announced: {stages:?}"
    );
    assert!(
        numbers.windows(2).all(|w| w[0] <= w[1]),
        "stages in order: {stages:?}"
    );
    let at = |stage: u64| stages.iter().find(|(s, _)| *s == stage).unwrap().1.clone();
    assert_eq!(at(1), json!({"blue": 80, "green": 20}));
    assert_eq!(at(2), json!({"blue": 40, "green": 60}));

    // The page itself, as a browser without script gets it.
    eventually("the page shows green at 100", t, || async {
        let page = reqwest::get(format!("{}/", agent.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        page.contains("data-deployment=\"green\" data-weight=\"100\"")
            && page.contains("data-deployment=\"blue\" data-weight=\"0\"")
            && !page.contains("data-rollout=")
    })
    .await;
    let fragment = reqwest::get(format!("{}/dashboard/fragment", agent.base))
        .await
        .unwrap();
    assert_eq!(fragment.status(), 200);
    let csp = fragment.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let fragment = fragment.text().await.unwrap();
    assert!(
        fragment.contains("<span class=\"badge ok\">stage</span>"),
        "{fragment}"
    );
    // Stopping the agent ends the open stream instead of waiting for it.
    tokio::time::timeout(Duration::from_secs(60), agent.stop())
        .await
        .expect("the agent stops with a dashboard stream open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_every_dashboard_route_asks_for_it_and_nothing_secret_is_shown() {
    let sandbox = start_sandbox().await;
    let arm = Arm::new(&sandbox).await;
    let repo = GitRepo::with_sandbox_environment();
    let mut config = agent_config(
        repo.dir.path(),
        &sandbox,
        Duration::from_millis(300),
        Some("webhook-SECRET-1"),
    );
    config.dashboard.token = Some(Secret::new("dash-TOKEN-2"));
    let agent = start_agent(config).await;
    eventually(
        "blue takes all traffic",
        Duration::from_secs(30),
        || async { arm.traffic("my-endpoint").await == Some(json!({"blue": 100})) },
    )
    .await;
    let client = reqwest::Client::new();
    let get = |path: &str, auth: Option<String>| {
        let mut request = client.get(format!("{}{path}", agent.base));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        request.send()
    };
    for path in [
        "/",
        "/dashboard/fragment",
        "/dashboard/events",
        "/dashboard/app.js",
    ] {
        let r = get(path, None).await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic "),
            "{path}"
        );
        let r = get(path, Some("Bearer dash-TOKEN-3".into())).await.unwrap();
        assert_eq!(r.status(), 401, "{path} with a wrong token");
        let r = get(path, Some("Bearer dash-TOKEN".into())).await.unwrap();
        assert_eq!(r.status(), 401, "{path} with a prefix of the token");
    }
    let basic = base64::engine::general_purpose::STANDARD.encode("anyone:dash-TOKEN-2");
    for auth in ["Bearer dash-TOKEN-2".to_string(), format!("Basic {basic}")] {
        let r = get("/dashboard/fragment", Some(auth.clone()))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{auth}");
    }
    // The listener's other routes keep their own rules.
    assert_eq!(get("/status", None).await.unwrap().status(), 200);
    assert_eq!(get("/healthz", None).await.unwrap().status(), 200);
    // Read-only: nothing but GET.
    let r = client
        .post(format!("{}/", agent.base))
        .header("authorization", "Bearer dash-TOKEN-2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);

    // The bars come from the live state a tick reads before it applies: the tick after the
    // one that created the endpoint shows it.
    let page = std::sync::Mutex::new(String::new());
    eventually(
        "the page shows my-endpoint",
        Duration::from_secs(30),
        || async {
            let text = get("/", Some("Bearer dash-TOKEN-2".into()))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let shown = text.contains("data-endpoint=\"my-endpoint\"");
            *page.lock().unwrap() = text;
            shown
        },
    )
    .await;
    let page = page.into_inner().unwrap();
    // The ticks after that read nothing (a targeted reconcile with nothing changed): the
    // endpoint stays on the page, its last reading kept.
    let status = |client: reqwest::Client, base: String| async move {
        let s: Value = client
            .get(format!("{base}/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        s["fetch_rounds"].as_u64().unwrap_or(0)
    };
    let rounds = status(client.clone(), agent.base.clone()).await;
    eventually("three more ticks", Duration::from_secs(30), || async {
        status(client.clone(), agent.base.clone()).await >= rounds + 3
    })
    .await;
    let later = get("/", Some("Bearer dash-TOKEN-2".into()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        later.contains("data-endpoint=\"my-endpoint\""),
        "the endpoint left the page after ticks that read nothing"
    );
    let key = scoring_key(&arm).await;
    for secret in [
        "dash-TOKEN-2",
        "webhook-SECRET-1",
        "agent-test-secret",
        key.as_str(),
    ] {
        assert!(!page.contains(secret), "the page shows a secret: {secret}");
    }
    agent.stop().await;
}

/// The endpoint's primary key, as a client would get it.
async fn scoring_key(arm: &Arm) -> String {
    let keys = arm.list_keys("my-endpoint").await;
    let key = keys["primaryKey"]
        .as_str()
        .expect("a primary key")
        .to_string();
    assert!(!key.is_empty());
    key
}
